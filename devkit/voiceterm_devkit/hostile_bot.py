"""A malicious bot for the hostile-input tests: a WebSocket server that relays a real Pipecat bot and
injects valid pipecat protobuf frames with evil contents into the daemon's side on request.

`HostileBot(upstream=bot.url)` accepts the daemon's WebSocket, opens one to the real bot for each session
and relays both ways, so the daemon has a well-behaved bot to stream its mic to before and after an attack;
the mic audio it relays is counted too. From a test's thread, `send(...)` injects messages into the current
session, `send_paced(...)` spreads them out in time, and `close(code, reason)` ends the session with a close
frame of the test's choosing. The server runs its own trio loop on a thread, so plain (sync) tests drive it.

The builders (`rtvi`, `message`, `audio`, `nested`) make the frames; `rtvi` writes JSON with ASCII escapes,
so a lone surrogate travels as the six characters ``\\ud800`` exactly as a buggy or hostile bot sends it.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

from voiceterm_devkit import frames_pb2

__all__ = ["HostileBot", "audio", "message", "nested", "rtvi"]

MAX_MESSAGE = 16 << 20  # what the relay itself accepts: it must never be the part that refuses a message
START_TIMEOUT_S = 10.0


# --- frames ------------------------------------------------------------------------------------------------


def message(text: str) -> bytes:
    """One protobuf `MessageFrame` carrying `text` as it is (any JSON, or not JSON at all)."""
    return frames_pb2.Frame(message=frames_pb2.MessageFrame(data=text)).SerializeToString()


def rtvi(msg_type: Any, data: Any = None, *, msg_id: Any = None, label: Any = "rtvi-ai") -> bytes:
    """An RTVI server message as pipecat frames it; `data` may hold anything JSON can write (lone
    surrogates, NaN, huge integers), written with ASCII escapes."""
    envelope: dict[str, Any] = {"label": label, "type": msg_type}
    if msg_id is not None:
        envelope["id"] = msg_id
    if data is not None:
        envelope["data"] = data
    return message(json.dumps(envelope, ensure_ascii=True, allow_nan=True))


def audio(pcm: bytes, sample_rate: int, num_channels: int = 1) -> bytes:
    """One protobuf `AudioRawFrame` with whatever format fields the test wants (uint32 each)."""
    frame = frames_pb2.AudioRawFrame(audio=pcm, sample_rate=sample_rate, num_channels=num_channels)
    return frames_pb2.Frame(audio=frame).SerializeToString()


def nested(depth: int, leaf: Any = "bottom") -> Any:
    """`leaf` inside `depth` levels of objects."""
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def nested_json(depth: int) -> str:
    """The JSON text of a server-message nested `depth` objects deep, built as text (no recursion)."""
    head = '{"label":"rtvi-ai","type":"server-message","data":'
    return head + '{"a":' * depth + '"bottom"' + "}" * depth + "}"


# --- the server ----------------------------------------------------------------------------------------------


class HostileBot:
    """The relay and injector; start() it, point the daemon at `url`, stop() it at the end."""

    def __init__(self, *, upstream: str, host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self.host = host
        self.port = 0
        self.sessions = 0  # daemon connections accepted
        self.mic_bytes = 0  # mic audio (PCM bytes) the daemon sent, relayed to the real bot
        self.injected = 0  # messages injected into the daemon's side
        self.requests: list[tuple[str, list[tuple[bytes, bytes]]]] = []  # (path, headers) of each upgrade
        self._ws: WebSocketConnection | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._cond = threading.Condition()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # --- life (test thread) -------------------------------------------------------------------------

    def start(self) -> HostileBot:
        self._thread = threading.Thread(target=self._run_thread, name="hostile-bot", daemon=True)
        self._thread.start()
        if not self._started.wait(START_TIMEOUT_S):
            raise RuntimeError(f"hostile bot not listening after {START_TIMEOUT_S:g} s: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._token is not None and self._cancel is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> HostileBot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- attacks (test thread) ----------------------------------------------------------------------

    def send(self, *messages: bytes | str) -> None:
        """Inject `messages` into the current session, in order; returns once they are written."""
        self._call(self._send, messages, 0.0)

    def send_paced(self, messages: Sequence[bytes | str], interval: float) -> None:
        """Inject `messages` one every `interval` seconds (a bot's pacing is part of some attacks)."""
        self._call(self._send, messages, interval)

    def close(self, code: int, reason: str) -> None:
        """End the current session with this close frame (the reason is at most 123 bytes of UTF-8)."""
        self._call(self._close, code, reason)

    def wait_session(self, n: int, timeout: float) -> None:
        """Block until the daemon has opened its `n`-th session (and it is being relayed)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.sessions >= n and self._ws is not None, timeout):
                raise TimeoutError(f"the daemon did not open session {n} within {timeout:g} s")

    def _call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        if self._token is None:
            raise RuntimeError("the hostile bot is not running")
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    # --- the trio side ------------------------------------------------------------------------------

    def _run_thread(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as e:  # kept for start()'s message
            self._error = e
            self._started.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as self._cancel:
            async with trio.open_nursery() as nursery:
                server = await nursery.start(
                    trio_websocket.serve_websocket,
                    self._handle,
                    self.host,
                    0,
                    None,
                )
                self.port = server.port
                self._started.set()

    async def _handle(self, request: WebSocketRequest) -> None:
        self.requests.append((request.path, list(request.headers)))
        ws = await request.accept()
        try:
            async with trio_websocket.open_websocket_url(
                self.upstream, max_message_size=MAX_MESSAGE
            ) as upstream:
                with self._cond:
                    self.sessions += 1
                    self._ws = ws
                    self._cond.notify_all()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, ws, upstream, nursery.cancel_scope, True)
                    nursery.start_soon(self._pump, upstream, ws, nursery.cancel_scope, False)
        except (ConnectionClosed, OSError, trio_websocket.HandshakeError):
            pass
        finally:
            with self._cond:
                if self._ws is ws:
                    self._ws = None
            with contextlib.suppress(Exception):
                await ws.aclose()

    async def _pump(
        self,
        source: WebSocketConnection,
        sink: WebSocketConnection,
        done: trio.CancelScope,
        from_daemon: bool,
    ) -> None:
        try:
            while True:
                data = await source.get_message()
                if from_daemon and isinstance(data, bytes):
                    self._count_mic(data)
                await sink.send_message(data)
        except ConnectionClosed as e:
            # Pass the close on, code and reason, so each side sees the other end the session.
            reason = e.reason
            with contextlib.suppress(Exception):
                await sink.aclose(
                    reason.code if reason and reason.code >= 1000 else 1000, reason.reason if reason else None
                )
        finally:
            done.cancel()

    def _count_mic(self, data: bytes) -> None:
        with contextlib.suppress(Exception):
            frame = frames_pb2.Frame.FromString(data)
            if frame.WhichOneof("frame") == "audio":
                self.mic_bytes += len(frame.audio.audio)

    def _current(self) -> WebSocketConnection:
        ws = self._ws
        if ws is None:
            raise RuntimeError("no daemon session to attack")
        return ws

    async def _send(self, messages: Sequence[bytes | str], interval: float) -> None:
        ws = self._current()
        for i, data in enumerate(messages):
            if i and interval:
                await trio.sleep(interval)
            await ws.send_message(data)
            self.injected += 1

    async def _close(self, code: int, reason: str) -> None:
        await self._current().aclose(code, reason)
