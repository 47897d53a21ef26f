"""Device clocks for unclocked PCMs (ALSA `type file`/`null`, which return at once): the wall-clock pacers
that make a file PCM behave like a device running at its rate, and the detector that notices a PCM that
runs faster than real time although `audio.pacing` is "device".

Plain classes with an injectable clock; used by the microphone's and the speaker's device threads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["UNCLOCKED_READS", "UNCLOCKED_WRITES", "CapturePacer", "PlaybackPacer", "UnclockedDetector"]

UNCLOCKED_READS = 50  # consecutive reads that decide whether a capture PCM is clocked
UNCLOCKED_WRITES = 20  # consecutive writes that decide whether a playback PCM is clocked


class PlaybackPacer:
    """A device clock for an unclocked playback PCM: frames drain at `rate` frames per second.

    `fill()` is what a real device would still hold; the writer keeps it within the ALSA buffer, so it
    never runs more than the buffer ahead of real time. If the writer falls behind, the emulated device
    underruns and restarts from empty, as hardware does after an xrun.
    """

    def __init__(self, rate: int, now: Callable[[], float] = time.perf_counter) -> None:
        self.rate = rate
        self._now = now
        self._base = 0.0  # when the emulated device started playing (first write after empty)
        self._written = 0  # frames written since then
        self.underruns = 0

    def fill(self) -> int:
        if self._written == 0:
            return 0
        played = (self._now() - self._base) * self.rate
        left = self._written - played
        if left <= 1e-6:
            self.underruns += 1
            self.reset()
            return 0
        return math.ceil(left - 1e-6)  # a frame being played still occupies the buffer

    def wrote(self, n: int) -> None:
        if self._written == 0:
            self._base = self._now()
        self._written += n

    def reset(self) -> None:
        """The device was emptied (drop() or an underrun)."""
        self._written = 0


class CapturePacer:
    """A device clock for an unclocked capture PCM: one period becomes readable per period of wall time.

    A reader that falls more than `max_lag_periods` behind is resynchronised (a real device would have
    overrun; a file has lost nothing, so no period is dropped).
    """

    def __init__(
        self,
        period_s: float,
        *,
        max_lag_periods: int = 8,
        now: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.period_s = period_s
        self.max_lag_periods = max_lag_periods
        self._now = now
        self._next: float | None = None

    def delay(self) -> float:
        """Seconds to wait before the next period is due (0 when it is due already)."""
        now = self._now()
        if self._next is None:
            self._next = now + self.period_s
        elif now - self._next > self.max_lag_periods * self.period_s:
            self._next = now
        return max(0.0, self._next - now)

    def consumed(self) -> None:
        assert self._next is not None
        self._next += self.period_s

    def due(self) -> int:
        """Whole periods readable now without waiting (a reader that sleeps through several reads them
        in one go)."""
        delay = self.delay()
        if delay > 0:
            return 0
        assert self._next is not None
        return 1 + int((self._now() - self._next) / self.period_s)


class UnclockedDetector:
    """Notices a PCM that returns faster than real time although pacing is "device" (a file/null PCM)."""

    def __init__(self, needed: int) -> None:
        self.needed = needed
        self._fast = 0
        self.tripped = False

    def observe(self, fast: bool) -> bool:
        """Feed one read/write; True exactly once, when `needed` consecutive ones were too fast."""
        if self.tripped:
            return False
        self._fast = self._fast + 1 if fast else 0
        if self._fast >= self.needed:
            self.tripped = True
            return True
        return False
