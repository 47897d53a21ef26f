"""The audio front-end between the microphone and the link: echo cancellation, noise suppression, high-pass
and capped automatic gain (WebRTC's audio processing through pywebrtc-audio), and the far-end reference tap.

Threads, and why: the DSP runs on the capture thread, inside `Microphone` (a chunk costs well under a
millisecond and the capture buffer is sixteen periods deep), so the trio thread never does DSP and there is
no extra thread. The speaker's thread hands every block it writes to `played()` — exactly what goes to
ALSA, after volume, earcons and the silence fill — with the time its first frame leaves the device, and
that is all it does: the block is queued (bounded; the one lock guards only that queue). The capture
thread, before it reads the reference for a chunk, places what was queued on the shared timeline
(core/echo_reference.py), resampled to the mic rate (soxr "QQ": one sample of delay, so the newest audio
is in the reference at once). A block is thus on the timeline no later than it was when the speaker's
thread placed it itself, and the work runs in the wake-up that does the DSP anyway: on a small board a
wake-up with cold caches costs several times the work itself. Silence (the idle fill) is placed without
resampling or copying. Every reference the capture side reads is consumed, so a block written for a
moment already processed is *late*, counted, and never used. While no one wants the mic (`capture_paused`)
only the last second of blocks is kept: the echo of what played just before the mic is wanted again.

Stages, in order: echo canceller (AEC3, with its own high-pass) -> noise suppression and high-pass ->
automatic gain capped at `max_gain_db`. The canceller is skipped while the reference has been silent for
`AEC_IDLE_S` (it would only cost CPU), and resumes at the first chunk whose reference is not silent,
before that audio's echo can arrive. Figures measured around the canceller (core/echo_stats.py) go to
`voiceterm status`, the metrics file and `voiceterm meter`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from voiceterm.config import FRONTEND_RATES, FrontendConfig
from voiceterm.core.echo_reference import CaptureAligner, PlaybackAligner, ReferenceRing, audible
from voiceterm.core.echo_stats import EchoMeter
from voiceterm.io.frontend_setup import (
    FrontendUnavailable,
    library_version,
    load_library,
    make_frontend,
    reference_of,
)
from voiceterm.logs import kv

log = logging.getLogger("voiceterm.audio")

RING_S = 4.0  # reference held ahead of the capture side: more than the largest playback buffer
MARGIN_S = (
    0.010  # the reference is placed this much early: it leads its echo even if the fill is over-reported
)
# A clock estimate this far toward a late reference moves the alignment at once. Playback estimates can be
# early (a pointer that lags the truth, then catches up), so its unsafe side is tight; capture estimates
# never are (a read returns after its data). One the other way (needless lead: a prompt read after a run of
# late ones, clock drift) moves it only beyond the excess bound and only in a pause (MOVE_QUIET_S): AEC3 finds
# echoes 80-500 ms behind their reference by itself, so lead is cheap, and what costs is moving the alignment
# once it has locked on (in the simulated room, a 25 ms trim mid-reply cost that reply all its cancellation,
# one in a pause cost two self-interruptions). Reads from a sound server come in bursts, so the estimates
# wander by a fragment (~25 ms); the excess bound lets drift of 100 ppm run for 15 minutes.
PLAYBACK_UNSAFE_S = 0.004
PLAYBACK_EXCESS_S = 0.100
CAPTURE_UNSAFE_S = 0.010
CAPTURE_EXCESS_S = 0.100
SETTLE_S = 0.5  # a (re)started stream's alignment follows every estimate for this long
AEC_IDLE_S = 1.5  # silent reference for this long (echo tail included): skip the canceller
# A move of either clock that only trims the reference's lead waits until the reference has been silent this
# long (the echo has died away): mid-speech, AEC3 must find the moved echo again (core/echo_reference.py).
MOVE_QUIET_S = 0.5
FRAME_S = 0.010  # the DSP works on whole 10 ms frames
QUEUED_BLOCKS = 200  # speaker blocks waiting for the capture thread (4 s of periods); the oldest go beyond
PAUSED_BLOCKS = 50  # ... while no one wants the mic: about the last second (idle blocks are 2 periods)


class _Dsp:
    """The three stages, each optional; used from the capture thread only."""

    def __init__(self, lib: Any, cfg: FrontendConfig, rate: int) -> None:
        self.aec = lib.EchoCanceller(sample_rate=rate) if cfg.echo_cancellation else None
        clean = cfg.noise_suppression or cfg.high_pass
        self.clean = (
            lib.AudioProcessor(
                sample_rate=rate,
                noise_suppression=cfg.noise_suppression,
                ns_level=cfg.noise_suppression_level,
                high_pass_filter=cfg.high_pass,
            )
            if clean
            else None
        )
        self.agc = (
            lib.GainController(sample_rate=rate, max_gain_db=cfg.max_gain_db) if cfg.auto_gain else None
        )

    def reset(self) -> None:
        for stage in (self.aec, self.clean, self.agc):
            if stage is not None:
                stage.reset()


class FrontEnd:
    """One front-end for one microphone stream at `mic_rate`, fed by a speaker at `device_rate`.

    Speaker thread: `played`, `flushed`, `playback_reset`. Capture thread: `process`, `capture_reset`,
    `capture_discontinuity`, `capture_paused`. Any thread: `stats`.
    """

    def __init__(
        self, cfg: FrontendConfig, *, mic_rate: int, device_rate: int, lib: Any | None = None
    ) -> None:
        if mic_rate not in FRONTEND_RATES:
            # Twilio's 8 kHz, or an odd recorder_sample_rate: "on" is refused by the config check.
            raise FrontendUnavailable(
                f"it runs at 16000, 32000 or 48000 Hz and the mic runs at {mic_rate} Hz: "
                "the mic goes to the bot without echo cancellation"
            )
        lib = lib or load_library()
        self.cfg = cfg
        self.rate = mic_rate
        self.device_rate = device_rate
        self.library = "pywebrtc-audio"  # the version is looked up on the capture thread (it takes ~20 ms)
        self._dsp = _Dsp(lib, cfg, mic_rate)
        self._frame = max(1, round(mic_rate * FRAME_S))
        epoch = time.perf_counter()
        self._lock = threading.Lock()  # guards the queue of played blocks
        self._queued: deque[tuple[Any, float | None]] = deque()  # (block, play_at), (None, flush time)
        self._skipped = False  # blocks dropped from the queue: the stream has a hole
        self._paused = False  # the capture side is not processing (no one wants the mic)
        self._ring = ReferenceRing(round(RING_S * mic_rate))
        self._play = PlaybackAligner(
            epoch=epoch,
            mic_rate=mic_rate,
            device_rate=device_rate,
            margin=round(MARGIN_S * mic_rate),
            unsafe_s=PLAYBACK_UNSAFE_S,
            excess_s=PLAYBACK_EXCESS_S,
            settle_s=SETTLE_S,
        )
        self._capture = CaptureAligner(
            epoch=epoch,
            rate=mic_rate,
            unsafe_s=CAPTURE_UNSAFE_S,
            excess_s=CAPTURE_EXCESS_S,
            settle_s=SETTLE_S,
        )
        self._resampler: Any = None
        self._silence_carry = 0  # device frames x mic rate not yet turned into silent mic samples
        self._write_pos = 0
        self._next_capture = 0
        self._meter = EchoMeter(mic_rate)
        self._reset_requested = False
        self._far_quiet = math.inf  # samples since the reference last held sound
        self._pending = np.zeros(0, dtype=np.int16)  # near audio waiting for a whole frame
        self._pending_far = np.zeros(0, dtype=np.int16)
        self._ready = np.zeros(0, dtype=np.int16)  # processed audio not handed out yet
        self.failed: str | None = None
        self._cpu_ns = 0  # capture side (the DSP)
        self._ref_cpu_ns = 0  # speaker side (the reference tap)
        self.counters = {
            "chunks_total": 0,
            "aec_chunks_total": 0,  # chunks that went through the canceller (not idle)
            "resets_total": 0,
            "flushes_total": 0,
            "capture_gaps_total": 0,  # overruns, and stretches no one wanted the mic: alignment restarts
        }
        self.speech_probability = 0.0
        self.gain_db = 0.0

    # --- speaker thread -------------------------------------------------------------------------

    def played(self, data: bytes, play_at: float) -> None:
        """`data` (S16_LE at the device rate) was written; its first frame leaves the device at `play_at`."""
        with self._lock:
            queued = self._queued
            if len(queued) >= (PAUSED_BLOCKS if self._paused else QUEUED_BLOCKS):
                queued.popleft()
                self._skipped = True
            queued.append((data, play_at))

    def flushed(self, at: float) -> None:
        """The device dropped what it held at `at` (an interruption): silence from there on."""
        with self._lock:
            self._queued.append((None, at))

    def playback_reset(self) -> None:
        """The playback device closed (it failed or is reopening): nothing it planned will play, and the
        echo path may be another one when it is back."""
        self.flushed(time.perf_counter())
        self._reset_requested = True

    # --- the reference, placed on the capture thread ---------------------------------------------

    def _take_reference(self) -> None:
        """Place on the timeline every block played (and every flush) since the last chunk."""
        with self._lock:
            if not self._queued:
                return
            batch, self._queued = self._queued, deque()
            skipped, self._skipped = self._skipped, False
        started = time.thread_time_ns()
        if skipped:  # a hole in the stream: its clock and the resampler start over
            self._play.reset()
            self._resampler = None
        for data, at in batch:
            if data is None:
                self._flush_reference(at)
            else:
                self._place(data, at)
        self._ref_cpu_ns += time.thread_time_ns() - started

    def _place(self, data: Any, play_at: float) -> None:
        block = np.frombuffer(data, dtype="<i2")
        pos, anchored = self._play.place(block.shape[0], play_at, quiet=self._quiet())
        if anchored:
            log.debug("reference anchored %s", kv(shift=pos - self._write_pos, pos=pos))
            self._write_pos = pos
            self._resampler = None  # a new stream from here
        # A slot the capture side has processed already stays lost (counted when it held sound): moving
        # the block later would keep it, at the price of shifting every later block against its echo.
        if block.any():
            out = self._resample(block)
            self._ring.write(self._write_pos, out, sound=True)
            self._write_pos += out.shape[0]
            return
        # The silence fill (a kiosk mostly listens): no resampling, no copying; its length is kept exact,
        # and the resampler restarts from silence at the next sound.
        self._resampler = None
        self._silence_carry += block.shape[0] * self.rate
        n, self._silence_carry = divmod(self._silence_carry, self.device_rate)
        self._ring.write_silence(self._write_pos, n)
        self._write_pos += n

    def _quiet(self) -> bool:
        """The reference has been silent for MOVE_QUIET_S: a clock may trim its lead now."""
        return self._far_quiet >= MOVE_QUIET_S * self.rate

    def _flush_reference(self, at: float | None) -> None:
        assert at is not None
        self._ring.clear_from(math.floor(self._play.position(at)))
        self._play.reset()
        self.counters["flushes_total"] += 1

    def _resample(self, block: np.ndarray) -> np.ndarray:
        """Sound at the mic rate."""
        if self.device_rate == self.rate:
            return block
        if self._resampler is None:
            self._resampler = self._new_resampler()
        return self._resampler.resample_chunk(block)

    def _new_resampler(self) -> Any:
        if self.device_rate == self.rate:
            return None
        import soxr

        return soxr.ResampleStream(self.device_rate, self.rate, 1, dtype="int16", quality="QQ")

    # --- capture thread ---------------------------------------------------------------------------

    def capture_reset(self) -> None:
        """The capture device (re)opened: a new stream, perhaps a new echo path."""
        self._capture.reset()
        self._reset_requested = True

    def capture_discontinuity(self) -> None:
        """Periods were lost (an overrun) or not processed (no one wanted them): the stream's clock must be
        found again."""
        self._capture.reset()
        self.counters["capture_gaps_total"] += 1
        if self._paused:
            self._paused = False
            self._ring.restart_reader()  # nothing written while paused was late: no one listened

    def capture_paused(self) -> None:
        """No one wants the mic for now: chunks stop coming until `capture_discontinuity()`. Only the
        last second played is kept meanwhile (its echo may still be in the room when the mic comes back)."""
        with self._lock:
            self._paused = True

    def process(self, data: bytes, stamp: float) -> bytes:
        """One captured chunk (S16_LE at the mic rate, read returned at perf_counter `stamp`) in, the
        processed chunk out, same length. Never raises: a failing library passes the audio through."""
        self._take_reference()
        started = time.thread_time_ns()
        near = np.frombuffer(data, dtype="<i2")
        n = near.shape[0]
        expected = self._next_capture
        pos, realigned = self._capture.locate(n, stamp, quiet=self._quiet())
        self._next_capture = pos + n
        if realigned:
            log.debug("capture realigned %s", kv(shift=pos - expected, pos=pos))
        far_sound = pos < self._ring.sound_end  # else the reference is silence for sure: no scan
        far = self._ring.read(pos, n)
        self.counters["chunks_total"] += 1
        if self.failed is not None:
            return data
        try:
            out = self._process(near, far, far_sound)
        except Exception as e:  # a library fault must not take the mic down: raw audio from now on
            self.failed = f"{e.__class__.__name__}: {e}"
            log.error("audio front-end failed; the mic goes out unprocessed %s", kv(error=self.failed))
            return data
        finally:
            self._cpu_ns += time.thread_time_ns() - started
        return out.tobytes()

    def _process(self, near: np.ndarray, far: np.ndarray, far_sound: bool) -> np.ndarray:
        if self.counters["chunks_total"] == 1:
            self.library = library_version()
        if self._reset_requested:
            self._reset_requested = False
            self._dsp.reset()
            self._meter.reset()
            self.counters["resets_total"] += 1
        n = near.shape[0]
        f = self._frame
        if n % f or self._pending.shape[0]:
            # A period that is not whole 10 ms frames: process what is whole, hand out the same length
            # (delayed by less than a frame).
            near = np.concatenate((self._pending, near))
            far = np.concatenate((self._pending_far, far))
            far_sound = True  # the part held over may have had sound: scan
            whole = near.shape[0] // f * f
            self._pending, self._pending_far = near[whole:], far[whole:]
            near, far = near[:whole], far[:whole]
        out = self._stages(near, far, far_sound) if near.shape[0] else near
        if out.shape[0] == n and not self._ready.shape[0]:
            return out
        ready = np.concatenate((self._ready, out))
        if ready.shape[0] < n:
            ready = np.concatenate((np.zeros(n - ready.shape[0], dtype=np.int16), ready))
        self._ready = ready[n:]
        return ready[:n]

    def _stages(self, near: np.ndarray, far: np.ndarray, far_sound: bool) -> np.ndarray:
        dsp = self._dsp
        out = near
        if dsp.aec is not None:
            if far_sound and audible(far):
                self._far_quiet = 0
            else:
                self._far_quiet += near.shape[0]
            if self._far_quiet < AEC_IDLE_S * self.rate:
                out = dsp.aec.process(near, far)
                self.counters["aec_chunks_total"] += 1
                self._meter.observe(near, far, out)  # idle: no reference, nothing to measure
        if dsp.clean is not None:
            out = dsp.clean.process(out)
            self.speech_probability = dsp.clean.speech_probability
        if dsp.agc is not None:
            if dsp.clean is not None:
                out = dsp.agc.process(out, self.speech_probability)
            else:
                out = dsp.agc.process(out)
                self.speech_probability = dsp.agc.speech_probability
            self.gain_db = dsp.agc.gain_db
        return out

    # --- any thread -------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The front-end's figures and counters for the status snapshot (plain numbers; None = unknown)."""
        fig = self._meter.figures()
        ring = self._ring.counters
        idle = self.cfg.echo_cancellation and self._far_quiet >= AEC_IDLE_S * self.rate
        return {
            "state": "failed" if self.failed else "running",
            "library": self.library,
            "echo_cancellation": self.cfg.echo_cancellation,
            "noise_suppression": self.cfg.noise_suppression,
            "high_pass": self.cfg.high_pass,
            "auto_gain": self.cfg.auto_gain,
            "canceller_idle": bool(idle),
            "erle_db": None if fig.erle_db is None else round(fig.erle_db, 1),
            "echo_delay_ms": fig.delay_ms,
            "echo_delay_correlation": None
            if fig.delay_correlation is None
            else round(fig.delay_correlation, 2),
            "erle_blocks_total": fig.erle_blocks,
            "diverged_total": fig.diverged_blocks,
            "gain_db": round(self.gain_db, 1),
            "speech_probability": round(self.speech_probability, 2),
            "cpu_seconds_total": round((self._cpu_ns + self._ref_cpu_ns) / 1e9, 3),
            "capture_cpu_seconds_total": round(self._cpu_ns / 1e9, 3),
            "reference_cpu_seconds_total": round(self._ref_cpu_ns / 1e9, 3),
            "reference_late_frames_total": ring.late_samples,
            "reference_overflow_frames_total": ring.overflow_samples,
            "reference_frames_total": ring.written_samples,
            **self.counters,
            "capture_realigned_total": self._capture.realigns,
            "playback_reanchored_total": self._play.reanchors,
            # estimates that would have trimmed the lead mid-speech, held until a pause (not moves)
            "alignment_deferred_total": self._capture.deferred + self._play.deferred,
            "error": self.failed,
        }


__all__ = [
    "AEC_IDLE_S",
    "FrontEnd",
    "FrontendUnavailable",
    "library_version",
    "load_library",
    "make_frontend",
    "reference_of",
]
