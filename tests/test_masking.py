"""The one list of secret words and the masks built on it; `logs.escape` for outside text in log lines."""

from __future__ import annotations

import logging

import pytest

from voiceterm import masking
from voiceterm.logs import escape, setup_logging
from voiceterm.masking import is_secret_name, mask_body, mask_mapping, mask_url, redact


@pytest.mark.parametrize(
    "name", ["token", "api_key", "Authorization", "X-Signature", "password", "Cookie", "refresh_jwt", "sig"]
)
def test_secret_like_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["transport", "room", "Content-Type", "sessionId", "User-Agent"])
def test_ordinary_names(name: str) -> None:
    assert not is_secret_name(name)


def test_masks() -> None:
    assert mask_url("wss://u:pw@bot.example/ws?token=abc&room=1&api_key=k") == (
        "wss://<redacted>@bot.example/ws?token=<redacted>&room=1&api_key=<redacted>"
    )
    assert mask_mapping({"Authorization": "Bearer x", "Accept": "json"}) == {
        "Authorization": "<set>",
        "Accept": "json",
    }
    body = {"transport": "websocket", "body": {"api_key": "k", "list": [{"secret": "s", "x": 1}]}}
    assert mask_body(body) == {
        "transport": "websocket",
        "body": {"api_key": "<set>", "list": [{"secret": "<set>", "x": 1}]},
    }
    assert "abc" not in redact("GET /ws?access_token=abc HTTP/1.1, Authorization: Bearer abc")


def test_escape_keeps_outside_text_on_one_bounded_line() -> None:
    assert escape("bad\nlevel=error forged=1\r\x1b[31m\u2028\ud800") == (
        "bad\\nlevel=error forged=1\\r\\x1b[31m\\u2028\\ud800"
    )
    long = escape("x" * 10_000, limit=50)
    assert long == "x" * 50 + "…"
    assert escape(b"\x00") == "b'\\x00'"


def test_the_log_filter_keeps_every_record_on_one_line(capsys) -> None:
    setup_logging("info")
    logging.getLogger("voiceterm.test").warning("bot said %s", "hi\nvoiceterm: forged")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hi\\nvoiceterm: forged" in err


def test_credential_like_values_are_masked_whatever_their_name() -> None:
    assert mask_mapping(
        {"X-Custom": "Bearer abcdefgh", "X-Other": "Basic dXNlcjpwYXNz", "Accept": "json"}
    ) == {
        "X-Custom": "<set>",
        "X-Other": "<set>",
        "Accept": "json",
    }
    assert mask_body({"headers": {"x": "Bearer abc"}, "list": ["token=abc"]}) == {
        "headers": {"x": "<set>"},
        "list": ["<set>"],
    }
    assert mask_url("wss://bot/ws?x=Bearer%20abc#token=frag") == "wss://bot/ws?x=<redacted>#token=<redacted>"


def test_remembered_secret_values_are_masked_wherever_they_turn_up() -> None:
    try:
        masking.remember_secrets(["s3cr3t-value", "Bearer hdr-s3cr3t", "short", None, ""])
        assert masking.scrub_known("sent s3cr3t-value and hdr-s3cr3t") == "sent <redacted> and <redacted>"
        assert masking.scrub_known("short stays") == "short stays"  # too short to mask safely
        assert redact("error: bad key s3cr3t-value") == "error: bad key <redacted>"
        assert escape("path /x/s3cr3t-value\n") == "path /x/<redacted>\\n"
        assert mask_url("wss://bot/s3cr3t-value/ws") == "wss://bot/<redacted>/ws"
    finally:
        masking.forget_secrets()
    assert masking.scrub_known("s3cr3t-value") == "s3cr3t-value"
