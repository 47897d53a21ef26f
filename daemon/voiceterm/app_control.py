"""The device's controls carried out on the running daemon: the control socket's commands (one handler per
command type, looked up in a table: `CONTROL`) and the built-in functions the bot may call (volume, mute).
Parsing and validation are `core/control_commands.py`; the messages and requests for the bot and the device
functions are `io/integrations.py`'s.

A handler returns the reply's result; `CommandError` (one line) refuses the command and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from voiceterm.core import control_commands as cc
from voiceterm.core import device_events as de
from voiceterm.core.dispatch import Dispatch
from voiceterm.io.event_socket import current_client
from voiceterm.io.integrations import COMMANDS as INTEGRATION_COMMANDS
from voiceterm.logs import kv
from voiceterm.protocol import rtvi

if TYPE_CHECKING:
    from voiceterm.app import Daemon

__all__ = ["CONTROL", "carry_out", "set_mute_by_bot", "set_volume", "set_volume_by_bot"]

log = logging.getLogger("voiceterm")

_Handler = Callable[["Daemon", Any], dict[str, Any]]


def carry_out(daemon: Daemon, command: cc.Command) -> dict[str, Any]:
    """Carry out one control-socket command; CommandError (one line) refuses it and changes nothing."""
    handler = CONTROL.get(command)
    return handler(daemon, command) if handler is not None else cc.help_result()


def _talk(daemon: Daemon, command: cc.Talk) -> dict[str, Any]:
    daemon.apply(daemon.terminal.talk(command.start, trio.current_time()), source="control")
    state = daemon.terminal.state()
    if command.start and not state.turn:
        raise cc.CommandError(state.cannot_talk or "no turn could start")
    return {"turn": state.turn}


def _mute(daemon: Daemon, command: cc.Mute) -> dict[str, Any]:
    daemon.apply(daemon.terminal.set_mute(command.muted, trio.current_time()), source="control")
    return {"muted": daemon.terminal.state().muted}


def _volume(daemon: Daemon, command: cc.Volume) -> dict[str, Any]:
    if daemon.speaker is None:
        raise cc.CommandError("no speaker")
    if command.percent is not None:
        set_volume(daemon, command.percent, "control")
    return {"volume_percent": round(daemon.speaker.volume * 100)}


def _send_text(daemon: Daemon, command: cc.SendText) -> dict[str, Any]:
    daemon.integrations.check_link()
    if not daemon.serializer_cls.supports_rtvi:
        raise cc.CommandError(f"the {daemon.cfg.bot.serializer} serializer carries no RTVI messages")
    message = rtvi.send_text(
        command.content, run_immediately=command.run_immediately, audio_response=command.audio_response
    )
    return {"id": daemon.integrations.send(message)}


def _reconnect(daemon: Daemon, command: cc.Reconnect) -> dict[str, Any]:
    log.info("reconnect requested via the control socket")
    daemon.link.reconnect_now()
    return {"link_state": daemon.link.status.state.value}


def _status(daemon: Daemon, command: cc.Status) -> dict[str, Any]:
    return daemon.snapshot()


def _integration(daemon: Daemon, command: Any) -> dict[str, Any]:
    return daemon.integrations.control(command, current_client.get())


def set_volume(daemon: Daemon, percent: int, via: str) -> int:
    """The bot's voice volume, from the control socket or the bot's set_volume function."""
    before = round(daemon.speaker.volume * 100)
    daemon.speaker.volume = percent / 100
    if percent != before:
        log.info("volume set %s", kv(percent=percent, via=via))
        daemon.publish([de.VolumeChanged(percent)])
    return percent


def set_volume_by_bot(daemon: Daemon, percent: int) -> int:
    """The bot's built-in set_volume function."""
    from voiceterm.core.function_handlers import FunctionCallError

    if daemon.speaker is None:
        raise FunctionCallError("the device has no speaker")
    return set_volume(daemon, percent, "bot")


def set_mute_by_bot(daemon: Daemon, muted: bool) -> bool:
    """The bot's built-in mute function."""
    daemon.apply(daemon.terminal.set_mute(muted, trio.current_time()), source="bot")
    return daemon.terminal.state().muted


# Command type -> handler. Anything else (help) answers with the command list.
CONTROL: Dispatch[_Handler] = Dispatch(
    {
        cc.Talk: _talk,
        cc.Mute: _mute,
        cc.Volume: _volume,
        cc.SendText: _send_text,
        cc.Reconnect: _reconnect,
        cc.Status: _status,
        **dict.fromkeys(INTEGRATION_COMMANDS, _integration),
    }
)
