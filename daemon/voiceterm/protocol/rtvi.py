"""RTVI, the JSON message protocol inside Pipecat's transport messages: client messages to build and
server messages to parse into typed events (the counterpart of pipecat's ``rtvi/models.py``).

Parsing is tolerant where pipecat evolves (unknown types and extra fields are kept, absent fields
get defaults) and strict where a value cannot be used (a field of the wrong JSON type raises
``ProtocolError``), so a client written today keeps working against newer bots.
"""

from __future__ import annotations

import math
import platform
import uuid
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from voiceterm.protocol.errors import ProtocolError
from voiceterm.protocol.events import RTVIEvent, TransportMessage

__all__ = [
    "MESSAGE_LABEL",
    "RTVI_PROTOCOL_VERSION",
    "BotAudioLevel",
    "BotInterrupted",
    "BotLLMStarted",
    "BotLLMStopped",
    "BotLLMText",
    "BotOutput",
    "BotReady",
    "BotStartedSpeaking",
    "BotStoppedSpeaking",
    "BotTTSStarted",
    "BotTTSStopped",
    "BotTTSText",
    "BotTranscription",
    "ErrorResponse",
    "LLMFunctionCall",
    "LLMFunctionCallInProgress",
    "LLMFunctionCallStarted",
    "LLMFunctionCallStopped",
    "LLMRawText",
    "Metrics",
    "RTVIEvent",
    "STTRawText",
    "ServerError",
    "ServerMessage",
    "ServerResponse",
    "TTSRawText",
    "UserAudioLevel",
    "UserInput",
    "UserLLMText",
    "UserMuteStarted",
    "UserMuteStopped",
    "UserStartedSpeaking",
    "UserStoppedSpeaking",
    "UserTranscription",
    "VADUserStartedSpeaking",
    "VADUserStoppedSpeaking",
    "check_client_message",
    "client_message",
    "client_ready",
    "disconnect_bot",
    "dtmf",
    "dtmf_for",
    "function_call_result",
    "interrupts_on_user_speech",
    "is_compatible_version",
    "new_message_id",
    "parse_server_message",
    "push_to_talk",
    "send_text",
    "ui_event",
]

# pipecat-ai 1.14 (processors/frameworks/rtvi/models.py PROTOCOL_VERSION). The server answers any other
# major version with an error-response but serves the session anyway.
RTVI_PROTOCOL_VERSION = "2.2.0"
MESSAGE_LABEL = "rtvi-ai"

_DTMF_KEYS = frozenset("0123456789*#")

# ---------------------------------------------------------------------------------------------------
# Client -> server


def new_message_id() -> str:
    """A fresh message id: 8 hex characters of a uuid4, as the browser client makes them."""
    return uuid.uuid4().hex[:8]


def _message(msg_type: str, data: dict[str, Any]) -> dict[str, Any]:
    # pipecat validates every client message as {label, type, id: str, data: dict | None}.
    return {"label": MESSAGE_LABEL, "type": msg_type, "id": new_message_id(), "data": data}


def _parse_version(version: object) -> tuple[int, int, int] | None:
    if not isinstance(version, str):
        return None
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() and p.isascii() for p in parts):
        return None
    return int(parts[0]), int(parts[1]), int(parts[2])


def is_compatible_version(server_version: object, client_version: str = RTVI_PROTOCOL_VERSION) -> bool:
    """True when the bot's RTVI version (from ``bot-ready``) has the same major version as ours."""
    server = _parse_version(server_version)
    client = _parse_version(client_version)
    return server is not None and client is not None and server[0] == client[0]


def interrupts_on_user_speech(version: object, about: object) -> bool:
    """Whether a bot whose ``bot-ready`` carried this ``version`` and ``about`` interrupts itself with nothing
    but ``user-started-speaking`` (a server older than pipecat 1.3), so that event must flush playback.

    Newer servers send ``user-started-speaking`` also while the bot keeps talking (interruptions disabled, a
    turn-start strategy that does not interrupt) and announce a real interruption with the protobuf
    ``InterruptionFrame`` (pipecat >= 1.3) and ``bot-interrupted`` (>= 1.4, which is RTVI protocol 2.0.0).
    So RTVI 2.x, or ``about`` naming pipecat-ai 1.3 or later, means no; any other RTVI 0.x/1.x bot, yes.
    """
    rtvi = _parse_version(version)
    if rtvi is not None and rtvi[0] >= 2:
        return False
    details = about if isinstance(about, dict) else {}
    library = (
        _parse_version(details.get("library_version")) if details.get("library") == "pipecat-ai" else None
    )
    return library is None or library < (1, 3, 0)


def client_ready(*, device_id: str, version: str = RTVI_PROTOCOL_VERSION) -> dict[str, Any]:
    """The ``client-ready`` handshake message, sent right after the socket opens."""
    from voiceterm import __version__

    if not isinstance(device_id, str):
        raise ProtocolError(f"client-ready: device_id must be a string, not {type(device_id).__name__}")
    if _parse_version(version) is None:
        raise ProtocolError(f"client-ready: version must look like 2.2.0, got {version!r}")
    about = {
        "library": "voiceterm",
        "library_version": __version__,
        "platform": platform.system() or "unknown",
        "platform_version": platform.release() or "unknown",
        "platform_details": {
            "device_id": device_id,
            "machine": platform.machine() or "unknown",
            "python": platform.python_version(),
        },
    }
    return _message("client-ready", {"version": version, "about": about})


def client_message(t: str, d: object = None) -> dict[str, Any]:
    """An app-defined ``client-message`` (``data = {"t": t, "d": d}``); the bot may answer with a
    ``server-response`` carrying the same id."""
    if not isinstance(t, str) or not t:
        raise ProtocolError("client-message: t must be a non-empty string")
    return _message("client-message", {"t": t, "d": d})


def push_to_talk(state: str) -> dict[str, Any]:
    """The push-to-talk convention of Pipecat's example: ``client-message`` ``push_to_talk``."""
    if state not in ("start", "stop"):
        raise ProtocolError(f'push-to-talk: state must be "start" or "stop", got {state!r}')
    return client_message("push_to_talk", {"state": state})


def send_text(content: str, *, run_immediately: bool = True, audio_response: bool = True) -> dict[str, Any]:
    """``send-text``: user text for the bot's LLM, as if spoken."""
    if not isinstance(content, str):
        raise ProtocolError(f"send-text: content must be a string, not {type(content).__name__}")
    options = {"run_immediately": bool(run_immediately), "audio_response": bool(audio_response)}
    return _message("send-text", {"content": content, "options": options})


def disconnect_bot() -> dict[str, Any]:
    """``disconnect-bot``: graceful end; the server sends its tail of silence and closes with 1000."""
    return _message("disconnect-bot", {})


def dtmf(buttons: str) -> dict[str, Any]:
    """``dtmf``: keypad presses, one character each from ``0-9 * #``, delivered in order."""
    if not isinstance(buttons, str) or not buttons or not set(buttons) <= _DTMF_KEYS:
        raise ProtocolError(f"dtmf: buttons must be one or more of 0-9 * #, got {buttons!r}")
    return _message("dtmf", {"buttons": list(buttons)})


def dtmf_for(buttons: str, server_version: object) -> list[dict[str, Any]]:
    """The ``dtmf`` messages that press `buttons` on a bot of this RTVI version (from ``bot-ready``; None
    when unknown): one ``{"buttons": [...]}`` message from protocol 2.1.0, one ``{"button": key}`` message per
    key for 2.0.x. Older bots have no DTMF: ProtocolError."""
    version = _parse_version(server_version)
    if version is not None and version[0] < 2:
        raise ProtocolError(f"dtmf: the bot speaks RTVI {server_version}, which has no DTMF (2.0.0 or later)")
    first = dtmf(buttons)  # validates the keys
    if version is not None and version[:2] == (2, 0):
        return [_message("dtmf", {"button": key}) for key in buttons]
    return [first]


def ui_event(event: str, payload: object = None) -> dict[str, Any]:
    """``ui-event``: a named UI event for the bot (``data = {"event": event, "payload": payload}``)."""
    if not isinstance(event, str) or not event:
        raise ProtocolError("ui-event: event must be a non-empty string")
    return _message("ui-event", {"event": event, "payload": payload})


def function_call_result(
    *, function_name: str, tool_call_id: str, arguments: dict[str, Any], result: dict[str, Any] | str
) -> dict[str, Any]:
    """``llm-function-call-result``: the answer to a function call the bot asked the client to run."""
    if not isinstance(function_name, str) or not isinstance(tool_call_id, str):
        raise ProtocolError("llm-function-call-result: function_name and tool_call_id must be strings")
    if not isinstance(arguments, dict) or not isinstance(result, (dict, str)):
        raise ProtocolError(
            "llm-function-call-result: arguments must be an object, result an object or string"
        )
    data = {
        "function_name": function_name,
        "tool_call_id": tool_call_id,
        "arguments": arguments,
        "result": result,
    }
    return _message("llm-function-call-result", data)


def check_client_message(message: dict[str, Any], who: str) -> None:
    """An outgoing RTVI message must pass pipecat's ``Message`` model (string type and id, object data),
    or the server answers with an error instead of acting on it."""
    if message.get("label") != MESSAGE_LABEL:
        return  # an app transport message: the server ignores it, so it cannot hurt
    if not isinstance(message.get("type"), str) or not message["type"]:
        raise ProtocolError(f"{who}: RTVI message without a string 'type'")
    if not isinstance(message.get("id"), str):
        raise ProtocolError(f"{who}: RTVI {message['type']} message without a string 'id'")
    if message.get("data") is not None and not isinstance(message["data"], dict):
        raise ProtocolError(f"{who}: RTVI {message['type']} message 'data' must be an object or absent")


# ---------------------------------------------------------------------------------------------------
# Server -> client: typed events. Each subclass's extra fields are read from the message's ``data``
# object under the same name; ``metadata["kind"]`` says which JSON values fit.

_STR = "str"
_OPT_STR = "str?"
_BOOL = "bool"
_OPT_BOOL = "bool?"
_OPT_INT = "int?"
_NUMBER = "number"
_OPT_OBJECT = "object?"
_ANY = "any"


def _kind(kind: str) -> dict[str, str]:
    return {"kind": kind}


@dataclass(frozen=True, slots=True)
class BotReady(RTVIEvent):
    """``bot-ready``: the answer to ``client-ready`` (same id)."""

    TYPE: ClassVar[str] = "bot-ready"
    type: str = TYPE
    version: str = field(default="", metadata=_kind(_STR))
    about: dict[str, Any] | None = field(default=None, metadata=_kind(_OPT_OBJECT))
    capabilities: dict[str, Any] | None = field(default=None, metadata=_kind(_OPT_OBJECT))


@dataclass(frozen=True, slots=True)
class ServerError(RTVIEvent):
    """``error``: a pipeline error; ``fatal`` means the bot's pipeline has stopped."""

    TYPE: ClassVar[str] = "error"
    type: str = TYPE
    error: str = field(default="", metadata=_kind(_STR))
    fatal: bool = field(default=False, metadata=_kind(_BOOL))


@dataclass(frozen=True, slots=True)
class ErrorResponse(RTVIEvent):
    """``error-response``: the bot refused one client message (same id)."""

    TYPE: ClassVar[str] = "error-response"
    type: str = TYPE
    error: str = field(default="", metadata=_kind(_STR))


@dataclass(frozen=True, slots=True)
class ServerResponse(RTVIEvent):
    """``server-response``: the answer to a ``client-message`` (same id)."""

    TYPE: ClassVar[str] = "server-response"
    type: str = TYPE
    t: str = field(default="", metadata=_kind(_STR))
    d: object = field(default=None, metadata=_kind(_ANY))


@dataclass(frozen=True, slots=True)
class ServerMessage(RTVIEvent):
    """``server-message``: an app-defined message; its payload is ``data``."""

    TYPE: ClassVar[str] = "server-message"
    type: str = TYPE


@dataclass(frozen=True, slots=True)
class UserStartedSpeaking(RTVIEvent):
    """``user-started-speaking``: the bot's turn logic heard the user start (interrupts older bots)."""

    TYPE: ClassVar[str] = "user-started-speaking"
    type: str = TYPE


@dataclass(frozen=True, slots=True)
class UserStoppedSpeaking(RTVIEvent):
    """``user-stopped-speaking``."""

    TYPE: ClassVar[str] = "user-stopped-speaking"
    type: str = TYPE


@dataclass(frozen=True, slots=True)
class VADUserStartedSpeaking(RTVIEvent):
    """``vad-user-started-speaking``: the raw VAD signal, not gated by the turn strategy."""

    TYPE: ClassVar[str] = "vad-user-started-speaking"
    type: str = TYPE


@dataclass(frozen=True, slots=True)
class VADUserStoppedSpeaking(RTVIEvent):
    """``vad-user-stopped-speaking``."""

    TYPE: ClassVar[str] = "vad-user-stopped-speaking"
    type: str = TYPE


@dataclass(frozen=True, slots=True)
class BotStartedSpeaking(RTVIEvent):
    """``bot-started-speaking``."""

    TYPE: ClassVar[str] = "bot-started-speaking"
    type: str = TYPE


@dataclass(frozen=True, slots=True)
class BotStoppedSpeaking(RTVIEvent):
    """``bot-stopped-speaking``."""

    TYPE: ClassVar[str] = "bot-stopped-speaking"
    type: str = TYPE


@dataclass(frozen=True, slots=True)
class BotInterrupted(RTVIEvent):
    """``bot-interrupted`` (pipecat >= 1.4): the bot's in-flight output was cut off; flush playback."""

    TYPE: ClassVar[str] = "bot-interrupted"
    type: str = TYPE


@dataclass(frozen=True, slots=True)
class UserMuteStarted(RTVIEvent):
    """``user-mute-started``: the bot ignores user audio until ``user-mute-stopped``."""

    TYPE: ClassVar[str] = "user-mute-started"
    type: str = TYPE


@dataclass(frozen=True, slots=True)
class UserMuteStopped(RTVIEvent):
    """``user-mute-stopped``."""

    TYPE: ClassVar[str] = "user-mute-stopped"
    type: str = TYPE


@dataclass(frozen=True, slots=True)
class BotLLMStarted(RTVIEvent):
    """``bot-llm-started``: the bot's LLM began a response."""

    TYPE: ClassVar[str] = "bot-llm-started"
    type: str = TYPE


@dataclass(frozen=True, slots=True)
class BotLLMStopped(RTVIEvent):
    """``bot-llm-stopped``."""

    TYPE: ClassVar[str] = "bot-llm-stopped"
    type: str = TYPE


@dataclass(frozen=True, slots=True)
class BotTTSStarted(RTVIEvent):
    """``bot-tts-started``."""

    TYPE: ClassVar[str] = "bot-tts-started"
    type: str = TYPE


@dataclass(frozen=True, slots=True)
class BotTTSStopped(RTVIEvent):
    """``bot-tts-stopped``."""

    TYPE: ClassVar[str] = "bot-tts-stopped"
    type: str = TYPE


@dataclass(frozen=True, slots=True)
class UserTranscription(RTVIEvent):
    """``user-transcription`` (deprecated in pipecat 1.13 for ``stt-raw-text`` / ``user-input``)."""

    TYPE: ClassVar[str] = "user-transcription"
    type: str = TYPE
    text: str = field(default="", metadata=_kind(_STR))
    user_id: str = field(default="", metadata=_kind(_STR))
    timestamp: str = field(default="", metadata=_kind(_STR))
    final: bool = field(default=True, metadata=_kind(_BOOL))


@dataclass(frozen=True, slots=True)
class STTRawText(RTVIEvent):
    """``stt-raw-text``: a transcription as the STT produced it, interim ones included."""

    TYPE: ClassVar[str] = "stt-raw-text"
    type: str = TYPE
    text: str = field(default="", metadata=_kind(_STR))
    user_id: str = field(default="", metadata=_kind(_STR))
    timestamp: str = field(default="", metadata=_kind(_STR))
    final: bool = field(default=True, metadata=_kind(_BOOL))


@dataclass(frozen=True, slots=True)
class UserInput(RTVIEvent):
    """``user-input``: what the user said or typed (``input_type`` transcription / chat / backchannel)."""

    TYPE: ClassVar[str] = "user-input"
    type: str = TYPE
    text: str = field(default="", metadata=_kind(_STR))
    input_type: str = field(default="", metadata=_kind(_STR))
    timestamp: str = field(default="", metadata=_kind(_STR))
    final: bool = field(default=True, metadata=_kind(_BOOL))
    user_id: str | None = field(default=None, metadata=_kind(_OPT_STR))
    msg_id: str | None = field(default=None, metadata=_kind(_OPT_STR))


@dataclass(frozen=True, slots=True)
class BotOutput(RTVIEvent):
    """``bot-output``: what the bot says or shows, with whether and how far it has been spoken."""

    TYPE: ClassVar[str] = "bot-output"
    type: str = TYPE
    text: str = field(default="", metadata=_kind(_STR))
    output_type: str | None = field(default=None, metadata=_kind(_OPT_STR))
    segment_id: int | None = field(default=None, metadata=_kind(_OPT_INT))
    spoken: bool | None = field(default=None, metadata=_kind(_OPT_BOOL))  # protocol 1.x
    will_be_spoken: bool | None = field(default=None, metadata=_kind(_OPT_BOOL))  # protocol 2.x
    spoken_status: str | None = field(
        default=None, metadata=_kind(_OPT_STR)
    )  # "new" | "in-progress" | "completed"
    # protocol 2.x: {"accumulated_text", "remaining_text"} while a segment is spoken word by word
    spoken_progress: dict[str, Any] | None = field(default=None, metadata=_kind(_OPT_OBJECT))


@dataclass(frozen=True, slots=True)
class BotLLMText(RTVIEvent):
    """``bot-llm-text``: a chunk of the LLM's streamed text (deprecated for ``llm-raw-text``)."""

    TYPE: ClassVar[str] = "bot-llm-text"
    type: str = TYPE
    text: str = field(default="", metadata=_kind(_STR))


@dataclass(frozen=True, slots=True)
class BotTTSText(RTVIEvent):
    """``bot-tts-text``: text the TTS speaks (deprecated for ``tts-raw-text``)."""

    TYPE: ClassVar[str] = "bot-tts-text"
    type: str = TYPE
    text: str = field(default="", metadata=_kind(_STR))


@dataclass(frozen=True, slots=True)
class BotTranscription(RTVIEvent):
    """``bot-transcription`` (deprecated): the bot's speech as text."""

    TYPE: ClassVar[str] = "bot-transcription"
    type: str = TYPE
    text: str = field(default="", metadata=_kind(_STR))


@dataclass(frozen=True, slots=True)
class UserLLMText(RTVIEvent):
    """``user-llm-text``: the user text that went into the LLM context."""

    TYPE: ClassVar[str] = "user-llm-text"
    type: str = TYPE
    text: str = field(default="", metadata=_kind(_STR))


@dataclass(frozen=True, slots=True)
class LLMRawText(RTVIEvent):
    """``llm-raw-text``: a chunk of text as the LLM streamed it."""

    TYPE: ClassVar[str] = "llm-raw-text"
    type: str = TYPE
    text: str = field(default="", metadata=_kind(_STR))


@dataclass(frozen=True, slots=True)
class TTSRawText(RTVIEvent):
    """``tts-raw-text``: text the TTS speaks, as it is spoken."""

    TYPE: ClassVar[str] = "tts-raw-text"
    type: str = TYPE
    text: str = field(default="", metadata=_kind(_STR))


@dataclass(frozen=True, slots=True)
class Metrics(RTVIEvent):
    """``metrics``: processing and usage figures; the payload is ``data``."""

    TYPE: ClassVar[str] = "metrics"
    type: str = TYPE


@dataclass(frozen=True, slots=True)
class UserAudioLevel(RTVIEvent):
    """``user-audio-level``."""

    TYPE: ClassVar[str] = "user-audio-level"
    type: str = TYPE
    value: float = field(default=0.0, metadata=_kind(_NUMBER))


@dataclass(frozen=True, slots=True)
class BotAudioLevel(RTVIEvent):
    """``bot-audio-level``."""

    TYPE: ClassVar[str] = "bot-audio-level"
    type: str = TYPE
    value: float = field(default=0.0, metadata=_kind(_NUMBER))


@dataclass(frozen=True, slots=True)
class LLMFunctionCall(RTVIEvent):
    """``llm-function-call`` (deprecated since pipecat 0.0.102): the bot asks the client to run one."""

    TYPE: ClassVar[str] = "llm-function-call"
    type: str = TYPE
    function_name: str = field(default="", metadata=_kind(_STR))
    tool_call_id: str = field(default="", metadata=_kind(_STR))
    args: dict[str, Any] | None = field(default=None, metadata=_kind(_OPT_OBJECT))


@dataclass(frozen=True, slots=True)
class LLMFunctionCallStarted(RTVIEvent):
    """``llm-function-call-started``."""

    TYPE: ClassVar[str] = "llm-function-call-started"
    type: str = TYPE
    function_name: str | None = field(default=None, metadata=_kind(_OPT_STR))


@dataclass(frozen=True, slots=True)
class LLMFunctionCallInProgress(RTVIEvent):
    """``llm-function-call-in-progress``."""

    TYPE: ClassVar[str] = "llm-function-call-in-progress"
    type: str = TYPE
    tool_call_id: str = field(default="", metadata=_kind(_STR))
    function_name: str | None = field(default=None, metadata=_kind(_OPT_STR))
    arguments: dict[str, Any] | None = field(default=None, metadata=_kind(_OPT_OBJECT))


@dataclass(frozen=True, slots=True)
class LLMFunctionCallStopped(RTVIEvent):
    """``llm-function-call-stopped``: completed with ``result``, or ``cancelled``."""

    TYPE: ClassVar[str] = "llm-function-call-stopped"
    type: str = TYPE
    tool_call_id: str = field(default="", metadata=_kind(_STR))
    cancelled: bool = field(default=False, metadata=_kind(_BOOL))
    function_name: str | None = field(default=None, metadata=_kind(_OPT_STR))
    result: object = field(default=None, metadata=_kind(_ANY))


_EVENT_CLASSES: tuple[type[RTVIEvent], ...] = (
    BotReady,
    ServerError,
    ErrorResponse,
    ServerResponse,
    ServerMessage,
    UserStartedSpeaking,
    UserStoppedSpeaking,
    VADUserStartedSpeaking,
    VADUserStoppedSpeaking,
    BotStartedSpeaking,
    BotStoppedSpeaking,
    BotInterrupted,
    UserMuteStarted,
    UserMuteStopped,
    BotLLMStarted,
    BotLLMStopped,
    BotTTSStarted,
    BotTTSStopped,
    UserTranscription,
    STTRawText,
    UserInput,
    BotOutput,
    BotLLMText,
    BotTTSText,
    BotTranscription,
    UserLLMText,
    LLMRawText,
    TTSRawText,
    Metrics,
    UserAudioLevel,
    BotAudioLevel,
    LLMFunctionCall,
    LLMFunctionCallStarted,
    LLMFunctionCallInProgress,
    LLMFunctionCallStopped,
)


def _payload_fields(cls: type[RTVIEvent]) -> tuple[tuple[str, str], ...]:
    # (name, kind) for every field a subclass reads from ``data``.
    return tuple((f.name, f.metadata["kind"]) for f in fields(cls) if "kind" in f.metadata)


# type string -> (class, payload fields); built once so parsing is a dict lookup.
_BY_TYPE: dict[str, tuple[type[RTVIEvent], tuple[tuple[str, str], ...]]] = {
    cls.TYPE: (cls, _payload_fields(cls))  # type: ignore[attr-defined]
    for cls in _EVENT_CLASSES
}


def _fits(kind: str, value: object) -> bool:
    if kind == _ANY:
        return True
    if value is None and kind.endswith("?"):
        return True
    base = kind.rstrip("?")
    if base == _STR:
        return isinstance(value, str)
    if base == _BOOL:
        return isinstance(value, bool)
    if base == "int":
        # 64 bits: a segment id or count, never a 4000-digit integer that overflows whoever reads it.
        return isinstance(value, int) and not isinstance(value, bool) and value.bit_length() <= 64
    if base == _NUMBER:
        if isinstance(value, float):
            return math.isfinite(value)
        return isinstance(value, int) and not isinstance(value, bool) and value.bit_length() <= 64
    if base == "object":
        return isinstance(value, dict)
    raise AssertionError(f"unknown field kind {kind}")  # a bug in this module's tables


def _short(text: str) -> str:
    # Server-chosen strings end up in log lines: keep them one short line.
    return repr(text[:40] + "...") if len(text) > 40 else repr(text)


MAX_NAME_CHARS = 128  # an RTVI type or id longer than this is garbage, not a name


def parse_server_message(obj: object) -> RTVIEvent | TransportMessage:
    """Turn one decoded JSON transport message into an event.

    A value that is not a JSON object labelled ``"rtvi-ai"`` is an app message: ``TransportMessage``.
    An RTVI message needs a string ``type`` and a string or absent ``id`` (each at most MAX_NAME_CHARS);
    known types become their typed subclass, unknown ones a plain ``RTVIEvent``. Raises only
    ``ProtocolError``, whatever ``obj`` is.
    """
    try:
        return _parse(obj)
    except ProtocolError:
        raise
    except Exception as e:  # the bot's content must never raise anything else out of here
        raise ProtocolError(f"RTVI: unparsable message ({type(e).__name__})") from None


def _parse(obj: object) -> RTVIEvent | TransportMessage:
    if not isinstance(obj, dict):
        return TransportMessage(obj)
    label = obj.get("label")
    if not (isinstance(label, str) and label == MESSAGE_LABEL):
        return TransportMessage(obj)
    msg_type = obj.get("type")
    if not isinstance(msg_type, str) or not msg_type:
        raise ProtocolError("RTVI message without a string 'type'")
    if len(msg_type) > MAX_NAME_CHARS:
        raise ProtocolError(f"RTVI message 'type' of {len(msg_type)} characters")
    msg_id = obj.get("id")
    if msg_id is not None and not isinstance(msg_id, str):
        raise ProtocolError(f"RTVI {_short(msg_type)}: 'id' must be a string, not {type(msg_id).__name__}")
    if msg_id is not None and len(msg_id) > MAX_NAME_CHARS:
        raise ProtocolError(f"RTVI {_short(msg_type)}: 'id' of {len(msg_id)} characters")
    data = obj.get("data")
    known = _BY_TYPE.get(msg_type)
    if known is None:
        return RTVIEvent(type=msg_type, id=msg_id, data=data)
    cls, payload = known
    values: dict[str, object] = {}
    if payload:
        if data is not None and not isinstance(data, dict):
            raise ProtocolError(
                f"RTVI {_short(msg_type)}: 'data' must be an object, not {type(data).__name__}"
            )
        source = data or {}
        for key, kind in payload:
            if key not in source:
                continue  # absent: the field's default (pipecat omits None fields)
            value = source[key]
            if not _fits(kind, value):
                raise ProtocolError(
                    f"RTVI {_short(msg_type)}: data.{key} has the wrong type ({type(value).__name__}, want {kind})"
                )
            values[key] = value
    return cls(id=msg_id, data=data, **values)
