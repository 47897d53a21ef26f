"""The local event stream's events: typed, pure, and serialised as one JSON object per line.

Each event is a frozen dataclass whose ``NAME`` is the ``"event"`` of its JSON line. They mirror the browser
``PipecatClient`` callbacks (onConnected → ``connected``, onUserTranscript → ``user-transcript``, onBotOutput →
``bot-output`` ...) and add the device's own (button, mute, LED, audio faults, reconnect attempts, drops).

Naming: an event that relays a message of the bot is called like the browser's callback for it, ``On`` and
the message (``OnBotReady`` relays RTVI ``bot-ready``, the class `protocol.rtvi_events.BotReady`): one name,
one thing. The device's own events have plain names (``Button``, ``Led``, ``Connected``). What the daemon
sees becomes these events in `core/stream_reporter.py`; the trio shell publishes them from one place.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, ClassVar

from voiceterm import safejson
from voiceterm.masking import scrub_known
from voiceterm.record import record

# A JSON line longer than this is cut down to its event name and a `truncated` flag: a subscriber reads
# lines, and a server-chosen 1 MiB metrics blob must not cost every subscriber's queue that much memory.
MAX_LINE_BYTES = 64 * 1024


@record
class DeviceEvent:
    """Base of every stream event. Subclasses' fields are the JSON payload, in declaration order."""

    NAME: ClassVar[str] = ""

    def payload(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _event(name: str):
    def wrap(cls: type) -> type:
        cls.NAME = name
        return record(cls)

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
class OnBotReady(DeviceEvent):
    version: str
    about: dict[str, Any] | None = None


# --- the conversation (speaking, transcripts, output, messages, errors, metrics) ------------------------


@_event("user-started-speaking")
class OnUserStartedSpeaking(DeviceEvent):
    pass


@_event("user-stopped-speaking")
class OnUserStoppedSpeaking(DeviceEvent):
    pass


@_event("bot-started-speaking")
class OnBotStartedSpeaking(DeviceEvent):
    pass


@_event("bot-stopped-speaking")
class OnBotStoppedSpeaking(DeviceEvent):
    pass


@_event("bot-interrupted")
class OnBotInterrupted(DeviceEvent):
    """RTVI bot-interrupted, a protocol interruption frame, or a Twilio ``clear``: `via` says which."""

    via: str = "rtvi"


@_event("user-transcript")
class OnUserTranscript(DeviceEvent):
    text: str
    final: bool = True
    user_id: str = ""
    timestamp: str = ""


@_event("user-input")
class OnUserInput(DeviceEvent):
    text: str
    input_type: str = ""
    final: bool = True


@_event("bot-output")
class OnBotOutput(DeviceEvent):
    """What the bot says or shows (RTVI 2.x): `spoken_status` "new" / "in-progress" / "completed" for text that
    `will_be_spoken`, and `spoken_progress` ({accumulated_text, remaining_text}) word by word."""

    text: str
    output_type: str | None = None
    segment_id: int | None = None
    will_be_spoken: bool | None = None
    spoken_status: str | None = None
    spoken_progress: dict[str, Any] | None = None


@_event("bot-transcript")
class OnBotTranscript(DeviceEvent):
    text: str


@_event("bot-llm-text")
class OnBotLlmText(DeviceEvent):
    text: str


@_event("bot-tts-text")
class OnBotTtsText(DeviceEvent):
    text: str


@_event("bot-llm-started")
class OnBotLlmStarted(DeviceEvent):
    pass


@_event("bot-llm-stopped")
class OnBotLlmStopped(DeviceEvent):
    pass


@_event("bot-tts-started")
class OnBotTtsStarted(DeviceEvent):
    pass


@_event("bot-tts-stopped")
class OnBotTtsStopped(DeviceEvent):
    pass


@_event("user-mute-started")
class OnUserMuteStarted(DeviceEvent):
    """The bot's own user-mute strategy started ignoring the user (not the device's mute)."""


@_event("user-mute-stopped")
class OnUserMuteStopped(DeviceEvent):
    pass


@_event("server-message")
class OnServerMessage(DeviceEvent):
    data: Any


@_event("server-response")
class OnServerResponse(DeviceEvent):
    """The bot's answer to a client-message; `id` is that message's id (the `request` command's reply)."""

    t: str
    d: Any
    id: str | None = None


@_event("error")
class OnError(DeviceEvent):
    """The bot reported a pipeline error; `fatal` means its pipeline stopped."""

    message: str
    fatal: bool = False


@_event("message-error")
class OnMessageError(DeviceEvent):
    """The bot refused one message of ours (RTVI error-response); `id` is that message's id."""

    message: str
    id: str | None = None


@_event("metrics")
class OnMetrics(DeviceEvent):
    data: Any


@_event("llm-function-call")
class OnLlmFunctionCall(DeviceEvent):
    function_name: str
    tool_call_id: str
    args: dict[str, Any] | None


@_event("bot-text")
class OnBotText(DeviceEvent):
    """A protobuf text frame from the bot."""

    text: str


@_event("app-message")
class OnAppMessage(DeviceEvent):
    """A JSON message from the bot that is not RTVI."""

    data: Any


@_event("rtvi-message")
class OnRtviMessage(DeviceEvent):
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
    "EVENT_NAMES",
    "MAX_LINE_BYTES",
    "AudioFault",
    "Button",
    "ClientResponse",
    "Connected",
    "DeviceEvent",
    "Disconnected",
    "Drops",
    "FunctionCall",
    "FunctionCallDropped",
    "FunctionCallRequest",
    "FunctionCallResult",
    "Led",
    "MuteChanged",
    "OnAppMessage",
    "OnBotInterrupted",
    "OnBotLlmStarted",
    "OnBotLlmStopped",
    "OnBotLlmText",
    "OnBotOutput",
    "OnBotReady",
    "OnBotStartedSpeaking",
    "OnBotStoppedSpeaking",
    "OnBotText",
    "OnBotTranscript",
    "OnBotTtsStarted",
    "OnBotTtsStopped",
    "OnBotTtsText",
    "OnError",
    "OnLlmFunctionCall",
    "OnMessageError",
    "OnMetrics",
    "OnRtviMessage",
    "OnServerMessage",
    "OnServerResponse",
    "OnUserInput",
    "OnUserMuteStarted",
    "OnUserMuteStopped",
    "OnUserStartedSpeaking",
    "OnUserStoppedSpeaking",
    "OnUserTranscript",
    "ReconnectAttempt",
    "TransportStateChanged",
    "TurnEnded",
    "TurnStarted",
    "VolumeChanged",
    "encode",
    "jsonable",
]
