"""Validation of the [functions] and [twilio] sections, beyond what their field types say: the command
tables of device functions (names, argv, bounds) and the posed Twilio call's identifiers and parameters.

Called by `voiceterm.config.config_from_dict`; raises its ConfigError with the one-line message naming the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from voiceterm.config import Config, ConfigError
from voiceterm.config_load import coerce_value, did_you_mean, type_name
from voiceterm.core.function_handlers import BUILTINS, NAME_PATTERN

_COMMAND_KEYS = {"command": None, "timeout_s": (0.1, 300.0), "max_running": (1, 16)}
_BUILTIN_NAMES = {f"builtin_{name}": name for name in BUILTINS}  # FunctionsConfig's switches
MAX_CUSTOM_PARAMETERS = 32


def check_functions_and_twilio(cfg: Config, where: str) -> None:
    functions = cfg.functions
    exposed = {name for key, name in _BUILTIN_NAMES.items() if getattr(functions, key)}
    for name, spec in functions.commands.items():
        dotted = f"functions.commands.{name}"
        if not NAME_PATTERN.fullmatch(name):
            raise ConfigError(
                f"{where}: {dotted}: a function name is letters, digits and _ . : - (at most 64)"
            )
        if name in exposed:
            raise ConfigError(f"{where}: {dotted}: {name} is also an exposed built-in; rename one")
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: {dotted}: must be a table ([{dotted}]), got {type_name(spec)}")
        for key, value in spec.items():
            if key not in _COMMAND_KEYS:
                raise ConfigError(f"{where}: {dotted}.{key}: unknown key{did_you_mean(key, _COMMAND_KEYS)}")
            bounds = _COMMAND_KEYS[key]
            if bounds is not None:
                coerce_value(
                    value,
                    int if key == "max_running" else float,
                    {"min": bounds[0], "max": bounds[1]},
                    f"{dotted}.{key}",
                    where,
                )
        argv = spec.get("command")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and a for a in argv):
            raise ConfigError(
                f'{where}: {dotted}.command: must be a list of strings, like ["/usr/local/bin/open-door"]'
            )
        if not os.path.isabs(argv[0]):
            raise ConfigError(
                f"{where}: {dotted}.command: {argv[0]!r} must be an absolute path (no shell, no PATH)"
            )
        if not (os.path.isfile(argv[0]) and os.access(argv[0], os.X_OK)):
            raise ConfigError(f"{where}: {dotted}.command: {argv[0]} is not an executable file")
    twilio = cfg.twilio
    for key in ("stream_sid", "call_sid", "account_sid"):
        value = getattr(twilio, key)
        if value and (len(value) > 64 or not value.isprintable() or any(c.isspace() for c in value)):
            raise ConfigError(f"{where}: twilio.{key}: at most 64 printable characters without spaces")
    params = twilio.custom_parameters
    if len(params) > MAX_CUSTOM_PARAMETERS:
        raise ConfigError(f"{where}: twilio.custom_parameters: more than {MAX_CUSTOM_PARAMETERS} parameters")
    for key, value in params.items():
        if len(key) > 256 or len(value) > 1024:
            raise ConfigError(
                f"{where}: twilio.custom_parameters.{key[:40]}: too long (256 / 1024 characters)"
            )


__all__ = ["MAX_CUSTOM_PARAMETERS", "check_functions_and_twilio"]
