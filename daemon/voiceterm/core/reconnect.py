"""The reconnect policy: how long to wait before the next attempt to reach the bot, and when to give up.

Pure (no clock, no sleeping): the link reports failures and session times, passing the current time in
seconds from any monotonic clock, and gets back a `Decision`. Exponential backoff with jitter, an attempt
budget (0 = forever), failures a retry cannot fix retried at the slow end, and a session that dies young
keeps counting as a failure so a bot that accepts and then drops every connection cannot make us spin.
"""

from __future__ import annotations

import math
import random
from typing import Protocol

from voiceterm.record import record

DEFAULT_STABLE_AFTER = 5.0  # seconds a session must last before it proves the bot healthy again


class _ReconnectSettings(Protocol):
    """The fields of `voiceterm.config.ReconnectConfig` the policy reads."""

    initial_delay: float
    multiplier: float
    max_delay: float
    jitter: float
    max_attempts: int


@record
class Decision:
    """What to do after a failed attempt (or a session that ended)."""

    give_up: bool  # the attempt budget is spent: wait for a wake-up instead of retrying
    delay: float  # seconds to wait before the next attempt (0.0 when giving up)
    attempt: int  # consecutive failures so far, this one included (1 = the first)
    unfixable: bool  # the failure is one a retry cannot fix (rejected credentials, TLS)


class ReconnectPolicy:
    """Exponential backoff with jitter and an attempt budget.

    The n-th consecutive failure waits ``min(max_delay, initial_delay * multiplier ** (n - 1))`` shortened
    by up to ``jitter`` of itself (jitter only ever shortens, so ``max_delay`` is a hard cap and a fleet of
    devices that lost the bot together spreads out instead of returning in lockstep). Unfixable failures
    wait the full ``max_delay``, jittered the same way. With ``max_attempts`` > 0 the policy gives up after
    that many consecutive failures, until `reset` (a button press).
    """

    def __init__(
        self,
        *,
        initial_delay: float = 1.0,
        multiplier: float = 1.5,
        max_delay: float = 30.0,
        jitter: float = 0.2,
        max_attempts: int = 0,
        stable_after: float = DEFAULT_STABLE_AFTER,
        rng: random.Random | None = None,
    ) -> None:
        if initial_delay < 0 or max_delay < 0:
            raise ValueError("delays must not be negative")
        if multiplier < 1.0:
            raise ValueError("multiplier must be at least 1")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")
        if max_attempts < 0:
            raise ValueError("max_attempts must not be negative")
        self.initial_delay = initial_delay
        self.multiplier = multiplier
        self.max_delay = max(max_delay, initial_delay)
        self.jitter = jitter
        self.max_attempts = max_attempts
        self.stable_after = stable_after
        self._rng = rng or random.Random()
        self._attempts = 0
        self._connected_at: float | None = None

    @classmethod
    def from_config(
        cls,
        config: _ReconnectSettings,
        *,
        rng: random.Random | None = None,
        stable_after: float = DEFAULT_STABLE_AFTER,
    ) -> ReconnectPolicy:
        return cls(
            initial_delay=config.initial_delay,
            multiplier=config.multiplier,
            max_delay=config.max_delay,
            jitter=config.jitter,
            max_attempts=config.max_attempts,
            stable_after=stable_after,
            rng=rng,
        )

    def reconfigured(self, config: _ReconnectSettings) -> ReconnectPolicy:
        """A policy with new settings (SIGHUP) built by the constructor, so its checks run; the attempt count
        and the open session carry over, so the next delay continues the current streak."""
        new = ReconnectPolicy.from_config(config, rng=self._rng, stable_after=self.stable_after)
        new._attempts = self._attempts
        new._connected_at = self._connected_at
        return new

    @property
    def attempts(self) -> int:
        """Consecutive failures since the last stable session (or the last reset)."""
        return self._attempts

    @property
    def exhausted(self) -> bool:
        """True when the budget is spent and only `reset` brings the link back."""
        return self.max_attempts > 0 and self._attempts >= self.max_attempts

    def base_delay(self, attempt: int) -> float:
        """The un-jittered wait after the `attempt`-th consecutive failure (1-based)."""
        if attempt <= 0:
            return 0.0
        # Computed in log space so a long outage (attempt 10_000) cannot overflow a float.
        if self.initial_delay == 0.0:
            return 0.0
        exponent = (attempt - 1) * math.log(self.multiplier)
        if exponent + math.log(self.initial_delay) >= math.log(self.max_delay):
            return self.max_delay
        return min(self.max_delay, self.initial_delay * math.exp(exponent))

    def on_failure(self, *, unfixable: bool = False) -> Decision:
        """Count a failed attempt (or a lost session) and decide when to try again."""
        self._connected_at = None
        self._attempts += 1
        if self.exhausted:
            return Decision(give_up=True, delay=0.0, attempt=self._attempts, unfixable=unfixable)
        base = self.max_delay if unfixable else self.base_delay(self._attempts)
        delay = base * (1.0 - self.jitter * self._rng.random())
        return Decision(give_up=False, delay=delay, attempt=self._attempts, unfixable=unfixable)

    def on_connected(self, now: float) -> None:
        """A WebSocket session opened at `now`. The budget is not reset yet: see `on_session_end`."""
        self._connected_at = now

    def is_stable(self, now: float) -> bool:
        """True when the current session has lasted long enough to count as a success."""
        return self._connected_at is not None and now - self._connected_at >= self.stable_after

    def on_session_end(self, now: float) -> bool:
        """The session that opened at `on_connected` ended at `now`.

        Returns True (and resets the failure count) when it lasted at least `stable_after` seconds;
        a session that dies younger keeps the count, so flapping backs off like a refused connect.
        """
        stable = self.is_stable(now)
        self._connected_at = None
        if stable:
            self._attempts = 0
        return stable

    def reset(self) -> None:
        """Restart the budget (a button press, an explicit reconnect)."""
        self._attempts = 0
