"""Network faults for tests: a trio TCP proxy that can black-hole traffic, and a single-use-token gate.

`FaultProxy` sits between the link and the bot on loopback. `blackhole()` keeps every connection open but
forwards no bytes in either direction (what a dead NAT entry or a pulled cable upstream looks like from the
device); `resume()` forwards again. When either side of a proxied connection closes, the proxy closes the
other, so the single-client bot is free for the next session as soon as the link gives up on one.

With a `TokenStore`, the proxy is also the gate of the start-endpoint test: it reads the WebSocket upgrade
request, takes the `token` query parameter, and answers HTTP 403 unless the token was issued and never
used, as pipecat's development runner does before the upgrade. The bot behind stays a stock pipecat
transport (it does not expose the query string).
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio

MAX_REQUEST_HEAD = 16 * 1024
FORBIDDEN = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


async def serve_on_free_port(server: Any, task_status: trio.TaskStatus[int]) -> None:
    """Listen on a free loopback port, set `server.port`, report it as started, serve `server._handle`."""
    listeners = await trio.open_tcp_listeners(0, host=server.host)
    server.port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        task_status.started(server.port)
        await trio.serve_listeners(server._handle, listeners, handler_nursery=nursery)


@dataclass
class TokenStore:
    """Single-use tokens: `issue` makes one, `consume` accepts it once."""

    issued: set[str] = field(default_factory=set)
    used: set[str] = field(default_factory=set)
    accepted: int = 0
    rejected: int = 0

    def issue(self) -> str:
        token = secrets.token_urlsafe(24)
        self.issued.add(token)
        return token

    def consume(self, token: str | None) -> bool:
        if token and token in self.issued and token not in self.used:
            self.used.add(token)
            self.accepted += 1
            return True
        self.rejected += 1
        return False


@dataclass
class ProxyCounters:
    connections: int = 0
    forwarded_bytes: int = 0
    blackholed_bytes: int = 0
    rejected: int = 0


class FaultProxy:
    """A loopback TCP proxy to `upstream_host:upstream_port` that can black-hole and resume.

    Run it in a nursery: ``port = await nursery.start(proxy.run)``.
    """

    def __init__(
        self,
        upstream_port: int,
        *,
        upstream_host: str = "127.0.0.1",
        host: str = "127.0.0.1",
        tokens: TokenStore | None = None,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.host = host
        self.tokens = tokens
        self.port = 0
        self.counters = ProxyCounters()
        self._blackholed = False
        self._open: set[trio.CancelScope] = set()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def blackholed(self) -> bool:
        return self._blackholed

    def blackhole(self) -> None:
        """From now on, read and drop everything in both directions; connections stay open."""
        self._blackholed = True

    def resume(self) -> None:
        self._blackholed = False

    def drop_all(self) -> None:
        """Close every proxied connection at once (both sides)."""
        for scope in list(self._open):
            scope.cancel()

    @property
    def open_connections(self) -> int:
        return len(self._open)

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        await serve_on_free_port(self, task_status)

    async def _handle(self, client: trio.SocketStream) -> None:
        self.counters.connections += 1
        with trio.CancelScope() as scope:
            self._open.add(scope)
            try:
                await self._proxy(client)
            finally:
                self._open.discard(scope)
                await trio.aclose_forcefully(client)

    async def _proxy(self, client: trio.SocketStream) -> None:
        head = b""
        if self.tokens is not None:
            head = await self._read_head(client)
            if head is None or not self.tokens.consume(_token_of(head)):
                self.counters.rejected += 1
                with contextlib.suppress(trio.BrokenResourceError):
                    await client.send_all(FORBIDDEN)
                return
        try:
            upstream = await trio.open_tcp_stream(self.upstream_host, self.upstream_port)
        except OSError:
            return  # the client sees its connection closed, as with a proxy whose backend is down
        try:
            if head:
                await upstream.send_all(head)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, client, upstream, nursery.cancel_scope)
                nursery.start_soon(self._pump, upstream, client, nursery.cancel_scope)
        finally:
            await trio.aclose_forcefully(upstream)

    async def _pump(self, source: trio.SocketStream, sink: trio.SocketStream, done: trio.CancelScope) -> None:
        try:
            while True:
                data = await source.receive_some(65536)
                if not data:
                    break
                if self._blackholed:
                    self.counters.blackholed_bytes += len(data)
                    continue
                await sink.send_all(data)
                self.counters.forwarded_bytes += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            done.cancel()  # one side gone: close both

    @staticmethod
    async def _read_head(client: trio.SocketStream) -> bytes | None:
        head = b""
        while b"\r\n\r\n" not in head:
            if len(head) > MAX_REQUEST_HEAD:
                return None
            try:
                data = await client.receive_some(4096)
            except trio.BrokenResourceError:
                return None
            if not data:
                return None
            head += data
        return head


def _token_of(head: bytes) -> str | None:
    """The `token` query parameter of an HTTP request head, if any."""
    try:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        target = request_line.split(" ")[1]
    except (IndexError, UnicodeDecodeError):
        return None
    values = parse_qs(urlsplit(target).query).get("token")
    return values[0] if values else None
