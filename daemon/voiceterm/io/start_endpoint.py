"""The `startBotAndConnect` call: POST the start endpoint, get back the WebSocket URL and a one-time token.

Uses httpx (on trio through anyio). The response may carry ``wsUrl`` or ``ws_url`` (ws(s)://, or http(s)://
which is mapped to ws(s):// as a browser's WebSocket does), ``token`` (a string or null) and extra keys such
as ``sessionId``. The reply is untrusted: its body is read up to a bound, parsed with bounded depth, and
every wrong shape becomes one `StartEndpointError` line; when the endpoint refuses, the line carries the
status and the first line of its error body, escaped. Errors never quote a token or a header value;
401/403 and malformed answers are marked unfixable (a retry gets the same answer). Also the URL helpers
the link shares: token appending and masking, and the default body for a serializer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from voiceterm.io.neterrors import describe_network, describe_tls, status_is_unfixable
from voiceterm.logs import escape
from voiceterm.masking import mask_url
from voiceterm.protocol.base import decode_json
from voiceterm.protocol.errors import ProtocolError
from voiceterm.record import record

if TYPE_CHECKING:  # httpx is imported only in start-endpoint mode: it costs ~8 MiB and 100 ms at start
    import httpx

MAX_REPLY_BYTES = 64 * 1024  # a start reply is a few hundred bytes; anything near this is not one
MAX_ERROR_BODY_BYTES = 4096  # of an error reply, read for its first line
ERROR_LINE_CHARS = 160

# What `bot.endpoint_body = {}` (the default) sends: the transport the pipecat runner must start for this
# wire format (pipecat/runner/run.py: "websocket" serves /ws-client, the telephony names serve /ws).
DEFAULT_BODIES: Mapping[str, Mapping[str, Any]] = {
    "protobuf": {"transport": "websocket"},
    "twilio": {"transport": "twilio"},
}
_WS_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}


class StartEndpointError(Exception):
    """The start call failed. `unfixable`: retrying will not help (credentials, a broken endpoint)."""

    def __init__(self, message: str, *, unfixable: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.unfixable = unfixable
        self.status = status


@record
class StartResult:
    """What the endpoint answered."""

    ws_url: str  # without the token; always ws:// or wss://
    token: str | None = field(repr=False)
    session_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def connect_url(self) -> str:
        """The URL to open: `ws_url` with ``?token=`` appended when there is a token."""
        return url_with_token(self.ws_url, self.token)


def default_body(serializer: str) -> Mapping[str, Any]:
    """The start body for a wire format when bot.endpoint_body is empty."""
    return DEFAULT_BODIES.get(serializer, DEFAULT_BODIES["protobuf"])


def url_with_token(url: str, token: str | None) -> str:
    """`url` with ``token=<token>`` added to its query (replacing any token already there)."""
    if not token:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", token))
    return urlunsplit(parts._replace(query=urlencode(query)))


def websocket_url(url: str) -> str | None:
    """`url` as a ws:// or wss:// URL (http and https mapped as a browser's WebSocket does), or None."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        return None
    scheme = _WS_SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.hostname or not url.isprintable() or " " in url:
        return None
    return urlunsplit(parts._replace(scheme=scheme))


async def call_start_endpoint(
    client: httpx.AsyncClient,
    endpoint: str,
    *,
    body: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
    bearer_token: str | None = None,
    timeout: float = 10.0,
) -> StartResult:
    """POST `body` as JSON to `endpoint` and parse the answer. Raises `StartEndpointError`."""
    import httpx

    shown = mask_url(endpoint)
    # identity: a compressed reply could inflate far past the bound on what is read.
    request_headers = {"Accept": "application/json", "Accept-Encoding": "identity", **dict(headers or {})}
    if bearer_token:
        request_headers["Authorization"] = f"Bearer {bearer_token}"
    try:
        async with client.stream(
            "POST", endpoint, json=dict(body), headers=request_headers, timeout=timeout
        ) as response:
            status = response.status_code
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise StartEndpointError(
                    f"start endpoint {shown} answered a compressed body ({escape(encoding, 20)}) though asked "
                    "not to",
                    unfixable=True,
                    status=status,
                )
            limit = MAX_ERROR_BODY_BYTES if status >= 400 else MAX_REPLY_BYTES
            raw, cut = await _read_bounded(response, limit)
    except httpx.TimeoutException:
        raise StartEndpointError(f"start endpoint {shown} did not answer within {timeout:g} s") from None
    except httpx.HTTPError as e:
        tls = describe_tls(e)
        if tls is not None:
            raise StartEndpointError(
                f"start endpoint {shown}: {tls.reason}", unfixable=tls.unfixable
            ) from None
        reason = describe_network(e) or type(e).__name__
        raise StartEndpointError(f"start endpoint {shown} unreachable: {reason}") from None

    if status >= 400:
        said = _first_line(raw)
        detail = f": {said}" if said else ""
        if status in (401, 403):
            raise StartEndpointError(
                f"start endpoint {shown} rejected the credentials (HTTP {status}{detail}); check bot.token "
                "and bot.endpoint_headers",
                unfixable=True,
                status=status,
            )
        raise StartEndpointError(
            f"start endpoint {shown} answered HTTP {status}{detail}",
            unfixable=status_is_unfixable(status),
            status=status,
        )
    return _parse_reply(raw, cut, shown, status)


async def _read_bounded(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether there was more."""
    data = bytearray()
    async for chunk in response.aiter_bytes():  # not decoded: only identity gets this far
        data += chunk
        if len(data) > limit:
            return bytes(data[:limit]), True
    return bytes(data), False


def _first_line(raw: bytes) -> str:
    """What an error body says, in one escaped line: a JSON error's detail/error/message, else its first line."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text) if text.startswith("{") else None
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        for key in ("detail", "error", "message"):
            if isinstance(data.get(key), str):
                text = data[key].strip()
                break
    first = text.splitlines()[0] if text else ""
    return escape(first, ERROR_LINE_CHARS)


def _parse_reply(raw: bytes, cut: bool, shown: str, status: int) -> StartResult:
    def bad(what: str) -> StartEndpointError:
        return StartEndpointError(f"start endpoint {shown} answered {what}", unfixable=True, status=status)

    if cut:
        raise bad(f"more than {MAX_REPLY_BYTES // 1024} KiB; a start reply is a small JSON object")
    try:
        data = decode_json(raw, "start reply")
    except ProtocolError:
        raise bad(f"HTTP {status} without a JSON body") from None
    if not isinstance(data, dict):
        raise bad("JSON that is not an object")
    raw_url = data.get("wsUrl", data.get("ws_url"))
    if not isinstance(raw_url, str) or not raw_url:
        keys = escape(", ".join(sorted(str(k) for k in data)[:20]), 120)
        raise bad(f"without a wsUrl (keys: {keys})")
    ws_url = websocket_url(raw_url)
    if ws_url is None:
        raise bad("a wsUrl that is not a ws://, wss://, http:// or https:// URL with a host")
    token = data.get("token")
    if token is not None and not isinstance(token, str):
        raise bad("a token that is not a string")
    session_id = data.get("sessionId", data.get("session_id"))
    extra = {k: v for k, v in data.items() if k not in ("wsUrl", "ws_url", "token")}
    return StartResult(
        ws_url=ws_url,
        token=token or None,
        session_id=str(session_id) if isinstance(session_id, (str, int)) else None,
        extra=extra,
    )


__all__ = [
    "DEFAULT_BODIES",
    "StartEndpointError",
    "StartResult",
    "call_start_endpoint",
    "default_body",
    "mask_url",
    "url_with_token",
    "websocket_url",
]
