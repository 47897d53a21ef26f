"""Terminal.mic_wanted: whether the mic's audio would be sent now. The app tells the mic thread with it (no chunk
wakes the event loop while it is False), so it must say True whenever mic() would send something, in every
mode and state; checked on random input sequences."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from voiceterm.core.linkstate import LinkState
from voiceterm.protocol.rtvi_events import BotStartedSpeaking, BotStoppedSpeaking, UserStoppedSpeaking

from .conftest import CHUNK, Rig

STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("edge"), st.booleans()),
        st.tuples(st.just("key"), st.sampled_from([" ", "m"])),
        st.tuples(st.just("link"), st.sampled_from([LinkState.READY, LinkState.CONNECTING])),
        st.tuples(st.just("bot"), st.sampled_from(["started", "stopped", "user-stopped"])),
        st.tuples(st.just("playing"), st.booleans()),
        st.tuples(st.just("wait"), st.floats(0.0, 1.5)),
    ),
    max_size=40,
)
BOT_EVENTS = {
    "started": BotStartedSpeaking(),
    "stopped": BotStoppedSpeaking(),
    "user-stopped": UserStoppedSpeaking(),
}


def check_chunks(rig: Rig, n: int) -> None:
    """Feed n chunks a period apart; before each, mic_wanted must say whether mic() sends it."""
    for _ in range(n):
        rig.advance(rig.now + rig.period)
        wanted = rig.term.state().mic_wanted
        out = rig.term.mic(CHUNK, rig.now)
        assert (out is not None) == wanted, (wanted, out is not None, rig.term.state())


@settings(max_examples=300, deadline=None)
@given(
    mode=st.sampled_from(["hold", "toggle", "always-on"]),
    half_duplex=st.booleans(),
    start_muted=st.booleans(),
    steps=STEPS,
)
def test_mic_wanted_is_true_exactly_when_mic_sends(
    mode: str, half_duplex: bool, start_muted: bool, steps: list[tuple[str, Any]]
) -> None:
    rig = Rig(
        {
            "push_to_talk": {"mode": mode, "start_muted": start_muted, "tail_ms": 100},
            "audio": {"half_duplex": half_duplex},
        }
    )
    check_chunks(rig, 2)  # before any link status: nothing is wanted
    rig.link(LinkState.READY)
    for kind, value in steps:
        if kind == "edge":
            rig.edge(value, rig.now + 0.001)
        elif kind == "key":
            rig.key(value)
        elif kind == "link":
            rig.link(value)
        elif kind == "bot":
            rig.bot(BOT_EVENTS[value])
        elif kind == "playing":
            rig.term.playback_active(value, rig.now)
        else:
            rig.advance(rig.now + value)
        check_chunks(rig, 3)
    check_chunks(rig, 10)  # a tail after the last release runs out


def test_hold_mode_wants_the_mic_in_a_turn_and_its_tail_only() -> None:
    rig = Rig({"push_to_talk": {"tail_ms": 60}})
    assert not rig.term.state().mic_wanted  # no link yet
    rig.link(LinkState.READY)
    assert not rig.term.state().mic_wanted  # connected, idle: the mic thread hands nothing over
    rig.edge(True, 101.0)
    rig.advance(101.1)
    assert rig.term.state().turn and rig.term.state().mic_wanted
    rig.edge(False, 102.0)
    rig.advance(102.1)
    assert not rig.term.state().turn and rig.term.state().mic_wanted  # the silence tail: three chunks
    sent = [rig.term.mic(CHUNK, rig.now) for _ in range(3)]
    assert sent == [bytes(len(CHUNK))] * 3
    assert not rig.term.state().mic_wanted


def test_always_on_wants_the_mic_while_connected_and_not_muted() -> None:
    rig = Rig({"push_to_talk": {"mode": "always-on"}})
    assert not rig.term.state().mic_wanted
    rig.link(LinkState.READY)
    assert rig.term.state().mic_wanted
    rig.key("m")
    assert not rig.term.state().mic_wanted
    rig.key("m")
    rig.link(LinkState.CONNECTING)
    assert not rig.term.state().mic_wanted


def test_the_silence_tail_counts_chunks_of_chunk_ms() -> None:
    rig = Rig({"audio": {"chunk_ms": 40}, "push_to_talk": {"tail_ms": 300}})
    rig.link(LinkState.READY)
    rig.edge(True, 101.0)
    rig.edge(False, 102.0)
    rig.advance(102.1)
    tail = []
    while rig.term.state().mic_wanted:
        tail.append(rig.term.mic(CHUNK * 2, rig.now))
    assert tail == [bytes(len(CHUNK) * 2)] * 8  # 300 ms of 40 ms chunks, rounded up
