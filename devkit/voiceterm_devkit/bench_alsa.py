"""The benchmark's reference clients' audio devices: one capture and one playback thread on pyalsaaudio, opened
the way the daemon opens its devices (S16_LE mono, the same period size, 8 capture periods, 4 playback
periods), and nothing more.

`PacedCapture` reads one period at a time and hands each chunk to `on_chunk(data)` on its own thread (the
client hops it to its event loop). `PacedPlayback` takes bot audio with `put()` into a bounded queue and writes
one period at a time, silence when the queue is empty (as the daemon does: the device never starves).
Pacing: "device" blocks in read()/write() on a clocked PCM; "wall-clock" sleeps until the next period is
due, for `type file` PCMs, which return at once (the daemon's CapturePacer does the same for capture).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

CAPTURE_PERIODS = 16  # the daemon's CAPTURE_MIN_PERIODS
PLAYBACK_PERIODS = 4  # the daemon's default audio.buffer_periods
PLAYBACK_QUEUE_CHUNKS = (
    256  # bot chunks waiting for the speaker (several seconds); more are dropped and counted
)
MAX_LAG_PERIODS = 8  # a wall-clock pacer this far behind starts again from now


def _open(kind: str, device: str, rate: int, period_frames: int, periods: int) -> Any:
    import alsaaudio

    return alsaaudio.PCM(
        alsaaudio.PCM_CAPTURE if kind == "capture" else alsaaudio.PCM_PLAYBACK,
        alsaaudio.PCM_NORMAL,
        device=device,
        rate=rate,
        channels=1,
        format=alsaaudio.PCM_FORMAT_S16_LE,
        periodsize=period_frames,
        periods=periods,
    )


class _Paced:
    """A device thread: opens its PCM, then serves it until `stop()`; `error` says why it ended early."""

    kind = "capture"
    periods = CAPTURE_PERIODS

    def __init__(self, device: str, rate: int, period_ms: int, pacing: str, name: str) -> None:
        if pacing not in ("device", "wall-clock"):
            raise ValueError(f'pacing must be "device" or "wall-clock", not {pacing!r}')
        self.device = device
        self.rate = rate
        self.period_frames = rate * period_ms // 1000
        self.period_s = self.period_frames / rate
        self.wall_clock = pacing == "wall-clock"
        self.error: str | None = None
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._next = 0.0

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        if not self._opened.wait(timeout) or self.error:
            raise RuntimeError(f'{self.kind} device "{self.device}" did not open: {self.error or "timeout"}')

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(5)

    def _pace(self) -> None:
        """Wall-clock pacing: sleep until the next period is due."""
        now = time.perf_counter()
        if self._next == 0.0 or now - self._next > MAX_LAG_PERIODS * self.period_s:
            self._next = now
        delay = self._next - now
        if delay > 0:
            time.sleep(delay)
        self._next += self.period_s

    def _main(self) -> None:
        try:
            pcm = _open(self.kind, self.device, self.rate, self.period_frames, self.periods)
        except Exception as e:  # alsaaudio.ALSAAudioError; the message goes to start()'s caller
            self.error = str(e)
            self._opened.set()
            return
        self._opened.set()
        try:
            self._serve(pcm)
        except Exception as e:  # a device that failed mid-stream: reported, the thread ends
            self.error = str(e)
        finally:
            pcm.close()

    def _serve(self, pcm: Any) -> None:
        raise NotImplementedError


class PacedCapture(_Paced):
    """Captures one period per read and calls `on_chunk(data)` on this thread for each one."""

    def __init__(
        self,
        device: str,
        rate: int,
        period_ms: int,
        pacing: str,
        *,
        on_chunk: Callable[[bytes], object],
        name: str = "capture",
    ) -> None:
        super().__init__(device, rate, period_ms, pacing, name)
        self.on_chunk = on_chunk
        self.chunks = 0
        self.overruns = 0

    def _serve(self, pcm: Any) -> None:
        while not self._stop.is_set():
            if self.wall_clock:
                self._pace()
            n, data = pcm.read()
            if n < 0:
                self.overruns += 1
                continue
            if n:
                self.chunks += 1
                self.on_chunk(data)


class PacedPlayback(_Paced):
    """Plays what `put()` queued, one period per write, silence while there is nothing."""

    kind = "playback"
    periods = PLAYBACK_PERIODS

    def __init__(self, device: str, rate: int, period_ms: int, pacing: str, name: str = "playback") -> None:
        super().__init__(device, rate, period_ms, pacing, name)
        self._queue: collections.deque[bytes] = collections.deque()
        self.dropped = 0  # chunks refused by the full queue
        self.periods_written = 0
        self.audio_bytes_played = 0

    def put(self, data: bytes) -> None:
        """From any thread; never blocks (deque appends are atomic)."""
        if len(self._queue) >= PLAYBACK_QUEUE_CHUNKS:
            self.dropped += 1
            return
        self._queue.append(data)

    def _serve(self, pcm: Any) -> None:
        period_bytes = 2 * self.period_frames
        silence = bytes(period_bytes)
        pending = bytearray()
        queue = self._queue
        while not self._stop.is_set():
            while len(pending) < period_bytes and queue:
                pending += queue.popleft()
            if pending:
                chunk = bytes(pending[:period_bytes])
                del pending[:period_bytes]
                self.audio_bytes_played += len(chunk)
                if len(chunk) < period_bytes:
                    chunk += silence[len(chunk) :]
            else:
                chunk = silence
            if self.wall_clock:
                self._pace()
            pcm.write(chunk)
            self.periods_written += 1


__all__ = ["PacedCapture", "PacedPlayback"]
