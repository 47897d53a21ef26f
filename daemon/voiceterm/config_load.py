"""Reading the TOML configuration: parsing, type and range checks, cross-field checks, the token file, and
the one-line errors a field installer can act on.

`load_config` returns the frozen dataclasses of `voiceterm.config` or raises `ConfigError`, whose message is
one line naming the file and the dotted key; the CLI turns it into exit status 78 (`exitcodes.EX_CONFIG`).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from voiceterm.config import (
    CREDENTIAL_NAME,
    DEFAULT_CONFIG_PATH,
    FRONTEND_RATES,
    SECTIONS,
    Config,
    ConfigError,
)
from voiceterm.token_file import TokenFileError, read_token_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


def config_path_from(cli_path: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The file to read: --config wins, then $VOICETERM_CONFIG, then the system default."""
    environ = os.environ if environ is None else environ
    return cli_path or environ.get("VOICETERM_CONFIG") or DEFAULT_CONFIG_PATH


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the TOML file at `path`. Raises ConfigError with a one-line message."""
    path = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: file not found; create it (an empty file is valid) or pass --config"
        ) from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: TOML syntax error: {e}") from None
    return config_from_dict(data, source=path, environ=environ)


def config_from_dict(
    data: Mapping[str, Any], source: str = "<dict>", environ: Mapping[str, str] | None = None
) -> Config:
    """Validate a parsed TOML document and build the Config. Raises ConfigError."""
    environ = os.environ if environ is None else environ
    where = source
    sections: dict[str, Any] = {}
    for key, value in data.items():
        if key not in SECTIONS:
            raise ConfigError(f"{where}: {key}: unknown section{did_you_mean(key, SECTIONS)}")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key}: must be a table ([{key}]), got {type_name(value)}")
        sections[key] = _build_section(SECTIONS[key], value, key, where)
    cfg = Config(**sections, source=source)
    cfg = _resolve_token(cfg, where, environ)
    _check_cross_fields(cfg, where)
    from voiceterm.config_sections import check_functions_and_twilio

    check_functions_and_twilio(cfg, where)
    return cfg


def _build_section(cls: type, table: Mapping[str, Any], section: str, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{section}.{key}"
        if key not in names:
            raise ConfigError(f"{where}: {dotted}: unknown key{did_you_mean(key, names)}")
        f = names[key]
        values[key] = coerce_value(value, hints[key], f.metadata, dotted, where)
    return cls(**values)


def coerce_value(value: Any, hint: Any, meta: Mapping[str, Any], dotted: str, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            shown = ", ".join(f'"{c}"' for c in choices)
            raise ConfigError(f"{where}: {dotted}: must be one of {shown}, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {dotted}: must be true or false, got {type_name(value)}")
        return value
    if hint is int or hint is float:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if hint is float:
            ok = ok or isinstance(value, float)
        if not ok:
            want = "an integer" if hint is int else "a number"
            raise ConfigError(f"{where}: {dotted}: must be {want}, got {type_name(value)}")
        lo, hi = meta.get("min"), meta.get("max")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"{where}: {dotted}: {value} is out of range, use {lo:g} to {hi:g}")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {dotted}: must be a string, got {type_name(value)}")
        return value
    if origin in (Mapping, dict, typing.Mapping) or (
        isinstance(origin, type) and issubclass(origin, Mapping)
    ):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {dotted}: must be a table, got {type_name(value)}")
        val_type = typing.get_args(hint)[1]
        if val_type is str:
            for k, v in value.items():
                if not isinstance(v, str):
                    raise ConfigError(f"{where}: {dotted}.{k}: must be a string, got {type_name(v)}")
                if "\n" in v or "\r" in v or "\n" in k or "\r" in k:
                    raise ConfigError(f"{where}: {dotted}.{k}: header must be one line")
        return types.MappingProxyType(dict(value))
    if origin is tuple:
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"{where}: {dotted}: must be a list of integers, got {type_name(value)}")
        return tuple(value)
    raise AssertionError(f"unsupported config type {hint!r} for {dotted}")  # pragma: no cover


def _resolve_token(cfg: Config, where: str, environ: Mapping[str, str]) -> Config:
    bot = cfg.bot
    token_file = bot.token_file
    if bot.token and token_file:
        raise ConfigError(f"{where}: bot.token_file: set either bot.token or bot.token_file, not both")
    from_credentials = False
    if not bot.token and not token_file:
        cred_dir = environ.get("CREDENTIALS_DIRECTORY")
        if cred_dir and os.path.isfile(os.path.join(cred_dir, CREDENTIAL_NAME)):
            token_file = os.path.join(cred_dir, CREDENTIAL_NAME)
            from_credentials = True
    if not token_file:
        return cfg
    try:
        token, warning = read_token_file(token_file)
    except TokenFileError as e:
        raise ConfigError(f"{where}: bot.token_file: {e}") from None
    if not token:
        if from_credentials:
            # The unit's SetCredential= fallback (systemd cannot make LoadCredential= optional): no token.
            return cfg
        raise ConfigError(f"{where}: bot.token_file: {token_file} is empty")
    if any(c.isspace() for c in token):
        raise ConfigError(
            f"{where}: bot.token_file: {token_file} holds more than one word; put only the token in it"
        )
    warnings = (*cfg.warnings, f"{where}: bot.token_file: {warning}") if warning else cfg.warnings
    return dataclasses.replace(cfg, bot=dataclasses.replace(bot, token=token), warnings=warnings)


def _check_url(url: str, schemes: tuple[str, ...], dotted: str, where: str) -> None:
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as e:
        raise ConfigError(f"{where}: {dotted}: {url!r} is not a valid URL ({e})") from None
    if parts.scheme not in schemes:
        want = " or ".join(f"{s}://" for s in schemes)
        raise ConfigError(f"{where}: {dotted}: {url!r} must start with {want}")
    if not parts.hostname:
        raise ConfigError(f"{where}: {dotted}: {url!r} has no host name")
    if any(c.isspace() for c in url):
        raise ConfigError(f"{where}: {dotted}: {url!r} contains white space")


def _check_cross_fields(cfg: Config, where: str) -> None:
    bot, audio, gpio = cfg.bot, cfg.audio, cfg.gpio
    if bot.endpoint:
        _check_url(bot.endpoint, ("http", "https"), "bot.endpoint", where)
    else:
        _check_url(bot.url, ("ws", "wss"), "bot.url", where)
    if bot.ca_file and not os.access(bot.ca_file, os.R_OK):
        raise ConfigError(f"{where}: bot.ca_file: {bot.ca_file} does not exist or is not readable")
    from voiceterm.protocol.registry import UnknownSerializerError, get_serializer

    try:
        serializer = get_serializer(bot.serializer)
    except UnknownSerializerError as e:
        raise ConfigError(f"{where}: bot.serializer: {e}") from None
    mic_rate = getattr(serializer, "input_sample_rate", None) or audio.recorder_sample_rate
    if cfg.frontend.mode == "on" and mic_rate not in FRONTEND_RATES:
        raise ConfigError(
            f"{where}: frontend.mode: the audio front-end runs at 16000, 32000 or 48000 Hz and the mic runs "
            f"at {mic_rate} Hz (audio.recorder_sample_rate, or the {bot.serializer} wire format); "
            'change the rate or set frontend.mode = "auto" or "off"'
        )
    for name in ("capture_device", "playback_device"):
        if not getattr(audio, name).strip():
            raise ConfigError(f'{where}: audio.{name}: must name an ALSA device (e.g. "default")')
    if cfg.reconnect.max_delay < cfg.reconnect.initial_delay:
        raise ConfigError(
            f"{where}: reconnect.max_delay: {cfg.reconnect.max_delay:g} is below reconnect.initial_delay "
            f"{cfg.reconnect.initial_delay:g}"
        )
    if audio.reopen_max_s < audio.reopen_min_s:
        raise ConfigError(f"{where}: audio.reopen_max_s: must not be below audio.reopen_min_s")
    if gpio.rgb_pins:
        if len(gpio.rgb_pins) != 3 or any(not 0 <= p <= 53 for p in gpio.rgb_pins):
            raise ConfigError(
                f"{where}: gpio.rgb_pins: must be three BCM pins [red, green, blue] from 0 to 53"
            )
        if gpio.button_pin in gpio.rgb_pins:
            raise ConfigError(f"{where}: gpio.rgb_pins: pin {gpio.button_pin} is also gpio.button_pin")
    elif gpio.led_pin >= 0 and gpio.led_pin == gpio.button_pin:
        raise ConfigError(f"{where}: gpio.led_pin: pin {gpio.led_pin} is also gpio.button_pin")
    group = cfg.events.group
    if group and not (group.isdigit() or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*\$?", group)):
        raise ConfigError(f"{where}: events.group: {group!r} is not a group name or number")
    if cfg.heartbeat.interval and cfg.heartbeat.timeout > 600:
        raise ConfigError(f"{where}: heartbeat.timeout: out of range")  # pragma: no cover


def did_you_mean(key: str, known: Mapping[str, Any] | typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    if close:
        return f'; did you mean "{close[0]}"?'
    return "; known: " + ", ".join(sorted(known))


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value:g})"
    if isinstance(value, str):
        return f"a string ({value!r})" if len(value) < 40 else "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


__all__ = ["coerce_value", "config_from_dict", "config_path_from", "did_you_mean", "load_config", "type_name"]
