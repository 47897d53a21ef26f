"""RTVI, the JSON message protocol inside Pipecat's transport messages: the client messages the terminal sends
(the counterpart of pipecat's ``rtvi/models.py``) and what the bot's protocol version means for them.

The bot's messages, parsed into typed events, are `rtvi_events.py` (the classes) and `rtvi_parse.py` (the
parser).
"""

from __future__ import annotations

import platform
import uuid
from typing import Any

from voiceterm.protocol.errors import ProtocolError

__all__ = [
    "MESSAGE_LABEL",
    "RTVI_PROTOCOL_VERSION",
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
    "parse_version",
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


def parse_version(version: object) -> tuple[int, int, int] | None:
    """A "major.minor.patch" version as three integers; None for anything else."""
    if not isinstance(version, str):
        return None
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() and p.isascii() for p in parts):
        return None
    return int(parts[0]), int(parts[1]), int(parts[2])


def is_compatible_version(server_version: object, client_version: str = RTVI_PROTOCOL_VERSION) -> bool:
    """True when the bot's RTVI version (from ``bot-ready``) has the same major version as ours."""
    server = parse_version(server_version)
    client = parse_version(client_version)
    return server is not None and client is not None and server[0] == client[0]


def interrupts_on_user_speech(version: object, about: object) -> bool:
    """Whether a bot whose ``bot-ready`` carried this ``version`` and ``about`` interrupts itself with nothing
    but ``user-started-speaking`` (a server older than pipecat 1.3), so that event must flush playback.

    Newer servers send ``user-started-speaking`` also while the bot keeps talking (interruptions disabled, a
    turn-start strategy that does not interrupt) and announce a real interruption with the protobuf
    ``InterruptionFrame`` (pipecat >= 1.3) and ``bot-interrupted`` (>= 1.4, which is RTVI protocol 2.0.0).
    So RTVI 2.x, or ``about`` naming pipecat-ai 1.3 or later, means no; any other RTVI 0.x/1.x bot, yes.
    """
    rtvi = parse_version(version)
    if rtvi is not None and rtvi[0] >= 2:
        return False
    details = about if isinstance(about, dict) else {}
    library = (
        parse_version(details.get("library_version")) if details.get("library") == "pipecat-ai" else None
    )
    return library is None or library < (1, 3, 0)


def client_ready(*, device_id: str, version: str = RTVI_PROTOCOL_VERSION) -> dict[str, Any]:
    """The ``client-ready`` handshake message, sent right after the socket opens."""
    from voiceterm import __version__

    if not isinstance(device_id, str):
        raise ProtocolError(f"client-ready: device_id must be a string, not {type(device_id).__name__}")
    if parse_version(version) is None:
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
    version = parse_version(server_version)
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
