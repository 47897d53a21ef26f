"""The control socket's inputs to the pure Terminal: talk start/stop (the on-screen talk button) and mute.

A control-socket turn must be the button's turn on the wire: the same messages, gating and tail, in every
push-to-talk mode; a start that cannot open a turn says why and changes nothing.
"""

from __future__ import annotations

import pytest

from voiceterm.core.linkstate import LinkState
from voiceterm.protocol.rtvi_events import BotStartedSpeaking


@pytest.fixture
def rig(make_rig):
    r = make_rig()
    r.link(LinkState.READY)
    return r


def _talk(rig, start: bool, t: float):
    out = rig.advance(t)
    return out + rig._record(rig.term.talk(start, t))


@pytest.mark.parametrize("mode", ["hold", "toggle", "always-on"])
def test_a_control_turn_is_the_buttons_turn(make_rig, mode: str) -> None:
    button, control = make_rig({"push_to_talk": {"mode": "hold"}}), make_rig({"push_to_talk": {"mode": mode}})
    for rig in (button, control):
        rig.link(LinkState.READY)
    m, s = button.messages, button.summarize
    pressed = m(button.edge(True, 101.0)) + m(button.advance(101.05))
    started = m(_talk(control, True, 101.05))
    assert started == pressed == ["ptt-start", "earcon:press"]
    assert control.term.state().turn and control.term.state().view.name == "listening"
    assert s(control.mic_run(101.06, 102.0)) == s(button.mic_run(101.06, 102.0))
    released = m(button.edge(False, 102.0)) + m(button.advance(102.05))
    stopped = m(_talk(control, False, 102.05))
    assert stopped == released == ["ptt-stop", "earcon:release"]
    if mode != "always-on":  # an open mic has no tail: it never stopped sending
        assert s(control.mic_run(102.06, 103.0)) == s(button.mic_run(102.06, 103.0))
    assert control.term.state().counters["control_talks_total"] == 1


def test_talk_start_twice_is_one_turn_and_stop_without_a_turn_does_nothing(rig) -> None:
    m = rig.messages
    assert m(_talk(rig, True, 101.0)) == ["ptt-start", "earcon:press"]
    assert m(_talk(rig, True, 101.5)) == []
    assert m(_talk(rig, False, 102.0)) == ["ptt-stop", "earcon:release"]
    assert m(_talk(rig, False, 102.5)) == []
    assert rig.term.state().counters["turns_total"] == 1


def test_a_start_that_cannot_open_a_turn_says_why(make_rig) -> None:
    rig = make_rig({"push_to_talk": {"barge_in": False}})
    assert rig.term.state().cannot_talk == "not connected to the bot"
    assert rig.messages(_talk(rig, True, 100.5)) == []
    rig.link(LinkState.FAILED, attempt=3)
    assert rig.messages(_talk(rig, True, 100.6)) == ["WakeLink"]  # like a press: leave FAILED
    rig.link(LinkState.READY)
    rig.bot(BotStartedSpeaking())
    assert rig.term.state().cannot_talk == "the bot is speaking and push_to_talk.barge_in is off"
    assert not rig.term.state().turn
    rig.term.set_mute(True, 101.0)
    assert rig.term.state().cannot_talk == "muted"


def test_talk_start_while_the_bot_speaks_barges_in(rig) -> None:
    rig.bot(BotStartedSpeaking())
    assert rig.messages(_talk(rig, True, 101.0)) == ["flush:barge-in", "ptt-start", "earcon:press"]
    assert rig.term.state().counters["barge_ins_total"] == 1


def test_set_mute_sets_or_toggles_and_ends_an_open_turn(rig) -> None:
    m = rig.messages
    _talk(rig, True, 101.0)
    assert m(rig.term.set_mute(True, 101.5)) == ["ptt-stop"]  # no tail, no release earcon: muted is silent
    assert rig.term.state().muted and not rig.term.state().turn
    assert m(rig.term.set_mute(True, 101.6)) == []  # already muted: nothing to do
    assert rig.term.mic(b"\x01\x00" * 320, 101.7) is None
    rig.term.set_mute(None, 101.8)
    assert not rig.term.state().muted
    rig.term.set_mute(None, 101.9)
    assert rig.term.state().muted
