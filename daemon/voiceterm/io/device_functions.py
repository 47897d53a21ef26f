"""Device functions, the trio shell: carries out what `core.function_calls` decides. It runs declared
commands as subprocesses (arguments as JSON on stdin, result as JSON on stdout, stderr to the journal),
performs the built-ins, offers calls to the control-socket client that claimed them, and sends every answer to
the bot as ``llm-function-call-result`` — announcing calls and answers on the event stream.

A command runs without a shell, in /, with a minimal environment (PATH, LANG and the call's function name and
id): the bot's arguments reach it only as data on stdin. Its output is bounded (stdout at the result limit,
stderr at `STDERR_BYTES`; the rest is read and thrown away so the command never blocks on a full pipe), and it
is killed when its call is closed: timed out, cancelled, or the session over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

import trio

from voiceterm.core import device_events as de
from voiceterm.core.dispatch import Dispatch
from voiceterm.core.function_calls import Accept, Action, Answer, Call, FunctionCalls, Limits, Run, Stop
from voiceterm.core.function_handlers import (
    BUILTINS,
    CommandSpec,
    FunctionCallError,
    builtin_arguments,
    commands_from_config,
    result_from_command,
)
from voiceterm.logs import escape, kv
from voiceterm.protocol import rtvi

log = logging.getLogger("voiceterm.functions")

STDERR_BYTES = 2048  # of a command's stderr kept for the journal
READ_CHUNK = 4096
KILL_WAIT_S = 2.0  # after SIGKILL, how long to wait for the process to be reaped
ENV_KEEP = ("PATH", "LANG", "LC_ALL", "TZ")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"

Builtin = Callable[[dict[str, Any]], dict[str, Any]]
"""Performs a built-in with its checked arguments and returns the result; raises FunctionCallError."""


class DeviceFunctions:
    """The function-call table and the handlers' work. `run` in a nursery; the rest from the trio thread."""

    def __init__(
        self,
        table: FunctionCalls,
        *,
        send_message: Callable[[dict[str, Any]], bool],
        publish: Callable[[de.DeviceEvent], None],
        send_to: Callable[[int, de.DeviceEvent], bool],
        builtins: Mapping[str, Builtin],
        poke: Callable[[], None] = lambda: None,
    ) -> None:
        self.table = table
        self._send_message = send_message  # the link's: queue an RTVI message
        self._publish = publish  # the event stream: every subscriber
        self._send_to = send_to  # the event stream: one connection
        self._builtins = dict(builtins)
        self._poke = poke  # the deadline moved
        self._nursery: trio.Nursery | None = None
        self._running: dict[str, trio.CancelScope] = {}  # tool_call_id -> its command's scope
        self.counters = {"function_results_unsent_total": 0, "function_commands_started_total": 0}

    @classmethod
    def from_config(cls, functions: Any, **kwargs: Any) -> DeviceFunctions:
        """From the configuration's [functions] section (`FunctionsConfig`)."""
        builtins = [name for name in BUILTINS if getattr(functions, f"builtin_{name}")]
        limits = Limits(
            max_open=functions.max_open,
            max_argument_bytes=functions.max_argument_bytes,
            max_result_bytes=functions.max_result_bytes,
            control_timeout_s=functions.claim_timeout_s,
        )
        return cls(FunctionCalls(commands_from_config(functions.commands), builtins, limits), **kwargs)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Holds the nursery the commands run in, until cancelled (which kills them)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # --- inputs -----------------------------------------------------------------------------------

    def bot_event(self, event: object) -> None:
        """The function-call messages of the bot; anything else is not ours."""
        decide = _BOT_MESSAGES.get(event)
        if decide is not None:
            self.perform(decide(self.table, event, trio.current_time()))

    def session_ended(self) -> None:
        self.perform(self.table.session_ended(trio.current_time()))

    def tick(self, now: float) -> None:
        self.perform(self.table.tick(now))

    def claim(self, client: int, names: tuple[str, ...]) -> dict[str, Any]:
        claimed = self.table.claim(client, names)
        log.info("functions claimed %s", kv(client=client, names=escape(",".join(names))))
        return {"claimed": claimed}

    def release(self, client: int, names: tuple[str, ...] | None) -> dict[str, Any]:
        self.perform(self.table.release(client, names, trio.current_time()))
        return {"claimed": sorted(n for n, c in self.table.claims.items() if c == client)}

    def answer(self, client: int, tool_call_id: str, result: Any, error: str | None) -> dict[str, Any]:
        """The function-result command; FunctionCallError (one line) when it is not this client's call."""
        self.perform(
            self.table.answer(tool_call_id, trio.current_time(), result=result, error=error, client=client)
        )
        return {"tool_call_id": tool_call_id}

    def snapshot(self) -> dict[str, Any]:
        return {**self.table.snapshot(), **self.counters, "calls": self.table.open_calls()}

    # --- carrying out -----------------------------------------------------------------------------

    def perform(self, actions: list[Action]) -> None:
        """Carry out the table's actions, in order, each by its handler."""
        for action in actions:
            _ACTIONS[type(action)](self, action)
        self._poke()

    def _accept(self, action: Accept) -> None:
        call = action.call
        self._publish(de.FunctionCall(call.tool_call_id, call.function_name, call.arguments, call.handler))

    def _run(self, action: Run) -> None:
        self._start(action.call, action.spec)

    def _stop_action(self, action: Stop) -> None:
        self._stop(action.call, action.why, action.dropped)

    def _start(self, call: Call, spec: CommandSpec | None) -> None:
        if spec is not None:
            if self._nursery is None:  # not running yet (or any more): answer at once rather than hang
                self.perform(
                    self.table.answer(call.tool_call_id, trio.current_time(), error="the device is stopping")
                )
                return
            scope = trio.CancelScope()
            self._running[call.tool_call_id] = scope
            self.counters["function_commands_started_total"] += 1
            self._nursery.start_soon(self._run_command, call, spec, scope)
        elif call.handler == "builtin":
            self._run_builtin(call)
        else:
            request = de.FunctionCallRequest(
                call.tool_call_id, call.function_name, call.arguments, round(call.deadline - call.started, 3)
            )
            if not self._send_to(call.owner, request):
                self.perform(
                    self.table.answer(
                        call.tool_call_id, trio.current_time(), error="the function's handler went away"
                    )
                )

    def _stop(self, call: Call, why: str, dropped: bool) -> None:
        scope = self._running.pop(call.tool_call_id, None)
        if scope is not None:
            scope.cancel()
        event = de.FunctionCallDropped(call.tool_call_id, call.function_name, why)
        if call.handler == "control":
            self._send_to(call.owner, event)  # the claimer stops working on it
        if dropped:
            self._publish(event)  # no answer will be announced for it
        log.info(
            "function call closed %s", kv(name=call.function_name, id=escape(call.tool_call_id, 60), why=why)
        )

    def _answer(self, answer: Answer) -> None:
        call = answer.call
        self._running.pop(call.tool_call_id, None)
        message = rtvi.function_call_result(
            function_name=call.function_name,
            tool_call_id=call.tool_call_id,
            arguments=call.arguments,
            result=answer.result_payload(),
        )
        if not self._send_message(message):
            self.counters["function_results_unsent_total"] += 1  # the link is down: the bot forgot it anyway
        self._publish(
            de.FunctionCallResult(
                call.tool_call_id,
                call.function_name,
                answer.ok,
                answer.result,
                answer.error,
                round(answer.elapsed_s * 1000, 1),
            )
        )
        log.info(
            "function answered %s",
            kv(
                name=call.function_name,
                handler=call.handler,
                ok=answer.ok,
                ms=round(answer.elapsed_s * 1000),
                error=escape(answer.error) if answer.error else None,
            ),
        )
        if answer.ok and call.handler == "builtin" and call.function_name == "end_session":
            # After the answer, in the same queue: the bot reads its result, then ends the session (the link
            # connects afresh).
            self._send_message(rtvi.disconnect_bot())

    def _run_builtin(self, call: Call) -> None:
        now = trio.current_time()
        perform = self._builtins.get(call.function_name)
        if perform is None:
            error = f"{call.function_name} is not available on this device"
            self.perform(self.table.answer(call.tool_call_id, now, error=error))
            return
        try:
            result = perform(builtin_arguments(call.function_name, call.arguments))
        except FunctionCallError as e:
            self.perform(self.table.answer(call.tool_call_id, now, error=str(e)))
            return
        self.perform(self.table.answer(call.tool_call_id, now, result=result))

    async def _run_command(self, call: Call, spec: CommandSpec, scope: trio.CancelScope) -> None:
        status: int | None = None
        stdout, truncated, stderr = b"", False, b""
        with scope:
            try:
                status, stdout, truncated, stderr = await _run(
                    spec.argv, call, self.table.limits.max_result_bytes
                )
            except OSError as e:
                log.warning(
                    "function command failed to start %s",
                    kv(
                        name=call.function_name,
                        command=escape(spec.argv[0]),
                        error=e.strerror or type(e).__name__,
                    ),
                )
        if scope.cancelled_caught:
            return  # the call was closed (deadline, cancel, session end): the table has answered or dropped it
        if stderr:
            log.info(
                "function stderr %s",
                kv(
                    name=call.function_name,
                    status=status,
                    text=escape(stderr.decode("utf-8", "replace"), 500),
                ),
            )
        result, error = result_from_command(status, stdout, truncated=truncated)
        self.perform(self.table.answer(call.tool_call_id, trio.current_time(), result=result, error=error))


async def _run(argv: tuple[str, ...], call: Call, max_stdout: int) -> tuple[int, bytes, bool, bytes]:
    """Run one command for `call`: (exit status, stdout up to `max_stdout`, whether it was cut, stderr head).
    Killed when cancelled."""
    env = {key: os.environ[key] for key in ENV_KEEP if key in os.environ}
    env.setdefault("PATH", DEFAULT_PATH)
    env["VOICETERM_FUNCTION"] = call.function_name
    env["VOICETERM_TOOL_CALL_ID"] = call.tool_call_id
    stdin = json.dumps(call.arguments, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    process = await trio.lowlevel.open_process(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd="/",
        env=env,
        start_new_session=True,  # its own process group: a terminal's ^C is not for it
    )
    out = _Capture(max_stdout)
    err = _Capture(STDERR_BYTES)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_feed, process.stdin, stdin)
            nursery.start_soon(out.drain, process.stdout)
            nursery.start_soon(err.drain, process.stderr)
        status = await process.wait()
    finally:
        if process.returncode is None:
            # The whole group: a script's own children must not outlive its call.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.kill()
            with trio.move_on_after(KILL_WAIT_S) as reap:
                reap.shield = True
                await process.wait()
    return status, bytes(out.data), out.overflow, bytes(err.data)


async def _feed(stream: trio.abc.SendStream | None, data: bytes) -> None:
    if stream is None:
        return
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the command did not read its arguments: its business
    finally:
        await trio.aclose_forcefully(stream)


class _Capture:
    """Keeps the first `limit` bytes of a pipe and reads (and drops) the rest until it closes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.overflow = False

    async def drain(self, stream: trio.abc.ReceiveStream | None) -> None:
        if stream is None:
            return
        async with stream:
            while chunk := await stream.receive_some(READ_CHUNK):
                room = self.limit - len(self.data)
                if len(chunk) > room:
                    self.overflow = True
                self.data += chunk[: max(0, room)]


def _bot_messages() -> dict[type, Callable[[FunctionCalls, Any, float], list[Action]]]:
    """The bot's function-call messages -> what the calls table decides about them."""
    from voiceterm.protocol import rtvi_events  # by the first bot message (core/dispatch.py)

    return {
        rtvi_events.LLMFunctionCallInProgress: lambda table, e, now: table.call(
            e.tool_call_id, e.function_name, e.arguments, now
        ),
        # deprecated since pipecat 0.0.102, still sent by some
        rtvi_events.LLMFunctionCall: lambda table, e, now: table.call(
            e.tool_call_id, e.function_name, e.args, now
        ),
        rtvi_events.LLMFunctionCallStopped: lambda table, e, now: table.cancel(
            e.tool_call_id,
            now,
            "cancelled by the bot" if e.cancelled else "the bot has its result from elsewhere",
        ),
    }


_BOT_MESSAGES: Dispatch[Callable[[FunctionCalls, Any, float], list[Action]]] = Dispatch(_bot_messages)

# The calls table's actions -> who carries each out.
_ACTIONS: dict[type, Callable[[DeviceFunctions, Any], None]] = {
    Accept: DeviceFunctions._accept,
    Run: DeviceFunctions._run,
    Stop: DeviceFunctions._stop_action,
    Answer: DeviceFunctions._answer,
}

__all__ = ["Builtin", "DeviceFunctions"]
