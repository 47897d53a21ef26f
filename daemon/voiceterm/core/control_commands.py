"""Control commands on the event socket: one JSON object per line in, one JSON reply per line out. Pure.

A request is ``{"cmd": NAME, "id": optional str|int, ...arguments}``; its reply is
``{"reply": NAME, "id": same, "ok": true, "result": {...}}`` or ``{"reply": NAME, "id": same, "ok": false,
"error": "one line"}``. Parsing is strict — an unknown command or argument, a wrong type or an out-of-range
value is an error reply that changes nothing — because the socket is open to other processes on the device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Union

from voiceterm import safejson
from voiceterm.core.device_events import EVENT_NAMES, jsonable
from voiceterm.record import record

MAX_REQUEST_BYTES = 16 * 1024  # a longer line is refused and the connection closed
# A request is a flat object, but arguments may carry app data for the bot (client-message d, ui-event
# payload: 32 levels at most); the object and the argument add two.
MAX_REQUEST_DEPTH = 34
MAX_TEXT_CHARS = 4000  # send-text content
VOLUME_RANGE = (0, 400)  # the same range as audio.volume_percent


class CommandError(ValueError):
    """A request that cannot be carried out; str() is the one-line reason sent back."""

    def __init__(self, message: str, *, request_id: Any = None, cmd: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.cmd = cmd


@record
class Subscribe:
    """Stream events on this connection from now on; `events` limits them to those names (None = all)."""

    events: frozenset[str] | None = None


@record
class Unsubscribe:
    pass


@record
class Talk:
    """The on-screen talk button: start (press) or stop (release) a push-to-talk turn."""

    start: bool


@record
class Mute:
    """Set the mute (True / False), or toggle it (None)."""

    muted: bool | None


@record
class Volume:
    """Set the software volume of the bot's voice, in percent; None only reports it."""

    percent: int | None


@record
class SendText:
    """RTVI send-text: the bot takes `content` as if the user had said it."""

    content: str
    run_immediately: bool = True
    audio_response: bool = True


@record
class Reconnect:
    """Drop the session and connect again now (also leaves FAILED)."""


@record
class Status:
    """The state and counters `voiceterm status` prints."""


@record
class Help:
    """The commands and their arguments."""


Command = Union[
    Subscribe,
    Unsubscribe,
    Talk,
    Mute,
    Volume,
    SendText,
    Reconnect,
    Status,
    Help,
    "ClientMessage",
    "ClientRequest",
    "UiEvent",
    "Dtmf",
    "ClaimFunctions",
    "ReleaseFunctions",
    "FunctionResult",
    "Functions",
]


@record
class Request:
    id: str | int | None
    cmd: str
    command: Command


# name -> (arguments it takes, one-line help)
COMMANDS: dict[str, tuple[tuple[str, ...], str]] = {
    "subscribe": (("events",), "stream events on this connection; events: [names] to filter"),
    "unsubscribe": ((), "stop streaming events on this connection"),
    "talk": (("state",), 'push-to-talk: state "start" (press) or "stop" (release)'),
    "mute": ((), "mute the microphone (nothing reaches the bot)"),
    "unmute": ((), "unmute the microphone"),
    "toggle-mute": ((), "mute or unmute"),
    "volume": (("percent",), "set the bot's voice volume, 0-400 %; without percent, report it"),
    "send-text": (
        ("content", "run_immediately", "audio_response"),
        "RTVI send-text: content as if the user said it",
    ),
    "reconnect": ((), "drop the session and connect again now"),
    "status": ((), "the daemon's state and counters"),
    "help": ((), "this list"),
}


def parse_request(line: bytes | str) -> Request:
    """One request line to a Request; raises CommandError (carrying the id and cmd when they were readable).

    Raises nothing else whatever the line holds: size, nesting and text are checked before anything acts
    on it, so a request that parses is one that can be carried out as asked (text that cannot be sent as
    UTF-8, a lone surrogate, or a NaN that JSON cannot carry, is refused here, not after an ok).
    """
    try:
        return _parse_request(line)
    except CommandError:
        raise
    except Exception as e:  # a socket client's bytes must never end the socket, nor the daemon
        raise CommandError(f"unreadable request ({type(e).__name__})") from None


def _parse_request(line: bytes | str) -> Request:
    if len(line) > MAX_REQUEST_BYTES:
        raise CommandError(f"request longer than {MAX_REQUEST_BYTES} bytes")
    try:
        obj = safejson.loads(line, max_bytes=MAX_REQUEST_BYTES, max_depth=MAX_REQUEST_DEPTH)
    except safejson.JSONRejected as e:
        if e.kind == "too deep":
            raise CommandError(f"request nested deeper than {MAX_REQUEST_DEPTH} levels") from None
        raise CommandError('not JSON: send one object per line, like {"cmd": "status"}') from None
    if not isinstance(obj, dict):
        raise CommandError('a request must be a JSON object, like {"cmd": "status"}')
    request_id = obj.get("id")
    if request_id is not None and (
        isinstance(request_id, bool)
        or not isinstance(request_id, (str, int))
        or (isinstance(request_id, int) and request_id.bit_length() > 200)
        or len(str(request_id)) > 64
        or (isinstance(request_id, str) and safejson.has_lone_surrogate(request_id))
    ):
        raise CommandError("id must be a string or an integer of at most 64 characters")
    unsendable = _unsendable(obj)
    if unsendable is not None:
        raise CommandError(unsendable, request_id=request_id)
    cmd = obj.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise CommandError('missing "cmd"', request_id=request_id)
    if cmd not in COMMANDS:
        known = ", ".join(sorted(COMMANDS))
        raise CommandError(f"unknown command {cmd[:40]!r}; known: {known}", request_id=request_id)
    allowed, _ = COMMANDS[cmd]
    args = {k: v for k, v in obj.items() if k not in ("cmd", "id")}
    for key in args:
        if key not in allowed:
            takes = ", ".join(allowed) or "no arguments"
            raise CommandError(
                f"unknown argument {key[:40]!r} (takes {takes})", request_id=request_id, cmd=cmd
            )
    try:
        command = _build(cmd, args)
    except CommandError as e:
        raise CommandError(str(e), request_id=request_id, cmd=cmd) from None
    return Request(request_id, cmd, command)


def _unsendable(obj: Mapping[str, Any]) -> str | None:
    """Why an argument could not go to the bot as JSON, naming it, or None: text with a lone surrogate (no
    UTF-8 for it) or a number that is NaN or infinite (no JSON for it), in its name or anywhere in its
    value. The walk is bounded by the request's size."""
    for key, value in obj.items():
        if safejson.has_lone_surrogate(key):
            return "an argument name is not valid Unicode text (a lone surrogate cannot be sent)"
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, str) and safejson.has_lone_surrogate(item):
                return f"{key} is not valid Unicode text (a lone surrogate cannot be sent)"
            if isinstance(item, float) and not math.isfinite(item):
                return f"{key} holds {item!r}, which is not a JSON number"
            if isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
    return None


def _build(cmd: str, args: Mapping[str, Any]) -> Command:
    if cmd in _MESSAGE_BUILDERS:
        return _MESSAGE_BUILDERS[cmd](args)
    if cmd == "subscribe":
        names = args.get("events")
        if names is None:
            return Subscribe(None)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise CommandError("events must be a list of event names")
        unknown = sorted(set(names) - EVENT_NAMES)
        if unknown:
            raise CommandError(f"unknown event name {unknown[0][:40]!r}")
        return Subscribe(frozenset(names))
    if cmd == "unsubscribe":
        return Unsubscribe()
    if cmd == "talk":
        state = args.get("state")
        if state not in ("start", "stop"):
            raise CommandError('state must be "start" or "stop"')
        return Talk(state == "start")
    if cmd in ("mute", "unmute", "toggle-mute"):
        return Mute({"mute": True, "unmute": False}.get(cmd))
    if cmd == "volume":
        percent = args.get("percent")
        if percent is None:
            return Volume(None)
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not math.isfinite(percent):
            raise CommandError("percent must be a number")
        lo, hi = VOLUME_RANGE
        if not lo <= percent <= hi:
            raise CommandError(f"percent {percent:g} is out of range, use {lo} to {hi}")
        return Volume(round(percent))
    if cmd == "send-text":
        content = args.get("content")
        if not isinstance(content, str) or not content.strip():
            raise CommandError("content must be a non-empty string")
        if len(content) > MAX_TEXT_CHARS:
            raise CommandError(f"content longer than {MAX_TEXT_CHARS} characters")
        flags = {}
        for name in ("run_immediately", "audio_response"):
            value = args.get(name, True)
            if not isinstance(value, bool):
                raise CommandError(f"{name} must be true or false")
            flags[name] = value
        return SendText(content, **flags)
    if cmd == "reconnect":
        return Reconnect()
    if cmd == "status":
        return Status()
    return Help()


def help_result() -> dict[str, Any]:
    return {name: {"args": list(args), "help": text} for name, (args, text) in COMMANDS.items()}


def reply_ok(request_id: Any, cmd: str, result: Mapping[str, Any] | None = None) -> bytes:
    return _line({"reply": cmd, "id": request_id, "ok": True, "result": dict(result or {})})


def reply_error(request_id: Any, cmd: str | None, message: str) -> bytes:
    return _line({"reply": cmd, "id": request_id, "ok": False, "error": message})


def _line(obj: Mapping[str, Any]) -> bytes:
    return safejson.dumps_line(jsonable(obj))


# --- messages to the bot and device functions (the browser client's sendClientMessage, sendClientRequest,
# sendUIEvent, sendDTMF and registerFunctionCallHandler) -------------------------------------------------

MAX_NAME_CHARS = 100  # a client-message type, a ui-event name
MAX_PAYLOAD_DEPTH = 32  # app data nested deeper than this is refused
MAX_DTMF_KEYS = 32
MAX_CALL_ID_CHARS = 128
MAX_ERROR_CHARS = 500


@record
class ClientMessage:
    """RTVI client-message ``{"t": t, "d": d}``: app data for the bot, no reply awaited."""

    t: str
    d: Any = None


@record
class ClientRequest:
    """A client-message whose reply (the bot's server-response with the same id) is awaited: the reply says
    which id; the outcome arrives on this connection as a ``client-response`` event."""

    t: str
    d: Any = None
    timeout_s: float = 10.0


@record
class UiEvent:
    """RTVI ui-event ``{"event": event, "payload": payload}``."""

    event: str
    payload: Any = None


@record
class Dtmf:
    """Keypad presses, in order: RTVI dtmf, or Twilio dtmf events in the Twilio serializer's mode."""

    buttons: str


@record
class ClaimFunctions:
    """This connection answers the bot's calls to these functions (as function-call-request events)."""

    names: tuple[str, ...]


@record
class ReleaseFunctions:
    """Stop answering these functions (None: all of this connection's)."""

    names: tuple[str, ...] | None


@record
class FunctionResult:
    """The answer to a call this connection claimed: a result (object or string) or an error."""

    tool_call_id: str
    result: Any = None
    error: str | None = None


@record
class Functions:
    """The device's functions (declared, built-in, claimed) and the calls open now."""


def _text_arg(args: Mapping[str, Any], name: str, limit: int = MAX_NAME_CHARS) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value.strip():
        raise CommandError(f"{name} must be a non-empty string")
    if len(value) > limit:
        raise CommandError(f"{name} longer than {limit} characters")
    return value


def _json_arg(args: Mapping[str, Any], name: str) -> Any:
    """An app-defined JSON value, bounded in depth (its size is bounded by the request's)."""
    value = args.get(name)
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_PAYLOAD_DEPTH:
                raise CommandError(f"{name} is nested deeper than {MAX_PAYLOAD_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return value


def _names_arg(args: Mapping[str, Any], required: bool) -> tuple[str, ...] | None:
    names = args.get("names")
    if names is None and not required:
        return None
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise CommandError("names must be a function name or a list of them")
    if len(names) > 64:
        raise CommandError("more than 64 names")
    return tuple(names)


def _build_client_request(args: Mapping[str, Any]) -> ClientRequest:
    timeout = args.get("timeout_s", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout):
        raise CommandError("timeout_s must be a number of seconds")
    if not 0.1 <= timeout <= 120:
        raise CommandError(f"timeout_s {timeout:g} is out of range, use 0.1 to 120")
    return ClientRequest(_text_arg(args, "t"), _json_arg(args, "d"), float(timeout))


def _build_dtmf(args: Mapping[str, Any]) -> Dtmf:
    buttons = args.get("buttons")
    if isinstance(buttons, list) and all(isinstance(b, str) for b in buttons):
        buttons = "".join(buttons)
    if not isinstance(buttons, str) or not buttons or not set(buttons) <= set("0123456789*#"):
        raise CommandError('buttons must be keys from 0-9 * #, like "12#"')
    if len(buttons) > MAX_DTMF_KEYS:
        raise CommandError(f"more than {MAX_DTMF_KEYS} keys at once")
    return Dtmf(buttons)


def _build_function_result(args: Mapping[str, Any]) -> FunctionResult:
    call_id = _text_arg(args, "tool_call_id", MAX_CALL_ID_CHARS)
    has_result, error = "result" in args, args.get("error")
    if has_result == (error is not None):
        raise CommandError("give either result (an object or a string) or error (a string)")
    if error is not None:
        return FunctionResult(call_id, None, _text_arg(args, "error", MAX_ERROR_CHARS))
    result = _json_arg(args, "result")
    if not isinstance(result, (dict, str)):
        raise CommandError("result must be a JSON object or a string")
    return FunctionResult(call_id, result)


_MESSAGE_BUILDERS: dict[str, Any] = {
    "client-message": lambda a: ClientMessage(_text_arg(a, "t"), _json_arg(a, "d")),
    "request": _build_client_request,
    "ui-event": lambda a: UiEvent(_text_arg(a, "event"), _json_arg(a, "payload")),
    "dtmf": _build_dtmf,
    "function-claim": lambda a: ClaimFunctions(_names_arg(a, required=True) or ()),
    "function-release": lambda a: ReleaseFunctions(_names_arg(a, required=False)),
    "function-result": _build_function_result,
    "functions": lambda a: Functions(),
}

COMMANDS.update(
    {
        "client-message": (("t", "d"), "RTVI client-message: app type t and data d for the bot"),
        "request": (
            ("t", "d", "timeout_s"),
            "client-message awaiting the bot's server-response; the outcome arrives as a client-response event",
        ),
        "ui-event": (("event", "payload"), "RTVI ui-event: a named UI event and its payload"),
        "dtmf": (("buttons",), "keypad presses, e.g. 12# (RTVI dtmf, or Twilio dtmf events)"),
        "function-claim": (
            ("names",),
            "answer the bot's calls to these functions: they arrive as function-call-request events",
        ),
        "function-release": (("names",), "stop answering these functions (all when names is absent)"),
        "function-result": (
            ("tool_call_id", "result", "error"),
            "answer a claimed call: result (object or string) or error",
        ),
        "functions": ((), "the device's functions and the calls open now"),
    }
)

__all__ = [
    "COMMANDS",
    "MAX_REQUEST_BYTES",
    "ClaimFunctions",
    "ClientMessage",
    "ClientRequest",
    "Command",
    "CommandError",
    "Dtmf",
    "FunctionResult",
    "Functions",
    "Help",
    "Mute",
    "Reconnect",
    "ReleaseFunctions",
    "Request",
    "SendText",
    "Status",
    "Subscribe",
    "Talk",
    "UiEvent",
    "Unsubscribe",
    "Volume",
    "help_result",
    "parse_request",
    "reply_error",
    "reply_ok",
]
