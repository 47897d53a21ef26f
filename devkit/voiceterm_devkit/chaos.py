"""A misbehaving network and bot between the daemon and the real Pipecat bot, for the fault campaign.

`ChaosProxy` is a loopback TCP proxy (trio) that forwards the bot's WebSocket stream frame by frame, so it
can slip frames of its own between the bot's, at message boundaries, without breaking the stream:
garbage (undecodable protobuf, a text frame, audio with no channels or half a sample), a frame over the
client's size limit, or a flood of bot audio at 10x real time. It can also black-hole both directions:
connections stay open and nothing moves (new ones are accepted and hang), as with a pulled cable
upstream; what was in flight is delivered when the path comes back, as TCP would retransmit it. It
counts the bot audio it forwarded and injected, so the campaign can hold the daemon's counters against it.

When the bot is down, a connection is accepted and closed at once, like any TCP proxy or load balancer
with no backend.

Only the bot-to-client direction is parsed: server frames are never masked, and trio-websocket offers no
compression extension, so every frame's payload is the message itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import trio

from voiceterm_devkit import frames_pb2
from voiceterm_devkit.netfaults import serve_on_free_port

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
FLOOD_CHUNK_S = 0.040  # the bot's own chunk length


def ws_frame(payload: bytes, *, opcode: int = OP_BINARY, fin: bool = True) -> bytes:
    """One unmasked WebSocket frame (server to client)."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes((first, n))
    elif n < 1 << 16:
        head = bytes((first, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 127)) + n.to_bytes(8, "big")
    return head + payload


def frame_length(buf: bytes | bytearray) -> int | None:
    """Bytes of the first complete WebSocket frame in `buf`, or None while it is incomplete."""
    if len(buf) < 2:
        return None
    n = buf[1] & 0x7F
    offset = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, offset = int.from_bytes(buf[2:4], "big"), 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, offset = int.from_bytes(buf[2:10], "big"), 10
    if buf[1] & 0x80:
        offset += 4  # a mask key (client frames only)
    total = offset + n
    return total if len(buf) >= total else None


def frame_payload(frame: bytes | bytearray) -> bytes:
    n = frame[1] & 0x7F
    offset = 2 if n < 126 else (4 if n == 126 else 10)
    return bytes(frame[offset:])


def audio_payload(pcm: bytes, rate: int, channels: int = 1) -> bytes:
    return frames_pb2.Frame(
        audio=frames_pb2.AudioRawFrame(audio=pcm, sample_rate=rate, num_channels=channels)
    ).SerializeToString()


def tone(seconds: float, rate: int, freq: float = 660.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * math.pi * freq * t) * 8000).astype("<i2").tobytes()


def garbage_frames(rate: int = 24000) -> list[bytes]:
    """Frames the client must refuse (and count), one of each kind a broken bot or middlebox sends."""
    return [
        ws_frame(b"\xff\xff\xff\xff\xff\xff\xff\xff"),  # not protobuf at all
        ws_frame(b"\x12\x10\x1a\x03abc"),  # an audio field cut short
        ws_frame(b"garbage in a text frame", opcode=OP_TEXT),  # the protobuf wire format is binary
        ws_frame(audio_payload(b"\x01\x00\x02\x00", rate, channels=0)),  # pipecat divides by num_channels
        ws_frame(audio_payload(b"\x01\x00\x02", rate)),  # half a sample
        ws_frame(audio_payload(b"\x01\x00", 0)),  # no sample rate
    ]


@dataclass
class ChaosCounters:
    connections: int = 0
    frames_forwarded: int = 0  # bot to client, whole frames
    audio_bytes_forwarded: int = 0  # PCM bytes inside the bot's audio frames forwarded
    frames_injected: int = 0
    audio_bytes_injected: int = 0  # PCM bytes inside valid audio frames injected
    garbage_injected: int = 0  # frames the client must count as garbage
    oversized_injected: int = 0
    blackholed_bytes: int = 0  # held back by a black hole (delivered when it ends)
    dropped_frames: int = 0  # whole frames lost to a closing connection


class _Connection:
    def __init__(self, client: trio.SocketStream) -> None:
        self.client = client
        self.send_lock = trio.Lock()
        self.upgraded = False  # the HTTP 101 has gone through: frames follow
        self.in_fragment = False  # inside a fragmented message: nothing may be slipped in
        self.scope = trio.CancelScope()


class ChaosProxy:
    """Loopback proxy to the bot on `upstream_port`. Run it: ``port = await nursery.start(proxy.run)``."""

    def __init__(
        self, upstream_port: int, *, upstream_host: str = "127.0.0.1", host: str = "127.0.0.1"
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.host = host
        self.port = 0
        self.counters = ChaosCounters()
        self._blackholed = False
        self._resumed = trio.Event()
        self._resumed.set()
        self._connections: set[_Connection] = set()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # --- faults -----------------------------------------------------------------------------------

    def blackhole(self) -> None:
        if not self._blackholed:
            self._blackholed = True
            self._resumed = trio.Event()

    def resume(self) -> None:
        self._blackholed = False
        self._resumed.set()

    async def _gate(self, n: int) -> None:
        """Hold `n` bytes (and, by not reading on, everything behind them) while black-holed."""
        if self._blackholed:
            self.counters.blackholed_bytes += n
            await self._resumed.wait()

    def drop_all(self) -> None:
        for conn in list(self._connections):
            conn.scope.cancel()

    @property
    def sessions(self) -> int:
        """Open connections that carry WebSocket frames."""
        return sum(1 for c in self._connections if c.upgraded)

    async def inject(self, frames: list[bytes], *, garbage: int = 0, oversized: int = 0) -> int:
        """Slip `frames` into every open session's bot-to-client stream; returns the sessions reached.

        `garbage`/`oversized` say how many of them the client must refuse (for the counters).
        """
        reached = 0
        for conn in list(self._connections):
            if not conn.upgraded:
                continue
            async with conn.send_lock:
                if conn.in_fragment:
                    continue
                try:
                    await conn.client.send_all(b"".join(frames))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    continue
            reached += 1
            self.counters.frames_injected += len(frames)
            self.counters.garbage_injected += garbage
            self.counters.oversized_injected += oversized
        return reached

    async def flood(self, seconds: float, *, rate: int = 24000, speed: float = 10.0) -> int:
        """Bot audio at `speed` x real time for `seconds`, in the bot's 40 ms chunks; returns chunks sent."""
        chunk = ws_frame(audio_payload(tone(FLOOD_CHUNK_S, rate), rate))
        pcm_bytes = int(FLOOD_CHUNK_S * rate) * 2
        interval = FLOOD_CHUNK_S / speed
        sent = 0
        start = trio.current_time()
        for i in range(int(seconds / interval)):
            await trio.sleep_until(start + i * interval)
            reached = await self.inject([chunk])
            self.counters.audio_bytes_injected += reached * pcm_bytes
            sent += reached
        return sent

    # --- the proxy ------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        await serve_on_free_port(self, task_status)

    async def _handle(self, client: trio.SocketStream) -> None:
        self.counters.connections += 1
        conn = _Connection(client)
        self._connections.add(conn)
        try:
            with conn.scope:
                try:
                    upstream = await trio.open_tcp_stream(self.upstream_host, self.upstream_port)
                except OSError:
                    return  # the bot is down: the client sees its connection closed
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._up, client, upstream, nursery.cancel_scope)
                        nursery.start_soon(self._down, upstream, conn, nursery.cancel_scope)
                finally:
                    await trio.aclose_forcefully(upstream)
        finally:
            self._connections.discard(conn)
            await trio.aclose_forcefully(client)

    async def _up(
        self, client: trio.SocketStream, upstream: trio.SocketStream, done: trio.CancelScope
    ) -> None:
        try:
            while True:
                data = await client.receive_some(65536)
                if not data:
                    break
                await self._gate(len(data))
                await upstream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            done.cancel()

    async def _down(self, upstream: trio.SocketStream, conn: _Connection, done: trio.CancelScope) -> None:
        buf = bytearray()
        raw = False  # the bot answered the upgrade with something else than 101: pass it through as is
        try:
            while True:
                data = await upstream.receive_some(65536)
                if not data:
                    break
                await self._gate(len(data))
                if raw:
                    async with conn.send_lock:
                        await conn.client.send_all(data)
                    continue
                buf += data
                if not conn.upgraded:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    head = bytes(buf[: end + 4])
                    del buf[: end + 4]
                    conn.upgraded = head.startswith(b"HTTP/1.1 101")
                    raw = not conn.upgraded
                    async with conn.send_lock:
                        await conn.client.send_all(head + (bytes(buf) if raw else b""))
                    if raw:
                        buf.clear()
                        continue
                await self._forward_frames(buf, conn)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            done.cancel()

    async def _forward_frames(self, buf: bytearray, conn: _Connection) -> None:
        out = bytearray()
        frames = audio = 0
        while True:
            n = frame_length(buf)
            if n is None:
                break
            frame = bytes(buf[:n])
            del buf[:n]
            opcode = frame[0] & 0x0F
            fin = bool(frame[0] & 0x80)
            if opcode in (OP_TEXT, OP_BINARY, OP_CONTINUATION):
                conn.in_fragment = not fin
            frames += 1
            if opcode == OP_BINARY and fin:
                audio += _audio_bytes(frame_payload(frame))
            out += frame
        if not out:
            return
        async with conn.send_lock:
            try:
                await conn.client.send_all(bytes(out))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.counters.dropped_frames += frames
                raise
        self.counters.frames_forwarded += frames
        self.counters.audio_bytes_forwarded += audio


def _audio_bytes(payload: bytes) -> int:
    try:
        frame = frames_pb2.Frame.FromString(payload)
    except Exception:  # not protobuf: not audio
        return 0
    return len(frame.audio.audio) if frame.WhichOneof("frame") == "audio" else 0


__all__ = [
    "ChaosCounters",
    "ChaosProxy",
    "audio_payload",
    "frame_length",
    "garbage_frames",
    "tone",
    "ws_frame",
]
