"""What integrations on the control socket do with the bot: send it app messages (client-message, ui-event,
dtmf), make requests that wait for its reply (the browser's ``sendClientRequest``), and answer its function
calls (device functions). The trio shell around `core.client_requests` and `io.device_functions`: one timer
for both tables' deadlines, the bot's events routed in, the control commands carried out.

A request's reply goes back to the connection that asked, as a ``client-response`` event; a claimed function's
calls go to the claiming connection as ``function-call-request`` events. A connection that goes away takes
its claims (its open calls get an error answer) and its requests with it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import trio

from voiceterm.core import control_commands as cc
from voiceterm.core import device_events as de
from voiceterm.core.client_requests import ClientRequests, Outcome, RequestError
from voiceterm.core.dispatch import Dispatch
from voiceterm.core.function_handlers import FunctionCallError
from voiceterm.io.device_functions import Builtin, DeviceFunctions
from voiceterm.logs import escape, kv
from voiceterm.protocol import rtvi
from voiceterm.protocol.errors import ProtocolError

if TYPE_CHECKING:
    from voiceterm.protocol import rtvi_events

log = logging.getLogger("voiceterm.integrations")


class Integrations:
    """Run `run` in a nursery; feed it the bot's events and the session's start and end."""

    def __init__(
        self,
        functions_config: Any,
        *,
        link: Any,
        hub: Any,
        builtins: Mapping[str, Builtin],
        rtvi_supported: bool,
    ) -> None:
        self._link = link
        self._hub = hub
        self._rtvi = rtvi_supported  # False: the Twilio format, where only dtmf goes out
        self._bot_version: str | None = None  # from bot-ready: which dtmf form the bot takes
        self._changed = trio.Event()
        self.requests = ClientRequests()
        self.functions = DeviceFunctions.from_config(
            functions_config,
            send_message=link.send_message,
            publish=hub.publish,
            send_to=hub.send_to,
            builtins=builtins,
            poke=self._wake,
        )
        hub.on_disconnect.append(self._client_gone)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The commands' nursery and the deadline timer of calls and requests, until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.functions.run)
            task_status.started()
            while True:
                self._changed = trio.Event()
                pending = (self.requests.next_deadline(), self.functions.table.next_deadline())
                deadlines = [d for d in pending if d is not None]
                with trio.move_on_at(min(deadlines, default=math.inf)):
                    await self._changed.wait()
                now = trio.current_time()
                self._deliver(self.requests.tick(now))
                self.functions.tick(now)

    def _wake(self) -> None:
        """A deadline may have moved: the timer looks again."""
        self._changed.set()

    # --- the bot ----------------------------------------------------------------------------------

    def bot_event(self, event: object) -> None:
        """A message of the bot: its version, the answers to requests; the rest may be a function call."""
        handler = _BOT_MESSAGES.get(event)
        if handler is None:
            self.functions.bot_event(event)
        else:
            handler(self, event)

    def _bot_ready(self, event: rtvi_events.BotReady) -> None:
        self._bot_version = event.version or None

    def _server_response(self, event: rtvi_events.ServerResponse) -> None:
        outcome = self.requests.response(event.id, event.d, trio.current_time())
        if outcome is not None:
            self._deliver([outcome])

    def _error_response(self, event: rtvi_events.ErrorResponse) -> None:
        outcome = self.requests.refused(event.id, event.error, trio.current_time())
        if outcome is not None:
            self._deliver([outcome])

    def session_started(self) -> None:
        self._bot_version = None

    def session_ended(self) -> None:
        self._deliver(self.requests.session_ended(trio.current_time()))
        self.functions.session_ended()

    # --- the control socket -----------------------------------------------------------------------

    def control(self, command: Any, client: int) -> dict[str, Any]:
        """Carry out one of `COMMANDS` for control client `client`; CommandError (one line) refuses it."""
        try:
            return self._control(command, client)
        except (FunctionCallError, RequestError, ProtocolError) as e:
            raise cc.CommandError(str(e)) from None

    def _control(self, command: Any, client: int) -> dict[str, Any]:
        handler = _CONTROL.get(command)
        if handler is None:  # pragma: no cover - COMMANDS is the table's keys
            raise cc.CommandError(f"not a command for the bot: {type(command).__name__}")
        return handler(self, command, client)

    # The functions' own commands: no bot needed.

    def _claim(self, command: cc.ClaimFunctions, client: int) -> dict[str, Any]:
        return self.functions.claim(client, command.names)

    def _release(self, command: cc.ReleaseFunctions, client: int) -> dict[str, Any]:
        return self.functions.release(client, command.names)

    def _function_result(self, command: cc.FunctionResult, client: int) -> dict[str, Any]:
        return self.functions.answer(client, command.tool_call_id, command.result, command.error)

    def _functions(self, command: cc.Functions, client: int) -> dict[str, Any]:
        return self.functions.snapshot()

    # What goes to the bot: a session first; anything but dtmf needs RTVI.

    def _dtmf(self, command: cc.Dtmf, client: int) -> dict[str, Any]:
        self.check_link()
        buttons = command.buttons
        if self._rtvi:
            messages = rtvi.dtmf_for(buttons, self._bot_version)
        else:
            messages = [rtvi.dtmf(key) for key in buttons]  # Twilio: one event per key
        for message in messages:
            self.send(message)
        return {"buttons": buttons, "messages": len(messages)}

    def _client_message(self, command: cc.ClientMessage, client: int) -> dict[str, Any]:
        self.check_link()
        self._check_rtvi()
        return {"id": self.send(rtvi.client_message(command.t, command.d))}

    def _ui_event(self, command: cc.UiEvent, client: int) -> dict[str, Any]:
        self.check_link()
        self._check_rtvi()
        return {"id": self.send(rtvi.ui_event(command.event, command.payload))}

    def _client_request(self, command: cc.ClientRequest, client: int) -> dict[str, Any]:
        self.check_link()
        self._check_rtvi()
        message = rtvi.client_message(command.t, command.d)
        self.requests.check_room()
        # Queued only: the reply is read by another task, after this returns.
        self.send(message)
        self.requests.open(message["id"], client, command.t, trio.current_time(), command.timeout_s)
        self._wake()
        return {"id": message["id"], "timeout_s": command.timeout_s}

    def send(self, message: dict[str, Any]) -> str:
        """Queue `message` for the bot; its id. CommandError when the outgoing queue is full."""
        if not self._link.send_message(message):
            raise cc.CommandError("the outgoing message queue is full; try again")
        return str(message["id"])

    def check_link(self) -> None:
        """CommandError unless a session with the bot is up."""
        if not self._link.status.state.is_up:
            raise cc.CommandError("not connected to the bot")

    def _check_rtvi(self) -> None:
        if not self._rtvi:
            raise cc.CommandError("the twilio serializer carries no RTVI messages (only dtmf)")

    def _deliver(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            request = outcome.request
            event = de.ClientResponse(
                request.request_id,
                request.t,
                outcome.ok,
                outcome.data,
                outcome.error,
                round(outcome.elapsed_s * 1000, 1),
            )
            if not self._hub.send_to(request.owner, event) and not outcome.ok:
                log.info(
                    "request outcome undelivered %s", kv(id=request.request_id, error=escape(outcome.error))
                )

    def _client_gone(self, client: int) -> None:
        self.requests.forget(client)
        self.functions.release(client, None)

    def snapshot(self) -> dict[str, Any]:
        return {"functions": self.functions.snapshot(), "requests": self.requests.snapshot()}


# The bot's messages this module reads; every other one is offered to the device functions.
def _bot_messages() -> dict[type, Callable[[Integrations, Any], None]]:
    from voiceterm.protocol import rtvi_events  # by the first bot message (core/dispatch.py)

    return {
        rtvi_events.BotReady: Integrations._bot_ready,
        rtvi_events.ServerResponse: Integrations._server_response,
        rtvi_events.ErrorResponse: Integrations._error_response,
    }


_BOT_MESSAGES: Dispatch[Callable[[Integrations, Any], None]] = Dispatch(_bot_messages)

# The control commands this module carries out, each by its handler (`COMMANDS` is this table's keys).
_CONTROL: Dispatch[Callable[[Integrations, Any, int], dict[str, Any]]] = Dispatch(
    {
        cc.ClaimFunctions: Integrations._claim,
        cc.ReleaseFunctions: Integrations._release,
        cc.FunctionResult: Integrations._function_result,
        cc.Functions: Integrations._functions,
        cc.Dtmf: Integrations._dtmf,
        cc.ClientMessage: Integrations._client_message,
        cc.UiEvent: Integrations._ui_event,
        cc.ClientRequest: Integrations._client_request,
    }
)
COMMANDS = _CONTROL.types


def builtins_for(
    *,
    set_volume: Callable[[int], int],
    set_mute: Callable[[bool], bool],
) -> dict[str, Builtin]:
    """The built-in functions over the daemon's own controls (end_session is the answer's own doing)."""
    return {
        "set_volume": lambda args: {"volume_percent": set_volume(args["percent"])},
        "mute": lambda args: {"muted": set_mute(args["muted"])},
        "end_session": lambda args: {"ending": True},
    }


__all__ = ["COMMANDS", "Integrations", "builtins_for"]
