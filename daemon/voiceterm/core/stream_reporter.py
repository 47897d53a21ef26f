"""What the event stream says: the daemon's observations turned into device events (`core/device_events.py`).

Pure. `StreamReporter` remembers what it last reported and returns the events for what changed: the bot's
messages relayed one for one (a table from the decoded event's type to its stream event), the link's state
changes and reconnect attempts, the terminal's observable state (button, mute, turn, faults, LED) compared
before and after each input, and the dropped-audio and dropped-message counters when one grows. The app
publishes what it returns, from one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field, fields
from typing import Any

from voiceterm.core import device_events as de
from voiceterm.core.dispatch import Dispatch
from voiceterm.core.linkevents import SessionEnded, SessionStarted
from voiceterm.core.linkstate import LinkState, LinkStatus
from voiceterm.core.patterns import describe
from voiceterm.core.terminal_state import TerminalState
from voiceterm.protocol.events import Interruption, TextFrameEvent, TranscriptionEvent, TransportMessage
from voiceterm.record import record

__all__ = [
    "DROP_COUNTER_NAMES",
    "DropCounters",
    "Observed",
    "StreamReporter",
    "diff",
    "from_bot",
    "from_link_status",
    "observe",
]


# --- the bot's messages --------------------------------------------------------------------------------


# Decoded event type -> its stream event. Looked up along the type's bases: an RTVI type without a row of
# its own is relayed as `rtvi-message`; audio and types without a row are not relayed.
def _relays() -> dict[type, Callable[[Any], de.DeviceEvent]]:
    from voiceterm.protocol import rtvi_events as rtvi  # by the first bot message (core/dispatch.py)

    return {
        SessionStarted: lambda e: de.Connected(e.session, e.url),
        SessionEnded: lambda e: de.Disconnected(e.session, e.reason, e.failure),
        rtvi.BotReady: lambda e: de.OnBotReady(e.version, e.about),
        rtvi.UserStartedSpeaking: lambda e: de.OnUserStartedSpeaking(),
        rtvi.UserStoppedSpeaking: lambda e: de.OnUserStoppedSpeaking(),
        rtvi.BotStartedSpeaking: lambda e: de.OnBotStartedSpeaking(),
        rtvi.BotStoppedSpeaking: lambda e: de.OnBotStoppedSpeaking(),
        rtvi.BotInterrupted: lambda e: de.OnBotInterrupted(),
        rtvi.BotLLMStarted: lambda e: de.OnBotLlmStarted(),
        rtvi.BotLLMStopped: lambda e: de.OnBotLlmStopped(),
        rtvi.BotTTSStarted: lambda e: de.OnBotTtsStarted(),
        rtvi.BotTTSStopped: lambda e: de.OnBotTtsStopped(),
        rtvi.UserMuteStarted: lambda e: de.OnUserMuteStarted(),
        rtvi.UserMuteStopped: lambda e: de.OnUserMuteStopped(),
        rtvi.BotTranscription: lambda e: de.OnBotTranscript(e.text),
        rtvi.BotLLMText: lambda e: de.OnBotLlmText(e.text),
        rtvi.BotTTSText: lambda e: de.OnBotTtsText(e.text),
        rtvi.UserTranscription: lambda e: de.OnUserTranscript(e.text, e.final, e.user_id, e.timestamp),
        rtvi.UserInput: lambda e: de.OnUserInput(e.text, e.input_type, e.final),
        rtvi.BotOutput: lambda e: de.OnBotOutput(
            e.text, e.output_type, e.segment_id, e.will_be_spoken, e.spoken_status, e.spoken_progress
        ),
        rtvi.ServerMessage: lambda e: de.OnServerMessage(e.data),
        rtvi.ServerResponse: lambda e: de.OnServerResponse(e.t, e.d, e.id),
        rtvi.ServerError: lambda e: de.OnError(e.error, e.fatal),
        rtvi.ErrorResponse: lambda e: de.OnMessageError(e.error, e.id),
        rtvi.Metrics: lambda e: de.OnMetrics(e.data),
        rtvi.LLMFunctionCall: lambda e: de.OnLlmFunctionCall(e.function_name, e.tool_call_id, e.args),
        rtvi.RTVIEvent: lambda e: de.OnRtviMessage(e.type, e.data),
        Interruption: lambda e: de.OnBotInterrupted(via="interruption-frame"),
        TranscriptionEvent: lambda e: de.OnUserTranscript(e.text, True, e.user_id, e.timestamp),
        TextFrameEvent: lambda e: de.OnBotText(e.text),
        TransportMessage: lambda e: de.OnAppMessage(e.data),
    }


_RELAYS: Dispatch[Callable[[Any], de.DeviceEvent]] = Dispatch(_relays)


def from_bot(event: object) -> de.DeviceEvent | None:
    """The stream event for one event the link delivered; None for audio and what is not relayed."""
    relay = _RELAYS.get(event)
    return relay(event) if relay is not None else None


# --- the link --------------------------------------------------------------------------------------------


def from_link_status(previous: LinkStatus | None, status: LinkStatus) -> list[de.DeviceEvent]:
    """Events for one link status change: the state change itself, and a reconnect attempt when backing off."""
    if previous is not None and previous.state is status.state and previous.attempt == status.attempt:
        return []
    out: list[de.DeviceEvent] = [
        de.TransportStateChanged(
            status.state.value,
            previous.state.value if previous is not None else None,
            status.attempt,
            status.last_error,
        )
    ]
    if status.state is LinkState.BACKING_OFF:
        delay = status.retry_in if status.retry_in is not None else 0.0
        out.append(de.ReconnectAttempt(status.attempt, round(delay, 3), status.last_error))
    return out


# --- the terminal ----------------------------------------------------------------------------------------


@record
class Observed:
    """The terminal's state a subscriber can see, compared before and after each input."""

    button_pressed: bool = False
    muted: bool = False
    turn: bool = False
    status: str | None = None
    pattern: str = ""
    color: tuple[float, float, float] = (0.0, 0.0, 0.0)
    text: str = ""
    faults: tuple[tuple[str, str], ...] = ()


def observe(state: TerminalState) -> Observed:
    """What a subscriber can see of the terminal's state."""
    view = state.view
    return Observed(
        button_pressed=state.button_pressed,
        muted=state.muted,
        turn=state.turn,
        status=view.name,
        pattern=describe(view.pattern),
        color=view.color,
        text=view.text,
        faults=state.faults,
    )


def diff(before: Observed, after: Observed, source: str) -> list[de.DeviceEvent]:
    """What changed between two observations, as events in the order a person would tell it:
    the button, the mute, the turn, the faults, then the LED that shows the result."""
    out: list[de.DeviceEvent] = []
    if after.button_pressed != before.button_pressed:
        out.append(de.Button(after.button_pressed))
        # A press is recognised when its debounce time has passed, by a timer: it is still the button's doing.
        source = "button"
    if after.muted != before.muted:
        out.append(de.MuteChanged(after.muted))
    if after.turn != before.turn:
        out.append(de.TurnStarted(source) if after.turn else de.TurnEnded(source))
    if after.faults != before.faults:
        old, new = dict(before.faults), dict(after.faults)
        for device in sorted(old.keys() | new.keys()):
            if old.get(device) != new.get(device):
                out.append(de.AudioFault(device, new.get(device)))
    if after.status != before.status and after.status is not None:
        out.append(de.Led(after.status, before.status, after.pattern, after.color, after.text))
    return out


# --- the drop counters -----------------------------------------------------------------------------------


def _counter(name: str) -> Any:
    # `name` is the counter's name in the `drops` event: its place in the status document, as it always was.
    return field(default=None, metadata={"name": name})


@record
class DropCounters:
    """The dropped-audio and dropped-message counters whose growth is a `drops` event (totals since start).
    None: the part that counts it is not there (no microphone, say)."""

    outgoing_audio: int | None = _counter("link.dropped_outgoing_audio_total")
    messages: int | None = _counter("link.dropped_messages_total")
    incoming: int | None = _counter("link.dropped_incoming_total")
    capture_overruns: int | None = _counter("audio.capture.overruns_total")
    capture_dropped: int | None = _counter("audio.capture.dropped_total")
    playback_dropped_frames: int | None = _counter("audio.playback.dropped_frames_total")
    playback_xruns: int | None = _counter("audio.playback.xruns_total")
    stale_bot_audio_frames: int | None = _counter("daemon.stale_bot_audio_frames_total")
    subscribers_dropped: int | None = _counter("events.subscribers_dropped_total")

    def named(self) -> dict[str, int]:
        """The counters there are, by their name in the `drops` event."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.metadata["name"]] = value
        return out


DROP_COUNTER_NAMES: tuple[str, ...] = tuple(f.metadata["name"] for f in fields(DropCounters))


# --- the reporter ----------------------------------------------------------------------------------------


class StreamReporter:
    """The stream events for each observation, given what was reported before it."""

    def __init__(self) -> None:
        self._observed = Observed()
        self._link: LinkStatus | None = None
        self._drops: dict[str, int] = {}

    def terminal(self, state: TerminalState, source: str) -> list[de.DeviceEvent]:
        """After an input from `source` ("button", "control", "link" ...): what changed in the terminal."""
        observed = observe(state)
        if observed == self._observed:
            return []
        events = diff(self._observed, observed, source)
        self._observed = observed
        return events

    def link(self, status: LinkStatus) -> list[de.DeviceEvent]:
        """A link status: its state change, and the reconnect attempt when it backs off."""
        events = from_link_status(self._link, status)
        self._link = status
        return events

    def bot(self, event: object) -> list[de.DeviceEvent]:
        """An event the link delivered (bot messages, a session starting or ending): its relay, if any."""
        relayed = from_bot(event)
        return [relayed] if relayed is not None else []

    def drops(self, counters: DropCounters) -> list[de.DeviceEvent]:
        """A `drops` event when any counter grew since the last look."""
        named = counters.named()
        grew = any(value > self._drops.get(name, 0) for name, value in named.items())
        self._drops = named
        return [de.Drops(named)] if grew else []
