"""Device functions: which handler answers a function call the bot asks the device to run, by when, and
that it answers exactly once. Pure — every input carries its time and returns the actions to carry out.

The bot (pipecat's RTVI observer) announces a call with ``llm-function-call-in-progress`` (or the deprecated
``llm-function-call``); the device answers with ``llm-function-call-result``, as the browser's
``registerFunctionCallHandler`` does. Handlers come from three places:

- ``command``: declared in the configuration, an argv run without a shell, the arguments as JSON on stdin and
  the result as JSON on stdout (`function_handlers.result_from_command` reads it);
- ``builtin``: set_volume, mute, end_session, when the configuration exposes them;
- ``control``: claimed over the control socket by an integration, which gets the call as an event and
  answers with a command.

Only calls for a function the device handles are answered: any other name belongs to the bot itself (the
observer reports the bot's own calls too), and an answer would inject a bogus result. Every handled call
gets exactly one answer — the handler's, or an error when it fails, is refused, or has not answered by its
deadline — unless the bot cancels it or the session ends (the bot has then forgotten it). Repeated
announcements of one call (both message types for the same ``tool_call_id``) start it once.

A call's life (``_TRANSITIONS``)::

    (new) --accept--> WAITING --slot--> RUNNING --answer|error|deadline--> DONE
                         |                 |
                         +---cancel / session end / bot answered elsewhere---> DROPPED (no answer)

WAITING is a command call whose function already runs ``max_running`` times; its deadline runs from its
arrival, so a queue cannot make the bot wait longer than the function's timeout.
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import field
from typing import Any, Literal, Union

from voiceterm.core.function_handlers import (
    BUILTINS,
    NAME_PATTERN,
    CommandSpec,
    FunctionCallError,
    json_size,
    json_type,
)
from voiceterm.record import record

BUILTIN_TIMEOUT_S = 2.0  # built-ins answer at once; this only bounds a shell that forgot to
MAX_CALL_ID_CHARS = 128
SEEN_IDS = 256  # tool_call_ids remembered to start a repeated announcement once
MAX_CLAIMS = 64  # function names claimed over the control socket, all clients together

HandlerKind = Literal["command", "builtin", "control"]


class CallState(enum.Enum):
    WAITING = "waiting"  # a command at its max_running: waits for a slot
    RUNNING = "running"  # the handler has it
    DONE = "done"  # answered (result or error)
    DROPPED = "dropped"  # closed without an answer: cancelled, session over, answered elsewhere


# (state, input) -> next state. Inputs a state does not list leave the call alone (a late answer, a second
# cancel), and are counted by the caller.
_TRANSITIONS: dict[tuple[CallState | None, str], CallState] = {
    (None, "accept"): CallState.RUNNING,
    (None, "queue"): CallState.WAITING,
    (CallState.WAITING, "slot"): CallState.RUNNING,
    (CallState.WAITING, "deadline"): CallState.DONE,
    (CallState.WAITING, "gone"): CallState.DONE,
    (CallState.WAITING, "drop"): CallState.DROPPED,
    (CallState.RUNNING, "answer"): CallState.DONE,
    (CallState.RUNNING, "deadline"): CallState.DONE,
    (CallState.RUNNING, "gone"): CallState.DONE,
    (CallState.RUNNING, "drop"): CallState.DROPPED,
}


@record
class Limits:
    max_open: int = 16  # calls open at once, all handlers together; beyond: an error answer at once
    max_argument_bytes: int = 8192  # the arguments as JSON
    max_result_bytes: int = 16384  # a result as JSON
    control_timeout_s: float = 10.0  # an integration's time to answer


@record
class Call:
    tool_call_id: str
    function_name: str
    arguments: dict[str, Any] = field(hash=False)
    handler: HandlerKind
    owner: int  # the control client that claimed the function (0 for the other handlers)
    started: float  # when the call arrived
    deadline: float


# --- actions ----------------------------------------------------------------------------------------


@record
class Accept:
    """The call is the device's: announce it (it runs at once, or waits for a slot)."""

    call: Call


@record
class Run:
    """Start the call's handler: run the command, perform the built-in, or offer the call to its claimer."""

    call: Call
    spec: CommandSpec | None = None  # for commands


@record
class Stop:
    """Stop the call's handler (kill the command); the call is closed. `dropped`: closed without an answer
    (cancelled by the bot, session over); otherwise an error Answer follows."""

    call: Call
    why: str
    dropped: bool = False


@record
class Answer:
    """Send ``llm-function-call-result`` for the call: `result` (an object or a string), or an error."""

    call: Call
    result: dict[str, Any] | str | None = field(default=None, hash=False)
    error: str | None = None
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def result_payload(self) -> dict[str, Any] | str:
        """What the bot receives: the result, or ``{"error": ...}`` (pipecat takes an object or a string)."""
        if self.error is not None:
            return {"error": self.error}
        return self.result if self.result is not None else {}


Action = Union[Accept, Run, Stop, Answer]


# --- the table --------------------------------------------------------------------------------------


class FunctionCalls:
    """The handlers, the open calls, their deadlines and concurrency; decides, never does."""

    def __init__(
        self, commands: Iterable[CommandSpec] = (), builtins: Iterable[str] = (), limits: Limits | None = None
    ) -> None:
        self.limits = limits or Limits()
        self.commands: dict[str, CommandSpec] = {c.name: c for c in commands}
        self.builtins: frozenset[str] = frozenset(builtins)
        unknown = self.builtins - set(BUILTINS)
        if unknown:
            raise ValueError(
                f"unknown built-in function {sorted(unknown)[0]!r}; known: {', '.join(BUILTINS)}"
            )
        clash = self.builtins & set(self.commands)
        if clash:
            raise ValueError(f"function {sorted(clash)[0]!r} is both a command and a built-in")
        self.claims: dict[str, int] = {}  # function name -> control client id
        # Names claimed once and released since: a call to one gets an error answer at once, not silence (the
        # bot's function is meant for the device, and nobody is there to answer it).
        self.unclaimed: OrderedDict[str, None] = OrderedDict()
        self._calls: dict[str, Call] = {}
        self._states: dict[str, CallState] = {}
        self._waiting: dict[str, deque[str]] = {}  # command name -> call ids waiting for a slot, oldest first
        self._running: dict[str, int] = {}  # command name -> calls running
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.counters = {
            "function_calls_total": 0,
            "function_calls_ignored_total": 0,  # for functions the device does not handle
            "function_calls_repeated_total": 0,  # a second announcement of a call already taken
            "function_results_ok_total": 0,
            "function_results_error_total": 0,
            "function_results_late_total": 0,  # a handler answering a call already closed
            "function_calls_timed_out_total": 0,
            "function_calls_refused_total": 0,  # too many open, arguments too large
            "function_calls_dropped_total": 0,  # cancelled, session over
        }

    # --- what the device handles ------------------------------------------------------------------

    def handler_of(self, name: str) -> HandlerKind | None:
        if name in self.commands:
            return "command"
        if name in self.builtins:
            return "builtin"
        if name in self.claims or name in self.unclaimed:
            return "control"
        return None

    def claim(self, client: int, names: Iterable[str]) -> list[str]:
        """`client` answers calls to `names` from now on. All or nothing: FunctionCallError when one cannot
        be claimed (a bad name, a configured function, another client's claim)."""
        names = list(names)
        for name in names:
            if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
                raise FunctionCallError(
                    f"{str(name)[:40]!r} is not a function name (letters, digits, _ . : -)"
                )
            kind = self.handler_of(name)
            if kind in ("command", "builtin"):
                raise FunctionCallError(f"{name} is a {kind} function of the configuration")
            if self.claims.get(name, client) != client:
                raise FunctionCallError(f"{name} is already claimed by another client")
        new = {n for n in names if n not in self.claims}
        if len(self.claims) + len(new) > MAX_CLAIMS:
            raise FunctionCallError(f"more than {MAX_CLAIMS} functions claimed; release some first")
        for name in names:
            self.claims[name] = client
            self.unclaimed.pop(name, None)
        return sorted(n for n, c in self.claims.items() if c == client)

    def release(self, client: int, names: Iterable[str] | None, now: float) -> list[Action]:
        """`client` no longer answers `names` (None: all its claims, it disconnected). Its calls still open get
        an error answer: nobody else will answer them."""
        mine = {n for n, c in self.claims.items() if c == client}
        gone = mine if names is None else mine & set(names)
        for name in gone:
            del self.claims[name]
            self.unclaimed[name] = None
        while len(self.unclaimed) > MAX_CLAIMS:
            self.unclaimed.popitem(last=False)
        out: list[Action] = []
        for call in list(self._calls.values()):
            if call.handler == "control" and call.owner == client and call.function_name in gone:
                out += self._finish(call, "gone", now, error="the function's handler went away")
        return out

    # --- calls --------------------------------------------------------------------------------------

    def call(
        self, tool_call_id: object, function_name: object, arguments: object, now: float
    ) -> list[Action]:
        """The bot asks for a call. [] when it is not the device's to answer (or was already taken)."""
        if not isinstance(function_name, str) or not isinstance(tool_call_id, str):
            self.counters["function_calls_ignored_total"] += 1
            return []
        kind = self.handler_of(function_name)
        if kind is None or not tool_call_id or len(tool_call_id) > MAX_CALL_ID_CHARS:
            self.counters["function_calls_ignored_total"] += 1
            return []
        if tool_call_id in self._seen:
            self.counters["function_calls_repeated_total"] += 1
            return []
        self._remember(tool_call_id)
        self.counters["function_calls_total"] += 1
        args = arguments if isinstance(arguments, dict) else {}
        timeout = self._timeout(function_name, kind)
        call = Call(
            tool_call_id,
            function_name,
            args,
            kind,
            self.claims.get(function_name, 0) if kind == "control" else 0,
            now,
            now + timeout,
        )
        refusal = self._refusal(arguments)
        if kind == "control" and function_name not in self.claims:
            refusal = f"no integration answers {function_name} now"
        if refusal is not None:
            self.counters["function_calls_refused_total"] += 1
            return [Accept(call), self._error_now(call, refusal)]
        spec = self.commands.get(function_name)
        if spec is not None and self._running.get(spec.name, 0) >= spec.max_running:
            self._open(call, "queue")
            self._waiting.setdefault(spec.name, deque()).append(tool_call_id)
            return [Accept(call)]
        self._open(call, "accept")
        if spec is not None:
            self._running[spec.name] = self._running.get(spec.name, 0) + 1
        return [Accept(call), Run(call, spec)]

    def answer(
        self,
        tool_call_id: str,
        now: float,
        *,
        result: object = None,
        error: str | None = None,
        client: int | None = None,
    ) -> list[Action]:
        """A handler answered. `client` is set for an answer over the control socket and must own the call
        (FunctionCallError otherwise). A late answer (the call is closed) is counted and dropped."""
        call = self._calls.get(tool_call_id)
        if client is not None:
            if call is None:
                raise FunctionCallError(
                    f"no open call {tool_call_id[:40]!r} (answered, expired or never made)"
                )
            if call.handler != "control" or call.owner != client:
                raise FunctionCallError(f"call {tool_call_id[:40]!r} is not this client's to answer")
        if call is None or self._states.get(tool_call_id) is not CallState.RUNNING:
            self.counters["function_results_late_total"] += 1
            return []
        if error is None:
            error = self._result_problem(result)
        return self._finish(call, "answer", now, result=result if error is None else None, error=error)

    def cancel(self, tool_call_id: object, now: float, why: str = "cancelled by the bot") -> list[Action]:
        """The bot cancelled the call, or reported it stopped with a result from elsewhere: close it, no answer."""
        call = self._calls.get(tool_call_id) if isinstance(tool_call_id, str) else None
        if call is None:
            return []
        return self._finish(call, "drop", now, why=why)

    def session_ended(self, now: float) -> list[Action]:
        """The bot session is over: nothing open can be answered any more."""
        out: list[Action] = []
        for call in list(self._calls.values()):
            out += self._finish(call, "drop", now, why="the session ended")
        return out

    def tick(self, now: float) -> list[Action]:
        """Close the calls whose deadline passed, with an error answer."""
        out: list[Action] = []
        for call in sorted(self._calls.values(), key=lambda c: c.deadline):
            if call.deadline > now:
                break
            self.counters["function_calls_timed_out_total"] += 1
            waited = self._states[call.tool_call_id] is CallState.WAITING
            what = "waited for a free slot" if waited else "gave no answer"
            limit = call.deadline - call.started
            out += self._finish(
                call, "deadline", now, error=f"{call.function_name} {what} within {limit:g} s"
            )
        return out

    def next_deadline(self) -> float | None:
        return min((c.deadline for c in self._calls.values()), default=None)

    def open_calls(self) -> list[dict[str, Any]]:
        return [
            {
                "tool_call_id": c.tool_call_id,
                "function_name": c.function_name,
                "handler": c.handler,
                "state": self._states[c.tool_call_id].value,
            }
            for c in self._calls.values()
        ]

    def snapshot(self) -> dict[str, Any]:
        return {
            "commands": sorted(self.commands),
            "builtins": sorted(self.builtins),
            "claimed": sorted(self.claims),
            "unclaimed": sorted(self.unclaimed),
            "open": len(self._calls),
            **self.counters,
        }

    # --- internals --------------------------------------------------------------------------------

    def _timeout(self, name: str, kind: HandlerKind) -> float:
        if kind == "command":
            return self.commands[name].timeout_s
        if kind == "builtin":
            return BUILTIN_TIMEOUT_S
        return self.limits.control_timeout_s

    def _refusal(self, arguments: object) -> str | None:
        if arguments is not None and not isinstance(arguments, dict):
            return "arguments must be a JSON object"
        if len(self._calls) >= self.limits.max_open:
            return f"too many function calls open on the device ({self.limits.max_open})"
        size = json_size(arguments or {})
        if size is None or size > self.limits.max_argument_bytes:
            return f"arguments larger than {self.limits.max_argument_bytes} bytes"
        return None

    def _result_problem(self, result: object) -> str | None:
        if not isinstance(result, (dict, str)):
            return f"the handler's result is a JSON {json_type(result)}; it must be an object or a string"
        size = json_size(result)
        if size is None or size > self.limits.max_result_bytes:
            return f"the handler's result is larger than {self.limits.max_result_bytes} bytes"
        return None

    def _remember(self, tool_call_id: str) -> None:
        self._seen[tool_call_id] = None
        while len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)

    def _open(self, call: Call, how: str) -> None:
        self._calls[call.tool_call_id] = call
        self._states[call.tool_call_id] = _TRANSITIONS[(None, how)]

    def _error_now(self, call: Call, error: str) -> Answer:
        self.counters["function_results_error_total"] += 1
        return Answer(call, error=error)

    def _finish(
        self,
        call: Call,
        event: str,
        now: float,
        *,
        result: object = None,
        error: str | None = None,
        why: str = "",
    ) -> list[Action]:
        state = self._states[call.tool_call_id]
        new = _TRANSITIONS.get((state, event))
        if new is None:
            return []  # pragma: no cover - every open state lists every closing input
        del self._calls[call.tool_call_id]
        del self._states[call.tool_call_id]
        out: list[Action] = []
        if state is CallState.WAITING:
            self._waiting[call.function_name].remove(call.tool_call_id)
        elif call.handler == "command":
            out += self._free_slot(call.function_name, now)
        if new is CallState.DROPPED:
            self.counters["function_calls_dropped_total"] += 1
            out.insert(0, Stop(call, why, dropped=True))
            return out
        if state is CallState.RUNNING and event != "answer":
            out.insert(0, Stop(call, error or why))
        if error is None:
            self.counters["function_results_ok_total"] += 1
        else:
            self.counters["function_results_error_total"] += 1
        answer = Answer(call, result if error is None else None, error, max(0.0, now - call.started))  # type: ignore[arg-type]
        return [*out, answer]

    def _free_slot(self, name: str, now: float) -> list[Action]:
        self._running[name] -= 1
        queue = self._waiting.get(name) or deque()
        # The oldest waiting call still in time; expired ones stay for tick() to answer.
        next_id = next((i for i in queue if self._calls[i].deadline > now), None)
        if next_id is None:
            return []
        queue.remove(next_id)
        self._states[next_id] = _TRANSITIONS[(CallState.WAITING, "slot")]
        self._running[name] += 1
        return [Run(self._calls[next_id], self.commands[name])]


__all__ = [
    "Accept",
    "Action",
    "Answer",
    "Call",
    "CallState",
    "CommandSpec",
    "FunctionCallError",
    "FunctionCalls",
    "HandlerKind",
    "Limits",
    "Run",
    "Stop",
]
