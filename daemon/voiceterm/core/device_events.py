"""The local event stream's events: typed, pure, and serialised as one JSON object per line.

Each event is a frozen dataclass whose ``NAME`` is the ``"event"`` of its JSON line. They mirror the browser
``PipecatClient`` callbacks (onConnected → ``connected``, onUserTranscript → ``user-transcript``, onBotOutput →
``bot-output`` ...) and add the device's own (button, mute, LED, audio faults, reconnect attempts, drops).
This module also turns what the daemon already sees into events: bot events (``from_bot``), link status
changes (``from_link_status``) and changes of the terminal's observable state (``observe`` + ``diff``). No
I/O: the trio shell publishes what these functions return.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from voiceterm import safejson
from voiceterm.core.linkstate import LinkState, LinkStatus
from voiceterm.masking import scrub_known
from voiceterm.protocol import rtvi_events
from voiceterm.protocol.events import Interruption, TextFrameEvent, TranscriptionEvent, TransportMessage

# A JSON line longer than this is cut down to its event name and a `truncated` flag: a subscriber reads
# lines, and a server-chosen 1 MiB metrics blob must not cost every subscriber's queue that much memory.
MAX_LINE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """Base of every stream event. Subclasses' fields are the JSON payload, in declaration order."""

    NAME: ClassVar[str] = ""

    def payload(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _event(name: str):
    def wrap(cls: type) -> type:
        cls.NAME = name
        return dataclass(frozen=True, slots=True)(cls)

    return wrap


# --- the link (onConnected, onDisconnected, onTransportStateChanged, onBotReady) -----------------------


@_event("transport-state-changed")
class TransportStateChanged(DeviceEvent):
    state: str
    previous: str | None
    attempt: int = 0
    error: str | None = None


@_event("connected")
class Connected(DeviceEvent):
    session: int
    url: str  # masked: no token


@_event("disconnected")
class Disconnected(DeviceEvent):
    session: int
    reason: str
    failure: bool


@_event("reconnect-attempt")
class ReconnectAttempt(DeviceEvent):
    """The link failed and will try again after `delay_s` (attempt `attempt` of the current outage)."""

    attempt: int
    delay_s: float
    error: str | None


@_event("bot-ready")
class BotReady(DeviceEvent):
    version: str
    about: dict[str, Any] | None = None


# --- the conversation (speaking, transcripts, output, messages, errors, metrics) ------------------------


@_event("user-started-speaking")
class UserStartedSpeaking(DeviceEvent):
    pass


@_event("user-stopped-speaking")
class UserStoppedSpeaking(DeviceEvent):
    pass


@_event("bot-started-speaking")
class BotStartedSpeaking(DeviceEvent):
    pass


@_event("bot-stopped-speaking")
class BotStoppedSpeaking(DeviceEvent):
    pass


@_event("bot-interrupted")
class BotInterrupted(DeviceEvent):
    """RTVI bot-interrupted, a protocol interruption frame, or a Twilio ``clear``: `via` says which."""

    via: str = "rtvi"


@_event("user-transcript")
class UserTranscript(DeviceEvent):
    text: str
    final: bool = True
    user_id: str = ""
    timestamp: str = ""


@_event("user-input")
class UserInput(DeviceEvent):
    text: str
    input_type: str = ""
    final: bool = True


@_event("bot-output")
class BotOutput(DeviceEvent):
    """What the bot says or shows (RTVI 2.x): `spoken_status` "new" / "in-progress" / "completed" for text that
    `will_be_spoken`, and `spoken_progress` ({accumulated_text, remaining_text}) word by word."""

    text: str
    output_type: str | None = None
    segment_id: int | None = None
    will_be_spoken: bool | None = None
    spoken_status: str | None = None
    spoken_progress: dict[str, Any] | None = None


@_event("bot-transcript")
class BotTranscript(DeviceEvent):
    text: str


@_event("bot-llm-text")
class BotLlmText(DeviceEvent):
    text: str


@_event("bot-tts-text")
class BotTtsText(DeviceEvent):
    text: str


@_event("bot-llm-started")
class BotLlmStarted(DeviceEvent):
    pass


@_event("bot-llm-stopped")
class BotLlmStopped(DeviceEvent):
    pass


@_event("bot-tts-started")
class BotTtsStarted(DeviceEvent):
    pass


@_event("bot-tts-stopped")
class BotTtsStopped(DeviceEvent):
    pass


@_event("user-mute-started")
class UserMuteStarted(DeviceEvent):
    """The bot's own user-mute strategy started ignoring the user (not the device's mute)."""


@_event("user-mute-stopped")
class UserMuteStopped(DeviceEvent):
    pass


@_event("server-message")
class ServerMessage(DeviceEvent):
    data: Any


@_event("server-response")
class ServerResponse(DeviceEvent):
    """The bot's answer to a client-message; `id` is that message's id (the `request` command's reply)."""

    t: str
    d: Any
    id: str | None = None


@_event("error")
class Error(DeviceEvent):
    """The bot reported a pipeline error; `fatal` means its pipeline stopped."""

    message: str
    fatal: bool = False


@_event("message-error")
class MessageError(DeviceEvent):
    """The bot refused one message of ours (RTVI error-response); `id` is that message's id."""

    message: str
    id: str | None = None


@_event("metrics")
class Metrics(DeviceEvent):
    data: Any


@_event("llm-function-call")
class LlmFunctionCall(DeviceEvent):
    function_name: str
    tool_call_id: str
    args: dict[str, Any] | None


@_event("bot-text")
class BotText(DeviceEvent):
    """A protobuf text frame from the bot."""

    text: str


@_event("app-message")
class AppMessage(DeviceEvent):
    """A JSON message from the bot that is not RTVI."""

    data: Any


@_event("rtvi-message")
class RtviMessage(DeviceEvent):
    """Any other RTVI server message (function-call progress, audio levels, types newer than us)."""

    type: str
    data: Any


# --- device functions and client requests (the browser's registerFunctionCallHandler, sendClientRequest) ---


@_event("function-call")
class FunctionCall(DeviceEvent):
    """The bot called a function the device handles; `handler` is command, builtin or control."""

    tool_call_id: str
    function_name: str
    arguments: dict[str, Any]
    handler: str


@_event("function-call-result")
class FunctionCallResult(DeviceEvent):
    """The answer the device sent the bot for a call: `result`, or `error` (ok false)."""

    tool_call_id: str
    function_name: str
    ok: bool
    result: Any = None
    error: str | None = None
    elapsed_ms: float = 0.0


@_event("function-call-dropped")
class FunctionCallDropped(DeviceEvent):
    """A call closed without an answer: the bot cancelled it, or the session ended."""

    tool_call_id: str
    function_name: str
    reason: str


@_event("function-call-request")
class FunctionCallRequest(DeviceEvent):
    """To the connection that claimed the function only: answer with the function-result command within
    `timeout_s`, or the bot gets an error."""

    tool_call_id: str
    function_name: str
    arguments: dict[str, Any]
    timeout_s: float


@_event("client-response")
class ClientResponse(DeviceEvent):
    """To the connection that made the request only: the bot's reply `d` (ok), or why there is none."""

    request_id: str
    t: str
    ok: bool
    d: Any = None
    error: str | None = None
    elapsed_ms: float = 0.0


# --- the device ------------------------------------------------------------------------------------------


@_event("button")
class Button(DeviceEvent):
    """The (debounced) push button went down or up."""

    pressed: bool


@_event("turn-started")
class TurnStarted(DeviceEvent):
    """The mic is going to the bot; `source` is what opened the turn (button, control, keyboard)."""

    source: str


@_event("turn-ended")
class TurnEnded(DeviceEvent):
    source: str


@_event("mute-changed")
class MuteChanged(DeviceEvent):
    muted: bool


@_event("led")
class Led(DeviceEvent):
    """The status view changed: what the LED shows and the one-line text systemd shows."""

    status: str
    previous: str | None
    pattern: str
    color: tuple[float, float, float]
    text: str


@_event("audio-fault")
class AudioFault(DeviceEvent):
    """An audio device failed (`fault` says how) or recovered (`fault` is None)."""

    device: str
    fault: str | None


@_event("volume-changed")
class VolumeChanged(DeviceEvent):
    volume_percent: int


@_event("drops")
class Drops(DeviceEvent):
    """Dropped-audio and dropped-message counters, sent when any of them grew (totals since start)."""

    counters: dict[str, int]


# --- translation -----------------------------------------------------------------------------------------

_SIMPLE: dict[type, type[DeviceEvent]] = {
    rtvi_events.UserStartedSpeaking: UserStartedSpeaking,
    rtvi_events.UserStoppedSpeaking: UserStoppedSpeaking,
    rtvi_events.BotStartedSpeaking: BotStartedSpeaking,
    rtvi_events.BotStoppedSpeaking: BotStoppedSpeaking,
    rtvi_events.BotInterrupted: BotInterrupted,
    rtvi_events.BotLLMStarted: BotLlmStarted,
    rtvi_events.BotLLMStopped: BotLlmStopped,
    rtvi_events.BotTTSStarted: BotTtsStarted,
    rtvi_events.BotTTSStopped: BotTtsStopped,
    rtvi_events.UserMuteStarted: UserMuteStarted,
    rtvi_events.UserMuteStopped: UserMuteStopped,
}

_TEXT: dict[type, type[DeviceEvent]] = {
    rtvi_events.BotTranscription: BotTranscript,
    rtvi_events.BotLLMText: BotLlmText,
    rtvi_events.BotTTSText: BotTtsText,
}


def from_bot(event: object) -> DeviceEvent | None:
    """The stream event for one event decoded from the bot; None for audio and link-internal events."""
    kind = type(event)
    simple = _SIMPLE.get(kind)
    if simple is not None:
        return simple()
    text = _TEXT.get(kind)
    if text is not None:
        return text(event.text)  # type: ignore[attr-defined,call-arg]
    if isinstance(event, rtvi_events.BotReady):
        return BotReady(event.version, event.about)
    if isinstance(event, rtvi_events.UserTranscription):
        return UserTranscript(event.text, event.final, event.user_id, event.timestamp)
    if isinstance(event, rtvi_events.UserInput):
        return UserInput(event.text, event.input_type, event.final)
    if isinstance(event, rtvi_events.BotOutput):
        return BotOutput(
            event.text,
            event.output_type,
            event.segment_id,
            event.will_be_spoken,
            event.spoken_status,
            event.spoken_progress,
        )
    if isinstance(event, rtvi_events.ServerMessage):
        return ServerMessage(event.data)
    if isinstance(event, rtvi_events.ServerResponse):
        return ServerResponse(event.t, event.d, event.id)
    if isinstance(event, rtvi_events.ServerError):
        return Error(event.error, event.fatal)
    if isinstance(event, rtvi_events.ErrorResponse):
        return MessageError(event.error, event.id)
    if isinstance(event, rtvi_events.Metrics):
        return Metrics(event.data)
    if isinstance(event, rtvi_events.LLMFunctionCall):
        return LlmFunctionCall(event.function_name, event.tool_call_id, event.args)
    if isinstance(event, rtvi_events.RTVIEvent):
        return RtviMessage(event.type, event.data)
    if isinstance(event, Interruption):
        return BotInterrupted(via="interruption-frame")
    if isinstance(event, TranscriptionEvent):
        return UserTranscript(event.text, True, event.user_id, event.timestamp)
    if isinstance(event, TextFrameEvent):
        return BotText(event.text)
    if isinstance(event, TransportMessage):
        return AppMessage(event.data)
    return None


def from_link_status(previous: LinkStatus | None, status: LinkStatus) -> list[DeviceEvent]:
    """Events for one link status change: the state change itself, and a reconnect attempt when backing off."""
    if previous is not None and previous.state is status.state and previous.attempt == status.attempt:
        return []
    out: list[DeviceEvent] = [
        TransportStateChanged(
            status.state.value,
            previous.state.value if previous is not None else None,
            status.attempt,
            status.last_error,
        )
    ]
    if status.state is LinkState.BACKING_OFF:
        delay = status.retry_in if status.retry_in is not None else 0.0
        out.append(ReconnectAttempt(status.attempt, round(delay, 3), status.last_error))
    return out


@dataclass(frozen=True, slots=True)
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


def diff(before: Observed, after: Observed, source: str) -> list[DeviceEvent]:
    """What changed between two observations, as events in the order a person would tell it:
    the button, the mute, the turn, the faults, then the LED that shows the result."""
    out: list[DeviceEvent] = []
    if after.button_pressed != before.button_pressed:
        out.append(Button(after.button_pressed))
        # A press is recognised when its debounce time has passed, by a timer: it is still the button's doing.
        source = "button"
    if after.muted != before.muted:
        out.append(MuteChanged(after.muted))
    if after.turn != before.turn:
        out.append(TurnStarted(source) if after.turn else TurnEnded(source))
    if after.faults != before.faults:
        old, new = dict(before.faults), dict(after.faults)
        for device in sorted(old.keys() | new.keys()):
            if old.get(device) != new.get(device):
                out.append(AudioFault(device, new.get(device)))
    if after.status != before.status and after.status is not None:
        out.append(Led(after.status, before.status, after.pattern, after.color, after.text))
    return out


# Counters (dotted paths into the daemon's status snapshot) whose growth is a `drops` event.
DROP_COUNTERS: tuple[str, ...] = (
    "link.dropped_outgoing_audio_total",
    "link.dropped_messages_total",
    "link.dropped_incoming_total",
    "audio.capture.overruns_total",
    "audio.capture.dropped_total",
    "audio.playback.dropped_frames_total",
    "audio.playback.xruns_total",
    "daemon.stale_bot_audio_frames_total",
    "events.subscribers_dropped_total",
)


def drop_counters(snapshot: Mapping[str, Any]) -> dict[str, int]:
    """The DROP_COUNTERS found in a status snapshot, keyed by their dotted path."""
    out: dict[str, int] = {}
    for path in DROP_COUNTERS:
        value: Any = snapshot
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, int) and not isinstance(value, bool):
            out[path] = value
    return out


def encode(event: DeviceEvent, *, ts: float, seq: int) -> bytes:
    """One line of strict UTF-8 JSON: ``{"event": NAME, "ts": unix seconds, "seq": n, ...payload}``.

    Never fails, whatever the bot put in the payload: lone surrogates become U+FFFD, NaN and infinities
    null, remembered secrets <redacted>; nesting deeper than 32 levels and content past MAX_LINE_BYTES are
    cut with a visible "…[truncated]" marker and the line says ``"truncated": true``. A line still over
    MAX_LINE_BYTES (text that grows when escaped) keeps only its event name and ``"truncated": true``.
    """
    head = {"event": event.NAME, "ts": round(ts, 3), "seq": seq}
    sanitizer = safejson.Sanitizer(budget=MAX_LINE_BYTES - 256, text=scrub_known)
    try:
        body = sanitizer.value(event.payload(), safejson.OUTPUT_DEPTH)
    except Exception:  # a bug in an event's payload must cost that one line, not the stream
        body, sanitizer.cut = {}, True
    if sanitizer.cut:
        body["truncated"] = True
    line = safejson.dumps_line({**head, **body})
    if len(line) > MAX_LINE_BYTES:
        line = safejson.dumps_line({**head, "truncated": True})
    return line


JSONABLE_BUDGET = 1 << 20  # characters: a status document is a few KB; this only bounds a runaway one


def jsonable(value: Any) -> Any:
    """`value` rebuilt from JSON types only (see `safejson.sanitize`): enums as their value, NaN and
    infinities as null, lone surrogates replaced, remembered secrets masked, depth and size bounded."""
    return safejson.sanitize(value, budget=JSONABLE_BUDGET, text=scrub_known)


EVENT_NAMES: frozenset[str] = frozenset(
    cls.NAME for cls in list(globals().values()) if isinstance(cls, type) and issubclass(cls, DeviceEvent)
) - {""}

__all__ = [
    "DROP_COUNTERS",
    "EVENT_NAMES",
    "MAX_LINE_BYTES",
    "AppMessage",
    "AudioFault",
    "BotInterrupted",
    "BotLlmStarted",
    "BotLlmStopped",
    "BotLlmText",
    "BotOutput",
    "BotReady",
    "BotStartedSpeaking",
    "BotStoppedSpeaking",
    "BotText",
    "BotTranscript",
    "BotTtsStarted",
    "BotTtsStopped",
    "BotTtsText",
    "Button",
    "ClientResponse",
    "Connected",
    "DeviceEvent",
    "Disconnected",
    "Drops",
    "Error",
    "FunctionCall",
    "FunctionCallDropped",
    "FunctionCallRequest",
    "FunctionCallResult",
    "Led",
    "LlmFunctionCall",
    "MessageError",
    "Metrics",
    "MuteChanged",
    "Observed",
    "ReconnectAttempt",
    "RtviMessage",
    "ServerMessage",
    "ServerResponse",
    "TransportStateChanged",
    "TurnEnded",
    "TurnStarted",
    "UserInput",
    "UserMuteStarted",
    "UserMuteStopped",
    "UserStartedSpeaking",
    "UserStoppedSpeaking",
    "UserTranscript",
    "VolumeChanged",
    "diff",
    "drop_counters",
    "encode",
    "from_bot",
    "from_link_status",
    "jsonable",
]
