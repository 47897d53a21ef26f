"""The link's state machine (core/linkmachine.py) as tables: no trio, no sockets, the time passed in.

Each scenario is a list of rows ``(event, phase after it, the actions it returned)``; actions are written
short: ``connect``, ``cancel``, ``ping``, ``end`` / ``end+bye`` (on purpose), ``abort``, ``publish <state>``,
``deliver started|ended``, ``<level>`` for a log line. Then the whole state x event grid: whatever a
state does not list in TRANSITIONS leaves it alone, and whatever it lists leads only where the table says.
"""

from __future__ import annotations

import itertools
import logging
import math
import random

import pytest

from voiceterm.core import linksignals as sig
from voiceterm.core.linkevents import SessionEnded, SessionStarted
from voiceterm.core.linkmachine import TRANSITIONS, LinkMachine, LinkSettings, Phase
from voiceterm.core.linksignals import (
    AttemptFailed,
    BotErrorSeen,
    BotReadySeen,
    Close,
    Closed,
    Failure,
    Halt,
    Opened,
    Pong,
    ReconnectNow,
    SessionOver,
    Start,
    Tick,
    Wake,
)
from voiceterm.core.reconnect import ReconnectPolicy

P = Phase
REFUSED = Failure("connection refused")
URL = "ws://bot.test/ws"
ALL_PHASES = list(Phase)


class NoJitter(random.Random):
    def random(self) -> float:
        return 0.0


def machine(
    *,
    initial: float = 1.0,
    multiplier: float = 2.0,
    max_delay: float = 4.0,
    max_attempts: int = 0,
    stable_after: float = 5.0,
    interval: float = 0.0,
    timeout: float = 2.0,
    ready_timeout: float = 3.0,
    connect_timeout: float = 10.0,
) -> LinkMachine:
    settings = LinkSettings(
        url=URL,
        connect_timeout=connect_timeout,
        ready_timeout=ready_timeout,
        heartbeat_interval=interval,
        heartbeat_timeout=timeout,
    )
    policy = ReconnectPolicy(
        initial_delay=initial,
        multiplier=multiplier,
        max_delay=max_delay,
        jitter=0.0,
        max_attempts=max_attempts,
        stable_after=stable_after,
        rng=NoJitter(),
    )
    return LinkMachine(settings, policy)


def short(action: sig.Action) -> str:
    if isinstance(action, sig.Publish):
        return f"publish {action.status.state.value}"
    if isinstance(action, sig.Note):
        return logging.getLevelName(action.level).lower()
    if isinstance(action, sig.Deliver):
        return "deliver started" if isinstance(action.event, SessionStarted) else "deliver ended"
    if isinstance(action, sig.EndSession):
        return "end+bye" if action.goodbye else "end"
    names = {
        sig.Connect: "connect",
        sig.CancelAttempt: "cancel",
        sig.SendPing: "ping",
        sig.AbortSession: "abort",
    }
    return names[type(action)]


def play(m: LinkMachine, rows: list[tuple[sig.Event, Phase, list[str]]]) -> None:
    for i, (event, phase, expected) in enumerate(rows):
        got = [short(a) for a in m.handle(event)]
        assert (m.phase, got) == (phase, expected), f"row {i}: {event}"


def notes(actions: list[sig.Action]) -> list[sig.Note]:
    return [a for a in actions if isinstance(a, sig.Note)]


def up(m: LinkMachine, now: float = 0.0, *, rtvi: bool = True, ready: bool = True) -> None:
    """Start (or continue) to a session: CONNECTED, and READY with bot-ready when `ready`."""
    if m.phase is P.IDLE:
        m.handle(Start(now))
    assert m.phase is P.CONNECTING
    m.handle(Opened(now, URL, rtvi))
    if ready and rtvi:
        m.handle(BotReadySeen(now, m.session, "2.2.0"))


# --- scenarios ------------------------------------------------------------------------------------------


def test_backoff_grows_to_the_cap_and_a_connect_resets_nothing_until_stable():
    m = machine()
    play(
        m,
        [
            (Start(0), P.CONNECTING, ["publish connecting", "debug", "connect"]),
            (AttemptFailed(0.1, REFUSED), P.BACKING_OFF, ["publish backing-off", "warning"]),
            (Tick(1.0), P.BACKING_OFF, []),  # not yet: retry at 1.1
            (Tick(1.1), P.CONNECTING, ["publish connecting", "debug", "connect"]),
            (AttemptFailed(1.2, REFUSED), P.BACKING_OFF, ["publish backing-off", "debug"]),  # same: quiet
            (Tick(3.2), P.CONNECTING, ["publish connecting", "debug", "connect"]),
            (AttemptFailed(3.3, REFUSED), P.BACKING_OFF, ["publish backing-off", "debug"]),
            (Tick(7.3), P.CONNECTING, ["publish connecting", "debug", "connect"]),
            (AttemptFailed(7.4, REFUSED), P.BACKING_OFF, ["publish backing-off", "debug"]),
        ],
    )
    assert m.status.retry_in == 4.0 and m.status.attempt == 4  # 1, 2, 4, then the 4 s cap
    assert m.deadline == pytest.approx(11.4)
    assert m.status.last_error == "connection refused" and not m.status.unfixable
    assert m.counters.failures_total == 4


def test_the_first_of_a_new_failure_is_news_and_a_long_streak_says_still_failing():
    m = machine(initial=10.0, max_delay=10.0)
    m.handle(Start(0))
    levels = []
    now = 0.0
    for i in range(12):
        failure = REFUSED if i != 3 else Failure("host name not found (DNS)")
        levels.append([short(a) for a in notes(m.handle(AttemptFailed(now, failure)))])
        now += 10.0
        m.handle(Tick(now))
    # new, quiet, quiet, a different reason (news), back to the first (news again), quiet for 60 s ...
    assert levels[:6] == [["warning"], ["debug"], ["debug"], ["warning"], ["warning"], ["debug"]]
    still = [i for i, lv in enumerate(levels) if lv == ["warning"] and i > 4]
    assert still == [10]  # 60 s after the streak of "connection refused" began again at t=40
    m.handle(Start(now))  # ignored: already running
    assert m.phase is P.CONNECTING


def test_still_failing_names_the_outage_length():
    m = machine(initial=30.0, max_delay=30.0)
    m.handle(Start(0))
    lines = []
    for now in range(0, 200, 30):
        lines += notes(m.handle(AttemptFailed(float(now), REFUSED)))
        m.handle(Tick(now + 30.0))
    still = [(n.fields["down"], n.fields["attempts"]) for n in lines if n.prefix == "still failing "]
    assert still == [("60s", 3), ("180s", 7)]  # reminders 1 min, then 2 min apart


def test_unfixable_failures_wait_the_longest_delay():
    m = machine(initial=0.1, max_delay=8.0)
    m.handle(Start(0))
    m.handle(AttemptFailed(0, Failure("bot rejected the token (HTTP 403)", unfixable=True)))
    assert m.status.retry_in == 8.0 and m.status.unfixable


def test_a_spent_budget_fails_until_a_wake_then_starts_afresh():
    m = machine(max_attempts=2)
    play(
        m,
        [
            (Start(0), P.CONNECTING, ["publish connecting", "debug", "connect"]),
            (AttemptFailed(0, REFUSED), P.BACKING_OFF, ["publish backing-off", "warning"]),
            (Tick(1), P.CONNECTING, ["publish connecting", "debug", "connect"]),
            (AttemptFailed(1, REFUSED), P.FAILED, ["publish failed", "error"]),
            (Tick(1000), P.FAILED, []),  # no timer: FAILED waits for a wake-up
            (Wake(1000), P.CONNECTING, ["publish connecting", "debug", "connect"]),
            (AttemptFailed(1001, REFUSED), P.BACKING_OFF, ["publish backing-off", "warning"]),
        ],
    )
    assert m.status.attempt == 1 and m.deadline == 1002.0
    assert m.deadline != math.inf


def test_wake_only_acts_in_failed():
    for phase_setup in (lambda m: m.handle(Start(0)), lambda m: up(m)):
        m = machine()
        phase_setup(m)
        before = m.phase
        assert m.handle(Wake(1)) == [] and m.phase is before


def test_connect_timeout_cancels_the_attempt_and_backs_off():
    m = machine(connect_timeout=10.0)
    m.handle(Start(0))
    assert m.deadline == 10.0
    play(m, [(Tick(10.0), P.BACKING_OFF, ["cancel", "publish backing-off", "warning"])])
    assert m.status.last_error == "no answer within 10 s (bot.connect_timeout)"


def test_handshake_then_bot_ready():
    m = machine()
    m.handle(Start(0))
    play(
        m,
        [
            (Opened(0.5, URL, True), P.CONNECTED, ["deliver started", "publish connected", "debug"]),
            (BotReadySeen(0.6, 1, "2.2.0"), P.READY, ["publish ready", "info"]),
            (BotReadySeen(0.7, 1, "2.2.0"), P.READY, []),
        ],
    )
    assert m.session == 1 and m.counters.connects_total == 1 and m.status.connects_total == 1
    assert m.is_up


def test_a_wire_format_without_rtvi_is_ready_at_once():
    m = machine()
    m.handle(Start(0))
    play(
        m,
        [
            (
                Opened(0, URL, False),
                P.READY,
                ["deliver started", "publish connected", "debug", "publish ready", "info"],
            )
        ],
    )
    assert m.deadline == math.inf  # no ready timer, no heartbeat


def test_ready_timeout_is_explained_once_per_run():
    m = machine(ready_timeout=3.0)
    up(m, ready=False)
    assert m.deadline == 3.0
    first = m.handle(Tick(3.0))
    assert m.phase is P.READY and "older bots never send it" in notes(first)[0].fields["via"]
    m.handle(ReconnectNow(4))
    m.handle(SessionOver(4.1, 1))
    m.handle(Opened(4.2, URL, True))
    second = m.handle(Tick(7.2))
    assert notes(second)[0].fields["via"] == "bot-ready timeout"
    assert m.counters.ready_timeouts_total == 2


def test_heartbeat_pings_after_each_pong_and_a_missing_pong_ends_the_session():
    m = machine(interval=10.0, timeout=2.0)
    up(m)
    assert m.deadline == 10.0
    play(
        m,
        [
            (Tick(10.0), P.READY, ["ping"]),
            (Pong(10.5, 1), P.READY, []),
            (Tick(19.0), P.READY, []),  # next ping 10 s after the pong
            (Tick(20.5), P.READY, ["ping"]),
            (Tick(22.5), P.ENDING, ["deliver ended", "abort"]),  # no pong within 2 s
            (
                SessionOver(22.6, 1),
                P.BACKING_OFF,
                ["debug", "publish backing-off", "warning"],
            ),
        ],
    )
    assert m.status.last_error == "no pong within 2 s: connection presumed dead"
    assert (m.counters.pings_sent_total, m.counters.pings_timed_out_total) == (2, 1)


def test_a_pong_for_an_old_session_is_ignored():
    m = machine(interval=10.0, timeout=2.0)
    up(m)
    m.handle(Tick(10))
    assert m.handle(Pong(10.1, 0)) == []
    play(m, [(Tick(12.0), P.ENDING, ["deliver ended", "abort"])])


def test_heartbeat_settings_change_with_the_next_session():
    m = machine(interval=10.0)
    up(m)
    m.reconfigure(LinkSettings(url="ignored", heartbeat_interval=3.0, heartbeat_timeout=1.0), m.policy)
    assert m.deadline == 10.0  # the open session keeps its schedule
    m.handle(ReconnectNow(1))
    m.handle(SessionOver(1, 1))
    m.handle(Opened(2, URL, False))
    assert m.deadline == 5.0 and m.url == URL


@pytest.mark.parametrize(
    ("code_words", "unfixable"),
    [
        ("bot rejected the session (close code 4003: token or Origin not accepted)", True),
        ("bot ended", False),
    ],
)
def test_a_lost_session_backs_off_with_its_reason(code_words, unfixable):
    m = machine(initial=0.5, max_delay=4.0)
    up(m)
    play(
        m,
        [
            (Closed(1.0, 1, Failure(code_words, unfixable)), P.ENDING, ["deliver ended", "abort"]),
            (Closed(1.1, 1, Failure("another reason")), P.ENDING, ["abort"]),  # the first reason stays
            (
                SessionOver(1.2, 1),
                P.BACKING_OFF,
                ["debug", "publish backing-off", "warning"],
            ),
        ],
    )
    assert m.status.last_error == code_words and m.status.unfixable is unfixable
    assert m.status.retry_in == (4.0 if unfixable else 0.5)


def test_session_ended_is_told_when_the_end_is_decided_with_its_reason():
    m = machine()
    up(m)
    actions = m.handle(Closed(1, 1, Failure("connection lost (no close frame)")))
    ended = [a.event for a in actions if isinstance(a, sig.Deliver)]
    assert ended == [SessionEnded(session=1, reason="connection lost (no close frame)", failure=True)]
    assert not any(isinstance(a, sig.Deliver) for a in m.handle(SessionOver(1, 1)))


def test_reconnect_now_ends_the_session_on_purpose_and_comes_straight_back():
    m = machine()
    up(m)
    play(
        m,
        [
            (ReconnectNow(1.0), P.ENDING, ["deliver ended", "end"]),
            (Closed(1.1, 1, None), P.ENDING, ["abort"]),  # our own close completed
            (
                SessionOver(1.2, 1),
                P.CONNECTING,
                ["debug", "publish connecting", "debug", "connect"],
            ),
        ],
    )
    assert m.counters.failures_total == 0 and m.status.attempt == 0


def test_reconnect_now_while_waiting_goes_at_once_with_a_fresh_budget():
    m = machine(max_attempts=1)
    m.handle(Start(0))
    m.handle(AttemptFailed(0, REFUSED))
    assert m.phase is P.FAILED
    play(m, [(ReconnectNow(5), P.CONNECTING, ["publish connecting", "debug", "connect"])])
    assert m.policy.attempts == 0
    m = machine()
    m.handle(Start(0))
    m.handle(AttemptFailed(0, REFUSED))
    play(m, [(ReconnectNow(0.2), P.CONNECTING, ["publish connecting", "debug", "connect"])])
    play(m, [(ReconnectNow(0.3), P.CONNECTING, [])])  # an attempt is under way: it goes on


def test_the_goodbye_has_a_grace_then_the_session_is_torn_down():
    m = machine()
    up(m)
    play(m, [(Close(1.0), P.ENDING, ["deliver ended", "end+bye"])])
    assert m.deadline == pytest.approx(1.4)
    play(
        m,
        [
            (Tick(1.4), P.ENDING, ["abort"]),
            (Tick(1.5), P.ENDING, []),
            (SessionOver(1.5, 1), P.CLOSED, ["debug", "publish offline", "info"]),
        ],
    )
    assert m.deadline == math.inf


@pytest.mark.parametrize(
    ("setup", "graceful", "expected"),
    [
        ("idle", True, []),
        ("connecting", True, ["cancel", "publish offline", "info"]),
        ("connected", True, ["deliver ended", "end+bye"]),
        ("ready", False, ["deliver ended", "abort"]),
        (
            "no-rtvi",
            True,
            ["deliver ended", "end+bye"],
        ),  # the shell sends disconnect-bot only where RTVI is spoken
        ("backing-off", True, ["publish offline", "info"]),
        ("failed", True, ["publish offline", "info"]),
    ],
)
def test_close_from_every_state(setup, graceful, expected):
    m = machine(max_attempts=1 if setup == "failed" else 0)
    if setup in ("connecting", "backing-off", "failed"):
        m.handle(Start(0))
        if setup != "connecting":
            m.handle(AttemptFailed(0, REFUSED))
    elif setup != "idle":
        up(m, rtvi=setup != "no-rtvi", ready=setup == "ready")
    assert [short(a) for a in m.handle(Close(1, graceful))] == expected
    if m.phase is P.ENDING:
        m.handle(SessionOver(1.1, 1))
    assert m.phase is P.CLOSED and m.status.state.value == "offline"
    assert m.handle(Start(2)) == [] and m.handle(Wake(2)) == []


def test_close_while_ending_turns_a_reconnect_into_a_close():
    m = machine()
    up(m)
    m.handle(ReconnectNow(1))
    assert [short(a) for a in m.handle(Close(1.1, graceful=False))] == ["abort"]
    play(m, [(SessionOver(1.2, 1), P.CLOSED, ["debug", "publish offline", "info"])])


def test_halt_ends_the_session_and_the_run_from_anywhere():
    m = machine()
    up(m)
    actions = m.handle(Halt(3))
    assert [short(a) for a in actions] == ["deliver ended", "publish offline"]
    assert actions[0].event == SessionEnded(session=1, reason="link stopped", failure=False)
    assert m.phase is P.CLOSED


def test_a_session_that_dies_young_is_a_flap_and_backs_off_quietly():
    m = machine(initial=1.0, max_delay=8.0, stable_after=5.0)
    m.handle(Start(0))
    levels: list[list[str]] = []
    now = 0.0
    delays = []
    for session in range(1, 6):
        m.handle(Opened(now, URL, True))
        ready = notes(m.handle(BotReadySeen(now, session, "2.2.0")))
        m.handle(Closed(now + 1, session, Failure("bot ended the session (close code 1000)")))
        lost = notes(m.handle(SessionOver(now + 1, session)))
        levels.append([short(n) for n in ready + lost])
        delays.append(m.status.retry_in)
        now += 1 + m.status.retry_in
        m.handle(Tick(now))
    # Announced once (ready, then the loss); then "ready" and the same loss repeat at DEBUG.
    assert levels[0] == ["info", "debug", "warning"]
    assert all(lv == ["debug", "debug", "debug"] for lv in levels[2:]), levels
    assert delays == [1, 2, 4, 8, 8]  # flapping backs off like refusals
    assert m.status.attempt == 5


def test_a_stable_session_ends_the_streak_so_its_loss_is_news():
    m = machine(stable_after=5.0)
    m.handle(Start(0))
    m.handle(AttemptFailed(0, REFUSED))
    m.handle(Tick(1))
    up(m, 1)
    m.handle(Closed(100, 1, Failure("connection lost (no close frame)")))
    lost = notes(m.handle(SessionOver(100, 1)))
    assert [short(n) for n in lost] == ["debug", "warning"]
    assert m.status.attempt == 1  # the streak began again: a stable session reset the count


def test_ready_after_an_outage_says_how_long_it_was_down():
    m = machine()
    m.handle(Start(0))
    m.handle(AttemptFailed(2, REFUSED))
    m.handle(Tick(3))
    m.handle(Opened(3.5, URL, True))
    ready = notes(m.handle(BotReadySeen(3.5, 1, "2.2.0")))[0]
    assert (
        ready.level == logging.INFO and ready.fields["down"] == "1.5s" and ready.fields["via"] == "bot-ready"
    )


def test_a_fatal_bot_error_ends_the_session_and_backs_off():
    m = machine()
    up(m)
    actions = m.handle(BotErrorSeen(1, 1, "LLM quota exceeded\nstate=ready forged", fatal=True))
    assert [short(a) for a in actions] == ["warning", "deliver ended", "end"]
    line = actions[0].fields["bot_error"]
    assert "\n" not in line and "\\n" in line
    m.handle(Closed(1.1, 1, None))
    m.handle(SessionOver(1.2, 1))
    assert m.phase is P.BACKING_OFF
    assert m.status.last_error == "bot reported a fatal error: LLM quota exceeded\\nstate=ready forged"


def test_non_fatal_bot_errors_only_log_and_at_most_once_a_minute():
    m = machine()
    up(m)
    lines = [n for t in range(0, 130, 10) for n in notes(m.handle(BotErrorSeen(float(t), 1, "oops", False)))]
    assert [(n.level, n.fields.get("held")) for n in lines] == [(logging.WARNING, None), (30, 5), (30, 5)]
    assert m.phase is P.READY  # t = 0, 60 and 120 s: the five in between are counted


def test_an_other_major_rtvi_version_is_warned_once_per_run():
    m = machine()
    m.handle(Start(0))
    warned = []
    for session in (1, 2):
        m.handle(Opened(session, URL, True))
        warned += [
            n for n in notes(m.handle(BotReadySeen(session, session, "3.0.0"))) if n.level == logging.WARNING
        ]
        m.handle(ReconnectNow(session + 0.5))
        m.handle(SessionOver(session + 0.5, session))
    assert len(warned) == 1
    assert warned[0].fields == {"bot_rtvi_version": "3.0.0", "ours": "2.2.0"}
    quiet = machine()
    up(quiet)  # 2.2.0, and a bot-ready without a version: nothing to say
    quiet.handle(ReconnectNow(1))
    quiet.handle(SessionOver(1, 1))
    quiet.handle(Opened(1, URL, True))
    assert [n.level for n in notes(quiet.handle(BotReadySeen(1, 2, "")))] == [logging.INFO]


# --- the grid -------------------------------------------------------------------------------------------


def in_phase(phase: Phase) -> LinkMachine:
    m = machine(interval=10.0, max_attempts=1 if phase is P.FAILED else 0)
    if phase is P.IDLE:
        return m
    if phase is P.CLOSED:
        m.handle(Close(0))
        return m
    m.handle(Start(0))
    if phase in (P.BACKING_OFF, P.FAILED):
        m.handle(AttemptFailed(0, REFUSED))
    elif phase in (P.CONNECTED, P.READY, P.ENDING):
        up(m, ready=phase is not P.CONNECTED)
        if phase is P.ENDING:
            m.handle(ReconnectNow(0))
    assert m.phase is phase
    return m


def every_event(m: LinkMachine, now: float) -> list[sig.Event]:
    s = m.session
    return [
        Start(now),
        Opened(now, URL, True),
        AttemptFailed(now, REFUSED),
        BotReadySeen(now, s, "2.2.0"),
        BotErrorSeen(now, s, "boom", True),
        Pong(now, s),
        Closed(now, s, REFUSED),
        SessionOver(now, s),
        Tick(now),
        Wake(now),
        ReconnectNow(now),
        Close(now),
        Halt(now),
    ]


@pytest.mark.parametrize(("phase", "index"), list(itertools.product(ALL_PHASES, range(13))))
def test_every_event_in_every_state_goes_only_where_the_table_says(phase, index):
    m = in_phase(phase)
    event = every_event(m, 100.0)[index]
    before_status = m.status
    actions = m.handle(event)  # raises TransitionError on a move the table does not allow
    allowed = TRANSITIONS[phase].get(type(event))
    if allowed is None:
        assert actions == [] and m.phase is phase and m.status is before_status
    else:
        assert m.phase is phase or m.phase in allowed
    for note in notes(actions):
        assert all("\n" not in str(v) for v in note.fields.values())


@pytest.mark.parametrize("phase", ALL_PHASES)
def test_a_tick_at_the_deadline_always_moves_the_deadline(phase):
    # The shell sleeps until `deadline`: a Tick there that changed nothing would spin it.
    m = in_phase(phase)
    for _ in range(6):
        deadline = m.deadline
        if deadline == math.inf:
            break
        m.handle(Tick(deadline))
        assert m.deadline > deadline


@pytest.mark.parametrize("phase", [P.CONNECTED, P.READY, P.ENDING])
def test_events_about_an_old_session_are_ignored(phase):
    m = in_phase(phase)
    for event in (
        BotReadySeen(1, 7, "9.0.0"),
        BotErrorSeen(1, 7, "x", True),
        Closed(1, 7, None),
        SessionOver(1, 7),
    ):
        assert m.handle(event) == [] and m.phase is phase


def test_the_table_names_every_phase_and_only_known_events():
    assert set(TRANSITIONS) == set(Phase)
    known = {type(e) for e in every_event(machine(), 0)}
    for phase, row in TRANSITIONS.items():
        assert set(row) <= known, phase
        for targets in row.values():
            assert P.IDLE not in targets
