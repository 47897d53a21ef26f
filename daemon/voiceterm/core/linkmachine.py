"""The bot link's life as a pure state machine: every decision the link makes, and nothing it does.

The trio shell (io/link.py) feeds `LinkMachine.handle` events that carry the time `now` (a connection
opened, a bot-ready arrived, a timer fired, the app asked to reconnect ...) and performs the actions it
gets back (publish a status, write a log line, open a connection, send a ping, end the session ...). When
to wake it next is `LinkMachine.deadline`: connect timeout, ready timeout, the next ping, a pong timeout,
the end of a backoff, the grace of a goodbye. No trio, no sockets; tested as tables in tests/link.

The transition table below is the whole map. A state lists the events it reacts to and where each may
lead (staying put is always allowed); an event a state does not list is ignored there, as is an event
about a session that is already over. ENDING is the time between deciding that a session ends (the app is
told at once) and its socket being torn down: the status published before it stays until then, and no
audio or message is taken or delivered.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass, field, replace
from typing import Any

from voiceterm.core.linkevents import SessionEnded, SessionStarted
from voiceterm.core.linksignals import (
    AbortSession,
    Action,
    AttemptFailed,
    BotErrorSeen,
    BotReadySeen,
    CancelAttempt,
    Close,
    Closed,
    Connect,
    Deliver,
    EndSession,
    Event,
    Failure,
    Halt,
    LinkSettings,
    Note,
    Opened,
    Pong,
    Publish,
    ReconnectNow,
    SendPing,
    SessionOver,
    Start,
    Tick,
    Wake,
)
from voiceterm.core.linkstate import LinkCounters, LinkState, LinkStatus
from voiceterm.core.lograte import RepeatSuppressor, Throttle
from voiceterm.core.reconnect import ReconnectPolicy
from voiceterm.logs import escape
from voiceterm.protocol.rtvi import RTVI_PROTOCOL_VERSION, is_compatible_version


class Phase(enum.Enum):
    IDLE = "idle"  # run() not started yet
    CONNECTING = "connecting"  # start endpoint call, TCP/TLS, WebSocket upgrade, opening messages
    CONNECTED = "connected"  # session open, bot-ready not seen yet
    READY = "ready"  # bot-ready seen, or waiting for it timed out
    ENDING = "ending"  # the session ends (reason decided); its socket is being torn down
    BACKING_OFF = "backing-off"  # waiting before the next attempt
    FAILED = "failed"  # attempt budget spent: waits for a wake-up
    CLOSED = "closed"  # closed on purpose, or the run is over


# --- the transition table -----------------------------------------------------------------------------

IDLE, CONNECTING, CONNECTED, READY, ENDING, BACKING_OFF, FAILED, CLOSED = Phase  # in definition order

#   state:       {event: where it may lead}    (staying put is always allowed; unlisted events are ignored)
TRANSITIONS: dict[Phase, dict[type, set[Phase]]] = {
    IDLE: {Start: {CONNECTING}, Close: {CLOSED}, Halt: {CLOSED}},
    CONNECTING: {
        Opened: {CONNECTED, READY},  # READY at once when the wire format has no RTVI
        AttemptFailed: {BACKING_OFF, FAILED},  # FAILED when the attempt budget is spent
        Tick: {BACKING_OFF, FAILED},  # connect timeout
        ReconnectNow: set(),  # the budget starts again; the attempt goes on
        Close: {CLOSED},
        Halt: {CLOSED},
    },
    CONNECTED: {
        BotReadySeen: {READY},  # and the RTVI version check
        Tick: {READY, ENDING},  # ready timeout; time to ping; pong timeout
        Pong: set(),
        BotErrorSeen: {ENDING},  # a fatal one ends the session
        Closed: {ENDING},
        ReconnectNow: {ENDING},
        Close: {ENDING},
        Halt: {CLOSED},
    },
    READY: {
        BotReadySeen: set(),  # late (after the ready timeout): only the version check
        Tick: {ENDING},  # time to ping; pong timeout
        Pong: set(),
        BotErrorSeen: {ENDING},
        Closed: {ENDING},
        ReconnectNow: {ENDING},
        Close: {ENDING},
        Halt: {CLOSED},
    },
    ENDING: {
        Closed: set(),  # the socket is gone: tear down now (the first reason stays)
        Tick: set(),  # the goodbye's grace is over: tear down now
        SessionOver: {CONNECTING, BACKING_OFF, FAILED, CLOSED},  # straight back in after reconnect_now
        ReconnectNow: set(),
        Close: set(),  # closed after the teardown instead of reconnecting
        Halt: {CLOSED},
    },
    BACKING_OFF: {Tick: {CONNECTING}, ReconnectNow: {CONNECTING}, Close: {CLOSED}, Halt: {CLOSED}},
    FAILED: {Wake: {CONNECTING}, ReconnectNow: {CONNECTING}, Close: {CLOSED}, Halt: {CLOSED}},
    CLOSED: {},
}


class TransitionError(AssertionError):
    """The machine went somewhere its table does not allow: a bug in this module."""


@dataclass(slots=True)
class _Session:
    """What the machine tracks of the open session."""

    number: int
    url: str
    interval: float  # heartbeat settings as they were when it opened
    timeout: float
    ready_at: float | None = None  # bot-ready deadline while CONNECTED
    ping_at: float | None = None
    pong_by: float | None = None  # a ping is out: the pong must come by then
    end_reason: str = ""
    end_failure: Failure | None = None
    end_by: float | None = None  # ENDING on purpose: tear down by then


@dataclass(slots=True)
class _Streak:
    """The failure streak: the log-rate and flap bookkeeping behind "which failure deserves a line"."""

    suppressor: RepeatSuppressor = field(default_factory=RepeatSuppressor)
    down_since: float | None = None  # first failure of the current outage
    young_failure: str | None = None  # why the last session ended, if it ended young (a flap)


class LinkMachine:
    """The link's decisions. `handle(event)` returns the actions to perform, in order."""

    def __init__(
        self, settings: LinkSettings, policy: ReconnectPolicy, counters: LinkCounters | None = None
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.counters = counters if counters is not None else LinkCounters()
        self.phase = IDLE
        self.status = LinkStatus()
        self.session = 0  # the number of the last session opened
        self.url = settings.url
        self.closing = False
        self._open: _Session | None = None
        self._attempt_by = math.inf
        self._retry_at = math.inf
        self._streak = _Streak()
        self._ready_timeout_explained = False
        self._version_warned = False
        self._bot_error_log = Throttle(60.0)
        self._out: list[Action] = []
        self._handlers = {
            Start: self._start,
            Opened: self._opened,
            AttemptFailed: self._attempt_failed,
            BotReadySeen: self._bot_ready,
            BotErrorSeen: self._bot_error,
            Pong: self._pong,
            Closed: self._closed,
            SessionOver: self._session_over,
            Tick: self._tick,
            Wake: self._wake,
            ReconnectNow: self._reconnect_now,
            Close: self._close,
            Halt: self._halt,
        }

    # --- the interface ------------------------------------------------------------------------------

    @property
    def is_up(self) -> bool:
        """True while a session takes audio and messages."""
        return self.phase in (CONNECTED, READY)

    @property
    def deadline(self) -> float:
        """When the shell must feed the next Tick (math.inf: nothing is timed)."""
        phase, s = self.phase, self._open
        if phase is CONNECTING:
            return self._attempt_by
        if phase is BACKING_OFF:
            return self._retry_at
        if s is None:
            return math.inf
        if phase is ENDING:
            return s.end_by if s.end_by is not None else math.inf
        if phase in (CONNECTED, READY):
            times = [
                t for t in (s.ready_at, s.pong_by if s.pong_by is not None else s.ping_at) if t is not None
            ]
            return min(times, default=math.inf)
        return math.inf

    def reconfigure(self, settings: LinkSettings, policy: ReconnectPolicy) -> None:
        """SIGHUP: new settings and policy; the session open now keeps the heartbeat it started with."""
        self.settings = replace(settings, url=self.settings.url)
        self.policy = policy

    def handle(self, event: Event) -> list[Action]:
        allowed = TRANSITIONS[self.phase].get(type(event))
        if allowed is None:
            return []
        if isinstance(event, (BotReadySeen, BotErrorSeen, Pong, Closed, SessionOver)) and (
            self._open is None or event.session != self._open.number
        ):
            return []  # about a session that is already over
        before = self.phase
        self._out = []
        self._handlers[type(event)](event)
        if self.phase is not before and self.phase not in allowed:
            raise TransitionError(f"{before.value} --{type(event).__name__}--> {self.phase.value}")
        return self._out

    # --- handlers -------------------------------------------------------------------------------------

    def _start(self, e: Start) -> None:
        self._begin_attempt(e.now)

    def _opened(self, e: Opened) -> None:
        self.session += 1
        self.counters.connects_total += 1
        self.policy.on_connected(e.now)
        self.url = e.url
        st = self.settings
        s = _Session(self.session, e.url, st.heartbeat_interval, st.heartbeat_timeout)
        if e.rtvi:
            s.ready_at = e.now + st.ready_timeout
        if s.interval > 0:
            s.ping_at = e.now + s.interval
        self._open = s
        self._emit(Deliver(SessionStarted(session=s.number, url=e.url)))
        self._enter(CONNECTED, e.now, connects_total=self.counters.connects_total, unfixable=False)
        self._note(logging.DEBUG, state="connected", session=s.number, url=e.url, serializer=st.serializer)
        if not e.rtvi:
            self._become_ready(e.now, "no RTVI in this wire format")

    def _attempt_failed(self, e: AttemptFailed) -> None:
        self._failed(e.now, e.failure)

    def _bot_ready(self, e: BotReadySeen) -> None:
        if e.version and not is_compatible_version(e.version) and not self._version_warned:
            self._version_warned = True  # once per daemon run: every session would say the same
            self._note(
                logging.WARNING,
                bot_rtvi_version=escape(e.version, 40),
                ours=RTVI_PROTOCOL_VERSION,
                suffix=" (major versions differ; going on, some messages may not be understood)",
            )
        if self.phase is CONNECTED:
            self._become_ready(e.now, "bot-ready")

    def _bot_error(self, e: BotErrorSeen) -> None:
        held = self._bot_error_log.allow(e.now)
        if held is not None:
            self._note(
                logging.WARNING, bot_error=escape(e.text), fatal="yes" if e.fatal else None, held=held or None
            )
        if e.fatal and self.phase in (CONNECTED, READY):
            # Like the browser client: a fatal error means the bot's pipeline is gone; a new session may work.
            failure = Failure(f"bot reported a fatal error: {escape(e.text, 120)}")
            self._end(e.now, failure.reason, failure, goodbye=False)

    def _pong(self, e: Pong) -> None:
        s = self._open
        if s is not None and s.pong_by is not None:
            s.pong_by = None
            s.ping_at = e.now + s.interval

    def _closed(self, e: Closed) -> None:
        if self.phase is ENDING:
            self._emit(AbortSession())
            return
        failure = e.failure or Failure("connection closed")
        self._end(e.now, failure.reason, failure, abort=True)

    def _session_over(self, e: SessionOver) -> None:
        s = self._open
        assert s is not None
        self._open = None
        stable = self.policy.on_session_end(e.now)
        failure = s.end_failure
        self._note(logging.DEBUG, session=s.number, ended=s.end_reason, stable=stable)
        if stable:
            # A session that proved the bot healthy ends a failure streak: its loss is news.
            self._streak.suppressor.clear()
            self._streak.young_failure = None
        else:
            # A young session's end is one more failed attempt (a flap): the repeat suppressor decides.
            self._streak.young_failure = failure.reason if failure is not None else None
        if self.closing:
            self._enter_closed(e.now)
        elif failure is None:
            self._begin_attempt(e.now)  # ended on purpose (reconnect_now): straight back in
        else:
            self._failed(e.now, failure)

    def _tick(self, e: Tick) -> None:
        now, phase, s = e.now, self.phase, self._open
        if phase is CONNECTING:
            if now >= self._attempt_by:
                self._emit(CancelAttempt())
                timeout = self.settings.connect_timeout
                self._failed(now, Failure(f"no answer within {timeout:g} s (bot.connect_timeout)"))
        elif phase is BACKING_OFF:
            if now >= self._retry_at:
                self._begin_attempt(now)
        elif phase is ENDING:
            if s is not None and s.end_by is not None and now >= s.end_by:
                s.end_by = None
                self._emit(AbortSession())
        elif s is not None:
            if s.ready_at is not None and now >= s.ready_at:
                self._ready_timed_out(now)
            self._heartbeat(now, s)

    def _wake(self, e: Wake) -> None:
        self.policy.reset()
        self._begin_attempt(e.now)

    def _reconnect_now(self, e: ReconnectNow) -> None:
        self.policy.reset()
        if self.phase in (CONNECTED, READY):
            self._end(e.now, "reconnect requested", None, goodbye=False)
        elif self.phase in (BACKING_OFF, FAILED):
            self._begin_attempt(e.now)

    def _close(self, e: Close) -> None:
        self.closing = True
        phase = self.phase
        if phase in (CONNECTED, READY):
            self._end(e.now, "closing", None, goodbye=e.graceful, abort=not e.graceful)
        elif phase is ENDING:
            if not e.graceful:
                self._emit(AbortSession())
        else:
            if phase is CONNECTING:
                self._emit(CancelAttempt())
            self._enter_closed(e.now)

    def _halt(self, e: Halt) -> None:
        if self.phase in (CONNECTED, READY):
            assert self._open is not None
            self._emit(Deliver(SessionEnded(session=self._open.number, reason="link stopped", failure=False)))
        self._open = None
        self._enter_closed(e.now)

    # --- decisions --------------------------------------------------------------------------------------

    def _begin_attempt(self, now: float) -> None:
        self._attempt_by = now + self.settings.connect_timeout
        self._enter(CONNECTING, now, attempt=self.policy.attempts)
        self._note(logging.DEBUG, state="connecting", attempt=self.policy.attempts + 1, url=self.url)
        self._emit(Connect())

    def _failed(self, now: float, failure: Failure) -> None:
        """A failed attempt, or a lost session: back off, or give up when the budget is spent."""
        self.counters.failures_total += 1
        decision = self.policy.on_failure(unfixable=failure.unfixable)
        streak = self._streak
        if streak.down_since is None:
            streak.down_since = now
        common = {"attempt": decision.attempt, "last_error": failure.reason, "unfixable": failure.unfixable}
        if decision.give_up:
            self._enter(FAILED, now, **common)
            self._note(
                logging.ERROR,
                state="failed",
                attempts=decision.attempt,
                error=failure.reason,
                suffix=" (giving up until a button press)",
            )
            streak.suppressor.clear()
            return
        self._retry_at = now + decision.delay
        self._enter(BACKING_OFF, now, retry_in=decision.delay, **common)
        report = streak.suppressor.failure(failure.reason, now)
        delay = f"{decision.delay:.1f}s"
        if report is not None and report.kind == "still":
            down = now - (streak.down_since if streak.down_since is not None else report.since)
            self._note(
                logging.WARNING,
                attempts=report.repeats,
                down=f"{down:.0f}s",
                error=failure.reason,
                delay=delay,
                prefix="still failing ",
            )
            return
        self._note(
            logging.DEBUG if report is None else logging.WARNING,
            state="backing-off",
            attempt=decision.attempt,
            delay=delay,
            error=failure.reason,
            unfixable="yes" if failure.unfixable else None,
        )

    def _end(
        self, now: float, reason: str, failure: Failure | None, *, goodbye: bool = False, abort: bool = False
    ) -> None:
        """The session ends (the first reason wins: ENDING ignores later ones). The app hears it now, while
        the socket is torn down: nothing of this session reaches it after SessionEnded."""
        s = self._open
        assert s is not None
        self.phase = ENDING
        s.end_reason, s.end_failure = reason, failure
        s.ready_at = s.ping_at = s.pong_by = None
        self._emit(Deliver(SessionEnded(session=s.number, reason=reason, failure=failure is not None)))
        if abort:
            self._emit(AbortSession())
        else:
            s.end_by = now + self.settings.close_grace
            self._emit(EndSession(goodbye=goodbye))

    def _become_ready(self, now: float, how: str) -> None:
        s = self._open
        assert s is not None
        s.ready_at = None
        self._enter(READY, now)
        streak = self._streak
        down = now - streak.down_since if streak.down_since is not None else None
        # A bot that says bot-ready and then drops every session would log "ready" per attempt: while the
        # failure streak is that very drop repeating, this line is DEBUG like the attempts.
        flapping = streak.young_failure is not None and streak.suppressor.reason == streak.young_failure
        self._note(
            logging.DEBUG if flapping else logging.INFO,
            state="ready",
            session=s.number,
            url=s.url,
            serializer=self.settings.serializer,
            via=how,
            down=f"{down:.1f}s" if down is not None else None,
        )
        streak.down_since = None

    def _ready_timed_out(self, now: float) -> None:
        self.counters.ready_timeouts_total += 1
        if self._ready_timeout_explained:
            how = "bot-ready timeout"
        else:
            self._ready_timeout_explained = True
            how = (
                f"no bot-ready within {self.settings.ready_timeout:g} s, going on (older bots never send it)"
            )
        self._become_ready(now, how)

    def _heartbeat(self, now: float, s: _Session) -> None:
        if s.pong_by is not None:
            if now >= s.pong_by:
                self.counters.pings_timed_out_total += 1
                failure = Failure(f"no pong within {s.timeout:g} s: connection presumed dead")
                self._end(now, failure.reason, failure, abort=True)
        elif s.ping_at is not None and now >= s.ping_at:
            self.counters.pings_sent_total += 1
            s.ping_at = None
            s.pong_by = now + s.timeout
            self._emit(SendPing())

    # --- output -----------------------------------------------------------------------------------------

    def _enter(self, phase: Phase, now: float, **changes: Any) -> None:
        """Go to `phase` and publish the status it shows (unchanged fields carry over)."""
        self.phase = phase
        state = LinkState.OFFLINE if phase is CLOSED else LinkState(phase.value)
        old = self.status
        changes.setdefault("retry_in", None)  # only BACKING_OFF has a delay ahead of it
        new = replace(old, state=state, since=now if state is not old.state else old.since, **changes)
        if new != old:
            self.status = new
            self._emit(Publish(new))

    def _enter_closed(self, now: float) -> None:
        was_running = self.phase is not IDLE
        self._enter(CLOSED, now)
        if was_running and self.closing:
            self._note(logging.INFO, state="offline", reason="closed")

    def _emit(self, action: Action) -> None:
        self._out.append(action)

    def _note(self, level: int, *, prefix: str = "", suffix: str = "", **fields: Any) -> None:
        self._emit(Note(level, fields, prefix, suffix))


__all__ = ["TRANSITIONS", "LinkMachine", "LinkSettings", "Phase", "TransitionError"]
