"""Log-rate helpers that keep an outage or a chatty peer from flooding the journal.

`RepeatSuppressor` lets the first occurrence of a failure through, stays quiet while the same failure
repeats, and says "still failing" at growing intervals. `Throttle` lets an event through at most once per
interval and counts what it held back. Both take the time as an argument, so they are tested without a clock.
"""

from __future__ import annotations

from voiceterm.record import record


@record
class Report:
    """A line worth logging: a new failure, or a reminder that an old one goes on."""

    kind: str  # "new" (first time, or the reason changed) or "still" (the same failure goes on)
    reason: str
    repeats: int  # failures with this reason since it first appeared, this one included
    since: float  # when this reason first appeared


class RepeatSuppressor:
    """Decides which failures of a retry loop deserve a log line.

    A reason seen for the first time (or different from the previous one) is reported at once. The same
    reason again is not, except as a reminder after `first_reminder` seconds, then after spacings that grow
    by `growth` up to `max_spacing` (1 min, 2 min, 4 min ... 30 min by default).
    """

    def __init__(
        self, *, first_reminder: float = 60.0, growth: float = 2.0, max_spacing: float = 1800.0
    ) -> None:
        self.first_reminder = first_reminder
        self.growth = growth
        self.max_spacing = max_spacing
        self._reason: str | None = None
        self._repeats = 0
        self._since = 0.0
        self._next_at = 0.0
        self._spacing = first_reminder

    @property
    def active(self) -> bool:
        """True while a failure streak is going on."""
        return self._reason is not None

    @property
    def reason(self) -> str | None:
        """The failure of the current streak, or None."""
        return self._reason

    @property
    def repeats(self) -> int:
        return self._repeats

    @property
    def since(self) -> float:
        return self._since

    def failure(self, reason: str, now: float) -> Report | None:
        """Record one failure; return a Report when it should be logged."""
        if reason != self._reason:
            self._reason = reason
            self._repeats = 1
            self._since = now
            self._spacing = self.first_reminder
            self._next_at = now + self._spacing
            return Report("new", reason, 1, now)
        self._repeats += 1
        if now >= self._next_at:
            self._spacing = min(self._spacing * self.growth, self.max_spacing)
            self._next_at = now + self._spacing
            return Report("still", reason, self._repeats, self._since)
        return None

    def clear(self) -> None:
        """The streak is over (the link came back): the next failure is news again."""
        self._reason = None
        self._repeats = 0


class Throttle:
    """At most one event per `interval` seconds; counts the ones held back in between."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._next_at: float | None = None
        self._held = 0

    def allow(self, now: float) -> int | None:
        """None when this event should stay quiet; else the number held back since the last one let through."""
        if self._next_at is None or now >= self._next_at:
            held, self._held = self._held, 0
            self._next_at = now + self.interval
            return held
        self._held += 1
        return None
