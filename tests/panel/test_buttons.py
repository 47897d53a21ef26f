"""Debounce, long press and the per-mode meaning of a press, as pure logic with explicit times."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceterm.core.buttons import (
    ButtonTracker,
    EndTurn,
    Gesture,
    LongAction,
    ModeMachine,
    PressContext,
    StartTurn,
)

DEB = 0.030
LONG = 1.0


def run(tracker: ButtonTracker, edges: list[tuple[float, bool]], until: float) -> list[Gesture]:
    """Feed raw edges at their times, ticking at every deadline in between, up to `until`."""
    out: list[Gesture] = []
    for t, pressed in edges:
        while (d := tracker.next_deadline()) is not None and d < t:
            out += tracker.poll(d)
        out += tracker.edge(pressed, t)
    while (d := tracker.next_deadline()) is not None and d <= until:
        out += tracker.poll(d)
    out += tracker.poll(until)
    return out


def kinds(gestures: list[Gesture]) -> list[tuple[str, float]]:
    return [(g.kind, round(g.at, 4)) for g in gestures]


def test_a_clean_press_and_release_settle_after_the_debounce_time() -> None:
    tr = ButtonTracker(DEB, LONG)
    assert tr.edge(True, 10.0) == []  # not yet: it could be bounce
    assert tr.next_deadline() == pytest.approx(10.03)
    assert tr.poll(10.029) == []
    assert kinds(tr.poll(10.03)) == [("down", 10.0)]  # stamped with the real press time
    assert tr.pressed
    tr.edge(False, 10.4)
    [up] = tr.poll(10.5)
    assert (up.kind, up.at, up.held_s) == ("up", 10.4, pytest.approx(0.4))
    assert not tr.pressed


def test_bounces_shorter_than_the_debounce_produce_nothing() -> None:
    tr = ButtonTracker(DEB, LONG)
    # a contact chattering for 20 ms and settling back open, then a 25 ms glitch
    edges = [(1.000, True), (1.004, False), (1.009, True), (1.015, False), (1.020, True), (1.022, False)]
    edges += [(2.0, True), (2.025, False)]
    assert run(tr, edges, until=5.0) == []
    assert tr.bounces_total == 4
    assert not tr.pressed


def test_a_bouncy_press_gives_one_down_at_its_first_stable_edge() -> None:
    tr = ButtonTracker(DEB, LONG)
    edges = [(1.000, True), (1.003, False), (1.006, True), (1.008, False), (1.010, True)]
    edges += [(1.500, False), (1.502, True), (1.505, False)]
    assert kinds(run(tr, edges, until=3.0)) == [("down", 1.010), ("up", 1.505)]


def test_long_press_fires_while_held_then_release_follows() -> None:
    tr = ButtonTracker(DEB, LONG)
    out = run(tr, [(0.0, True)], until=0.999)
    assert kinds(out) == [("down", 0.0)]
    long = tr.poll(1.0)
    assert kinds(long) == [("long", 1.0)]
    assert long[0].held_s == pytest.approx(1.0)
    assert kinds(run(tr, [(2.5, False)], until=3.0)) == [("up", 2.5)]


def test_a_release_settling_across_the_long_deadline_decides_it() -> None:
    # released 10 ms before the long-press time: the verdict waits for the release to settle: no long press
    tr = ButtonTracker(DEB, LONG)
    assert kinds(run(tr, [(0.0, True), (0.99, False)], until=2.0)) == [("down", 0.0), ("up", 0.99)]
    # the same "release" was bounce: the long press fires late, when the bounce ends
    tr = ButtonTracker(DEB, LONG)
    out = run(tr, [(0.0, True), (0.99, False), (1.01, True)], until=2.0)
    assert kinds(out) == [("down", 0.0), ("long", 1.0)]
    # released 10 ms after the long-press time with no tick in between: the edge reports the long press first
    tr = ButtonTracker(DEB, LONG)
    tr.edge(True, 0.0)
    tr.poll(0.5)
    assert kinds(tr.edge(False, 1.01)) == [("long", 1.0)]
    assert kinds(tr.poll(1.2)) == [("up", 1.01)]


def test_a_debounce_longer_than_the_long_press_still_orders_down_before_long() -> None:
    tr = ButtonTracker(0.5, 0.2)
    tr.edge(True, 0.0)
    assert kinds(tr.poll(0.6)) == [("down", 0.0), ("long", 0.2)]


def test_no_debounce_means_edges_count_at_once() -> None:
    tr = ButtonTracker(0.0, LONG)
    assert kinds(tr.edge(True, 1.0)) == [("down", 1.0)]
    assert kinds(tr.edge(False, 1.001)) == [("up", 1.001)]


def test_repeated_levels_and_backward_timestamps_are_harmless() -> None:
    tr = ButtonTracker(DEB, LONG)
    tr.edge(True, 1.0)
    tr.edge(True, 1.01)  # no change
    assert kinds(tr.poll(1.02)) == []
    assert kinds(tr.poll(1.0)) == []  # an older time does not rewind anything
    assert kinds(tr.poll(1.03)) == [("down", 1.0)]


@given(st.lists(st.floats(0.001, 0.2), min_size=1, max_size=40))
def test_gestures_alternate_and_every_stable_level_is_reported(gaps: list[float]) -> None:
    tr = ButtonTracker(DEB, LONG)
    t, level, edges = 0.0, False, []
    for gap in gaps:
        t += gap
        level = not level
        edges.append((t, level))
    out = [g for g in run(tr, edges, until=t + 5.0) if g.kind != "long"]
    # downs and ups alternate, starting with a down
    assert [g.kind for g in out] == ["down", "up"] * (len(out) // 2) + (["down"] if len(out) % 2 else [])
    # the final settled level is the last raw level
    assert tr.pressed == level
    # a down or up is reported only for a level that lasted at least the debounce time
    stable = {
        (round(edges[i][0], 9), edges[i][1])
        for i in range(len(edges))
        if (edges[i + 1][0] if i + 1 < len(edges) else t + 5.0) - edges[i][0] >= DEB - 1e-9
    }
    for g in out:
        assert (round(g.at, 9), g.kind == "down") in stable


# --- modes -------------------------------------------------------------------------------------------

IDLE = PressContext(can_talk=True, in_turn=False, bot_audible=False)
SPEAKING = PressContext(can_talk=True, in_turn=False, bot_audible=True)
IN_TURN = PressContext(can_talk=True, in_turn=True, bot_audible=False)
CANNOT = PressContext(can_talk=False, in_turn=False, bot_audible=False)


def test_hold_a_press_that_can_talk_is_a_turn_however_long() -> None:
    m = ModeMachine("hold", "mute", barge_in=True)
    assert m.down(IDLE) == [StartTurn(barge_in=False)]
    assert m.long(IN_TURN) == []
    assert m.up(IN_TURN) == [EndTurn()]
    assert m.down(SPEAKING) == [StartTurn(barge_in=True)]


def test_hold_a_press_that_cannot_talk_may_be_a_long_press() -> None:
    m = ModeMachine("hold", "mute", barge_in=True)
    assert m.down(CANNOT) == []
    assert m.long(CANNOT) == [LongAction()]
    assert m.up(CANNOT) == []
    m = ModeMachine("hold", "none", barge_in=True)
    assert m.down(CANNOT) == [] and m.long(CANNOT) == [] and m.up(CANNOT) == []


def test_hold_without_barge_in_ignores_presses_while_the_bot_speaks() -> None:
    m = ModeMachine("hold", "reconnect", barge_in=False)
    assert m.down(SPEAKING) == []
    assert m.long(SPEAKING) == [LongAction()]


def test_toggle_taps_start_on_release_when_a_long_press_could_mean_something() -> None:
    m = ModeMachine("toggle", "mute", barge_in=True)
    assert m.down(IDLE) == []
    assert m.up(IDLE) == [StartTurn(barge_in=False)]
    assert m.down(IN_TURN) == [EndTurn()]  # stopping acts at once
    assert m.long(IDLE) == []
    assert m.up(IDLE) == []
    # a long press instead of a tap
    assert m.down(IDLE) == []
    assert m.long(IDLE) == [LongAction()]
    assert m.up(IDLE) == []


def test_toggle_with_no_long_action_starts_on_the_press_and_barges_in_at_once() -> None:
    m = ModeMachine("toggle", "none", barge_in=True)
    assert m.down(IDLE) == [StartTurn(barge_in=False)]
    assert m.up(IN_TURN) == []
    m = ModeMachine("toggle", "mute", barge_in=True)
    assert m.down(SPEAKING) == [StartTurn(barge_in=True)]
    assert m.long(IN_TURN) == []


def test_always_on_presses_barge_in_or_are_long_presses() -> None:
    m = ModeMachine("always-on", "mute", barge_in=True)
    assert m.down(IDLE) == []
    assert m.up(IDLE) == []
    assert m.down(SPEAKING) == [StartTurn(barge_in=True)]
    assert m.up(IN_TURN) == [EndTurn()]
    assert m.down(IDLE) == []
    assert m.long(IDLE) == [LongAction()]


def test_the_keyboard_talk_key_toggles_in_every_mode() -> None:
    for mode in ("hold", "toggle", "always-on"):
        m = ModeMachine(mode, "mute", barge_in=True)
        assert m.toggle(IDLE) == [StartTurn(barge_in=False)]
        assert m.toggle(IN_TURN) == [EndTurn()]
        assert m.toggle(SPEAKING) == [StartTurn(barge_in=True)]
        assert m.toggle(CANNOT) == []
