"""Opening the bot's WebSocket: where to (bot.url, or a start-endpoint call per attempt), the stream (TCP
and TLS, or an injected opener: tests use in-memory streams), and the upgrade, with a watchdog for a peer
that hangs up before answering it.

The watchdog exists because trio-websocket 0.12 waits for the upgrade response forever when the
connection closes or resets first (its reader task ends without waking the handshake): through a proxy
or load balancer whose backend is down, every attempt would wait out bot.connect_timeout. `_Watched`
sees the end of the stream during the upgrade and ends the attempt at once with `UpgradeCutShort`.

trio-websocket (with wsproto, h11 and importlib.metadata: ~40 ms of imports here, ~0.4 s on a Pi Zero) is
imported by the first upgrade, not at start-up: the daemon starts its link after READY=1.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import trio

from voiceterm.config import BotConfig
from voiceterm.core.linkstate import LinkCounters
from voiceterm.io.linkfailures import SetupError, UpgradeCutShort
from voiceterm.io.start_endpoint import call_start_endpoint, default_body, url_with_token
from voiceterm.masking import mask_url
from voiceterm.record import record

if TYPE_CHECKING:
    from trio_websocket import WebSocketConnection

StreamOpener = Callable[[str, int], Awaitable[trio.abc.Stream]]
"""Opens the byte stream to (host, port): `trio.open_tcp_stream` unless a test injects one."""

MAX_RESPONSE_HEAD = 16 * 1024  # of the upgrade response, kept to tell a rejection from an acceptance


@record
class Target:
    url: str  # what to open (may hold the token)
    shown: str  # masked, for logs and status
    token_sent: bool


class _Watched(trio.abc.Stream):
    """A stream that reports its end while the upgrade is under way (and passes calls through after)."""

    def __init__(self, inner: trio.abc.Stream, on_cut: Callable[[BaseException], None]) -> None:
        self.inner = inner
        self.upgrading = True
        self._on_cut = on_cut
        self._head = bytearray()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            data = await self.inner.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._ended()
            raise
        if self.upgrading:
            if data:
                self._head += data[: MAX_RESPONSE_HEAD - len(self._head)]
            else:
                self._ended()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self.inner.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._ended()
            raise

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def pass_through(self) -> None:
        """The upgrade is over: from now on, calls go straight to the inner stream's own methods, so a
        WebSocket message costs no extra coroutine layer on its way in or out."""
        self.upgrading = False
        inner = self.inner
        self.send_all = inner.send_all  # type: ignore[method-assign]
        self.receive_some = inner.receive_some  # type: ignore[method-assign]
        self.wait_send_all_might_not_block = inner.wait_send_all_might_not_block  # type: ignore[method-assign]

    def _ended(self) -> None:
        if not self.upgrading:
            return
        self.upgrading = False
        head, _, _ = bytes(self._head).partition(b"\r\n\r\n")
        if b"\r\n\r\n" in self._head:
            status = _status_of(head)
            if status == 101:
                return  # accepted: trio-websocket has already finished the handshake
            if status is not None:  # refused, and the body was cut short: trio-websocket would wait on it
                from trio_websocket import ConnectionRejected

                self._on_cut(ConnectionRejected(status, (), None))
                return
        self._on_cut(UpgradeCutShort())


def _status_of(head: bytes) -> int | None:
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


class Connector:
    """How this device reaches its bot: resolve the target, open the stream, upgrade it."""

    def __init__(self, bot: BotConfig, *, serializer: str, open_stream: StreamOpener | None = None) -> None:
        self._bot = bot
        self._body = bot.endpoint_body or default_body(serializer)
        self._open_stream: StreamOpener = open_stream or trio.open_tcp_stream
        self._ssl_context: ssl.SSLContext | None = None
        self._http: Any = None  # httpx.AsyncClient in endpoint mode

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[None]:
        """The HTTP client for the start endpoint (none without one), for the life of the link."""
        if not self._bot.endpoint:
            yield
            return
        import httpx

        verify: Any = True
        if self._bot.endpoint.startswith("https:"):
            # An unusable bot.ca_file is reported by every attempt (`target`), not raised here.
            with contextlib.suppress(SetupError):
                verify = self.tls_context()
        async with httpx.AsyncClient(verify=verify, follow_redirects=False) as self._http:
            yield

    async def target(self, counters: LinkCounters) -> Target:
        """The URL to open: bot.url with bot.token, or what a fresh start-endpoint call answers."""
        bot = self._bot
        if not bot.endpoint:
            url = url_with_token(bot.url, bot.token or None)
            return Target(url=url, shown=mask_url(url), token_sent=bool(bot.token))
        if bot.endpoint.startswith("https:"):
            self.tls_context()  # raises SetupError when bot.ca_file is unusable
        counters.start_calls_total += 1
        result = await call_start_endpoint(
            self._http,
            bot.endpoint,
            body=self._body,
            headers=bot.endpoint_headers,
            bearer_token=bot.token or None,
            timeout=bot.connect_timeout,
        )
        url = result.connect_url
        return Target(url=url, shown=mask_url(url), token_sent=result.token is not None)

    async def stream(self, url: str) -> trio.abc.Stream:
        """The byte stream to the bot, TLS included (handshaken, so a certificate problem says so)."""
        parts = urlsplit(url)
        tls = parts.scheme == "wss"
        host = parts.hostname or ""
        context = self.tls_context() if tls else None
        raw = await self._open_stream(host, parts.port or (443 if tls else 80))
        if context is None:
            return raw
        stream = trio.SSLStream(raw, context, server_hostname=host, https_compatible=True)
        try:
            await stream.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(raw)
            raise
        return stream

    async def upgrade(self, nursery: trio.Nursery, stream: trio.abc.Stream, url: str) -> WebSocketConnection:
        """The WebSocket over `stream`; trio-websocket's reader task runs in `nursery` for its life."""
        import trio_websocket

        cut: list[BaseException] = []
        with trio.CancelScope() as scope:

            def on_cut(exc: BaseException) -> None:
                cut.append(exc)
                scope.cancel()

            watched = _Watched(stream, on_cut)
            ws = await trio_websocket.wrap_client_stream(
                nursery,
                watched,
                _host_header(url),
                _resource(url),
                extra_headers=self._upgrade_headers(),
                message_queue_size=8,
                max_message_size=self._bot.max_message_bytes,
            )
            watched.pass_through()
            return ws
        raise cut[0]

    def tls_context(self) -> ssl.SSLContext:
        """Certificate verification on (the default context), plus bot.ca_file's CAs when set."""
        if self._ssl_context is None:
            context = ssl.create_default_context()
            if self._bot.ca_file:
                try:
                    context.load_verify_locations(cafile=self._bot.ca_file)
                except (OSError, ssl.SSLError) as e:
                    raise SetupError(
                        f"cannot load bot.ca_file {self._bot.ca_file}: "
                        f"{getattr(e, 'reason', None) or e.strerror or type(e).__name__}; "
                        "it must hold PEM certificates"
                    ) from None
            self._ssl_context = context
        return self._ssl_context

    def _upgrade_headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self._bot.headers.items()]
        if self._bot.origin:
            headers.append((b"Origin", self._bot.origin.encode("latin-1")))
        return headers


def _host_header(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "wss" else 80
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def _resource(url: str) -> str:
    parts = urlsplit(url)
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    return resource
