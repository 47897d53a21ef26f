"""The pure reconnect policy and the log-rate helpers, driven by a fake clock and a scripted rng."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceterm.config import ReconnectConfig
from voiceterm.config_load import config_from_dict
from voiceterm.core.lograte import RepeatSuppressor, Throttle
from voiceterm.core.reconnect import ReconnectPolicy


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class ScriptedRandom(random.Random):
    """random() returns the scripted values in turn (then repeats the last)."""

    def __init__(self, *values: float) -> None:
        super().__init__(0)
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]


def policy(**kw) -> ReconnectPolicy:
    kw.setdefault("rng", ScriptedRandom(0.0))
    return ReconnectPolicy(**kw)


def test_defaults_match_the_config_defaults():
    p = ReconnectPolicy.from_config(ReconnectConfig())
    assert (p.initial_delay, p.multiplier, p.max_delay, p.jitter, p.max_attempts) == (1.0, 1.5, 30.0, 0.2, 0)


def test_base_delays_grow_by_the_multiplier_up_to_the_cap():
    p = policy()
    assert [round(p.base_delay(n), 4) for n in range(1, 11)] == [
        1.0,
        1.5,
        2.25,
        3.375,
        5.0625,
        7.5938,
        11.3906,
        17.0859,
        25.6289,
        30.0,
    ]
    assert p.base_delay(0) == 0.0
    assert p.base_delay(10_000_000) == 30.0  # no overflow after a very long outage


def test_without_jitter_draw_the_delays_are_the_base_delays():
    p = policy(rng=ScriptedRandom(0.0))
    delays = [p.on_failure().delay for _ in range(12)]
    assert delays[:4] == [1.0, 1.5, 2.25, 3.375]
    assert delays[-1] == 30.0


def test_jitter_only_shortens_within_its_fraction():
    p = policy(jitter=0.2, rng=ScriptedRandom(0.5, 0.999999, 0.0))
    d1, d2, d3 = (p.on_failure().delay for _ in range(3))
    assert d1 == pytest.approx(1.0 * (1 - 0.2 * 0.5))
    assert d2 == pytest.approx(1.5 * (1 - 0.2 * 0.999999))
    assert d3 == pytest.approx(2.25)


def test_jitter_spreads_a_fleet_at_the_cap():
    rng = random.Random(42)
    p = policy(rng=rng, initial_delay=30.0, max_delay=30.0)
    delays = {round(p.on_failure().delay, 3) for _ in range(200)}
    assert len(delays) > 150
    assert min(delays) >= 24.0
    assert max(delays) <= 30.0


@given(
    initial=st.floats(0.05, 10),
    multiplier=st.floats(1.0, 10),
    cap_over=st.floats(0, 600),
    jitter=st.floats(0, 1),
    failures=st.integers(1, 60),
    seed=st.integers(0, 2**32),
)
def test_every_delay_is_between_the_jittered_floor_and_the_cap(
    initial, multiplier, cap_over, jitter, failures, seed
):
    p = ReconnectPolicy(
        initial_delay=initial,
        multiplier=multiplier,
        max_delay=initial + cap_over,
        jitter=jitter,
        rng=random.Random(seed),
    )
    for n in range(1, failures + 1):
        decision = p.on_failure()
        base = p.base_delay(n)
        assert not decision.give_up
        assert decision.attempt == n
        assert base * (1 - jitter) - 1e-9 <= decision.delay <= base <= p.max_delay + 1e-9


def test_zero_attempts_means_forever():
    p = policy(max_attempts=0)
    for _ in range(10_000):
        assert not p.on_failure().give_up
    assert p.attempts == 10_000
    assert not p.exhausted


def test_budget_spent_gives_up_then_reset_restarts_it():
    p = policy(max_attempts=3)
    assert [p.on_failure().give_up for _ in range(3)] == [False, False, True]
    assert p.exhausted
    third = p.on_failure()  # still exhausted if asked again
    assert third.give_up and third.delay == 0.0
    p.reset()
    assert not p.exhausted
    again = p.on_failure()
    assert not again.give_up and again.attempt == 1 and again.delay == 1.0


def test_the_browser_transports_two_attempts_then_disconnect_is_expressible():
    cfg = config_from_dict({"reconnect": {"max_attempts": 2}})
    p = ReconnectPolicy.from_config(cfg.reconnect, rng=ScriptedRandom(0.0))
    first, second = p.on_failure(), p.on_failure()
    assert (first.give_up, second.give_up) == (False, True)


def test_unfixable_failures_wait_at_the_slow_end():
    p = policy(rng=ScriptedRandom(0.0))
    d = p.on_failure(unfixable=True)
    assert d.unfixable and d.delay == 30.0 and d.attempt == 1
    jittered = policy(rng=ScriptedRandom(0.5)).on_failure(unfixable=True)
    assert jittered.delay == pytest.approx(30.0 * 0.9)


def test_unfixable_failures_still_count_toward_the_budget():
    p = policy(max_attempts=2)
    assert not p.on_failure(unfixable=True).give_up
    assert p.on_failure(unfixable=True).give_up


def test_a_stable_session_resets_the_count_on_a_fake_clock():
    clock = FakeClock()
    p = policy(stable_after=5.0)
    for _ in range(4):
        p.on_failure()
    p.on_connected(clock.now)
    assert not p.is_stable(clock.advance(4.9))
    assert p.is_stable(clock.advance(0.1))
    assert p.on_session_end(clock.advance(60)) is True
    assert p.attempts == 0
    assert p.on_failure().delay == 1.0  # the next outage starts from the first delay


def test_a_session_that_dies_young_keeps_backing_off():
    clock = FakeClock()
    p = policy(stable_after=5.0)
    delays = []
    for _ in range(5):  # the bot accepts, then drops us at once, again and again
        p.on_connected(clock.now)
        assert p.on_session_end(clock.advance(0.2)) is False
        delays.append(p.on_failure().delay)
        clock.advance(delays[-1])
    assert delays == sorted(delays) and delays[-1] > delays[0]
    assert p.attempts == 5


def test_a_young_session_cannot_escape_the_budget():
    clock = FakeClock()
    p = policy(max_attempts=2, stable_after=5.0)
    p.on_failure()
    p.on_connected(clock.now)
    p.on_session_end(clock.advance(1.0))
    assert p.on_failure().give_up


def test_failure_without_session_end_forgets_the_connect_time():
    clock = FakeClock()
    p = policy()
    p.on_connected(clock.now)
    p.on_failure()
    assert p.on_session_end(clock.advance(100)) is False


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_delay": -1},
        {"multiplier": 0.5},
        {"jitter": 1.5},
        {"max_attempts": -1},
    ],
)
def test_nonsense_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        ReconnectPolicy(**kwargs)


def test_zero_initial_delay_retries_at_once():
    p = policy(initial_delay=0.0, max_delay=0.0)
    assert [p.on_failure().delay for _ in range(3)] == [0.0, 0.0, 0.0]


# --- log rate ------------------------------------------------------------------------------------


def test_repeat_suppressor_reports_new_reasons_and_growing_reminders():
    clock = FakeClock(0.0)
    r = RepeatSuppressor(first_reminder=60, growth=2, max_spacing=240)
    first = r.failure("connection refused", clock.now)
    assert first is not None and first.kind == "new" and first.repeats == 1
    quiet = [r.failure("connection refused", clock.advance(1)) for _ in range(59)]
    assert quiet == [None] * 59
    reminder = r.failure("connection refused", clock.advance(1))
    assert (
        reminder is not None and reminder.kind == "still" and reminder.repeats == 61 and reminder.since == 0
    )
    # Next reminders after 120 s, then 240 s (the cap), then 240 s again.
    times = []
    for _ in range(700):
        report = r.failure("connection refused", clock.advance(1))
        if report:
            times.append(clock.now)
    assert times == [180, 420, 660]


def test_repeat_suppressor_reports_a_changed_reason_and_a_new_streak():
    clock = FakeClock(0.0)
    r = RepeatSuppressor()
    assert r.failure("connection refused", clock.now).kind == "new"
    assert r.failure("connection refused", clock.advance(1)) is None
    changed = r.failure("no answer within 10 s", clock.advance(1))
    assert changed is not None and changed.kind == "new" and changed.repeats == 1
    r.clear()
    assert not r.active
    assert r.failure("no answer within 10 s", clock.advance(1)).kind == "new"


def test_throttle_lets_one_through_per_interval_and_counts_the_rest():
    clock = FakeClock(0.0)
    t = Throttle(10.0)
    assert t.allow(clock.now) == 0
    assert [t.allow(clock.advance(1)) for _ in range(9)] == [None] * 9
    assert t.allow(clock.advance(1)) == 9
    assert t.allow(clock.advance(0.5)) is None
