"""The floor of voiceterm's stack: the leanest client on exactly the daemon's parts, for the benchmark to measure
the daemon against (`voiceterm ÷ floor`).

    python -m voiceterm_devkit.floor_client --url ws://127.0.0.1:8765 --mic mic --speaker spk --pacing device

A paced capture thread (pyalsaaudio, the daemon's period and buffer) hands each 20 ms chunk to trio with
`TrioToken.run_sync_soon` into a bounded memory channel; a trio task encodes it as a pipecat protobuf frame
(the generated `frames_pb2`) and sends it with trio-websocket. Another task receives, decodes and
queues bot audio for a paced playback thread. Nothing else: no playout buffer beyond a queue, no resampler,
no status, no events, no reconnects, no latency recorders. It sends RTVI `client-ready` once, as the daemon
does, so the bot treats it as the same kind of client.

One JSON line per milestone on stdout with `t` = time.monotonic(): connected, first_audio, stats (on
SIGUSR1: the counters) and exit. SIGTERM or SIGINT ends it; so does `--seconds`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import uuid
from typing import Any

import trio
import trio_websocket
from google.protobuf.message import DecodeError

from voiceterm_devkit import frames_pb2
from voiceterm_devkit.bench_alsa import PacedCapture, PacedPlayback

MIC_QUEUE_CHUNKS = 32  # chunks waiting for the sender (640 ms); more are dropped and counted


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"t": time.monotonic(), "event": event, **fields}), flush=True)


def client_ready() -> bytes:
    message = {
        "label": "rtvi-ai",
        "type": "client-ready",
        "id": uuid.uuid4().hex[:8],
        "data": {"version": "1.0.0", "about": {"library": "voiceterm-floor", "library_version": "0"}},
    }
    return frames_pb2.Frame(message=frames_pb2.MessageFrame(data=json.dumps(message))).SerializeToString()


class Floor:
    """The client's state: its two device threads and its counters (touched on the trio thread)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sent = 0
        self.mic_dropped = 0
        self.received_audio_bytes = 0
        self.other_rate_chunks = 0  # bot audio at another rate than the speaker's: dropped (no resampler)
        self.garbage = 0  # binary messages that were not a pipecat Frame
        self._send_mic, self._recv_mic = trio.open_memory_channel[bytes](MIC_QUEUE_CHUNKS)
        self._token: trio.lowlevel.TrioToken | None = None
        self.capture = PacedCapture(
            args.mic,
            args.mic_rate,
            args.period_ms,
            args.pacing,
            on_chunk=self._from_capture,
            name="floor-capture",
        )
        self.playback = PacedPlayback(
            args.speaker, args.speaker_rate, args.period_ms, args.pacing, name="floor-playback"
        )

    # capture thread
    def _from_capture(self, data: bytes) -> None:
        token = self._token
        if token is None:
            return
        try:
            token.run_sync_soon(self._deliver, data)
        except trio.RunFinishedError:
            self._token = None

    # trio thread
    def _deliver(self, data: bytes) -> None:
        try:
            self._send_mic.send_nowait(data)
        except trio.WouldBlock:
            self.mic_dropped += 1

    async def _sender(self, ws: trio_websocket.WebSocketConnection) -> None:
        rate = self.args.mic_rate
        async for pcm in self._recv_mic:
            frame = frames_pb2.Frame(
                audio=frames_pb2.AudioRawFrame(audio=pcm, sample_rate=rate, num_channels=1)
            )
            await ws.send_message(frame.SerializeToString())
            self.sent += 1

    async def _receiver(self, ws: trio_websocket.WebSocketConnection) -> None:
        rate = self.args.speaker_rate
        while True:
            message = await ws.get_message()
            if isinstance(message, str):
                continue
            try:
                frame = frames_pb2.Frame.FromString(message)
            except DecodeError:
                self.garbage += 1
                continue
            if frame.WhichOneof("frame") != "audio":
                continue
            if frame.audio.sample_rate != rate:
                self.other_rate_chunks += 1
                continue
            if not self.received_audio_bytes:
                emit("first_audio", rate=rate)
            self.received_audio_bytes += len(frame.audio.audio)
            self.playback.put(frame.audio.audio)

    def stats(self) -> dict[str, Any]:
        return {
            "sent_chunks": self.sent,
            "mic_chunks": self.capture.chunks,
            "mic_dropped": self.mic_dropped,
            "overruns": self.capture.overruns,
            "received_audio_bytes": self.received_audio_bytes,
            "played_audio_bytes": self.playback.audio_bytes_played,
            "playback_dropped": self.playback.dropped,
            "other_rate_chunks": self.other_rate_chunks,
            "garbage": self.garbage,
        }

    async def _signals(self, cancel: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1) as signals:
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    emit("stats", **self.stats())
                else:
                    cancel.cancel()
                    return

    async def run(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            if self.args.seconds > 0:
                scope.deadline = trio.current_time() + self.args.seconds
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._signals, scope)
                async with trio_websocket.open_websocket_url(self.args.url) as ws:
                    emit("connected")
                    await ws.send_message(client_ready())
                    self.playback.start()
                    self.capture.start()
                    try:
                        async with trio.open_nursery() as streams:
                            streams.start_soon(self._sender, ws)
                            streams.start_soon(self._receiver, ws)
                    finally:
                        self._token = None
                        self.capture.stop()
                        self.playback.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m voiceterm_devkit.floor_client", description=__doc__)
    parser.add_argument("--url", required=True, help="the bot's ws:// URL (pipecat protobuf frames)")
    parser.add_argument("--mic", required=True, help="ALSA capture device")
    parser.add_argument("--speaker", required=True, help="ALSA playback device")
    parser.add_argument("--pacing", choices=("device", "wall-clock"), default="device")
    parser.add_argument("--mic-rate", type=int, default=16000)
    parser.add_argument("--speaker-rate", type=int, default=24000, help="the bot's output rate (Hz)")
    parser.add_argument("--period-ms", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.0, help="stop after this long; 0 = on SIGTERM")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    floor = Floor(args)
    try:
        trio.run(floor.run)
    except Exception as e:  # one line for the bench's log: a refused connection, a closed socket, a device
        print(f"floor_client: {type(e).__name__}: {e}", file=sys.stderr)
        emit("exit", error=str(e), **floor.stats())
        return 1
    emit("exit", **floor.stats())
    return 0


if __name__ == "__main__":
    sys.exit(main())
