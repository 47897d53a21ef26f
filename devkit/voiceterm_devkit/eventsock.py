"""The whole daemon in the test's own trio run, and a JSON-lines client of its event and control socket, for
the tests that drive the daemon the way a kiosk screen or an integration does.

`running(cfg)` starts a `voiceterm.app.Daemon` and yields it once its event socket serves and the bot is
ready; `Client.open(path)` reads every line in the background, `request()` sends a command and returns its
reply; `wait_until` polls a condition under a timeout (a wait for a state, never a sleep to win a race).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from voiceterm.app import Daemon
from voiceterm.config import Config


@asynccontextmanager
async def running(cfg: Config) -> AsyncIterator[Daemon]:
    daemon = Daemon(cfg)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(daemon.run)
        await wait_until(lambda: daemon.events_path and daemon.terminal.state().view.name == "ready", 15)
        try:
            yield daemon
        finally:
            daemon.request_stop("test over")


async def wait_until(predicate: Callable[[], Any], timeout: float, what: str = "") -> Any:
    with trio.move_on_after(timeout):
        while not (value := predicate()):
            await trio.sleep(0.01)  # polling a condition, bounded by the timeout: not a race fix
        return value
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


class Client:
    """A subscriber or commander on the event socket, reading in the background."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.lines: list[dict[str, Any]] = []
        self.closed = False
        self._buffer = b""
        self._next = 0

    @classmethod
    @asynccontextmanager
    async def open(cls, path: str) -> AsyncIterator[Client]:
        stream = await trio.open_unix_socket(path)
        client = cls(stream)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client._read)
                try:
                    yield client
                finally:
                    nursery.cancel_scope.cancel()  # no await in here: it would swallow the body's error
        finally:
            await trio.aclose_forcefully(stream)

    async def _read(self) -> None:
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                self.closed = True
                return
            self._buffer += data
            while b"\n" in self._buffer:
                line, _, self._buffer = self._buffer.partition(b"\n")
                self.lines.append(json.loads(line))

    async def request(self, cmd: str, **args: Any) -> dict[str, Any]:
        self._next += 1
        rid = f"t{self._next}"
        await self.stream.send_all(json.dumps({"cmd": cmd, "id": rid, **args}).encode() + b"\n")
        return await wait_until(
            lambda: next((m for m in self.lines if m.get("reply") and m.get("id") == rid), None),
            5,
            f"reply to {cmd}",
        )

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.lines if "event" in m and (name is None or m["event"] == name)]

    def names(self) -> list[str]:
        return [m["event"] for m in self.events()]


__all__ = ["Client", "running", "wait_until"]
