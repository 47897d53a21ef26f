"""Logging: secrets are masked on every record, key=value context, journald priority prefixes."""

from __future__ import annotations

import io
import logging

import pytest

from voiceterm.logs import kv, redact, setup_logging
from voiceterm.meter import render_bar


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("connecting url=wss://bot.example/ws?token=abc.def-123&x=1", "abc.def-123"),
        ("headers Authorization: Bearer sk_live_999", "sk_live_999"),
        ('body {"token": "tok-42", "wsUrl": "wss://x"}', "tok-42"),
        ("token=zz9 rejected", "zz9"),
    ],
)
def test_redact_masks_tokens(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert "<redacted>" in out


def test_kv_quotes_values_with_spaces() -> None:
    assert kv(state="backing-off", attempt=3, delay=2.25, error="connection refused", skip=None) == (
        'state=backing-off attempt=3 delay=2.25 error="connection refused"'
    )


def test_handler_redacts_and_prefixes_for_journald(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    stream = io.StringIO()
    setup_logging("info", stream=stream)
    try:
        logging.getLogger("voiceterm.test").warning("failed url=%s", "ws://h/ws?token=SECRET1")
        logging.getLogger("voiceterm.test").debug("hidden at info")
    finally:
        setup_logging("warning", stream=io.StringIO())
    out = stream.getvalue()
    assert out == "<4>voiceterm.test: failed url=ws://h/ws?token=<redacted>\n"


def test_meter_bar_marks_clipping_and_quiet() -> None:
    assert "CLIPPING" in render_bar(-3.0, -0.2)
    assert "quiet" in render_bar(-70.0, -60.0)
    loud = render_bar(-30.0, -10.0)
    assert loud.count("#") == 25 and "|" in loud
