"""A bot on in-memory streams for the link's virtual-time tests, the way trio-websocket tests itself.

`MemoryBot.open_stream` is the link's stream opener (`Link(open_stream=...)`): each call makes a
`trio.testing.memory_stream_pair`, serves the far end with trio-websocket's own server side and hands the
upgrade request to the test's `handler`. The bot can refuse connections, accept and hang up before
answering (a proxy whose backend is down), or go dark (a black hole: nothing moves either way).
Frames are built with the generated pipecat schema, as the real bot does.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.testing
import trio_websocket
from trio_websocket import ConnectionClosed

from voiceterm_devkit import frames_pb2

Handler = Callable[[trio_websocket.WebSocketRequest], Awaitable[None]]


def message_frame(message: dict) -> bytes:
    frame = frames_pb2.Frame()
    frame.message.data = json.dumps(message)
    return frame.SerializeToString()


def audio_frame(n_bytes: int, rate: int = 24000) -> bytes:
    frame = frames_pb2.Frame()
    frame.audio.audio = b"\x01\x00" * (n_bytes // 2)
    frame.audio.sample_rate = rate
    frame.audio.num_channels = 1
    return frame.SerializeToString()


def parse_message(data: bytes) -> dict:
    frame = frames_pb2.Frame.FromString(data)
    assert frame.WhichOneof("frame") == "message"
    return json.loads(frame.message.data)


def rtvi(msg_type: str, data: Any = None, msg_id: str | None = None) -> bytes:
    message: dict[str, Any] = {"label": "rtvi-ai", "type": msg_type}
    if msg_id is not None:
        message["id"] = msg_id
    if data is not None:
        message["data"] = data
    return message_frame(message)


async def bot_ready_for(ws: trio_websocket.WebSocketConnection, version: str = "2.2.0") -> dict:
    """Read client-ready and answer bot-ready with its id, as pipecat does."""
    hello = parse_message(await ws.get_message())
    assert hello["type"] == "client-ready"
    await ws.send_message(rtvi("bot-ready", {"version": version}, hello["id"]))
    return hello


async def ready_bot(request: trio_websocket.WebSocketRequest) -> None:
    """Accept, answer bot-ready, then read whatever comes until the link closes."""
    ws = await request.accept()
    await bot_ready_for(ws)
    while True:
        await ws.get_message()


class _Dimmable(trio.abc.Stream):
    """The link's end of a connection; while `bot.dark`, nothing gets through in either direction."""

    def __init__(self, inner: trio.abc.Stream, bot: MemoryBot) -> None:
        self.inner = inner
        self.bot = bot

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.bot.dark:
            await trio.lowlevel.checkpoint()
            return
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while True:
            while self.bot.dark:
                await self.bot.light.wait()
            data = await self.inner.receive_some(max_bytes)
            if not self.bot.dark:
                return data

    async def aclose(self) -> None:
        await self.inner.aclose()


class MemoryBot:
    """Run `serve` in a nursery (``await nursery.start(bot.serve)``), then give `open_stream` to the link."""

    def __init__(self, handler: Handler = ready_bot) -> None:
        self.handler = handler
        self.refusing = False  # connection refused, as with no listener
        self.hang_up_with: bytes | None = None  # read the upgrade request, send this, hang up (b"": at once)
        self.dark = False
        self.light = trio.Event()
        self.connects = 0
        self.requests: list[trio_websocket.WebSocketRequest] = []
        self._nursery: trio.Nursery | None = None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def go_dark(self) -> None:
        self.dark, self.light = True, trio.Event()

    def resume(self) -> None:
        self.dark = False
        self.light.set()

    async def open_stream(self, host: str, port: int) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        self.connects += 1
        if self.refusing:
            raise ConnectionRefusedError(111, "Connection refused")
        client, server = trio.testing.memory_stream_pair()
        assert self._nursery is not None
        self._nursery.start_soon(self._serve_one, server)
        return _Dimmable(client, self)

    async def _serve_one(self, stream: trio.abc.Stream) -> None:
        if self.hang_up_with is not None:
            await stream.receive_some()  # the upgrade request arrives, and the proxy hangs up
            if self.hang_up_with:
                await stream.send_all(self.hang_up_with)
            await stream.aclose()
            return
        async with trio.open_nursery() as nursery:  # trio-websocket's reader task for this connection
            request = await trio_websocket.wrap_server_stream(nursery, stream, max_message_size=1 << 20)
            self.requests.append(request)
            with contextlib.suppress(ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                await self.handler(request)  # the link went away first: fine here
            nursery.cancel_scope.cancel()
