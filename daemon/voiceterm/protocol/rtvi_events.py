"""The bot's RTVI messages as typed, frozen events: one class per server message type pipecat sends.

Each class's ``TYPE`` is its RTVI message type; its extra fields are read from the message's ``data`` object
under the same name, and ``metadata["kind"]`` says which JSON values fit (`rtvi_parse.py` checks them). A type
not listed here parses as a plain ``RTVIEvent``.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, ClassVar

from voiceterm.protocol.events import RTVIEvent
from voiceterm.record import record

__all__ = [
    "EVENT_CLASSES",
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
]

# The JSON values a field takes: a base kind ("str", "bool", "int", "number", "object", "any"); a trailing
# "?" also allows null.
STR = "str"
OPT_STR = "str?"
BOOL = "bool"
OPT_BOOL = "bool?"
OPT_INT = "int?"
NUMBER = "number"
OPT_OBJECT = "object?"
ANY = "any"


def _kind(kind: str) -> dict[str, str]:
    return {"kind": kind}


@record
class BotReady(RTVIEvent):
    """``bot-ready``: the answer to ``client-ready`` (same id)."""

    TYPE: ClassVar[str] = "bot-ready"
    type: str = TYPE
    version: str = field(default="", metadata=_kind(STR))
    about: dict[str, Any] | None = field(default=None, metadata=_kind(OPT_OBJECT))
    capabilities: dict[str, Any] | None = field(default=None, metadata=_kind(OPT_OBJECT))


@record
class ServerError(RTVIEvent):
    """``error``: a pipeline error; ``fatal`` means the bot's pipeline has stopped."""

    TYPE: ClassVar[str] = "error"
    type: str = TYPE
    error: str = field(default="", metadata=_kind(STR))
    fatal: bool = field(default=False, metadata=_kind(BOOL))


@record
class ErrorResponse(RTVIEvent):
    """``error-response``: the bot refused one client message (same id)."""

    TYPE: ClassVar[str] = "error-response"
    type: str = TYPE
    error: str = field(default="", metadata=_kind(STR))


@record
class ServerResponse(RTVIEvent):
    """``server-response``: the answer to a ``client-message`` (same id)."""

    TYPE: ClassVar[str] = "server-response"
    type: str = TYPE
    t: str = field(default="", metadata=_kind(STR))
    d: object = field(default=None, metadata=_kind(ANY))


@record
class ServerMessage(RTVIEvent):
    """``server-message``: an app-defined message; its payload is ``data``."""

    TYPE: ClassVar[str] = "server-message"
    type: str = TYPE


@record
class UserStartedSpeaking(RTVIEvent):
    """``user-started-speaking``: the bot's turn logic heard the user start (interrupts older bots)."""

    TYPE: ClassVar[str] = "user-started-speaking"
    type: str = TYPE


@record
class UserStoppedSpeaking(RTVIEvent):
    """``user-stopped-speaking``."""

    TYPE: ClassVar[str] = "user-stopped-speaking"
    type: str = TYPE


@record
class VADUserStartedSpeaking(RTVIEvent):
    """``vad-user-started-speaking``: the raw VAD signal, not gated by the turn strategy."""

    TYPE: ClassVar[str] = "vad-user-started-speaking"
    type: str = TYPE


@record
class VADUserStoppedSpeaking(RTVIEvent):
    """``vad-user-stopped-speaking``."""

    TYPE: ClassVar[str] = "vad-user-stopped-speaking"
    type: str = TYPE


@record
class BotStartedSpeaking(RTVIEvent):
    """``bot-started-speaking``."""

    TYPE: ClassVar[str] = "bot-started-speaking"
    type: str = TYPE


@record
class BotStoppedSpeaking(RTVIEvent):
    """``bot-stopped-speaking``."""

    TYPE: ClassVar[str] = "bot-stopped-speaking"
    type: str = TYPE


@record
class BotInterrupted(RTVIEvent):
    """``bot-interrupted`` (pipecat >= 1.4): the bot's in-flight output was cut off; flush playback."""

    TYPE: ClassVar[str] = "bot-interrupted"
    type: str = TYPE


@record
class UserMuteStarted(RTVIEvent):
    """``user-mute-started``: the bot ignores user audio until ``user-mute-stopped``."""

    TYPE: ClassVar[str] = "user-mute-started"
    type: str = TYPE


@record
class UserMuteStopped(RTVIEvent):
    """``user-mute-stopped``."""

    TYPE: ClassVar[str] = "user-mute-stopped"
    type: str = TYPE


@record
class BotLLMStarted(RTVIEvent):
    """``bot-llm-started``: the bot's LLM began a response."""

    TYPE: ClassVar[str] = "bot-llm-started"
    type: str = TYPE


@record
class BotLLMStopped(RTVIEvent):
    """``bot-llm-stopped``."""

    TYPE: ClassVar[str] = "bot-llm-stopped"
    type: str = TYPE


@record
class BotTTSStarted(RTVIEvent):
    """``bot-tts-started``."""

    TYPE: ClassVar[str] = "bot-tts-started"
    type: str = TYPE


@record
class BotTTSStopped(RTVIEvent):
    """``bot-tts-stopped``."""

    TYPE: ClassVar[str] = "bot-tts-stopped"
    type: str = TYPE


@record
class UserTranscription(RTVIEvent):
    """``user-transcription`` (deprecated in pipecat 1.13 for ``stt-raw-text`` / ``user-input``)."""

    TYPE: ClassVar[str] = "user-transcription"
    type: str = TYPE
    text: str = field(default="", metadata=_kind(STR))
    user_id: str = field(default="", metadata=_kind(STR))
    timestamp: str = field(default="", metadata=_kind(STR))
    final: bool = field(default=True, metadata=_kind(BOOL))


@record
class STTRawText(RTVIEvent):
    """``stt-raw-text``: a transcription as the STT produced it, interim ones included."""

    TYPE: ClassVar[str] = "stt-raw-text"
    type: str = TYPE
    text: str = field(default="", metadata=_kind(STR))
    user_id: str = field(default="", metadata=_kind(STR))
    timestamp: str = field(default="", metadata=_kind(STR))
    final: bool = field(default=True, metadata=_kind(BOOL))


@record
class UserInput(RTVIEvent):
    """``user-input``: what the user said or typed (``input_type`` transcription / chat / backchannel)."""

    TYPE: ClassVar[str] = "user-input"
    type: str = TYPE
    text: str = field(default="", metadata=_kind(STR))
    input_type: str = field(default="", metadata=_kind(STR))
    timestamp: str = field(default="", metadata=_kind(STR))
    final: bool = field(default=True, metadata=_kind(BOOL))
    user_id: str | None = field(default=None, metadata=_kind(OPT_STR))
    msg_id: str | None = field(default=None, metadata=_kind(OPT_STR))


@record
class BotOutput(RTVIEvent):
    """``bot-output``: what the bot says or shows, with whether and how far it has been spoken."""

    TYPE: ClassVar[str] = "bot-output"
    type: str = TYPE
    text: str = field(default="", metadata=_kind(STR))
    output_type: str | None = field(default=None, metadata=_kind(OPT_STR))
    segment_id: int | None = field(default=None, metadata=_kind(OPT_INT))
    spoken: bool | None = field(default=None, metadata=_kind(OPT_BOOL))  # protocol 1.x
    will_be_spoken: bool | None = field(default=None, metadata=_kind(OPT_BOOL))  # protocol 2.x
    spoken_status: str | None = field(
        default=None, metadata=_kind(OPT_STR)
    )  # "new" | "in-progress" | "completed"
    # protocol 2.x: {"accumulated_text", "remaining_text"} while a segment is spoken word by word
    spoken_progress: dict[str, Any] | None = field(default=None, metadata=_kind(OPT_OBJECT))


@record
class BotLLMText(RTVIEvent):
    """``bot-llm-text``: a chunk of the LLM's streamed text (deprecated for ``llm-raw-text``)."""

    TYPE: ClassVar[str] = "bot-llm-text"
    type: str = TYPE
    text: str = field(default="", metadata=_kind(STR))


@record
class BotTTSText(RTVIEvent):
    """``bot-tts-text``: text the TTS speaks (deprecated for ``tts-raw-text``)."""

    TYPE: ClassVar[str] = "bot-tts-text"
    type: str = TYPE
    text: str = field(default="", metadata=_kind(STR))


@record
class BotTranscription(RTVIEvent):
    """``bot-transcription`` (deprecated): the bot's speech as text."""

    TYPE: ClassVar[str] = "bot-transcription"
    type: str = TYPE
    text: str = field(default="", metadata=_kind(STR))


@record
class UserLLMText(RTVIEvent):
    """``user-llm-text``: the user text that went into the LLM context."""

    TYPE: ClassVar[str] = "user-llm-text"
    type: str = TYPE
    text: str = field(default="", metadata=_kind(STR))


@record
class LLMRawText(RTVIEvent):
    """``llm-raw-text``: a chunk of text as the LLM streamed it."""

    TYPE: ClassVar[str] = "llm-raw-text"
    type: str = TYPE
    text: str = field(default="", metadata=_kind(STR))


@record
class TTSRawText(RTVIEvent):
    """``tts-raw-text``: text the TTS speaks, as it is spoken."""

    TYPE: ClassVar[str] = "tts-raw-text"
    type: str = TYPE
    text: str = field(default="", metadata=_kind(STR))


@record
class Metrics(RTVIEvent):
    """``metrics``: processing and usage figures; the payload is ``data``."""

    TYPE: ClassVar[str] = "metrics"
    type: str = TYPE


@record
class UserAudioLevel(RTVIEvent):
    """``user-audio-level``."""

    TYPE: ClassVar[str] = "user-audio-level"
    type: str = TYPE
    value: float = field(default=0.0, metadata=_kind(NUMBER))


@record
class BotAudioLevel(RTVIEvent):
    """``bot-audio-level``."""

    TYPE: ClassVar[str] = "bot-audio-level"
    type: str = TYPE
    value: float = field(default=0.0, metadata=_kind(NUMBER))


@record
class LLMFunctionCall(RTVIEvent):
    """``llm-function-call`` (deprecated since pipecat 0.0.102): the bot asks the client to run one."""

    TYPE: ClassVar[str] = "llm-function-call"
    type: str = TYPE
    function_name: str = field(default="", metadata=_kind(STR))
    tool_call_id: str = field(default="", metadata=_kind(STR))
    args: dict[str, Any] | None = field(default=None, metadata=_kind(OPT_OBJECT))


@record
class LLMFunctionCallStarted(RTVIEvent):
    """``llm-function-call-started``."""

    TYPE: ClassVar[str] = "llm-function-call-started"
    type: str = TYPE
    function_name: str | None = field(default=None, metadata=_kind(OPT_STR))


@record
class LLMFunctionCallInProgress(RTVIEvent):
    """``llm-function-call-in-progress``."""

    TYPE: ClassVar[str] = "llm-function-call-in-progress"
    type: str = TYPE
    tool_call_id: str = field(default="", metadata=_kind(STR))
    function_name: str | None = field(default=None, metadata=_kind(OPT_STR))
    arguments: dict[str, Any] | None = field(default=None, metadata=_kind(OPT_OBJECT))


@record
class LLMFunctionCallStopped(RTVIEvent):
    """``llm-function-call-stopped``: completed with ``result``, or ``cancelled``."""

    TYPE: ClassVar[str] = "llm-function-call-stopped"
    type: str = TYPE
    tool_call_id: str = field(default="", metadata=_kind(STR))
    cancelled: bool = field(default=False, metadata=_kind(BOOL))
    function_name: str | None = field(default=None, metadata=_kind(OPT_STR))
    result: object = field(default=None, metadata=_kind(ANY))


EVENT_CLASSES: tuple[type[RTVIEvent], ...] = (
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
