"""The echo canceller's far-end reference: what the speaker played, on one timeline with what the mic captured.

Pure (numpy only). Positions are sample counts at the microphone's rate since a shared epoch (a
`time.perf_counter()` value), so a playback block and a capture chunk meet at the sample that sounded at
the same moment. Three parts:

- `ReferenceRing` holds the reference at those positions. The speaker side writes each device block where
  it will play; the capture side reads, for every chunk, the positions the chunk covers and consumes them.
  A write to a position already consumed is *late* (the canceller got silence where the echo's source
  was): counted (apart when it is silence itself: then nothing was missed), never stored. A write too far ahead of the reader (the capture side stopped) pushes the
  oldest unread samples out: counted as overflow. A flush silences everything planned after a position.
  It knows where the last sound written ends (`sound_end`): silence written beyond it, and reads beyond it,
  cost no copying and no scanning (the bot is silent most of the time).
- `StreamClock` finds when a device stream started from timing observations that can only be late: a
  capture read returns after its data was captured; a playback pointer that moves in steps over-reports
  the fill. The earliest value (per sample count, over a sliding window) is the estimate, so timing
  jitter neither moves the alignment nor makes the reference late.
- `StreamAnchor` holds that estimate still once the stream has settled, and moves it only when it
  leaves a band: a little in the direction that would make the reference late (that is fixed at once),
  more in the other (a reference leading by too much only wastes the canceller's range). Every move
  shifts the reference against its echo, which makes the canceller re-adapt: timing outliers must not.
- `PlaybackAligner` places device blocks where the device plays them, moved `margin` samples earlier so
  the reference leads its echo; `CaptureAligner` places capture chunks where they were captured. Both
  keep consecutive blocks contiguous until their anchor moves or the stream restarts (an overrun, a
  drop, a reopen).

Why this way: the canceller (WebRTC AEC3) finds the remaining delay itself and tolerates the reference
arriving early by hundreds of milliseconds, but not late: fed 100 ms late on an 80 ms path, its ERLE fell
to 6 dB. A stable delay also matters: every jump makes it re-adapt, so small timing jitter is absorbed by
the contiguous cursors instead of moving the alignment chunk by chunk.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SILENCE_LSB",
    "CaptureAligner",
    "PlaybackAligner",
    "ReferenceRing",
    "RingCounters",
    "StreamAnchor",
    "StreamClock",
    "audible",
]


SILENCE_LSB = 8  # a reference no louder than this (-72 dBFS: resampler and dither residue) is silence


def audible(x: np.ndarray) -> bool:
    """Whether `x` holds more than silence (two reductions, no temporary array; -32768 counts too)."""
    return x.shape[0] > 0 and (int(x.max()) > SILENCE_LSB or int(x.min()) < -SILENCE_LSB)


@dataclass
class RingCounters:
    late_samples: int = 0  # sound (not silence) written after its position was read: the canceller missed it
    late_silence: int = 0  # silence written late: nothing was missed (the position read as silence too)
    overflow_samples: int = 0  # pushed out unread because the reader fell more than the capacity behind
    written_samples: int = 0
    read_samples: int = 0


class ReferenceRing:
    """Reference samples (int16) at absolute positions; holds at most `capacity` unread samples."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._buf = np.zeros(capacity, dtype=np.int16)
        self.base = 0  # the first position not consumed yet; everything before it is gone
        self._started = False  # no read yet: the first read sets the base
        self.sound_end = 0  # every slot at or after this position holds silence
        self._silence = np.zeros(0, dtype=np.int16)  # read-only zeros handed out for silent reads
        self.counters = RingCounters()

    @property
    def unread_from(self) -> int | None:
        """The first position the reader has not consumed (None before the first read)."""
        return self.base if self._started else None

    def reset(self) -> None:
        """Forget everything (a device reopened): silence everywhere, the next read starts afresh."""
        self._buf[:] = 0
        self.base = 0
        self._started = False
        self.sound_end = 0

    def restart_reader(self) -> None:
        """The reader paused (no one wanted the mic) and goes on elsewhere: its next read sets the base
        afresh, and nothing written meanwhile counts as late or pushed out."""
        self._started = False

    def write(self, pos: int, samples: np.ndarray, sound: bool | None = None) -> None:
        """Store `samples` at [pos, pos + len): the late part is counted and dropped. `sound`: whether they
        hold any non-zero sample, when the caller knows."""
        n = int(samples.shape[0])
        if n == 0:
            return
        self.counters.written_samples += n
        if self._started and pos < self.base:
            late = min(n, self.base - pos)
            if audible(samples[:late]):
                self.counters.late_samples += late
            else:
                self.counters.late_silence += late
            samples = samples[late:]
            pos += late
            n -= late
            if n == 0:
                return
        if not self._started:
            # Nothing read yet: keep the newest `capacity` samples written so far.
            self._advance_unread(pos + n - self.capacity)
            if pos < self.base:
                samples = samples[self.base - pos :]
                n = int(samples.shape[0])
                pos = self.base
        end = pos + n
        if end - self.base > self.capacity:
            # The reader is far behind (the capture side stopped): push the oldest unread samples out.
            new_base = end - self.capacity
            if self._started:
                self.counters.overflow_samples += new_base - self.base
            self._advance_unread(new_base)
            if pos < self.base:
                samples = samples[self.base - pos :]
                pos = self.base
        self._put(pos, samples)
        if sound or (sound is None and samples.any()):
            self.sound_end = max(self.sound_end, end)

    def write_silence(self, pos: int, n: int) -> None:
        """`n` samples of silence at `pos`: counted like `write`, and free where the slots hold silence
        already (everywhere past `sound_end`)."""
        if n <= 0:
            return
        self.counters.written_samples += n
        end = pos + n
        if self._started and pos < self.base:
            self.counters.late_silence += min(n, self.base - pos)  # nothing was missed
        if not self._started:
            self._advance_unread(end - self.capacity)
        elif end - self.base > self.capacity:
            self.counters.overflow_samples += end - self.capacity - self.base
            self._advance_unread(end - self.capacity)
        lo = max(pos, self.base)
        if lo < self.sound_end:
            self._zero(lo, min(end, self.sound_end))

    def read(self, pos: int, n: int) -> np.ndarray:
        """The reference for [pos, pos + n), consumed: never-written or already consumed parts are silence.
        Past `sound_end` it is a shared read-only array of zeros."""
        self.counters.read_samples += n
        end = pos + n
        lo = max(pos, self.base)
        hi = min(end, self.base + self.capacity, self.sound_end)
        if hi > lo:
            out = np.zeros(n, dtype=np.int16)
            out[lo - pos : hi - pos] = self._get(lo, hi - lo)
        else:
            if self._silence.shape[0] != n:
                self._silence = np.zeros(n, dtype=np.int16)
                self._silence.setflags(write=False)
            out = self._silence
        if end > self.base:
            zero_to = min(end, self.base + self.capacity, self.sound_end)
            if zero_to > self.base:
                self._zero(self.base, zero_to)
            self.base = end
        self._started = True
        return out

    def clear_from(self, pos: int) -> None:
        """Silence every planned sample at or after `pos` (the device dropped what it held)."""
        lo = max(pos, self.base)
        hi = min(self.base + self.capacity, self.sound_end)
        if hi > lo:
            self._zero(lo, hi)
        self.sound_end = min(self.sound_end, lo)

    def _advance_unread(self, new_base: int) -> None:
        """Drop unread samples before `new_base` (the reader is not there yet, or too far behind)."""
        if new_base <= self.base:
            return
        self._zero(self.base, min(new_base, self.base + self.capacity, max(self.base, self.sound_end)))
        self.base = new_base

    # --- ring indexing ---------------------------------------------------------------------------

    def _put(self, pos: int, samples: np.ndarray) -> None:
        i = pos % self.capacity
        k = min(samples.shape[0], self.capacity - i)
        self._buf[i : i + k] = samples[:k]
        if k < samples.shape[0]:
            self._buf[: samples.shape[0] - k] = samples[k:]

    def _get(self, pos: int, n: int) -> np.ndarray:
        i = pos % self.capacity
        k = min(n, self.capacity - i)
        if k == n:
            return self._buf[i : i + n].copy()
        return np.concatenate((self._buf[i:], self._buf[: n - k]))

    def _zero(self, lo: int, hi: int) -> None:
        n = hi - lo
        if n <= 0:
            return
        if n >= self.capacity:
            self._buf[:] = 0
            return
        i = lo % self.capacity
        k = min(n, self.capacity - i)
        self._buf[i : i + k] = 0
        if k < n:
            self._buf[: n - k] = 0


class StreamClock:
    """When sample 0 of a continuous stream happened, from observations that are never early.

    `observe(samples, stamp)` takes the number of samples before the moment `stamp` (perf_counter seconds)
    describes: a capture read returning after `samples` were captured, a playback block whose first frame,
    `samples` into the stream, leaves the device at the estimated `stamp`. Both can only be late (a read
    returns after its data; a device pointer that moves in steps over-reports the fill), so the smallest
    `stamp - samples / rate` is the closest to the truth. It is kept per block of `BLOCK_S` over the last
    `BLOCKS` blocks: long enough that a server delivering audio in bursts does not move it, short enough
    to follow clock drift (100 ppm is 0.8 ms over the window).
    """

    BLOCK_S = 1.0
    BLOCKS = 8

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._mins: deque[float] = deque()
        self.reset()

    def reset(self) -> None:
        """A discontinuity (an overrun or underrun, a drop, a reopen): a new stream from sample 0."""
        self._mins.clear()
        self._window_min = math.inf  # min of the closed blocks in the window
        self._block_min = math.inf
        self._block_end = self.BLOCK_S * self.rate

    def observe(self, samples: int, stamp: float) -> float:
        """Record one observation; the best estimate of sample 0's time."""
        offset = stamp - samples / self.rate
        self._block_min = min(self._block_min, offset)
        best = min(self._block_min, self._window_min)
        if samples >= self._block_end:
            self._mins.append(self._block_min)
            if len(self._mins) > self.BLOCKS:
                self._mins.popleft()
            self._window_min = min(self._mins)
            self._block_min = math.inf
            self._block_end = samples + self.BLOCK_S * self.rate
        return best


class StreamAnchor:
    """The start time of a stream as the alignment uses it: the `StreamClock` estimate, held still.

    Small moves of the estimate (timing outliers entering and leaving the window) would shift the reference
    against its echo and make the canceller re-adapt, so the anchor follows the estimate only while the
    stream settles (its first `settle` samples), then moves only when the estimate leaves the band around
    it: at once by more than `unsafe` in the direction that would make the reference late, and by more than
    `excess` in the other (the reference leading by more than needed) only while the far end is `quiet`.
    A lead trimmed in the middle of the bot's speech moves the echo against the canceller's filter by tens
    of milliseconds, and AEC3 took seconds to find it again (the room: a whole reply at 0 dB after a 25 ms
    move of the capture clock); a lead kept a little longer costs nothing, so that move waits for a pause
    and is counted meanwhile (`deferred`). `late_sign` is +1 when a later estimate is the unsafe direction
    (capture: data captured later than assumed), -1 when an earlier one is (playback: audio played earlier
    than assumed).
    """

    def __init__(self, rate: int, *, late_sign: int, unsafe: float, excess: float, settle: int) -> None:
        self.clock = StreamClock(rate)
        self.late_sign = late_sign
        self.unsafe = unsafe
        self.excess = excess
        self.settle = settle
        self.start: float | None = None
        self.moves = 0  # after settling
        self.deferred = 0  # observations that would have trimmed the lead while the far end had sound

    def reset(self) -> None:
        self.clock.reset()
        self.start = None

    def update(self, samples: int, stamp: float, *, quiet: bool = True) -> bool:
        """One observation (see StreamClock.observe); True when `start` moved. `quiet`: the far end has
        been silent long enough for its echo to have died away."""
        best = self.clock.observe(samples, stamp)
        if self.start is None or samples < self.settle:
            moved = best != self.start
            self.start = best
            return moved
        toward_late = (best - self.start) * self.late_sign
        if toward_late > self.unsafe or (-toward_late > self.excess and quiet):
            self.start = best
            self.moves += 1
            return True
        if -toward_late > self.excess:
            self.deferred += 1
        return False


class PlaybackAligner:
    """Where each device block's reference goes on the timeline (speaker side).

    `place(frames, play_at)` takes a block of `frames` device frames whose first frame leaves the device at
    `play_at` (perf_counter seconds, as estimated from the fill) and returns (position of the block's first
    frame at the mic rate, re-anchored?). The device's clock is a `StreamAnchor`; the placement moves
    `margin` samples earlier and stays contiguous from block to block until the anchor moves (the caller
    then restarts its resampler at the new position).
    """

    def __init__(
        self,
        *,
        epoch: float,
        mic_rate: int,
        device_rate: int,
        margin: int,
        unsafe_s: float,
        excess_s: float,
        settle_s: float,
    ) -> None:
        self.epoch = epoch
        self.mic_rate = mic_rate
        self.device_rate = device_rate
        self.ratio = mic_rate / device_rate
        self.margin = margin
        self._anchor = StreamAnchor(
            device_rate, late_sign=-1, unsafe=unsafe_s, excess=excess_s, settle=round(settle_s * device_rate)
        )
        self._written = 0  # device frames since the stream (re)started

    @property
    def reanchors(self) -> int:
        return self._anchor.moves

    @property
    def deferred(self) -> int:
        return self._anchor.deferred

    def reset(self) -> None:
        """The device dropped what it held or closed: its stream restarts."""
        self._anchor.reset()
        self._written = 0

    def position(self, at: float) -> float:
        """The mic-rate position of perf_counter time `at`, moved `margin` earlier."""
        return (at - self.epoch) * self.mic_rate - self.margin

    def place(self, frames: int, play_at: float, *, quiet: bool = True) -> tuple[int, bool]:
        moved = self._anchor.update(self._written, play_at, quiet=quiet)
        assert self._anchor.start is not None
        pos = self.position(self._anchor.start + self._written / self.device_rate)
        self._written += frames
        return math.floor(pos), moved


class CaptureAligner:
    """Where each capture chunk sits on the timeline (capture side).

    `locate(frames, stamp)` takes a chunk of `frames` samples whose read returned at `stamp`
    (perf_counter seconds) and returns (position of its first sample, realigned?). The capture clock is a
    `StreamAnchor`: chunks are contiguous until it moves.
    """

    def __init__(self, *, epoch: float, rate: int, unsafe_s: float, excess_s: float, settle_s: float) -> None:
        self.epoch = epoch
        self.rate = rate
        self._anchor = StreamAnchor(
            rate, late_sign=+1, unsafe=unsafe_s, excess=excess_s, settle=round(settle_s * rate)
        )
        self._samples = 0

    @property
    def realigns(self) -> int:
        return self._anchor.moves

    @property
    def deferred(self) -> int:
        return self._anchor.deferred

    def reset(self) -> None:
        """A discontinuity (overrun, reopen): forget the clock estimate; the next chunk re-anchors."""
        self._anchor.reset()
        self._samples = 0  # samples captured since the last reset

    def locate(self, frames: int, stamp: float, *, quiet: bool = True) -> tuple[int, bool]:
        self._samples += frames
        moved = self._anchor.update(self._samples, stamp, quiet=quiet)
        assert self._anchor.start is not None
        start = math.floor((self._anchor.start - self.epoch) * self.rate) + self._samples - frames
        return start, moved
