"""The speaker: bot audio through a playout buffer to one long-lived ALSA playback PCM, written by its own
thread; earcons mixed over it; `flush()` silences it at once.

Choices, and why:
- Bot audio at another rate is resampled (soxr, one stream per source rate) instead of reopening the
  device at that rate: a reopen gaps and clicks mid-sentence, and `hw:` devices often offer one rate only.
- The device never starves: when there is nothing to play the writer keeps silence in the ALSA buffer, so
  real hardware sees no xruns and no start/stop pops (I2S amplifiers click on every restart).
- While playing, the writer uses `audio.buffer_periods` of the ALSA buffer (small, so a flush is fast and
  bot audio starts behind at most two periods of silence). It refills in blocks of (buffer - low water)
  frames, two periods at the defaults: it wakes when the fill is down to low water (two periods) and tops
  it up, about 25 times a second, not once per period. With the audio front-end it writes a period at a
  time, keeping the fill at three to four periods: in the simulated room, block refills let the echo
  reference fall behind the capture side in one run of two (6,576 late frames, a self-interruption).
- The device is opened with room for `audio.idle_fill_ms` as well. While the speaker is idle (nothing
  queued, nothing audible, no earcon) the writer fills all of it with silence in one write and sleeps
  until it is down to low water: about 3.6 wake-ups a second at the default 320 ms, where a 4-period
  buffer took 25 (most of an idle kiosk's CPU). The first sound after that (bot audio, an earcon) drops
  the queued silence (the stream restarts at once, as after an interruption), so it starts no later than
  from a small buffer. `idle_fill_ms = 0` keeps the small buffer and never drops for that: for an
  amplifier that clicks on a restart. Not with the audio front-end: each restart re-anchors its echo
  reference on a fresh pointer estimate, and in the simulated room that made reference audio late (927
  and 1,251 frames a run against 0) and one reply in twenty lose its cancellation (6.6 dB); the front-end
  keeps an unbroken stream and the small buffer's top-ups (about 0.2 % of a core).
- Bot audio is written as soon as it is due and there is room for a refill. The writer is woken by
  `enqueue` only when it sleeps with nothing to play and audio just became due: a writer waiting for room
  in the buffer has nothing to do until there is room.
- Audio stays S16_LE bytes from the link to ALSA: numpy and soxr are loaded only for a resampler, a volume
  other than 100 % or a stereo stream (core/pcm.py, core/resample.py).
- `playing` (bot audio audible) changes are posted to the event loop by the writer when it sees them
  (`playing_changed()`), so nothing polls it.
- `flush()` empties the playout buffer on the trio thread and has the writer `drop()` the ALSA buffer, so
  the speaker goes silent within the one period that may be in flight, not after the whole buffer.
- Earcons are mixed over whatever plays (bot audio or silence), never instead of it, so a tone neither
  delays nor cuts the bot. They stay local: nothing here sends audio anywhere.
- With an audio front-end, every block written (bot audio after volume, earcons, silence fill: exactly
  what the device plays) goes to its echo reference with the time its first frame leaves the device, and
  a drop or a closed device silences what was planned (`ReferenceTap` in io/playback_device.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import trio

from voiceterm.config import AudioConfig, EarconsConfig
from voiceterm.core import earcons as earcon_tones
from voiceterm.core.earcon_queue import EarconQueue
from voiceterm.core.latency import ChunkTimes, LatencyRecorder
from voiceterm.core.pcm import scale
from voiceterm.core.playout import PlayoutBuffer, PlayoutState
from voiceterm.io.alsa import PLAYBACK, AlsaPcm
from voiceterm.io.audio_device_thread import Bell, DeviceWorker
from voiceterm.io.playback_device import PlaybackDevice, ReferenceTap
from voiceterm.logs import kv

log = logging.getLogger("voiceterm.audio")

UNDERRUN_WINDOW_S = 0.5  # audio resuming within this much silence was an underrun, later a new utterance
EARCON_QUEUE_MAX = 4  # earcons waiting to start; older ones are dropped beyond it
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
        self.periods = audio.buffer_periods  # used while playing
        # The idle fill and block refills (see the module docstring) save wake-ups; an echo reference instead
        # needs one unbroken stream kept well ahead of the capture side: no idle fill (its drop at the first
        # sound would re-anchor the reference) and a period per write.
        self._block_refills = reference is None
        idle_periods = -(-audio.idle_fill_ms // audio.period_ms) if self._block_refills else 0
        self.device_periods = max(self.periods, idle_periods)  # the device's buffer
        self.volume = audio.volume_percent / 100.0
        self.wall_clock = audio.pacing == "wall-clock"
        self.earcons = earcons
        self._tap = ReferenceTap(reference)  # the front-end's echo reference: told every block written
        self.last_write_at: float | None = None
        self._lock = threading.Lock()  # guards the playout buffer, earcons and the stream positions
        self._bell = Bell()  # wakes the writer
        self._playout = PlayoutBuffer(
            preroll_frames=self.rate * audio.preroll_ms // 1000,
            cap_frames=self.rate * audio.playout_cap_ms // 1000,
            underrun_window_frames=int(self.rate * UNDERRUN_WINDOW_S),
        )
        self._resampler: Any = None  # core/resample.StreamResampler, made for the first chunk at another rate
        self._earcons = EarconQueue(EARCON_QUEUE_MAX)
        # What the writer sleeps for: "idle" (nothing queued), "low" (the fill to reach low water), "room"
        # (room in the device for due audio) or None (awake): enqueue rings its bell only when it matters.
        self._writer_waits: str | None = None
        self._playing_told = False  # writer thread: the audible state last posted to the event loop
        self._playing_event = trio.Event()  # set (on the trio thread) when `playing` may have changed
        self._drop_pending = False
        self._writing_bot = False
        self._flush_gen = 0
        self._audible_until = 0.0  # perf_counter time the last bot frame written leaves the speaker
        self._frames_played = 0
        self._faulted_dropped = 0
        self._resampled_chunks = 0
        self._xruns = 0
        self._device_frames = 0  # all frames written, silence and earcons included
        self._device_delay = 0  # frames in the device after the last write (not audible yet)
        self._write_lost = 0  # bot frames pulled for a write that failed with the device
        self._frames_in = 0  # bot frames handed to enqueue (device rate): the accounting's starting point
        self.latency = latency_recorders()
        self._timed = ChunkTimes(
            self.rate, TIMED_CHUNKS_MAX, self.latency["receive_to_write"], self.latency["receive_to_audible"]
        )
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

    async def playing_changed(self) -> None:
        """Return when `playing` may have changed: bot audio became audible, or the last of it played out
        (seen by the writer within one of its wake-ups), or was flushed."""
        await self._playing_event.wait()
        self._playing_event = trio.Event()

    def enqueue(self, chunk: Any) -> None:
        """Queue one chunk of bot audio (`.pcm` S16_LE, `.sample_rate`, optional `.num_channels`)."""
        channels = int(getattr(chunk, "num_channels", 1) or 1)
        in_rate = int(chunk.sample_rate)
        pcm = chunk.pcm
        usable = len(pcm) // (2 * channels) * (2 * channels)
        if usable == 0 or in_rate <= 0:
            return
        pcm = bytes(pcm[:usable]) if usable != len(pcm) or not isinstance(pcm, bytes) else pcm
        if channels > 1:
            pcm = _mix_down(pcm, channels)
        received_at = getattr(chunk, "received_at", None)
        if self.fault is not None:
            # No device: playing this later would be stale; count it and let it go.
            lost = len(pcm) // 2 * self.rate // in_rate
            self._faulted_dropped += lost
            self._frames_in += lost
            return
        with self._lock:
            if in_rate != self.rate:
                pcm = self._resample(pcm, in_rate)
                self._resampled_chunks += 1
            elif self._resampler is not None and self._resampler.pending:
                pcm = self._resample(pcm, in_rate)
            if self.volume != 1.0 and pcm:
                pcm = scale(pcm, self.volume)
            if received_at is not None and pcm:
                self._timed.add(self._pushed_pos, received_at)
            self._push(pcm)
            waits = self._writer_waits
            if waits == "idle" or (waits == "low" and self._playout.available() >= self.period_frames):
                self._bell.ring()  # audio after silence (the writer keeps a low fill now), or due now
        if received_at is not None:
            self.latency["receive_to_playout"].record(self._trio_time() - received_at)

    def _resample(self, pcm: bytes, in_rate: int) -> bytes:
        """Bot audio at `in_rate` to the device rate (lock held); soxr and numpy load on first use."""
        if self._resampler is None:
            from voiceterm.core.resample import StreamResampler

            # Bounded work per chunk: never more output than the playout cap holds (hostile-input bound).
            self._resampler = StreamResampler(self.rate, max_output_frames=self._playout.cap_frames)
        import numpy as np

        out = self._resampler.process(np.frombuffer(pcm, dtype="<i2"), in_rate)
        return out.astype("<i2", copy=False).tobytes()

    def _push(self, pcm: bytes) -> None:
        """Into the playout buffer, keeping the stream positions the latency timing uses (lock held)."""
        frames = len(pcm) // 2
        self._frames_in += frames
        self._pushed_pos += frames
        self._gone_pos += self._playout.push(pcm)  # frames the cap dropped

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
        with self._lock:
            dropped = self._playout.flush()
            if self._resampler is not None:
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
        self._bell.ring()
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
        tone = earcon_tones.render_pcm(name, self.rate, cfg.volume_percent)
        with self._lock:
            self._earcons.add(tone)
        self._bell.ring()

    def stats(self) -> dict[str, int]:
        """Counters since construction.

        frames_played_total: bot frames handed to the device; underruns_total: the queue ran dry
        mid-utterance; dropped_frames_total: dropped by the cap or while the device was missing;
        flushed_frames_total: dropped by flush() (and by a device failure); frames_in_total: bot frames
        handed in, which equals played + dropped + flushed + queued; xruns_total: device (or
        pacer) underruns; device_frames_total: all frames written, silence included;
        device_delay_frames: frames in the device after the last write, not audible yet.
        """
        with self._lock:
            p = self._playout.stats()
        # Cut before resampling: handed in, and dropped.
        trimmed = self._resampler.trimmed_frames if self._resampler is not None else 0
        return {
            "frames_in_total": self._frames_in + trimmed,
            "frames_played_total": self._frames_played,
            "underruns_total": p.underruns,
            "dropped_frames_total": p.dropped_frames + self._faulted_dropped + self._write_lost + trimmed,
            "flushed_frames_total": p.flushed_frames,
            "reopens_total": self._reopens,
            "resampled_chunks_total": self._resampled_chunks,
            "xruns_total": self._xruns,
            "earcons_dropped_total": self._earcons.dropped,
            "queued_frames": p.buffered_frames,
            "device_frames_total": self._device_frames,
            "device_delay_frames": self._device_delay,
        }

    def _wake(self) -> None:
        self._bell.ring()

    # --- device thread ------------------------------------------------------------------------

    def _open(self) -> AlsaPcm:
        return AlsaPcm(PLAYBACK, self.device, self.rate, self.period_frames, self.device_periods)

    def _opened(self, pcm: AlsaPcm) -> None:
        log.info(
            "playback device open %s",
            kv(device=self.device, rate=pcm.rate, period=pcm.period_frames, buffer=pcm.buffer_frames),
        )

    def _closed(self) -> None:
        # What was queued for a device that failed is stale by the time it is back.
        with self._lock:
            self._playout.flush()
            if self._resampler is not None:
                self._resampler.reset()
            self._forget_positions()
            self._interrupt_since = None
            self._drop_pending = False
            self._writing_bot = False
            self._audible_until = 0.0
            self._device_delay = 0
            self._tell_playing()
        self._tap.reset()

    def _serve(self, pcm: AlsaPcm) -> None:
        out = PlaybackDevice(pcm, wall_clock=self.wall_clock)
        period, rate = out.period, out.rate
        # The part of the device's buffer used while playing; all of it holds the idle fill.
        buffer = min(out.buffer, self.periods * period)
        # Low water: enough silence queued to ride out a late wake-up, little enough not to delay the bot.
        low_water = max(0, min(2 * period, buffer - period))
        # Frames a wake-up while playing waits room for.
        refill = max(period, buffer - low_water) if self._block_refills else period
        slack = rate // 1000  # a wake-up 1 ms early counts as on time (no extra wake-up for rounding)
        silence = bytes(2 * out.buffer)
        lock = self._lock
        playout = self._playout
        idle_fill_ahead = False  # the device may hold more idle silence than the playing part of it
        while True:
            fill = out.fill()
            sleep: float | None = None
            idle = refill_low = False
            with lock:
                if self._stop.is_set():
                    return
                self._tell_playing()
                drop_now = self._drop_pending
                self._drop_pending = False
                self._writer_waits = None
                if drop_now:
                    pass
                elif playout.state is PlayoutState.IDLE and not self._earcons and not self._playing_told:
                    self._writer_waits = "idle"  # enqueue and earcon ring the bell
                    idle = True
                elif fill > buffer and idle_fill_ahead:
                    # The idle fill ahead of the first sound: dropped (once), and the low fill written
                    # again, so the sound starts as from a small buffer, with low water behind it to ride
                    # out a late wake-up.
                    drop_now = refill_low = True
                    idle_fill_ahead = False
                else:
                    free = buffer - fill
                    due = playout.available()
                    wanted = due >= period or bool(self._earcons)
                    urgent = fill <= low_water + slack
                    if free < period or not (urgent or wanted):
                        # Wanted audio waits for room for a refill; otherwise sleep until the fill reaches
                        # low water.
                        sleep = (refill - free) / rate if wanted else (fill - low_water - slack) / rate
                        self._writer_waits = "room" if wanted else "low"
                    else:
                        if (
                            urgent
                            and due < period
                            and playout.state is PlayoutState.PLAYING
                            and self._resampler is not None
                            and self._resampler.pending
                        ):
                            # About to run dry: let the resampler's delayed tail out first.
                            self._push(self._resampler.finish().astype("<i2", copy=False).tobytes())
                        # Due audio: as much of it as fits, in whole periods; else one period of silence.
                        n = period
                        if due >= period and self._block_refills:
                            n = min(free, due) // period * period  # free >= period here
                        block, bot = self._next_block(n)
                        gen = self._flush_gen
                        self._writing_bot = bot > 0
                        first = self._gone_pos  # stream position of the block's first bot frame
                        self._gone_pos += bot
            if idle:
                self._serve_idle(out, silence, low_water + slack)
                idle_fill_ahead = out.buffer > buffer
                continue
            if sleep is not None:
                out.sleep(self._bell, fill, sleep, low_water + slack)
                continue
            if drop_now:  # an interruption, or the idle fill ahead of the first sound
                out.drop()
                self._tap.flushed()
                self._device_delay = 0
                with lock:
                    since, self._interrupt_since = self._interrupt_since, None
                if since is not None:
                    self.latency["interruption"].record(self._trio_time() - since)
                if refill_low and low_water:
                    self._write_silence(out, silence[: 2 * low_water])
                continue
            try:
                done, fill_after = out.write(block)
            except Exception:
                with lock:
                    self._writing_bot = False
                    self._write_lost += bot  # the device failed under this block: counted as dropped
                raise
            frames = len(block) // 2
            self._tap.played(block, done, fill_after, rate)
            with lock:
                self._writing_bot = False
                self._device_frames += frames
                self._device_delay = fill_after
                self._xruns += out.take_xruns()
                if bot:
                    self._frames_played += bot
                    self.last_write_at = done + self._trio_offset
                    if gen == self._flush_gen:
                        self._audible_until = done + fill_after / rate
                        ahead = fill_after - frames  # device frames before this block's first
                        self._timed.written(first, bot, self.last_write_at, ahead / rate)
                    else:
                        self._drop_pending = True  # flushed while this block was on its way in
                    # Playing on, with no room for the next period: sleep until there is room for a
                    # refill, without a second pass of the loop (a flush, an earcon or stop rings the bell
                    # meanwhile).
                    free = buffer - fill_after
                    if free < period and not self._drop_pending and playout.available() >= period:
                        self._tell_playing()
                        self._writer_waits = "room"
                        sleep = (refill - free) / rate
            if sleep is not None:
                out.sleep(self._bell, fill_after, sleep, low_water + slack)

    def _serve_idle(self, out: PlaybackDevice, silence: bytes, low: int) -> None:
        """Nothing queued, nothing audible: top the device's buffer up with silence in one write whenever
        its fill is down to `low`, and sleep in between, until the bell rings (bot audio, an earcon, a flush,
        stop). The least work per wake-up: an idle kiosk spends its life here."""
        rate, buffer = out.rate, out.buffer
        while True:
            fill = out.fill()
            if fill <= low:
                fill = self._write_silence(out, silence[: 2 * (buffer - fill)])
            if out.sleep(self._bell, fill, (fill - low) / rate, low):
                return

    def _write_silence(self, out: PlaybackDevice, block: bytes) -> int:
        """Write silence (nothing queued); returns the fill after it."""
        done, fill = out.write(block)
        self._tap.played(block, done, fill, out.rate)
        # Counters this thread alone writes: the stats' readers see the old or the new value.
        self._device_frames += len(block) // 2
        self._device_delay = fill
        self._xruns += out.take_xruns()
        return fill

    def _tell_playing(self) -> None:
        """Post a change of `playing` to the event loop (device thread, lock held)."""
        audible = time.perf_counter() < self._audible_until
        if audible != self._playing_told:
            self._playing_told = audible
            self._post(self._playing_edge)

    def _playing_edge(self) -> None:
        self._playing_event.set()

    def _next_block(self, n: int) -> tuple[bytes, int]:
        """n frames for the device: bot audio (or silence) with any pending earcon mixed over it."""
        block, bot = self._playout.pull(n)
        return self._earcons.mix(block, bot), bot


def latency_recorders() -> dict[str, LatencyRecorder]:
    """The speaker's latency, timed from the link's receive stamp (`received_at`, trio time) when the chunk
    has one: receive_to_playout - the daemon's processing until the frames sit in the playout buffer;
    receive_to_write - until the chunk's first frame is written to ALSA (the designed jitter-buffer wait
    included); receive_to_audible - until that frame leaves the device (the device buffer's fill ahead of it
    added, by the device's clock); interruption - an interruption's arrival until the device holds no old
    audio."""
    names = ("receive_to_playout", "receive_to_write", "receive_to_audible", "interruption")
    return {name: LatencyRecorder() for name in names}


def _mix_down(pcm: bytes, channels: int) -> bytes:
    """Interleaved S16_LE frames of `channels` channels to mono (the mean, rounded); numpy on first use."""
    import numpy as np

    frames = np.frombuffer(pcm, dtype="<i2").reshape(-1, channels)
    return np.rint(frames.mean(axis=1)).astype("<i2").tobytes()


__all__ = ["Speaker"]
