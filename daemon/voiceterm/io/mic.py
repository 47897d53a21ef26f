"""The microphone: one long-lived ALSA capture PCM read on its own thread, one period per chunk, handed to
trio as `MicChunk`s (to a function called on the event loop, or through a bounded channel).

The handle is opened once and kept (reopening per turn is what makes USB mics report "device busy"); it is
reopened by name with backoff only when the device fails. A read that reports an overrun is a dropped
period: counted, logged once per burst, its bytes never used. `level` gives the RMS and peak dBFS of the
latest chunk for the CLI meter and the logs.

With an audio front-end (io/frontend.py), each chunk goes through it on this thread before it is handed
over: the chunk's `pcm` is the processed audio and `raw` what the device gave (after mic_gain_db).

While no one wants the audio (`set_wanted(False)`: no turn open in hold or toggle mode, muted, link down),
nothing is handed over, so the event loop is not woken 50 times a second for chunks it would drop, and the
thread reads what accumulated in bursts, when three quarters of the capture buffer have filled, instead of
once a period: the device must still be read (an unread capture buffer overruns), and `level` still follows
the room. Chunks read so are counted in `gated_total`. `set_wanted(True)` wakes the thread at once: it hands over the
newest whole period (the one that ends at the press, as before) and reads one period at a time again; the
older ones in the buffer were captured before anyone wanted them and are counted as gated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import trio

from voiceterm.config import AudioConfig
from voiceterm.core.pcm import DBFS_FLOOR, apply_gain_db, level_dbfs
from voiceterm.io.alsa import CAPTURE, EPIPE, AlsaPcm
from voiceterm.io.alsa_pacing import UNCLOCKED_READS, CapturePacer, UnclockedDetector
from voiceterm.io.audio_device_thread import Bell, DeviceWorker
from voiceterm.logs import kv
from voiceterm.record import record

log = logging.getLogger("voiceterm.audio")

# A deeper capture buffer costs no latency (reads return per period), rides out stalls, and lets the idle mic
# sleep longer between its bursts: 16 periods (320 ms at 20 ms) wake it about 4 times a second, not 8.
CAPTURE_MIN_PERIODS = 16
BURST_END_READS = 50  # good reads in a row that end an overrun burst (one second at 20 ms periods)
# While no one wants the mic, read after three quarters of the capture buffer (the buffer ALSA granted) has
# filled; the rest rides out a late wake-up (an overrun then would only lose audio no one wanted, and counts).
IDLE_BURST_FILL = 0.75


@record
class MicChunk:
    """One period of captured audio: S16_LE mono at the microphone's rate."""

    pcm: bytes
    captured_at: float  # trio.current_time() when the read returned
    raw: bytes | None = None  # before the front-end, when there is one


class Microphone(DeviceWorker):
    """Captures from `audio.capture_device` until cancelled; never blocks the trio thread.

    `run()` reports started after the first open attempt, whether it worked or not; a missing device is a
    fault (`fault`, `on_fault`) that clears by itself when the device appears.
    """

    kind = CAPTURE

    def __init__(
        self,
        audio: AudioConfig,
        *,
        sample_rate: int | None = None,
        on_fault: Callable[[str | None], None] | None = None,
        frontend: Any = None,
    ) -> None:
        super().__init__(
            audio.capture_device,
            reopen_min_s=audio.reopen_min_s,
            reopen_max_s=audio.reopen_max_s,
            on_fault=on_fault,
        )
        self.sample_rate = sample_rate or audio.recorder_sample_rate
        chunk_ms = audio.chunk_ms or audio.period_ms  # one capture period per chunk
        self.chunk_frames = max(1, self.sample_rate * chunk_ms // 1000)
        self.chunk_bytes = 2 * self.chunk_frames
        self.gain_db = audio.mic_gain_db
        self.wall_clock = audio.pacing == "wall-clock"
        self.periods = max(CAPTURE_MIN_PERIODS, audio.buffer_periods)
        self.frontend = frontend  # io/frontend.FrontEnd or None: runs on the capture thread
        # The latest chunk for `level`, and the gain (dB) still to add to its level: a gated chunk is kept
        # raw (mic_gain_db is not worth applying to audio no one hears). One tuple: one atomic store.
        self._latest: tuple[bytes, float] = (b"", 0.0)
        self._level_of: tuple[bytes, float] = self._latest
        self._level: tuple[float, float] = (DBFS_FLOOR, DBFS_FLOOR)
        self._send: trio.MemorySendChannel[MicChunk] | Callable[[MicChunk], None] | None = None
        self._deliver: Callable[[MicChunk], None] = self._to_function  # run() picks, trio thread
        self._chunks_total = 0
        self._overruns_total = 0
        self._dropped_total = 0
        self._in_burst = False
        self._good_reads = 0
        self._gated_total = 0
        self._want = True  # read on the device thread; set on the trio thread (set_wanted)
        self._gate = Bell()  # wakes the idle thread when the audio is wanted (or it must stop)

    async def run(
        self,
        send: trio.MemorySendChannel[MicChunk] | Callable[[MicChunk], None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Capture until cancelled, handing each chunk to `send` on the trio thread: a channel (full: the
        chunk is dropped and counted; never blocks), or a function called with it at once (no queue and
        no task switch per chunk; an exception it raises ends run() with it)."""
        self._send = send
        # Decided once: the capture thread posts this for every chunk.
        self._deliver = self._to_channel if isinstance(send, trio.MemorySendChannel) else self._to_function
        await self._run_worker(task_status)

    @property
    def level(self) -> tuple[float, float]:
        """(RMS, peak) dBFS of the latest chunk. Computed when asked: a meter reads it a few times a
        second, while metering every chunk on the capture thread would cost more than the capture."""
        latest = self._latest
        if latest is not self._level_of:
            self._level_of = latest
            chunk, gain = latest
            rms, peak = level_dbfs(chunk) if chunk else (DBFS_FLOOR, DBFS_FLOOR)
            if gain and peak > DBFS_FLOOR:
                rms, peak = min(0.0, rms + gain), min(0.0, peak + gain)
            self._level = (rms, peak)
        return self._level

    @property
    def wanted(self) -> bool:
        return self._want

    def set_wanted(self, wanted: bool) -> None:
        """Whether captured audio is wanted now (trio thread; cheap, call it on every state change)."""
        if wanted == self._want:
            return
        self._want = wanted
        if wanted:
            self._gate.ring()

    def reconfigure(self, config: Any) -> None:
        """SIGHUP: a new mic gain applies to the next chunk (the device stays open)."""
        self.gain_db = config.audio.mic_gain_db

    def stats(self) -> dict[str, int]:
        """chunks_total captured; overruns_total periods lost to overruns; dropped_total chunks the full
        channel refused; gated_total chunks read while no one wanted them (not handed over, by design);
        reopens_total opens after a failure of a device that had worked."""
        return {
            "chunks_total": self._chunks_total,
            "overruns_total": self._overruns_total,
            "dropped_total": self._dropped_total,
            "gated_total": self._gated_total,
            "reopens_total": self._reopens,
        }

    def _wake(self) -> None:
        self._gate.ring()  # an idle thread sees the stop request at once

    # --- trio side ----------------------------------------------------------------------------

    def _to_function(self, chunk: MicChunk) -> None:
        send = self._send
        if send is None:
            return
        try:
            send(chunk)  # type: ignore[operator]
        except Exception as e:  # the consumer's bug must not become a TrioInternalError
            self._send = None
            self._fail(e)

    def _to_channel(self, chunk: MicChunk) -> None:
        try:
            self._send.send_nowait(chunk)  # type: ignore[union-attr]
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self._dropped_total += 1

    # --- device thread ------------------------------------------------------------------------

    def _open(self) -> AlsaPcm:
        return AlsaPcm(CAPTURE, self.device, self.sample_rate, self.chunk_frames, self.periods)

    def _opened(self, pcm: AlsaPcm) -> None:
        log.info(
            "capture device open %s",
            kv(device=self.device, rate=pcm.rate, period=pcm.period_frames, buffer=pcm.buffer_frames),
        )
        if self.frontend is not None:
            self.frontend.capture_reset()

    def _serve(self, pcm: AlsaPcm) -> None:
        period_s = pcm.period_frames / pcm.rate
        buffer_periods = max(1, pcm.buffer_frames // pcm.period_frames)
        idle_wait_s = max(1, int(buffer_periods * IDLE_BURST_FILL)) * period_s
        # The wall-clock pacer keeps as much as the device would hold, so an idle burst reads all of it.
        pacer = CapturePacer(period_s, max_lag_periods=buffer_periods) if self.wall_clock else None
        detector = UnclockedDetector(UNCLOCKED_READS)
        pending = bytearray()
        last = time.perf_counter()
        stop = self._stop
        gated = False  # the last read was not wanted: the front-end's stream has a gap
        while not stop.is_set():
            if not self._want:
                if not gated and self.frontend is not None:
                    self.frontend.capture_paused()
                gated = True
                self._gate.wait(idle_wait_s)  # at once when wanted (or stopping)
                if stop.is_set():
                    return
                # Everything readable now: all of it is gated if the mic is still not wanted; else all
                # but the newest period, which the read below hands over.
                ready = self._readable_periods(pcm, pacer)
                for _ in range(ready if not self._want else ready - 1):
                    self._read_gated(pcm, pacer)
                last = time.perf_counter()
                if not self._want:
                    continue
            if pacer is not None:
                delay = pacer.delay()
                if delay > 0:
                    # A plain sleep of at most a period: half the cost of Event.wait, and stop is
                    # still seen within one period.
                    time.sleep(delay)
                    if stop.is_set():
                        return
            n, data = pcm.read()
            now = time.perf_counter()
            if pacer is not None:
                pacer.consumed()
            elif detector.observe(now - last < period_s / 4):
                log.warning(
                    'capture device "%s" returns audio faster than real time (a file or null PCM?); '
                    'pacing it by the wall clock; set audio.pacing = "wall-clock" to say so',
                    self.device,
                )
                pacer = CapturePacer(period_s, max_lag_periods=buffer_periods)
                pacer.delay()
            last = now
            if n < 0:
                self._overrun(n)
                continue
            if n == 0:
                continue
            if self._in_burst:
                self._read_ok()
            if gated:
                gated = False
                pending.clear()
                if self.frontend is not None:
                    self.frontend.capture_discontinuity()  # the chunks in between were not processed
            if not pending and len(data) == self.chunk_bytes:
                self._emit(data, now)
                continue
            # The device granted another period size (or a read came back short): re-chunk.
            pending += data
            while len(pending) >= self.chunk_bytes:
                self._emit(bytes(pending[: self.chunk_bytes]), now)
                del pending[: self.chunk_bytes]

    def _readable_periods(self, pcm: AlsaPcm, pacer: CapturePacer | None) -> int:
        """Whole periods a read returns at once (at least 1 after an overrun: the read reports it)."""
        if pacer is not None:
            return pacer.due()
        avail = pcm.readable()
        return 1 if avail < 0 else avail // pcm.period_frames

    def _read_gated(self, pcm: AlsaPcm, pacer: CapturePacer | None) -> None:
        """Read one period no one wants: counted, kept (raw) for `level` only."""
        n, data = pcm.read()
        if pacer is not None:
            pacer.consumed()
        if n < 0:
            self._overrun(n)
            return
        if n == 0:
            return
        self._read_ok()
        self._chunks_total += 1
        self._gated_total += 1
        self._latest = (data, self.gain_db)

    def _overrun(self, code: int) -> None:
        """A read that lost data: count it, never use its bytes, log once per burst."""
        self._overruns_total += 1
        self._good_reads = 0
        if self.frontend is not None:
            self.frontend.capture_discontinuity()
        if not self._in_burst:
            self._in_burst = True
            log.warning(
                "capture overrun: period dropped %s",
                kv(device=self.device, code=code, overruns_total=self._overruns_total),
            )

    def _read_ok(self) -> None:
        if self._in_burst:
            self._good_reads += 1
            if self._good_reads >= BURST_END_READS:
                self._in_burst = False

    def _emit(self, data: bytes, perf_time: float) -> None:
        if self.gain_db:
            data = apply_gain_db(data, self.gain_db)
        raw = None
        if self.frontend is not None:
            raw, data = data, self.frontend.process(data, perf_time)
        self._latest = (data, 0.0)
        self._chunks_total += 1
        self._post(self._deliver, MicChunk(data, perf_time + self._trio_offset, raw))


__all__ = ["EPIPE", "MicChunk", "Microphone"]
