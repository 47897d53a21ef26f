"""The speaker: bot audio through a playout buffer to one long-lived ALSA playback PCM, written by its own
thread; earcons mixed over it; `flush()` silences it at once.

Choices, and why:
- Bot audio at another rate is resampled (soxr, one stream per source rate) instead of reopening the
  device at that rate: a reopen gaps and clicks mid-sentence, and `hw:` devices often offer one rate only.
- The device never starves: when there is nothing to play the writer keeps a low fill of silence (two
  periods) in the ALSA buffer. Real hardware then sees no xruns and no start/stop pops (I2S amplifiers
  click on every restart), and bot audio waits behind at most that little silence.
- Bot audio is written as soon as it is due and there is room (the writer is woken by `enqueue`, it does
  not tick per period), up to the whole (small) ALSA buffer.
- `flush()` empties the playout buffer on the trio thread and has the writer `drop()` the ALSA buffer, so
  the speaker goes silent within the one period that may be in flight, not after the whole buffer.
- Earcons are mixed over whatever plays (bot audio or silence), never instead of it, so a tone neither
  delays nor cuts the bot. They stay local: nothing here sends audio anywhere.
- With an audio front-end, every block written (bot audio after volume, earcons, silence fill: exactly
  what the device plays) goes to its echo reference with the time its first frame leaves the device, and
  a drop or a closed device silences what was planned (`_reference_*` below).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import trio

from voiceterm.config import AudioConfig, EarconsConfig
from voiceterm.core import earcons as earcon_tones
from voiceterm.core.latency import LatencyRecorder
from voiceterm.core.pcm import scale
from voiceterm.core.playout import PlayoutBuffer, PlayoutState
from voiceterm.core.resample import StreamResampler
from voiceterm.io.alsa import EPIPE, PLAYBACK, AlsaPcm
from voiceterm.io.alsa_pacing import UNCLOCKED_WRITES, PlaybackPacer, UnclockedDetector
from voiceterm.io.audio_device_thread import DeviceWorker
from voiceterm.logs import kv

log = logging.getLogger("voiceterm.audio")

UNDERRUN_WINDOW_S = 0.5  # audio resuming within this much silence was an underrun, later a new utterance
EARCON_QUEUE_MAX = 4  # earcons waiting to start; older ones are dropped beyond it
MIN_WAIT_S = 0.0005  # shortest sleep of the writer (avoids a busy loop on rounding)
TIMED_CHUNKS_MAX = 512  # chunks waiting for their first write to be timed; later ones go untimed


class Speaker(DeviceWorker):
    """Plays bot audio and earcons on `audio.playback_device` until cancelled.

    `enqueue`, `flush` and `earcon` are cheap, never block, and are called from the trio thread.
    """

    kind = PLAYBACK

    def __init__(
        self,
        audio: AudioConfig,
        earcons: EarconsConfig,
        *,
        on_fault: Callable[[str | None], None] | None = None,
        reference: Any = None,
    ) -> None:
        super().__init__(
            audio.playback_device,
            reopen_min_s=audio.reopen_min_s,
            reopen_max_s=audio.reopen_max_s,
            on_fault=on_fault,
        )
        self.rate = audio.player_sample_rate
        self.period_frames = max(1, self.rate * audio.period_ms // 1000)
        self.periods = audio.buffer_periods
        self.volume = audio.volume_percent / 100.0
        self.wall_clock = audio.pacing == "wall-clock"
        self.earcons = earcons
        self.reference = reference  # io/frontend.FrontEnd or None: told every block written, on this thread
        self.last_write_at: float | None = None
        self._cond = threading.Condition()
        self._playout = PlayoutBuffer(
            preroll_frames=self.rate * audio.preroll_ms // 1000,
            cap_frames=self.rate * audio.playout_cap_ms // 1000,
            underrun_window_frames=int(self.rate * UNDERRUN_WINDOW_S),
        )
        # Bounded work per chunk: never more output than the playout cap can hold (hostile-input bound).
        self._resampler = StreamResampler(self.rate, max_output_frames=self._playout.cap_frames)
        self._earcon_queue: deque[np.ndarray] = deque()
        self._earcon_pos = 0
        self._drop_pending = False
        self._writing_bot = False
        self._flush_gen = 0
        self._audible_until = 0.0  # perf_counter time the last bot frame written leaves the speaker
        self._frames_played = 0
        self._faulted_dropped = 0
        self._resampled_chunks = 0
        self._earcons_dropped = 0
        self._xruns = 0
        self._device_frames = 0  # all frames written, silence and earcons included
        self._device_delay = 0  # frames in the device after the last write (not audible yet)
        self._write_lost = 0  # bot frames pulled for a write that failed with the device
        self._frames_in = 0  # bot frames handed to enqueue (device rate): the accounting's starting point
        # Latency, timed from the link's receive stamp (`received_at`, trio time) when the chunk has one:
        # receive_to_playout - the daemon's processing until the frames sit in the playout buffer;
        # receive_to_write - until the chunk's first frame is written to ALSA (the designed jitter-buffer
        #   wait included); receive_to_audible - until that frame leaves the device (the device buffer's
        #   fill ahead of it added, by the device's clock); interruption - an interruption's arrival until
        #   the device holds no old audio.
        self.latency = {
            "receive_to_playout": LatencyRecorder(),
            "receive_to_write": LatencyRecorder(),
            "receive_to_audible": LatencyRecorder(),
            "interruption": LatencyRecorder(),
        }
        # (stream position of a chunk's first frame, its received_at), oldest first
        self._timed: deque[tuple[int, float]] = deque()
        self._pushed_pos = 0  # bot frames ever pushed into the playout buffer
        self._gone_pos = 0  # ... and ever taken out of it (pulled, dropped by the cap, flushed)
        self._interrupt_since: float | None = None  # an interruption waiting for the writer's drop()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Play until cancelled; started after the first open attempt (success or fault)."""
        await self._run_worker(task_status)

    # --- trio side: the API -------------------------------------------------------------------

    @property
    def playing(self) -> bool:
        """True while bot audio is audible (written to the device and not played out yet)."""
        return time.perf_counter() < self._audible_until

    def enqueue(self, chunk: Any) -> None:
        """Queue one chunk of bot audio (`.pcm` S16_LE, `.sample_rate`, optional `.num_channels`)."""
        channels = int(getattr(chunk, "num_channels", 1) or 1)
        in_rate = int(chunk.sample_rate)
        raw = chunk.pcm
        usable = len(raw) // (2 * channels) * (2 * channels)
        if usable == 0 or in_rate <= 0:
            return
        frames = np.frombuffer(raw, dtype="<i2", count=usable // 2)
        if channels > 1:
            frames = np.rint(frames.reshape(-1, channels).mean(axis=1)).astype("<i2")
        received_at = getattr(chunk, "received_at", None)
        if self.fault is not None:
            # No device: playing this later would be stale; count it and let it go.
            lost = frames.shape[0] * self.rate // in_rate
            self._faulted_dropped += lost
            self._frames_in += lost
            return
        with self._cond:
            if in_rate != self.rate:
                frames = self._resampler.process(frames, in_rate)
                self._resampled_chunks += 1
            elif self._resampler.pending:
                frames = self._resampler.process(frames, in_rate)
            if self.volume != 1.0 and frames.size:
                frames = np.frombuffer(scale(frames.tobytes(), self.volume), dtype="<i2")
            if received_at is not None and frames.size and len(self._timed) < TIMED_CHUNKS_MAX:
                self._timed.append((self._pushed_pos, received_at))
            self._push(frames)
            self._cond.notify()
        if received_at is not None:
            self.latency["receive_to_playout"].record(self._trio_time() - received_at)

    def _push(self, frames: np.ndarray) -> None:
        """Into the playout buffer, keeping the stream positions the latency timing uses (lock held)."""
        self._frames_in += frames.shape[0]
        self._pushed_pos += frames.shape[0]
        self._gone_pos += self._playout.push(frames)  # frames the cap dropped

    def reconfigure(self, config: Any) -> None:
        """SIGHUP: new software volume and earcon settings apply to the next chunk and tone."""
        self.volume = config.audio.volume_percent / 100.0
        self.earcons = config.earcons

    def flush(self, since: float | None = None) -> int:
        """Drop all queued bot audio now (interruption); the device buffer is dropped too.

        Returns the queued frames dropped (at the device rate). Call it before `earcon()` when both
        happen at once, so the tone is not cut with the bot's voice. `since` (trio time the interruption
        arrived) times how long until the device holds no more of the old audio, when there was any.
        """
        with self._cond:
            dropped = self._playout.flush()
            self._resampler.reset()
            self._flush_gen += 1
            self._forget_positions()
            audible = self._writing_bot or time.perf_counter() < self._audible_until
            if audible:
                self._drop_pending = True
                if since is not None:
                    self._interrupt_since = since  # timed by the writer once it has dropped the device buffer
            elif since is not None and dropped:
                self.latency["interruption"].record(self._trio_time() - since)
            self._audible_until = 0.0
            self._cond.notify()
        return dropped

    def _forget_positions(self) -> None:
        """Everything queued is gone (lock held): no chunk of it will be written."""
        self._timed.clear()
        self._gone_pos = self._pushed_pos

    def earcon(self, name: str) -> None:
        """Play a tone: "press", "release", "connected", "disconnected" or "error" (if enabled)."""
        if name not in earcon_tones.NAMES:
            raise ValueError(f"unknown earcon {name!r}; known: {', '.join(earcon_tones.NAMES)}")
        cfg = self.earcons
        if not cfg.enabled or not getattr(cfg, name) or cfg.volume_percent <= 0 or self.fault is not None:
            return
        tone = earcon_tones.render(name, self.rate, cfg.volume_percent)
        with self._cond:
            if len(self._earcon_queue) >= EARCON_QUEUE_MAX:
                self._earcon_queue.popleft()
                self._earcon_pos = 0
                self._earcons_dropped += 1
            self._earcon_queue.append(tone)
            self._cond.notify()

    def stats(self) -> dict[str, int]:
        """Counters since construction.

        frames_played_total: bot frames handed to the device; underruns_total: the queue ran dry
        mid-utterance; dropped_frames_total: dropped by the cap or while the device was missing;
        flushed_frames_total: dropped by flush() (and by a device failure); frames_in_total: bot frames
        handed in, which equals played + dropped + flushed + queued; xruns_total: device (or
        pacer) underruns; device_frames_total: all frames written, silence included;
        device_delay_frames: frames in the device after the last write, not audible yet.
        """
        with self._cond:
            p = self._playout.stats()
        trimmed = self._resampler.trimmed_frames  # cut before resampling: handed in, and dropped
        return {
            "frames_in_total": self._frames_in + trimmed,
            "frames_played_total": self._frames_played,
            "underruns_total": p.underruns,
            "dropped_frames_total": p.dropped_frames + self._faulted_dropped + self._write_lost + trimmed,
            "flushed_frames_total": p.flushed_frames,
            "reopens_total": self._reopens,
            "resampled_chunks_total": self._resampled_chunks,
            "xruns_total": self._xruns,
            "earcons_dropped_total": self._earcons_dropped,
            "queued_frames": p.buffered_frames,
            "device_frames_total": self._device_frames,
            "device_delay_frames": self._device_delay,
        }

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # --- device thread ------------------------------------------------------------------------

    def _open(self) -> AlsaPcm:
        return AlsaPcm(PLAYBACK, self.device, self.rate, self.period_frames, self.periods)

    def _opened(self, pcm: AlsaPcm) -> None:
        log.info(
            "playback device open %s",
            kv(device=self.device, rate=pcm.rate, period=pcm.period_frames, buffer=pcm.buffer_frames),
        )

    def _closed(self) -> None:
        # What was queued for a device that failed is stale by the time it is back.
        with self._cond:
            self._playout.flush()
            self._resampler.reset()
            self._forget_positions()
            self._interrupt_since = None
            self._drop_pending = False
            self._writing_bot = False
            self._audible_until = 0.0
            self._device_delay = 0
        self._reference_reset()

    def _serve(self, pcm: AlsaPcm) -> None:
        period = pcm.period_frames
        buffer = pcm.buffer_frames
        rate = pcm.rate
        # Idle fill: enough silence queued to ride out a late wake-up, little enough not to delay the bot.
        low_water = max(0, min(2 * period, buffer - period))
        slack = rate // 1000  # a wake-up 1 ms early counts as on time (no extra wake-up for rounding)
        pacer = PlaybackPacer(rate) if self.wall_clock else None
        detector = UnclockedDetector(UNCLOCKED_WRITES)
        stop = self._stop
        cond = self._cond
        playout = self._playout
        while True:
            fill = pacer.fill() if pacer is not None else pcm.fill()
            with cond:
                if stop.is_set():
                    return
                drop_now = self._drop_pending
                self._drop_pending = False
                if not drop_now:
                    free = buffer - fill
                    due = playout.available()
                    wanted = due >= period or bool(self._earcon_queue)
                    urgent = fill <= low_water + slack
                    if free < period or not (urgent or wanted):
                        # Wanted audio waits for room; otherwise sleep until the fill reaches low water.
                        wait = (period - free) / rate if wanted else (fill - low_water - slack) / rate
                        cond.wait(max(MIN_WAIT_S, wait))
                        continue
                    if (
                        urgent
                        and due < period
                        and playout.state is PlayoutState.PLAYING
                        and self._resampler.pending
                    ):
                        # About to run dry: let the resampler's delayed tail out first.
                        self._push(self._resampler.finish())
                    block, bot = self._next_block(period)
                    gen = self._flush_gen
                    self._writing_bot = bot > 0
                    first = self._gone_pos  # stream position of the block's first bot frame
                    self._gone_pos += bot
            if drop_now:
                pcm.drop()
                self._reference_flushed()
                if pacer is not None:
                    pacer.reset()
                self._device_delay = 0
                with cond:
                    since, self._interrupt_since = self._interrupt_since, None
                if since is not None:
                    self.latency["interruption"].record(self._trio_time() - since)
                continue
            try:
                self._write(pcm, block)
            except Exception:
                with cond:
                    self._writing_bot = False
                    self._write_lost += bot  # the device failed under this block: counted as dropped
                raise
            done = time.perf_counter()
            if pacer is not None:
                pacer.wrote(block.shape[0])
                fill_after = pacer.fill()
            else:
                fill_after = pcm.fill()
                if detector.observe(fill_after < block.shape[0] // 2):
                    log.warning(
                        'playback device "%s" plays faster than real time (a file or null PCM?); '
                        'pacing it by the wall clock; set audio.pacing = "wall-clock" to say so',
                        self.device,
                    )
                    pacer = PlaybackPacer(rate)
            self._reference_played(block, done, fill_after, rate)
            with cond:
                self._writing_bot = False
                self._device_frames += block.shape[0]
                self._device_delay = fill_after
                if bot:
                    self._frames_played += bot
                    self.last_write_at = done + self._trio_offset
                    if gen == self._flush_gen:
                        self._audible_until = done + fill_after / rate
                        ahead = fill_after - block.shape[0]  # device frames before this block's first
                        self._time_written(first, bot, self.last_write_at, ahead / rate)
                    else:
                        self._drop_pending = True  # flushed while this block was on its way in
            if pacer is not None:
                self._xruns += pacer.underruns
                pacer.underruns = 0
            else:
                self._xruns += pcm.xruns
                pcm.xruns = 0

    # --- the front-end's echo reference (device thread) -------------------------------------------

    def _reference_played(self, block: np.ndarray, done: float, fill_after: int, rate: int) -> None:
        """The block just written starts playing once the `fill_after - len(block)` frames ahead of it have."""
        if self.reference is not None:
            self.reference.played(block, done + max(0, fill_after - block.shape[0]) / rate)

    def _reference_flushed(self) -> None:
        if self.reference is not None:
            self.reference.flushed(time.perf_counter())

    def _reference_reset(self) -> None:
        if self.reference is not None:
            self.reference.playback_reset()

    def _time_written(self, first: int, bot: int, written_at: float, ahead_s: float) -> None:
        """Bot frames [first, first + bot) of the stream were written at the start of a block, behind
        `ahead_s` of audio still in the device (lock held): time the chunks starting there."""
        timed = self._timed
        written = self.latency["receive_to_write"]
        audible = self.latency["receive_to_audible"]
        end = first + bot
        while timed and timed[0][0] < end:
            position, received_at = timed.popleft()
            if position >= first:  # earlier ones were dropped by the cap, never written
                written.record(written_at - received_at)
                out_at = written_at + max(0.0, ahead_s + (position - first) / self.rate)
                audible.record(out_at - received_at)

    def _next_block(self, n: int) -> tuple[np.ndarray, int]:
        """n frames for the device: bot audio (or silence) with any pending earcon mixed over it."""
        block, bot = self._playout.pull(n)
        if not self._earcon_queue:
            return block, bot
        mixed = block.astype(np.int32)
        pos = 0
        while pos < n and self._earcon_queue:
            tone = self._earcon_queue[0]
            take = min(n - pos, tone.shape[0] - self._earcon_pos)
            mixed[pos : pos + take] += tone[self._earcon_pos : self._earcon_pos + take]
            pos += take
            self._earcon_pos += take
            if self._earcon_pos >= tone.shape[0]:
                self._earcon_queue.popleft()
                self._earcon_pos = 0
        np.clip(mixed, -32768, 32767, out=mixed)
        return mixed.astype("<i2"), bot

    def _write(self, pcm: AlsaPcm, block: np.ndarray) -> None:
        data = memoryview(block).cast("B")
        total = block.shape[0]
        sent = 0
        for _ in range(4):  # a write is retried after an underrun, and continued if it came back short
            n = pcm.write(data[2 * sent :])
            if n == EPIPE:
                self._xruns += 1  # the device ran dry during the write; pyalsaaudio re-prepares next time
                continue
            if n <= 0:
                continue
            sent += n
            if sent >= total:
                return


__all__ = ["Speaker"]
