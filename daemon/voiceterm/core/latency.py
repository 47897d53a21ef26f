"""A bounded latency recorder: a fixed log-linear histogram of durations with count, mean, p50/p99 and max.

Pure and constant-size: recording is a few arithmetic operations and one list increment, whatever the
number of samples, so it can stay on in the daemon's hot paths for months. Percentiles are read from the
buckets (16 per octave, so within 6.25 % of the true value, and never above the exact maximum).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from voiceterm.record import record

SUB_BUCKETS = 16  # per octave: bucket width is at most 1/16 of its lower edge
OCTAVES = 28  # 1 µs .. 2**28 µs (about 4.5 minutes); longer samples land in the last bucket
N_BUCKETS = 1 + OCTAVES * SUB_BUCKETS  # bucket 0 holds everything under 1 µs


def bucket_index(seconds: float) -> int:
    """The bucket a duration falls in (negative durations, a clock quirk, count as 0)."""
    us = seconds * 1e6
    if not us >= 1.0:  # also catches NaN
        return 0
    mantissa, exponent = math.frexp(us)  # us = mantissa * 2**exponent, mantissa in [0.5, 1)
    octave = exponent - 1
    if octave >= OCTAVES:
        return N_BUCKETS - 1
    return 1 + octave * SUB_BUCKETS + int((mantissa * 2.0 - 1.0) * SUB_BUCKETS)


def bucket_upper(index: int) -> float:
    """The upper edge of bucket `index`, in seconds."""
    if index <= 0:
        return 1e-6
    octave, sub = divmod(index - 1, SUB_BUCKETS)
    return (2.0**octave) * (1.0 + (sub + 1) / SUB_BUCKETS) * 1e-6


@record
class LatencySummary:
    """What a person reads: sample count and the distribution in seconds (None without samples)."""

    count: int
    mean: float | None
    p50: float | None
    p99: float | None
    max: float | None

    def as_ms(self) -> dict[str, Any]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000.0, 3)

        return {
            "samples_total": self.count,
            "mean_ms": ms(self.mean),
            "p50_ms": ms(self.p50),
            "p99_ms": ms(self.p99),
            "max_ms": ms(self.max),
        }


class LatencyRecorder:
    """Counts durations into `N_BUCKETS` fixed buckets; keeps count, sum, min and max exactly.

    One writer at a time (the thread that owns the measured path); readers on other threads may see a
    sample half-recorded (the count ahead of the sum), which a status report can live with.
    """

    __slots__ = ("_counts", "count", "max", "min", "total")

    def __init__(self) -> None:
        self._counts = [0] * N_BUCKETS
        self.count = 0
        self.total = 0.0
        self.min: float | None = None
        self.max: float | None = None

    def record(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self._counts[bucket_index(seconds)] += 1
        self.count += 1
        self.total += seconds
        if self.max is None or seconds > self.max:
            self.max = seconds
        if self.min is None or seconds < self.min:
            self.min = seconds

    def reset(self) -> None:
        self.__init__()

    def percentile(self, q: float) -> float | None:
        """The `q` quantile (0 < q <= 1): the upper edge of the bucket holding that rank, capped at max."""
        return _percentile(self._counts, self.count, q, self.max)

    def summary(self) -> LatencySummary:
        if not self.count:
            return LatencySummary(0, None, None, None, None)
        return LatencySummary(
            count=self.count,
            mean=self.total / self.count,
            p50=self.percentile(0.50),
            p99=self.percentile(0.99),
            max=self.max,
        )

    def buckets(self) -> list[tuple[float, int]]:
        """The non-empty buckets as (upper edge in seconds, count), shortest first."""
        return [(bucket_upper(i), n) for i, n in enumerate(self._counts) if n]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: the summary in milliseconds and the non-empty buckets as [upper edge µs, count]
        pairs (a list, so a metrics exporter that walks the snapshot skips it)."""
        out = self.summary().as_ms()
        out["buckets"] = [[round(upper * 1e6, 3), n] for upper, n in self.buckets()]
        return out


def _percentile(counts: Sequence[int], total: int, q: float, cap: float | None) -> float | None:
    if total <= 0:
        return None
    rank = max(1, math.ceil(min(max(q, 0.0), 1.0) * total))
    seen = 0
    for index, n in enumerate(counts):
        seen += n
        if seen >= rank:
            upper = bucket_upper(index)
            return min(upper, cap) if cap is not None else upper
    return cap


def summarize_buckets(buckets: Iterable[Sequence[float]], *, max_s: float | None = None) -> LatencySummary:
    """The summary of exported buckets ([upper edge µs, count] pairs, as in `as_dict`), e.g. of the
    difference of two snapshots. Without `max_s` the maximum is the top bucket's upper edge."""
    counts = [0] * N_BUCKETS
    weighted = 0.0
    for upper_us, count in buckets:
        n = int(count)
        if n <= 0:
            continue
        # An upper edge belongs to the bucket below it; a bucket is at least 1/32 of its edge wide, so a
        # point 1/64 below the (rounded) edge is safely inside it.
        index = bucket_index(float(upper_us) * 1e-6 * (1 - 1 / 64))
        counts[index] += n
        weighted += n * float(upper_us) * 1e-6
    total = sum(counts)
    if not total:
        return LatencySummary(0, None, None, None, None)
    top = max(i for i, n in enumerate(counts) if n)
    cap = max_s if max_s is not None else bucket_upper(top)
    return LatencySummary(
        count=total,
        mean=weighted / total,  # bucket upper edges: an upper bound of the mean
        p50=_percentile(counts, total, 0.50, cap),
        p99=_percentile(counts, total, 0.99, cap),
        max=cap,
    )


def bucket_difference(
    later: Iterable[Sequence[float]], earlier: Iterable[Sequence[float]]
) -> list[list[float]]:
    """Exported buckets recorded between two snapshots of the same recorder (counts only grow)."""
    before: Mapping[float, float] = {float(u): float(n) for u, n in earlier}
    out = []
    for upper_us, n in later:
        diff = int(n) - int(before.get(float(upper_us), 0))
        if diff > 0:
            out.append([float(upper_us), diff])
    return out


class ChunkTimes:
    """Chunks of bot audio waiting for their first frame to be written, by stream position, so each is timed
    then: receive -> written to the device, and receive -> audible (the device's fill ahead of it added).
    Bounded: beyond `limit` waiting chunks, later ones go untimed."""

    def __init__(self, rate: int, limit: int, written: LatencyRecorder, audible: LatencyRecorder) -> None:
        self._rate = rate
        self._limit = limit
        self._written = written
        self._audible = audible
        self._waiting: deque[tuple[int, float]] = deque()  # (position of the first frame, received_at)

    def add(self, position: int, received_at: float) -> None:
        if len(self._waiting) < self._limit:
            self._waiting.append((position, received_at))

    def clear(self) -> None:
        """Nothing queued will be written (a flush, a closed device)."""
        self._waiting.clear()

    def written(self, first: int, frames: int, written_at: float, ahead_s: float) -> None:
        """Frames [first, first + frames) of the stream were written at the start of a block, behind `ahead_s`
        of audio still in the device: time the chunks starting there."""
        waiting = self._waiting
        end = first + frames
        while waiting and waiting[0][0] < end:
            position, received_at = waiting.popleft()
            if position >= first:  # earlier ones were dropped by the cap, never written
                self._written.record(written_at - received_at)
                out_at = written_at + max(0.0, ahead_s + (position - first) / self._rate)
                self._audible.record(out_at - received_at)


__all__ = [
    "N_BUCKETS",
    "ChunkTimes",
    "LatencyRecorder",
    "LatencySummary",
    "bucket_difference",
    "bucket_index",
    "bucket_upper",
    "summarize_buckets",
]
