"""The pure terminal brain: press/release sequences per mode, the exact messages, mic gating and tails,
long presses, barge-in, link and bot events, and the keyboard path."""

from __future__ import annotations

import dataclasses
import json

import pytest

from voiceterm.core.linkstate import LinkState
from voiceterm.core.terminal import THINKING_TIMEOUT_S, SendMessage
from voiceterm.protocol.events import Interruption
from voiceterm.protocol.rtvi_events import (
    BotInterrupted,
    BotReady,
    BotStartedSpeaking,
    BotStoppedSpeaking,
    RTVIEvent,
    UserStartedSpeaking,
    UserStoppedSpeaking,
)

READY = LinkState.READY
TAIL_CHUNKS = 15  # tail_ms 300 / period_ms 20


@pytest.fixture
def rig(make_rig):
    r = make_rig()
    assert r.messages(r.link(READY)) == ["earcon:connected"]
    return r


# --- hold ------------------------------------------------------------------------------------------


def test_hold_press_release_messages_gating_and_tail(rig) -> None:
    m, s = rig.messages, rig.summarize
    assert s(rig.mic_run(100.0, 101.0)) == [("none", 50)]  # nothing outside a turn
    assert m(rig.edge(True, 101.0)) == []  # not yet: the debounce has to see it hold
    assert m(rig.advance(101.05)) == ["ptt-start", "earcon:press"]
    assert rig.term.state().view.name == "listening"
    assert s(rig.mic_run(101.06, 102.0)) == [("pcm", 47)]
    assert m(rig.edge(False, 102.0)) == []
    assert m(rig.advance(102.05)) == ["ptt-stop", "earcon:release"]
    assert rig.term.state().view.name == "thinking"
    assert s(rig.mic_run(102.06, 104.0)) == [("zeros", TAIL_CHUNKS), ("none", 97 - TAIL_CHUNKS)]
    # the messages really are the push-to-talk client-messages, each with its own id
    sent = [c.message for _, c in rig.log if isinstance(c, SendMessage)]
    assert [(x["label"], x["type"], x["data"]) for x in sent] == [
        ("rtvi-ai", "client-message", {"t": "push_to_talk", "d": {"state": "start"}}),
        ("rtvi-ai", "client-message", {"t": "push_to_talk", "d": {"state": "stop"}}),
    ]
    assert sent[0]["id"] != sent[1]["id"]


def test_hold_bounces_shorter_than_the_debounce_produce_nothing(rig) -> None:
    out = []
    for i, t in enumerate([101.000, 101.005, 101.012, 101.020, 101.024, 101.029]):
        out += rig.edge(i % 2 == 0, t)
    out += rig.advance(103.0)
    assert out == []
    assert rig.term.state().as_dict()["bounces_total"] == 3
    assert rig.summarize(rig.mic_run(103.0, 103.2)) == [("none", 10)]
    assert rig.term.state().view.name == "ready"


def test_hold_a_bouncy_press_is_one_turn(rig) -> None:
    out = []
    for i, t in enumerate([101.000, 101.004, 101.008, 101.011, 101.015]):  # closes at 101.015
        out += rig.edge(i % 2 == 0, t)
    out += rig.advance(101.5)
    for i, t in enumerate([102.000, 102.003, 102.007]):  # opens, bounces, opens for good
        out += rig.edge(i % 2 == 1, t)
    out += rig.advance(102.5)
    assert rig.messages(out) == ["ptt-start", "earcon:press", "ptt-stop", "earcon:release"]


def test_tail_length_follows_config_and_zero_tail_sends_nothing(make_rig) -> None:
    for tail_ms, zeros in ((0, 0), (50, 3), (1000, 50)):
        r = make_rig({"push_to_talk": {"tail_ms": tail_ms}})
        r.link(READY)
        r.press(101.0, 1.0)
        runs = r.summarize(r.mic_run(102.1, 104.0))
        assert runs == ([("zeros", zeros)] if zeros else []) + [("none", 95 - zeros)]


def test_the_tail_ends_even_if_the_mic_delivers_nothing(rig) -> None:
    rig.press(101.0, 0.5)
    assert rig.term.state().tail
    rig.advance(101.6 + 0.3 + 1.0)  # tail_ms plus the grace, with no captured chunk at all
    assert not rig.term.state().tail
    assert rig.term.mic(b"\x01\x00" * 320, rig.now) is None


def test_hold_a_new_press_during_the_tail_starts_a_new_turn(rig) -> None:
    rig.press(101.0, 0.5)
    assert rig.summarize(rig.mic_run(101.6, 101.7)) == [("zeros", 5)]
    assert rig.messages(rig.edge(True, 101.7) + rig.advance(101.8)) == ["ptt-start", "earcon:press"]
    assert rig.summarize(rig.mic_run(101.8, 102.0)) == [("pcm", 10)]


# --- toggle ----------------------------------------------------------------------------------------


def test_toggle_taps_start_on_release_and_stop_on_press(make_rig) -> None:
    r = make_rig({"push_to_talk": {"mode": "toggle"}})
    r.link(READY)
    m = r.messages
    assert m(r.edge(True, 101.0) + r.advance(101.1)) == []  # might still become a long press
    assert m(r.edge(False, 101.2) + r.advance(101.3)) == ["ptt-start", "earcon:press"]
    assert r.summarize(r.mic_run(101.3, 102.0)) == [("pcm", 35)]  # talking with the button up
    assert m(r.edge(True, 102.0)) == []
    assert m(r.advance(102.05)) == ["ptt-stop", "earcon:release"]  # stopping acts on the press
    assert m(r.edge(False, 102.2) + r.advance(102.3)) == []
    assert r.summarize(r.mic_run(102.3, 103.0)) == [("zeros", TAIL_CHUNKS), ("none", 35 - TAIL_CHUNKS)]


def test_toggle_without_a_long_press_action_starts_on_the_press(make_rig) -> None:
    r = make_rig({"push_to_talk": {"mode": "toggle", "long_press_action": "none"}})
    r.link(READY)
    assert r.messages(r.edge(True, 101.0) + r.advance(101.05)) == ["ptt-start", "earcon:press"]
    assert r.messages(r.edge(False, 103.0) + r.advance(103.1)) == []  # held 2 s: still just a tap
    assert r.term.state().turn


# --- always-on -------------------------------------------------------------------------------------


def test_always_on_sends_the_mic_with_no_button_and_no_messages(make_rig) -> None:
    r = make_rig({"push_to_talk": {"mode": "always-on"}})
    assert r.summarize(r.mic_run(100.0, 100.2)) == [("none", 10)]  # starting: no link yet
    r.link(READY)
    assert r.summarize(r.mic_run(100.2, 101.0)) == [("pcm", 40)]
    assert r.messages(r.press(101.0, 0.3)) == []  # a short press with nothing to interrupt does nothing
    r.key("m")
    assert r.summarize(r.mic_run(102.0, 102.2)) == [("none", 10)]  # muted: nothing, not even silence
    r.key("m")
    assert r.summarize(r.mic_run(102.2, 102.4)) == [("pcm", 10)]
    assert not any(isinstance(c, SendMessage) for _, c in r.log)


def test_always_on_shows_listening_and_thinking_from_the_bots_turn_events(make_rig) -> None:
    r = make_rig({"push_to_talk": {"mode": "always-on"}})
    r.link(READY)
    assert r.messages(r.bot(UserStartedSpeaking())) == []  # the bot may talk on: not an interruption
    assert r.term.state().view.name == "listening"
    r.bot(UserStoppedSpeaking(), 101.0)
    assert r.term.state().view.name == "thinking"
    r.bot(BotStartedSpeaking(), 101.5)
    assert r.term.state().view.name == "speaking"


def test_always_on_press_while_the_bot_speaks_barges_in_for_the_length_of_the_press(make_rig) -> None:
    r = make_rig({"push_to_talk": {"mode": "always-on"}})
    r.link(READY)
    r.bot(BotStartedSpeaking(), 101.0)
    out = r.edge(True, 101.5) + r.advance(101.6)
    assert r.messages(out) == ["flush:barge-in", "ptt-start", "earcon:press"]
    out = r.edge(False, 102.0) + r.advance(102.1)
    assert r.messages(out) == ["ptt-stop", "earcon:release"]
    assert r.summarize(r.mic_run(102.1, 102.3)) == [("pcm", 10)]  # open mic: no tail, just the mic


# --- long press ------------------------------------------------------------------------------------


def test_toggle_long_press_mutes_and_unmutes(make_rig) -> None:
    r = make_rig({"push_to_talk": {"mode": "toggle"}})
    r.link(READY)
    assert r.messages(r.press(101.0, 1.5)) == []
    assert r.term.state().muted and r.term.state().view.name == "muted"
    assert r.term.state().as_dict()["long_presses_total"] == 1
    assert r.messages(r.press(103.0, 0.2)) == []  # a tap while muted does not talk
    assert r.summarize(r.mic_run(103.3, 103.5)) == [("none", 10)]
    r.press(104.0, 1.2)
    assert not r.term.state().muted and r.term.state().view.name == "ready"


def test_long_press_fires_while_still_held(make_rig) -> None:
    r = make_rig({"push_to_talk": {"mode": "toggle", "long_press_action": "reconnect"}})
    r.link(READY)
    r.edge(True, 101.0)
    assert r.messages(r.advance(101.99)) == []
    assert r.messages(r.advance(102.0)) == ["ReconnectNow"]  # at the long-press time, not at the release
    assert r.messages(r.edge(False, 104.0) + r.advance(104.1)) == []


def test_long_press_action_none_does_nothing(make_rig) -> None:
    r = make_rig({"push_to_talk": {"mode": "always-on", "long_press_action": "none"}})
    r.link(READY)
    assert r.press(101.0, 3.0) == []
    assert not r.term.state().muted


def test_hold_a_long_talk_is_not_a_long_press_but_a_muted_long_press_unmutes(make_rig) -> None:
    r = make_rig({"push_to_talk": {"start_muted": True}})
    r.link(READY)
    assert r.term.state().view.name == "muted"
    assert r.press(101.0, 0.3) == []  # muted: a press is no turn
    assert r.press(102.0, 1.5) == []  # ...but a long press unmutes
    assert not r.term.state().muted
    out = r.press(104.0, 5.0)  # talking for five seconds is a turn, not a mute
    assert r.messages(out) == ["ptt-start", "earcon:press", "ptt-stop", "earcon:release"]
    assert not r.term.state().muted


def test_long_press_gpio_timing_comes_from_config(make_rig) -> None:
    r = make_rig(
        {"push_to_talk": {"mode": "toggle", "long_press_action": "reconnect"}, "gpio": {"long_press_ms": 300}}
    )
    r.link(READY)
    assert r.messages(r.press(101.0, 0.35)) == ["ReconnectNow"]
    assert r.messages(r.press(102.0, 0.25)) == ["ptt-start", "earcon:press"]


# --- barge-in --------------------------------------------------------------------------------------


def test_press_while_the_bot_speaks_flushes_then_tells_the_server(rig) -> None:
    rig.bot(BotStartedSpeaking(), 101.0)
    assert rig.term.state().view.name == "speaking"
    out = rig.edge(True, 101.5) + rig.advance(101.6)
    assert rig.messages(out) == ["flush:barge-in", "ptt-start", "earcon:press"]
    assert rig.term.state().view.name == "listening"
    assert rig.term.state().as_dict()["barge_ins_total"] == 1


def test_barge_in_works_on_local_playback_alone(rig) -> None:
    # A server without RTVI (Twilio): only the speaker knows the bot is talking.
    rig.term.playback_active(True, 101.0)
    assert rig.term.state().view.name == "speaking"
    out = rig.edge(True, 101.5) + rig.advance(101.6)
    assert rig.messages(out) == ["flush:barge-in", "ptt-start", "earcon:press"]


def test_barge_in_without_messages_only_flushes(make_rig) -> None:
    r = make_rig({"push_to_talk": {"send_messages": False}})
    r.link(READY)
    r.bot(BotStartedSpeaking(), 101.0)
    assert r.messages(r.edge(True, 101.5) + r.advance(101.6)) == ["flush:barge-in", "earcon:press"]
    assert r.summarize(r.mic_run(101.6, 101.8)) == [("pcm", 10)]  # the user's audio does the interrupting
    assert r.messages(r.edge(False, 102.0) + r.advance(102.1)) == ["earcon:release"]


def test_barge_in_off_ignores_presses_while_the_bot_speaks(make_rig) -> None:
    r = make_rig({"push_to_talk": {"barge_in": False, "long_press_action": "none"}})
    r.link(READY)
    r.bot(BotStartedSpeaking(), 101.0)
    assert r.press(101.5, 0.5) == []
    assert r.summarize(r.mic_run(102.1, 102.3)) == [("none", 10)]
    r.bot(BotStoppedSpeaking(), 103.0)
    assert r.messages(r.press(104.0, 0.5)) == ["ptt-start", "earcon:press", "ptt-stop", "earcon:release"]


def test_half_duplex_gates_the_mic_while_the_bot_speaks(make_rig) -> None:
    r = make_rig({"push_to_talk": {"mode": "always-on"}, "audio": {"half_duplex": True}})
    r.link(READY)
    r.bot(BotStartedSpeaking(), 101.0)
    assert r.summarize(r.mic_run(101.0, 101.2)) == [("none", 10)]
    r.bot(BotStoppedSpeaking(), 101.2)
    r.term.playback_active(True, 101.2)  # the tail of the answer still in the speaker
    assert r.summarize(r.mic_run(101.2, 101.4)) == [("none", 10)]
    r.term.playback_active(False, 101.4)
    assert r.summarize(r.mic_run(101.4, 101.6)) == [("pcm", 10)]


# --- bot events ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "reason"), [(Interruption(), "interruption"), (BotInterrupted(), "bot-interrupted")]
)
def test_interruptions_flush_playback(rig, event, reason) -> None:
    rig.bot(BotStartedSpeaking(), 101.0)
    assert rig.messages(rig.bot(event, 101.5)) == [f"flush:{reason}"]


@pytest.mark.parametrize(
    "ready",
    [
        None,  # no bot-ready (yet): an unknown server's words are not thrown away
        BotReady(version="2.2.0"),
        BotReady(version="2.0.0", about={"library": "some-other-server"}),
        BotReady(version="1.3.0", about={"library": "pipecat-ai", "library_version": "1.3.0"}),
    ],
)
def test_user_speech_does_not_flush_a_server_with_real_interruptions(rig, ready) -> None:
    if ready is not None:
        rig.bot(ready, 100.5)
    rig.bot(BotStartedSpeaking(), 101.0)
    # interruptions disabled on the bot: it hears the user and talks on
    assert rig.messages(rig.bot(UserStartedSpeaking(), 101.5)) == []
    assert rig.term.state().bot_speaking


@pytest.mark.parametrize(
    "ready",
    [
        BotReady(version="1.2.0", about={"library": "pipecat-ai", "library_version": "1.2.1"}),
        BotReady(version="1.0.0", about={"library": "pipecat-ai", "library_version": "0.0.98"}),
        BotReady(version="0.3.0"),
        BotReady(version="1.0.0", about={"library": "pipecat-ai", "library_version": "garbage"}),
    ],
)
def test_user_speech_flushes_a_legacy_server_until_it_shows_real_interruptions(rig, ready) -> None:
    rig.bot(ready, 100.5)
    assert rig.term.state().as_dict()["legacy_interruptions"]
    rig.bot(BotStartedSpeaking(), 101.0)
    assert rig.messages(rig.bot(UserStartedSpeaking(), 101.5)) == ["flush:user-started-speaking"]
    rig.bot(Interruption(), 101.6)  # a protobuf interruption frame: this server has them after all
    rig.bot(BotStartedSpeaking(), 102.0)
    assert rig.messages(rig.bot(UserStartedSpeaking(), 102.5)) == []
    # a new session may be another server: nothing is assumed until its bot-ready
    rig.term.session_started(103.0)
    assert not rig.term.state().as_dict()["legacy_interruptions"]
    rig.bot(ready, 103.1)
    assert rig.messages(rig.bot(UserStartedSpeaking(), 103.5)) == ["flush:user-started-speaking"]


def test_other_bot_events_are_ignored(rig) -> None:
    for event in (
        BotReady(version="2.2.0"),
        RTVIEvent(type="metrics"),
        RTVIEvent(type="brand-new"),
        object(),
    ):
        assert rig.bot(event, 101.0) == []
    assert rig.term.state().view.name == "ready"


def test_thinking_lasts_until_the_bot_answers_or_gives_up(rig) -> None:
    rig.press(101.0, 1.0)
    assert rig.term.state().view.name == "thinking"
    rig.bot(BotStartedSpeaking(), 103.0)
    assert rig.term.state().view.name == "speaking"
    rig.bot(BotStoppedSpeaking(), 104.0)
    assert rig.term.state().view.name == "ready"
    rig.press(105.0, 1.0)
    assert rig.term.next_deadline() is not None
    rig.advance(106.0 + THINKING_TIMEOUT_S - 0.1)
    assert rig.term.state().view.name == "thinking"
    rig.advance(106.1 + THINKING_TIMEOUT_S)
    assert rig.term.state().view.name == "ready"
    assert rig.term.next_deadline() is None


def test_local_playback_ends_thinking_without_rtvi(rig) -> None:
    rig.press(101.0, 1.0)
    rig.term.playback_active(True, 102.5)
    assert rig.term.state().view.name == "speaking"
    rig.term.playback_active(False, 104.0)
    assert rig.term.state().view.name == "ready"


def test_a_new_session_flushes_and_forgets_the_old_one(rig) -> None:
    rig.bot(BotStartedSpeaking(), 101.0)
    out = rig.term.session_started(102.0)
    assert rig.messages(out) == ["flush:new session"]
    assert rig.term.state().view.name == "ready"


# --- link ------------------------------------------------------------------------------------------


def test_starting_until_the_first_link_status(make_rig) -> None:
    r = make_rig()
    assert r.term.state().view.name == "starting"
    assert r.press(100.5, 0.5) == []  # no link: nothing to talk to
    r.link(LinkState.CONNECTING, attempt=0)
    assert r.term.state().view.name == "offline"


def test_losing_the_link_ends_the_turn_and_the_audio(rig) -> None:
    rig.edge(True, 101.0)
    rig.advance(101.1)
    assert rig.term.state().turn
    out = rig.link(LinkState.BACKING_OFF, 101.5, attempt=1, last_error="connection reset")
    assert rig.messages(out) == ["flush:link lost", "earcon:disconnected"]
    assert not rig.term.state().turn
    assert rig.summarize(rig.mic_run(101.5, 101.7)) == [("none", 10)]
    assert rig.term.state().view.text == "offline: waiting to retry (1 failed): connection reset"
    assert rig.messages(rig.edge(False, 102.0) + rig.advance(102.1)) == []  # the release has nothing to end
    rig.link(LinkState.CONNECTING, 103.0, attempt=1)
    assert rig.term.state().view.text == "offline: connecting (attempt 2)"
    assert rig.messages(rig.link(LinkState.CONNECTED, 103.5)) == []
    assert rig.messages(rig.link(LinkState.READY, 103.6)) == ["earcon:connected"]


def test_a_press_wakes_a_failed_link(rig) -> None:
    rig.link(LinkState.FAILED, 101.0, attempt=5, last_error="connection refused")
    assert rig.term.state().view.name == "failed"
    assert "press the button" in rig.term.state().view.text
    assert rig.messages(rig.edge(True, 102.0) + rig.advance(102.1)) == ["WakeLink"]
    assert rig.messages(rig.edge(False, 102.3) + rig.advance(102.4)) == []
    assert rig.messages(rig.key(" ", 103.0)) == ["WakeLink"]


def test_the_link_in_connected_state_carries_audio(rig) -> None:
    rig.link(LinkState.CONNECTED, 101.0)
    rig.edge(True, 101.1)
    rig.advance(101.2)
    assert rig.summarize(rig.mic_run(101.2, 101.4)) == [("pcm", 10)]


# --- mute, faults, turn limit ----------------------------------------------------------------------


def test_muting_mid_turn_stops_the_turn_with_no_tail(rig) -> None:
    rig.edge(True, 101.0)
    rig.advance(101.1)
    assert rig.messages(rig.key("m", 101.5)) == ["ptt-stop"]
    assert rig.summarize(rig.mic_run(101.5, 102.0)) == [("none", 25)]
    assert rig.messages(rig.edge(False, 102.0) + rig.advance(102.1)) == []
    assert rig.term.state().view.name == "muted"


def test_muted_stays_named_while_offline_and_shows_again_after(rig) -> None:
    rig.key("m", 101.0)
    rig.link(LinkState.BACKING_OFF, 102.0, attempt=1, last_error="refused")
    view = rig.term.state().view
    assert view.name == "offline"
    assert view.text.endswith("; muted")
    rig.link(LinkState.READY, 103.0)
    assert rig.term.state().view.name == "muted"


def test_audio_faults_win_and_clear(rig) -> None:
    out = rig.term.audio_fault("capture", "device unplugged", 101.0)
    assert rig.messages(out) == ["earcon:error"]
    assert rig.messages(rig.term.audio_fault("capture", "still unplugged", 101.5)) == []  # not twice
    view = rig.term.state().view
    assert (view.name, view.text) == ("fault", "audio fault: capture device: still unplugged")
    rig.term.audio_fault("capture", None, 102.0)
    assert rig.term.state().view.name == "ready"


def test_a_stuck_button_ends_the_turn_at_max_turn_s(make_rig) -> None:
    r = make_rig({"push_to_talk": {"max_turn_s": 5}})
    r.link(READY)
    r.edge(True, 101.0)
    assert r.messages(r.advance(101.1)) == ["ptt-start", "earcon:press"]
    assert r.messages(r.advance(106.0)) == []
    assert r.messages(r.advance(106.1)) == ["ptt-stop", "earcon:release"]
    assert r.term.state().as_dict()["max_turn_ends_total"] == 1
    assert r.summarize(r.mic_run(106.1, 106.5)) == [("zeros", TAIL_CHUNKS), ("none", 5)]
    assert r.messages(r.edge(False, 110.0) + r.advance(110.1)) == []


def test_earcons_can_be_turned_off(make_rig) -> None:
    r = make_rig({"earcons": {"enabled": False}})
    assert r.link(READY) == []
    assert r.messages(r.press(101.0, 1.0)) == ["ptt-start", "ptt-stop"]
    r = make_rig({"earcons": {"press": False}})
    r.link(READY)
    assert r.messages(r.press(101.0, 1.0)) == ["ptt-start", "ptt-stop", "earcon:release"]


# --- keyboard --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hold", "toggle", "always-on"])
def test_space_toggles_talk_in_every_mode(make_rig, mode) -> None:
    r = make_rig({"push_to_talk": {"mode": mode}})
    r.link(READY)
    assert r.messages(r.key(" ", 101.0)) == ["ptt-start", "earcon:press"]
    assert r.summarize(r.mic_run(101.0, 101.2)) == [("pcm", 10)]
    assert r.messages(r.key(" ", 102.0)) == ["ptt-stop", "earcon:release"]
    expected = [("pcm", 10)] if mode == "always-on" else [("zeros", 10)]
    assert r.summarize(r.mic_run(102.0, 102.2)) == expected


def test_keys_mute_reconnect_quit_and_ignore_others(rig) -> None:
    assert rig.key("m") == [] and rig.term.state().muted
    assert rig.key("M") == [] and not rig.term.state().muted
    assert rig.messages(rig.key("r")) == ["ReconnectNow"]
    assert rig.messages(rig.key("q")) == ["Quit"]
    assert rig.key("x") == []


def test_keyboard_and_button_share_one_turn(rig) -> None:
    assert rig.messages(rig.key(" ", 101.0)) == ["ptt-start", "earcon:press"]
    # hold mode: a button press during the keyboard's turn starts no second turn; its release ends the one
    assert rig.messages(rig.edge(True, 101.5) + rig.advance(101.6)) == []
    assert rig.messages(rig.edge(False, 102.0) + rig.advance(102.1)) == ["ptt-stop", "earcon:release"]
    # and the other way round: a held button's turn is ended by the talk key
    rig.edge(True, 103.0)
    rig.advance(103.1)
    assert rig.messages(rig.key(" ", 103.5)) == ["ptt-stop", "earcon:release"]
    assert rig.messages(rig.edge(False, 104.0) + rig.advance(104.1)) == []
    assert rig.term.state().as_dict()["turns_total"] == 2


# --- the contract with the app ---------------------------------------------------------------------


def test_next_deadline_is_none_when_idle_and_tick_is_harmless(rig) -> None:
    assert rig.term.next_deadline() is None
    assert rig.term.tick(200.0) == []
    rig.edge(True, 201.0)
    assert rig.term.next_deadline() == pytest.approx(201.03)


def test_snapshot_is_json(rig) -> None:
    rig.press(101.0, 0.5)
    snap = json.loads(json.dumps(rig.term.state().as_dict()))
    assert snap["mode"] == "hold"
    assert snap["status"] == "thinking"
    assert snap["turns_total"] == 1
    assert snap["link_state"] == "ready"


def test_reconfigure_to_another_mode_ends_an_open_turn(rig) -> None:
    rig.key(" ", 101.0)
    new = dataclasses.replace(
        rig.config, push_to_talk=dataclasses.replace(rig.config.push_to_talk, mode="always-on")
    )
    assert rig.messages(rig.term.reconfigure(new)) == ["ptt-stop", "earcon:release"]
    assert rig.summarize(rig.mic_run(102.0, 102.2)) == [("pcm", 10)]


def test_a_reload_while_the_button_is_held_keeps_the_press(rig) -> None:
    """A live reload of [push_to_talk] (here: a longer tail) builds the mode's machine anew; the press held
    at that moment keeps its meaning, so its release still ends the turn."""
    assert rig.messages(rig.edge(True, 101.0) + rig.advance(101.1)) == ["ptt-start", "earcon:press"]
    new = dataclasses.replace(
        rig.config, push_to_talk=dataclasses.replace(rig.config.push_to_talk, tail_ms=100)
    )
    assert rig.term.reconfigure(new) == []
    assert rig.term.state().turn
    assert rig.messages(rig.edge(False, 102.0) + rig.advance(102.1)) == ["ptt-stop", "earcon:release"]
    assert not rig.term.state().turn


def test_the_state_is_one_read_only_value_per_input(rig) -> None:
    first = rig.term.state()
    assert rig.term.state() is first  # nothing happened: the same value
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.muted = True  # type: ignore[misc]
    rig.key("m", 101.0)
    assert rig.term.state() is not first and rig.term.state().muted and not first.muted


# --- stale bot audio after a barge-in ----------------------------------------------------------------


@pytest.mark.parametrize(
    "confirmation", [Interruption(), BotInterrupted(), UserStartedSpeaking(), BotStoppedSpeaking()]
)
def test_bot_audio_in_flight_after_a_barge_in_is_dropped_until_the_server_confirms(rig, confirmation) -> None:
    rig.bot(BotStartedSpeaking(), 101.0)
    assert rig.term.accept_bot_audio(101.2)
    rig.edge(True, 101.5)
    rig.advance(101.6)  # barge-in at 101.53
    assert not rig.term.accept_bot_audio(101.6)
    assert not rig.term.accept_bot_audio(101.7)
    rig.bot(confirmation, 101.8)
    assert rig.term.accept_bot_audio(101.8)
    assert rig.term.state().as_dict()["stale_bot_audio_dropped_total"] == 2


def test_the_stale_audio_hold_ends_by_itself_and_at_a_new_session(rig) -> None:
    from voiceterm.core.terminal import BARGE_IN_HOLD_S

    rig.bot(BotStartedSpeaking(), 101.0)
    rig.edge(True, 101.5)
    rig.advance(101.6)
    assert not rig.term.accept_bot_audio(101.6)
    assert rig.term.accept_bot_audio(101.53 + BARGE_IN_HOLD_S + 0.01)  # a server that never confirms
    rig.edge(False, 103.0)
    rig.advance(103.1)
    rig.bot(BotStartedSpeaking(), 104.0)
    rig.edge(True, 104.5)
    rig.advance(104.6)
    assert not rig.term.accept_bot_audio(104.6)
    rig.term.session_started(104.7)
    assert rig.term.accept_bot_audio(104.7)


def test_no_thinking_when_the_bot_is_already_talking_at_the_release(rig) -> None:
    rig.edge(True, 101.0)
    rig.advance(101.1)
    rig.bot(BotStartedSpeaking(), 101.5)  # an echo bot, or an eager one, answers during the turn
    assert rig.term.state().view.name == "listening"
    rig.edge(False, 102.0)
    rig.advance(102.1)
    assert rig.term.state().view.name == "speaking"
    rig.bot(BotStoppedSpeaking(), 103.0)
    assert rig.term.state().view.name == "ready"
