"""The start-endpoint call and the URL helpers: against the local endpoint over real HTTP, and against
httpx's own MockTransport for answers no sane endpoint gives."""

from __future__ import annotations

import httpx
import pytest
import trio

from voiceterm.io.start_endpoint import (
    MAX_REPLY_BYTES,
    StartEndpointError,
    call_start_endpoint,
    default_body,
    mask_url,
    url_with_token,
    websocket_url,
)
from voiceterm_devkit.bot import find_free_port
from voiceterm_devkit.start_server import StartEndpointServer

BODY = {"transport": "websocket"}


async def test_answer_with_token_session_and_extra_keys():
    async with trio.open_nursery() as nursery:
        server = StartEndpointServer(ws_url="ws://127.0.0.1:7860/ws-client")
        await nursery.start(server.run)
        async with httpx.AsyncClient() as client:
            first = await call_start_endpoint(client, server.url, body=BODY, timeout=5)
            second = await call_start_endpoint(client, server.url, body=BODY, timeout=5)
        nursery.cancel_scope.cancel()
    assert first.ws_url == "ws://127.0.0.1:7860/ws-client"
    assert first.token in server.tokens.issued and second.token in server.tokens.issued
    assert first.token != second.token
    assert first.connect_url == f"ws://127.0.0.1:7860/ws-client?token={first.token}"
    assert first.session_id and first.session_id != second.session_id
    assert first.extra["fileUploadUrl"] == "/files"
    assert first.token not in repr(first)  # the token stays out of reprs (and so out of tracebacks)


async def test_ws_url_spelling_and_a_null_token():
    async with trio.open_nursery() as nursery:
        server = StartEndpointServer(ws_url="wss://bot.example/ws", url_key="ws_url", issue_tokens=False)
        await nursery.start(server.run)
        async with httpx.AsyncClient() as client:
            result = await call_start_endpoint(client, server.url, body=BODY, timeout=5)
        nursery.cancel_scope.cancel()
    assert result.ws_url == "wss://bot.example/ws"
    assert result.token is None
    assert result.connect_url == "wss://bot.example/ws"


async def test_bearer_and_headers_are_sent_and_a_wrong_key_is_unfixable():
    async with trio.open_nursery() as nursery:
        server = StartEndpointServer(ws_url="ws://127.0.0.1:1/ws", api_key="right")
        await nursery.start(server.run)
        async with httpx.AsyncClient() as client:
            ok = await call_start_endpoint(
                client, server.url, body=BODY, headers={"X-Unit": "7"}, bearer_token="right", timeout=5
            )
            with pytest.raises(StartEndpointError) as wrong:
                await call_start_endpoint(client, server.url, body=BODY, bearer_token="wrong-key", timeout=5)
        nursery.cancel_scope.cancel()
    assert ok.token
    assert server.calls[0].headers["x-unit"] == "7"
    assert server.calls[0].headers["authorization"] == "Bearer right"
    assert wrong.value.unfixable and wrong.value.status == 401
    assert "rejected the credentials (HTTP 401: missing or wrong API key)" in str(wrong.value)
    assert "wrong-key" not in str(wrong.value)


async def test_server_errors_are_worth_retrying_and_then_it_works():
    async with trio.open_nursery() as nursery:
        server = StartEndpointServer(ws_url="ws://127.0.0.1:1/ws", fail_next=1)
        await nursery.start(server.run)
        async with httpx.AsyncClient() as client:
            with pytest.raises(StartEndpointError) as busy:
                await call_start_endpoint(client, server.url, body=BODY, timeout=5)
            result = await call_start_endpoint(client, server.url, body=BODY, timeout=5)
        nursery.cancel_scope.cancel()
    assert not busy.value.unfixable and busy.value.status == 503
    assert result.token


async def test_a_wrong_path_is_unfixable():
    async with trio.open_nursery() as nursery:
        server = StartEndpointServer(ws_url="ws://127.0.0.1:1/ws")
        await nursery.start(server.run)
        async with httpx.AsyncClient() as client:
            with pytest.raises(StartEndpointError) as missing:
                await call_start_endpoint(
                    client, f"http://127.0.0.1:{server.port}/nope", body=BODY, timeout=5
                )
        nursery.cancel_scope.cancel()
    assert missing.value.unfixable and missing.value.status == 404


async def test_an_unreachable_endpoint_is_worth_retrying():
    async with httpx.AsyncClient() as client:
        with pytest.raises(StartEndpointError) as down:
            await call_start_endpoint(
                client, f"http://127.0.0.1:{find_free_port()}/start", body=BODY, timeout=5
            )
    assert not down.value.unfixable
    assert "connection refused" in str(down.value)


def _mock(response: httpx.Response | Exception) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(response, Exception):
            raise response
        return response

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("response", "words"),
    [
        (httpx.Response(200, text="<html>hello</html>"), "without a JSON body"),
        (httpx.Response(200, json=["ws://x"]), "not an object"),
        (httpx.Response(200, json={"sessionId": "s"}), "without a wsUrl (keys: sessionId)"),
        (httpx.Response(200, json={"wsUrl": "ftp://bot/ws"}), "not a ws://, wss://, http:// or https:// URL"),
        (httpx.Response(200, json={"wsUrl": "ws://"}), "not a ws://, wss://, http:// or https:// URL"),
        (httpx.Response(200, json={"wsUrl": "ws://bot/a b"}), "not a ws://, wss://, http:// or https:// URL"),
        (httpx.Response(200, json={"wsUrl": ["ws://bot/ws"]}), "without a wsUrl"),
        (httpx.Response(200, json={"wsUrl": "ws://bot/ws", "token": 42}), "token that is not a string"),
        (httpx.Response(200, content=b"[" * 50_000), "without a JSON body"),  # too deep: bounded, one line
        (httpx.Response(200, content=b" " * (MAX_REPLY_BYTES + 1)), "more than 64 KiB"),
        (httpx.Response(200, json={"a\nb": 1}), "without a wsUrl (keys: a\\nb)"),
        (
            httpx.Response(200, content=b"\x1f\x8b", headers={"Content-Encoding": "gzip"}),
            "a compressed body (gzip)",
        ),
    ],
)
async def test_malformed_answers_are_unfixable(response, words):
    async with _mock(response) as client:
        with pytest.raises(StartEndpointError) as bad:
            await call_start_endpoint(client, "https://start.example/start", body=BODY, timeout=5)
    assert words in str(bad.value)
    assert bad.value.unfixable


@pytest.mark.parametrize(
    ("response", "words", "unfixable"),
    [
        (
            # pipecat's runner started with -t twilio, asked for a websocket session
            httpx.Response(
                400,
                json={
                    "detail": "Transport 'websocket' is not allowed. Server is configured for 'twilio' only."
                },
            ),
            "answered HTTP 400: Transport 'websocket' is not allowed. Server is configured for 'twilio' only.",
            True,
        ),
        (httpx.Response(502, text="<html>\n<h1>Bad Gateway</h1>"), "answered HTTP 502: <html>", False),
        (httpx.Response(500, text="boom\x1b[31m\rforged"), "answered HTTP 500: boom\\x1b[31m", False),
        (
            httpx.Response(429, json={"error": "slow down token=s3cret"}),
            "HTTP 429: slow down token=<redacted>",
            False,
        ),
        (httpx.Response(404, text=""), "answered HTTP 404", True),
        (httpx.Response(503, text="x" * 100_000), "answered HTTP 503: " + "x" * 160 + "…", False),
    ],
)
async def test_an_error_reply_names_the_status_and_its_first_line_escaped(response, words, unfixable):
    async with _mock(response) as client:
        with pytest.raises(StartEndpointError) as refused:
            await call_start_endpoint(client, "https://start.example/start", body=BODY, timeout=5)
    message = str(refused.value)
    assert message.endswith(words) and refused.value.unfixable is unfixable
    assert "\n" not in message and "\r" not in message and "s3cret" not in message


@pytest.mark.parametrize(
    ("given", "opened"),
    [
        ("http://localhost:7860/ws", "ws://localhost:7860/ws"),  # the seed example of pipecat-client-web
        ("https://bot.example/ws?room=1", "wss://bot.example/ws?room=1"),
        ("HTTPS://bot.example/ws", "wss://bot.example/ws"),
        ("wss://bot.example/ws", "wss://bot.example/ws"),
    ],
)
async def test_http_urls_from_the_endpoint_open_as_websocket_urls(given, opened):
    async with _mock(httpx.Response(200, json={"wsUrl": given, "token": "t1"})) as client:
        result = await call_start_endpoint(client, "https://start.example/start", body=BODY, timeout=5)
    assert result.ws_url == opened
    assert result.connect_url.startswith(opened)


def test_websocket_url_refuses_what_is_not_one():
    for url in (
        "ftp://h/x",
        "ws://",
        "mailto:a@b",
        "ws://h:99999/x",
        "//h/x",
        "",
        "ws://h/\x1b[2J",
        "ws://h/a\u2028b",
    ):
        assert websocket_url(url) is None, url


def test_the_default_body_asks_for_the_transport_of_the_wire_format():
    assert default_body("protobuf") == {"transport": "websocket"}
    assert default_body("twilio") == {"transport": "twilio"}


async def test_a_timeout_says_how_long_it_waited():
    async with _mock(httpx.ReadTimeout("slow")) as client:
        with pytest.raises(StartEndpointError) as slow:
            await call_start_endpoint(client, "https://start.example/start", body=BODY, timeout=3)
    assert "did not answer within 3 s" in str(slow.value)
    assert not slow.value.unfixable


@pytest.mark.parametrize(
    ("url", "token", "expected"),
    [
        ("ws://h/ws", "abc", "ws://h/ws?token=abc"),
        ("ws://h/ws?room=1", "abc", "ws://h/ws?room=1&token=abc"),
        ("ws://h/ws?token=old&room=1", "new", "ws://h/ws?room=1&token=new"),
        ("ws://h/ws", "a b&c=", "ws://h/ws?token=a+b%26c%3D"),
        ("ws://h/ws", None, "ws://h/ws"),
        ("ws://h/ws", "", "ws://h/ws"),
    ],
)
def test_url_with_token(url, token, expected):
    assert url_with_token(url, token) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://h:1/ws?token=s3cret", "ws://h:1/ws?token=<redacted>"),
        ("wss://h/ws?room=1&api_key=k&sig=x", "wss://h/ws?room=1&api_key=<redacted>&sig=<redacted>"),
        ("wss://user:pass@h/ws", "wss://<redacted>@h/ws"),
        ("ws://h/ws", "ws://h/ws"),
    ],
)
def test_mask_url(url, expected):
    assert mask_url(url) == expected
