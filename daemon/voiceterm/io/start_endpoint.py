"""The `startBotAndConnect` call: POST the start endpoint, get back the WebSocket URL and a one-time token.

Uses httpx (on trio through anyio). The response may carry ``wsUrl`` or ``ws_url``, ``token`` (a string or
null) and extra keys such as ``sessionId``. Errors are `StartEndpointError`s worded for a person, never
quoting a token, a header value or the response body; 401/403 and malformed answers are marked
unfixable (a retry gets the same answer). Also the URL helpers the link shares: token appending and masking.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from voiceterm.masking import mask_url

if TYPE_CHECKING:  # httpx is imported only in start-endpoint mode: it costs ~8 MiB and 100 ms at start
    import httpx

if sys.version_info < (3, 11):  # pragma: no cover - Python 3.10 only
    from exceptiongroup import BaseExceptionGroup

# Status codes worth retrying: the endpoint is overloaded, restarting, or asked us to come back.
_RETRIABLE_STATUS = frozenset({408, 425, 429})


class StartEndpointError(Exception):
    """The start call failed. `unfixable`: retrying will not help (credentials, a broken endpoint)."""

    def __init__(self, message: str, *, unfixable: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.unfixable = unfixable
        self.status = status


@dataclass(frozen=True, slots=True)
class StartResult:
    """What the endpoint answered."""

    ws_url: str  # without the token
    token: str | None = field(repr=False)
    session_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def connect_url(self) -> str:
        """The URL to open: `ws_url` with ``?token=`` appended when there is a token."""
        return url_with_token(self.ws_url, self.token)


def url_with_token(url: str, token: str | None) -> str:
    """`url` with ``token=<token>`` added to its query (replacing any token already there)."""
    if not token:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", token))
    return urlunsplit(parts._replace(query=urlencode(query)))


def find_in_chain(
    exc: BaseException,
    kind: type[BaseException] | tuple[type[BaseException], ...],
    predicate: Callable[[Any], bool] | None = None,
) -> Any:
    """The first exception of `kind` (passing `predicate`) in `exc`, its causes, contexts and
    exception-group members; None if there is none.

    Network errors arrive wrapped (httpx in httpcore in OSError in an ExceptionGroup from trio's
    happy-eyeballs connect); the innermost one says what happened in words a person knows.
    """
    stack = [exc]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind) and (predicate is None or predicate(current)):
            return current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None


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
    request_headers = {"Accept": "application/json", **dict(headers or {})}
    if bearer_token:
        request_headers["Authorization"] = f"Bearer {bearer_token}"
    try:
        response = await client.post(endpoint, json=dict(body), headers=request_headers, timeout=timeout)
    except httpx.TimeoutException:
        raise StartEndpointError(f"start endpoint {shown} did not answer within {timeout:g} s") from None
    except httpx.HTTPError as e:
        cert = find_in_chain(e, ssl.SSLCertVerificationError)
        if cert is not None:
            detail = getattr(cert, "verify_message", None) or "certificate not trusted"
            raise StartEndpointError(
                f"start endpoint {shown}: TLS certificate verification failed ({detail}); "
                "set bot.ca_file if it uses a private CA",
                unfixable=True,
            ) from None
        refused = find_in_chain(e, ConnectionRefusedError)
        reason = "connection refused" if refused else type(e).__name__
        raise StartEndpointError(f"start endpoint {shown} unreachable: {reason}") from None

    status = response.status_code
    if status in (401, 403):
        raise StartEndpointError(
            f"start endpoint {shown} rejected the credentials (HTTP {status}); check bot.token and "
            "bot.endpoint_headers",
            unfixable=True,
            status=status,
        )
    if status >= 400:
        unfixable = status < 500 and status not in _RETRIABLE_STATUS
        raise StartEndpointError(
            f"start endpoint {shown} answered HTTP {status}", unfixable=unfixable, status=status
        )
    try:
        data = response.json()
    except ValueError:
        raise StartEndpointError(
            f"start endpoint {shown} answered HTTP {status} without a JSON body",
            unfixable=True,
            status=status,
        ) from None
    if not isinstance(data, dict):
        raise StartEndpointError(
            f"start endpoint {shown} answered JSON that is not an object", unfixable=True, status=status
        )
    ws_url = data.get("wsUrl", data.get("ws_url"))
    if not isinstance(ws_url, str) or not ws_url:
        raise StartEndpointError(
            f"start endpoint {shown} answered without a wsUrl (keys: {', '.join(sorted(map(str, data)))})",
            unfixable=True,
            status=status,
        )
    try:
        parts = urlsplit(ws_url)
        _ = parts.port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise StartEndpointError(
            f"start endpoint {shown} answered a wsUrl that is not a ws:// or wss:// URL",
            unfixable=True,
            status=status,
        )
    token = data.get("token")
    if token is not None and not isinstance(token, str):
        raise StartEndpointError(
            f"start endpoint {shown} answered a token that is not a string", unfixable=True, status=status
        )
    session_id = data.get("sessionId", data.get("session_id"))
    extra = {k: v for k, v in data.items() if k not in ("wsUrl", "ws_url", "token")}
    return StartResult(
        ws_url=ws_url,
        token=token or None,
        session_id=str(session_id) if session_id is not None else None,
        extra=extra,
    )
