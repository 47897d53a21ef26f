"""`voiceterm events` and `voiceterm ctl`: a blocking client of the event and control socket, and the readable
form of the event stream (transcripts as a conversation, every state change on one line).

No trio here: these are short-lived commands a person or a shell script runs next to the daemon.
"""

from __future__ import annotations

import errno
import json
import sys
import time
from collections.abc import Iterator, Mapping
from typing import IO, Any

from voiceterm import safejson
from voiceterm.exitcodes import EX_FAILURE, EX_USAGE
from voiceterm.io.control import StatusUnavailable, connect_unix
from voiceterm.logs import printable

MAX_LINE_BYTES = 1 << 20  # the daemon caps event lines at 64 KiB; anything longer is not our daemon
SHOWN_CHARS = 2000  # characters of one readable line (a long bot answer is cut, marked with …)


class EventClient:
    """One connection to the event socket: send requests, read replies and events (JSON objects)."""

    def __init__(self, path: str, timeout: float = 2.0) -> None:
        self.path = path
        self._sock = connect_unix(path, timeout)
        self._buffer = b""
        self._next_id = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> EventClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, cmd: str, **args: Any) -> str:
        """Send one request; returns its id."""
        self._next_id += 1
        request_id = f"c{self._next_id}"
        line = json.dumps({"cmd": cmd, "id": request_id, **args}).encode() + b"\n"
        self._sock.sendall(line)
        return request_id

    def read(self, timeout: float | None = 2.0) -> dict[str, Any] | None:
        """The next JSON object from the daemon; None when it closed the connection. `timeout` None waits
        for ever. Raises TimeoutError, or ValueError for something that is not our daemon's JSON."""
        self._sock.settimeout(timeout)
        while b"\n" not in self._buffer:
            chunk = self._sock.recv(65536)
            if not chunk:
                return None
            self._buffer += chunk
            if len(self._buffer) > MAX_LINE_BYTES and b"\n" not in self._buffer:
                raise ValueError("a line longer than 1 MiB: not a voiceterm event socket")
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            obj = safejson.loads(line, max_bytes=MAX_LINE_BYTES)
        except safejson.JSONRejected:
            raise ValueError("not JSON: not a voiceterm event socket") from None
        if isinstance(obj, dict):
            return obj
        raise ValueError("not a JSON object: not a voiceterm event socket")

    def request(self, cmd: str, timeout: float = 2.0, **args: Any) -> dict[str, Any]:
        """Send a request and return its reply (events arriving meanwhile are skipped)."""
        request_id = self.send(cmd, **args)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply to {cmd} within {timeout:g} s")
            obj = self.read(left)
            if obj is None:
                raise StatusUnavailable(errno.ECONNRESET, "the daemon closed the connection")
            if "reply" in obj and obj.get("id") in (request_id, None):
                return obj

    def events(self) -> Iterator[dict[str, Any]]:
        """Every event line until the daemon closes the connection."""
        while True:
            obj = self.read(None)
            if obj is None:
                return
            if "event" in obj:
                yield obj


# --- the readable form ------------------------------------------------------------------------------------


def _clock(obj: Mapping[str, Any]) -> str:
    ts = obj.get("ts")
    return time.strftime("%H:%M:%S", time.localtime(ts)) if isinstance(ts, (int, float)) else "--:--:--"


def _compact(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ConversationView:
    """Turns event objects into lines for a person; None for events that would only repeat another line."""

    def __init__(self) -> None:
        self._bot_output_seen = False  # bot-output makes the older bot-transcript a repeat
        self._segments: set[Any] = set()  # bot-output segments already shown

    def line(self, obj: Mapping[str, Any]) -> str | None:
        text = self._text(obj)
        # Printed on a terminal: the bot's text must not carry escape sequences or extra lines into it.
        return f"{_clock(obj)}  {printable(text, SHOWN_CHARS)}" if text is not None else None

    def _text(self, e: Mapping[str, Any]) -> str | None:
        name = e.get("event")
        if name == "user-transcript":
            return f"you: {e.get('text', '')}" if e.get("final", True) else None
        if name == "bot-output":
            self._bot_output_seen = True
            if e.get("output_type") in ("word", "token"):
                return None
            segment = e.get("segment_id")
            if segment is not None:
                if segment in self._segments:
                    return None  # progress of a sentence already shown
                self._segments.add(segment)
                if len(self._segments) > 1000:
                    self._segments.clear()
            return f"bot: {e.get('text', '')}"
        if name == "bot-transcript":
            return None if self._bot_output_seen else f"bot: {e.get('text', '')}"
        if name == "connected":
            self._segments.clear()
            return f"connected: session {e.get('session')} to {e.get('url')}"
        return _STATE_LINES.get(str(name), _other)(e)


def _transport(e: Mapping[str, Any]) -> str:
    error = e.get("error")
    tail = f" ({error})" if error and e.get("state") in ("backing-off", "failed") else ""
    return f"link: {e.get('state')}{tail}"


def _bot_ready(e: Mapping[str, Any]) -> str:
    about = e.get("about") if isinstance(e.get("about"), dict) else {}
    lib = " ".join(str(about.get(k)) for k in ("library", "library_version") if about.get(k))
    return f"bot ready: RTVI {e.get('version')}" + (f" ({lib})" if lib else "")


def _other(e: Mapping[str, Any]) -> str | None:
    name = e.get("event")
    if name in _QUIET:
        return None
    payload = {k: v for k, v in e.items() if k not in ("event", "ts", "seq")}
    return f"{name}" + (f": {_compact(payload)}" if payload else "")


_STATE_LINES: dict[str, Any] = {
    "transport-state-changed": _transport,
    "bot-ready": _bot_ready,
    "disconnected": lambda e: f"disconnected: {e.get('reason')}",
    "reconnect-attempt": lambda e: (
        f"reconnecting in {e.get('delay_s')} s (attempt {e.get('attempt')}): {e.get('error')}"
    ),
    "user-started-speaking": lambda e: "user started speaking",
    "user-stopped-speaking": lambda e: "user stopped speaking",
    "bot-started-speaking": lambda e: "bot started speaking",
    "bot-stopped-speaking": lambda e: "bot stopped speaking",
    "bot-interrupted": lambda e: "bot interrupted",
    "button": lambda e: "button down" if e.get("pressed") else "button up",
    "turn-started": lambda e: f"turn started ({e.get('source')})",
    "turn-ended": lambda e: f"turn ended ({e.get('source')})",
    "mute-changed": lambda e: "muted" if e.get("muted") else "unmuted",
    "led": lambda e: f"status: {e.get('status')} ({e.get('pattern')}): {e.get('text')}",
    "audio-fault": lambda e: (
        f"{e.get('device')} fault: {e.get('fault')}" if e.get("fault") else f"{e.get('device')} recovered"
    ),
    "volume-changed": lambda e: f"volume {e.get('volume_percent')} %",
    "error": lambda e: f"bot error{' (fatal)' if e.get('fatal') else ''}: {e.get('message')}",
    "message-error": lambda e: f"bot refused a message: {e.get('message')}",
    "server-message": lambda e: f"server message: {_compact(e.get('data'))}",
    "app-message": lambda e: f"app message: {_compact(e.get('data'))}",
    "llm-function-call": lambda e: f"function call: {e.get('function_name')}({_compact(e.get('args'))})",
    "function-call": lambda e: (
        f"function {e.get('function_name')}({_compact(e.get('arguments'))}) -> {e.get('handler')}"
    ),
    "function-call-result": lambda e: (
        f"function {e.get('function_name')} answered: "
        + (_compact(e.get("result")) if e.get("ok") else f"error: {e.get('error')}")
    ),
    "function-call-dropped": lambda e: f"function {e.get('function_name')} dropped: {e.get('reason')}",
    "drops": lambda e: (
        "drops: "
        + ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in (e.get("counters") or {}).items() if v)
    ),
}

# Shown by --json only: streamed text fragments, progress and figures a person does not read live.
_QUIET = frozenset(
    {
        "user-input",
        "bot-llm-text",
        "bot-tts-text",
        "bot-llm-started",
        "bot-llm-stopped",
        "bot-tts-started",
        "bot-tts-stopped",
        "metrics",
        "rtvi-message",
        "server-response",
    }
)


def follow(path: str, *, raw: bool, names: list[str] | None, out: IO[str] = sys.stdout) -> int:
    """Subscribe and print events until the daemon goes away or the user interrupts; the exit status."""
    with EventClient(path) as client:
        args = {"events": names} if names else {}
        reply = client.request("subscribe", **args)
        if not reply.get("ok"):
            print(f"voiceterm: {printable(reply.get('error'))}", file=sys.stderr)
            return EX_USAGE
        view = ConversationView()
        if not raw:
            status = reply.get("result", {})
            link = status.get("link", {}) if isinstance(status.get("link"), dict) else {}
            print(
                f"{time.strftime('%H:%M:%S')}  now: {status.get('status')} (link {link.get('state')}, "
                f"{'muted' if (status.get('terminal') or {}).get('muted') else 'not muted'})",
                file=out,
                flush=True,
            )
        for obj in client.events():
            # Raw lines are re-encoded by the same rules as the daemon's: no terminal controls in them.
            text = safejson.dumps_line(obj).decode().rstrip("\n") if raw else view.line(obj)
            if text is not None:
                print(text, file=out, flush=True)
    print("voiceterm: the daemon closed the event stream", file=sys.stderr)
    return EX_FAILURE


# --- `voiceterm ctl` for messages to the bot --------------------------------------------------------------

CTL_MESSAGE_USAGE = {
    "client-message": "voiceterm ctl client-message TYPE [DATA]",
    "request": "voiceterm ctl request TYPE [DATA [TIMEOUT_S]]",
    "ui-event": "voiceterm ctl ui-event NAME [PAYLOAD]",
    "dtmf": "voiceterm ctl dtmf KEYS",
    "functions": "voiceterm ctl functions",
}
# These live as long as their connection: an integration keeps one open, a one-shot command cannot.
SOCKET_ONLY = ("function-claim", "function-release", "function-result")


def _data(word: str) -> Any:
    """A DATA word: JSON when it parses as JSON, else the string itself."""
    try:
        return json.loads(word)
    except ValueError:
        return word


def ctl_message_request(command: str, words: list[str] | tuple[str, ...]) -> dict[str, Any] | None:
    """The request for `voiceterm ctl COMMAND ARG...` when COMMAND sends something to the bot (or lists the
    device's functions); None for other commands. ValueError (one line) for wrong arguments."""
    if command in SOCKET_ONLY:
        raise ValueError(
            f"{command} belongs to an integration that keeps its connection open (see the README)"
        )
    usage = CTL_MESSAGE_USAGE.get(command)
    if usage is None:
        return None
    words = list(words)
    if command == "functions":
        if words:
            raise ValueError(f"usage: {usage}")
        return {"cmd": command}
    if command == "dtmf":
        if len(words) != 1:
            raise ValueError(f"usage: {usage}")
        return {"cmd": command, "buttons": words[0]}
    most = 3 if command == "request" else 2
    if not 1 <= len(words) <= most:
        raise ValueError(f"usage: {usage}")
    name, data = ("event", "payload") if command == "ui-event" else ("t", "d")
    request: dict[str, Any] = {"cmd": command, name: words[0]}
    if len(words) > 1:
        request[data] = _data(words[1])
    if len(words) > 2:
        try:
            request["timeout_s"] = float(words[2])
        except ValueError:
            raise ValueError(f"request: timeout {words[2]!r} is not a number of seconds") from None
    return request


def await_outcome(client: EventClient, cmd: str, reply: dict[str, Any]) -> dict[str, Any]:
    """For `request`: the reply once the bot's answer is in (its `client-response`), shaped like a reply; any
    other reply as it is."""
    if cmd != "request" or not reply.get("ok"):
        return reply
    result = reply.get("result") or {}
    request_id, timeout = result.get("id"), float(result.get("timeout_s", 10.0))
    deadline = time.monotonic() + timeout + 2.0  # the daemon times the request out itself; this is a backstop
    while (left := deadline - time.monotonic()) > 0:
        obj = client.read(left)
        if obj is None:
            break
        if obj.get("event") == "client-response" and obj.get("request_id") == request_id:
            if obj.get("ok"):
                return {**reply, "result": {"d": obj.get("d"), "elapsed_ms": obj.get("elapsed_ms")}}
            return {**reply, "ok": False, "error": obj.get("error")}
    return {**reply, "ok": False, "error": "the daemon gave no outcome for the request"}


__all__ = ["ConversationView", "EventClient", "await_outcome", "ctl_message_request", "follow"]
