"""What device-function handlers are and give: the built-ins and their arguments, the commands declared in
the configuration, a command's output read as a result, and the JSON measures the call table bounds with.
Pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from voiceterm.record import record

BUILTINS = ("set_volume", "mute", "end_session")
DEFAULT_TIMEOUT_S = 5.0  # a command's, when [functions.commands.NAME] does not say
DEFAULT_MAX_RUNNING = 1
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # function names are LLM tool names: short identifiers


class FunctionCallError(ValueError):
    """A control request about function calls that cannot be carried out; str() is the one-line reason."""


@record
class CommandSpec:
    """A function declared in the configuration: run `argv` (no shell) for each call."""

    name: str
    argv: tuple[str, ...]
    timeout_s: float = 5.0  # DEFAULT_TIMEOUT_S
    max_running: int = 1  # DEFAULT_MAX_RUNNING


def json_size(value: object) -> int | None:
    """Bytes of `value` as compact JSON; None when it is not plain JSON (or nested too deep to encode)."""
    try:
        return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode())
    except (TypeError, ValueError, RecursionError):
        return None


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def result_from_command(
    exit_status: int | None, stdout: bytes, *, truncated: bool
) -> tuple[object, str | None]:
    """A command's outcome as (result, error): its stdout as JSON when it exited 0, an error otherwise.

    `exit_status` is None when the command could not be started; `truncated` when stdout passed the bound.
    """
    if exit_status is None:
        return None, "the command could not be started"
    if exit_status != 0:
        how = (
            f"was killed by signal {-exit_status}" if exit_status < 0 else f"exited with status {exit_status}"
        )
        return None, f"the command {how}"
    if truncated:
        return None, "the command printed more than the result limit"
    text = stdout.strip()
    if not text:
        return None, "the command printed nothing; print the result as JSON"
    try:
        return json.loads(text), None
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, "the command's output is not JSON; print the result as JSON"


def builtin_arguments(name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The checked arguments of a built-in call; FunctionCallError (the error answer) when they do not fit.

    set_volume: ``percent`` 0-400 (the voice's software volume); mute: ``muted`` (default true);
    end_session: none.
    """
    if name == "set_volume":
        percent = arguments.get("percent")
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 <= percent <= 400:
            raise FunctionCallError("set_volume needs percent, a number from 0 to 400")
        return {"percent": round(percent)}
    if name == "mute":
        muted = arguments.get("muted", True)
        if not isinstance(muted, bool):
            raise FunctionCallError("mute takes muted, true or false")
        return {"muted": muted}
    if name == "end_session":
        return {}
    raise FunctionCallError(f"no built-in function {name!r}")


def commands_from_config(table: Mapping[str, Mapping[str, Any]]) -> list[CommandSpec]:
    """The validated `[functions.commands.NAME]` tables of the configuration as specs."""
    return [
        CommandSpec(
            name,
            tuple(spec["command"]),
            float(spec.get("timeout_s", DEFAULT_TIMEOUT_S)),
            int(spec.get("max_running", DEFAULT_MAX_RUNNING)),
        )
        for name, spec in table.items()
    ]


__all__ = [
    "BUILTINS",
    "NAME_PATTERN",
    "CommandSpec",
    "FunctionCallError",
    "builtin_arguments",
    "commands_from_config",
    "json_size",
    "json_type",
    "result_from_command",
]
