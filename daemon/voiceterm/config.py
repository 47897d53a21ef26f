"""The TOML configuration: schema, defaults, validation and the one-line errors a field installer can act on.

Every key has a default that works on a Raspberry Pi with a USB microphone and speaker, so an empty file is a
valid configuration. `load_config` returns frozen dataclasses or raises `ConfigError`, whose message is one line
naming the file and the dotted key; the CLI turns it into exit status 78 (EX_CONFIG).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import socket
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from voiceterm.masking import (
    is_secret_name,
    looks_secret,
    mask_body,
    mask_mapping,
    mask_secret,
    mask_url,
)
from voiceterm.token_file import TokenFileError, read_token_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEFAULT_CONFIG_PATH = "/etc/voiceterm/voiceterm.toml"
EX_CONFIG = 78
CREDENTIAL_NAME = "token"  # systemd LoadCredential=token:… ends up at $CREDENTIALS_DIRECTORY/token


class ConfigError(Exception):
    """A configuration problem, worded as one line a person can act on."""


def _meta(help_text: str, lo: float | None = None, hi: float | None = None, **extra: Any) -> dict:
    return {"help": help_text, "min": lo, "max": hi, **extra}


@dataclass(frozen=True, slots=True)
class BotConfig:
    url: str = field(
        default="ws://localhost:8765",
        metadata=_meta(
            "WebSocket URL of the bot (ws:// or wss://); ignored when endpoint is set", mask="url"
        ),
    )
    endpoint: str = field(
        default="",
        metadata=_meta(
            "start endpoint (http:// or https://) POSTed before every connect; empty = use url", mask="url"
        ),
    )
    endpoint_body: Mapping[str, Any] = field(
        default_factory=dict,
        metadata=_meta(
            "JSON body POSTed to the start endpoint; {} = what the serializer needs: "
            '{ transport = "websocket" } for protobuf, { transport = "twilio" } for twilio',
            mask="body",
        ),
    )
    endpoint_headers: Mapping[str, str] = field(
        default_factory=dict,
        metadata=_meta("extra HTTP headers for the start endpoint", secret=True),
    )
    serializer: str = field(
        default="protobuf", metadata=_meta('wire format: "protobuf" (Pipecat frames) or "twilio"')
    )
    token: str = field(
        default="",
        metadata=_meta(
            "token: sent as ?token= on url, or as Authorization: Bearer to the endpoint",
            secret=True,
        ),
    )
    token_file: str = field(
        default="",
        metadata=_meta(
            "file holding the token (default: $CREDENTIALS_DIRECTORY/token when systemd provides it)"
        ),
    )
    headers: Mapping[str, str] = field(
        default_factory=dict,
        metadata=_meta("extra HTTP headers for the WebSocket upgrade", secret=True),
    )
    origin: str = field(default="", metadata=_meta("Origin header for the WebSocket; empty = none"))
    ca_file: str = field(
        default="", metadata=_meta("PEM file of extra CA certificates for wss:// and https://")
    )
    connect_timeout: float = field(
        default=10.0,
        metadata=_meta("seconds allowed for the start call plus the WebSocket handshake", 0.5, 300),
    )
    ready_timeout: float = field(
        default=5.0,
        metadata=_meta("seconds to wait for bot-ready before treating the session as ready anyway", 0.1, 120),
    )
    max_message_bytes: int = field(
        default=1 << 20,
        metadata=_meta("largest WebSocket message accepted or sent", 4096, 16 << 20),
    )
    device_id: str = field(
        default="", metadata=_meta("device id announced in client-ready; empty = the host name")
    )


@dataclass(frozen=True, slots=True)
class AudioConfig:
    capture_device: str = field(default="default", metadata=_meta("ALSA PCM name of the microphone"))
    playback_device: str = field(default="default", metadata=_meta("ALSA PCM name of the speaker"))
    recorder_sample_rate: int = field(
        default=16000,
        metadata=_meta("mic sample rate in Hz; must equal the bot's input rate", 8000, 48000),
    )
    player_sample_rate: int = field(
        default=24000,
        metadata=_meta("speaker sample rate in Hz; bot audio at other rates is resampled", 8000, 48000),
    )
    period_ms: int = field(default=20, metadata=_meta("ALSA period (one mic chunk) in milliseconds", 5, 100))
    buffer_periods: int = field(
        default=4, metadata=_meta("ALSA playback buffer in periods (small keeps flush fast)", 2, 16)
    )
    preroll_ms: int = field(
        default=60,
        metadata=_meta("bot audio buffered before playback starts (jitter cover)", 0, 1000),
    )
    playout_cap_ms: int = field(
        default=3000,
        metadata=_meta("most bot audio held for playout; older audio is dropped beyond it", 100, 60000),
    )
    mic_gain_db: float = field(default=0.0, metadata=_meta("gain applied to the mic in dB", -40, 40))
    volume_percent: int = field(default=100, metadata=_meta("software volume of the bot's voice", 0, 400))
    pacing: Literal["device", "wall-clock"] = field(
        default="device",
        metadata=_meta('"device" (real hardware paces I/O) or "wall-clock" (unclocked file PCMs)'),
    )
    half_duplex: bool = field(
        default=False, metadata=_meta("mute the mic while the bot speaks (no echo cancellation)")
    )
    reopen_min_s: float = field(
        default=0.5,
        metadata=_meta("first delay before reopening a vanished audio device", 0.05, 60),
    )
    reopen_max_s: float = field(
        default=10.0,
        metadata=_meta("longest delay between reopen attempts of an audio device", 0.1, 600),
    )
    chunk_ms: int = field(
        default=0,
        metadata=_meta(
            "mic audio per message to the bot in milliseconds (one capture period); 0 = period_ms. "
            "40 halves the messages, and their CPU, on the smallest boards for 20 ms more latency",
            0,
            100,
        ),
    )


@dataclass(frozen=True, slots=True)
class EarconsConfig:
    enabled: bool = field(default=True, metadata=_meta("play short tones for events on the speaker"))
    volume_percent: int = field(default=30, metadata=_meta("tone volume", 0, 100))
    press: bool = field(default=True, metadata=_meta("tone when a turn starts"))
    release: bool = field(default=True, metadata=_meta("tone when a turn ends"))
    connected: bool = field(default=True, metadata=_meta("tone when the bot is ready"))
    disconnected: bool = field(default=True, metadata=_meta("tone when the link is lost"))
    error: bool = field(default=True, metadata=_meta("tone on a fault"))


@dataclass(frozen=True, slots=True)
class PushToTalkConfig:
    mode: Literal["hold", "toggle", "always-on"] = field(
        default="hold",
        metadata=_meta('"hold" (talk while held), "toggle" or "always-on" (open mic)'),
    )
    start_muted: bool = field(default=False, metadata=_meta("start with the mic muted"))
    tail_ms: int = field(
        default=300,
        metadata=_meta("silence streamed after release so VAD-only bots end the turn", 0, 3000),
    )
    long_press_action: Literal["mute", "reconnect", "none"] = field(
        default="mute",
        metadata=_meta('what a long press does: "mute" toggle, "reconnect" now, or "none"'),
    )
    send_messages: bool = field(
        default=True, metadata=_meta("send push_to_talk start/stop client-messages to the bot")
    )
    barge_in: bool = field(default=True, metadata=_meta("a press while the bot speaks interrupts it"))
    max_turn_s: float = field(
        default=120.0,
        metadata=_meta("a turn held longer than this ends (stuck button guard)", 1, 3600),
    )


@dataclass(frozen=True, slots=True)
class GpioConfig:
    enabled: bool = field(default=True, metadata=_meta("use GPIO for the button and LED"))
    pin_factory: str = field(
        default="",
        metadata=_meta(
            'gpiozero pin factory; empty = $GPIOZERO_PIN_FACTORY or lgpio; "mock" for development'
        ),
    )
    button_pin: int = field(default=17, metadata=_meta("BCM pin of the push button; -1 = none", -1, 53))
    pull_up: bool = field(default=True, metadata=_meta("button wired to ground with the internal pull-up"))
    debounce_ms: int = field(default=30, metadata=_meta("edges closer than this are bounce", 0, 500))
    long_press_ms: int = field(
        default=1000, metadata=_meta("a press held this long is a long press", 200, 10000)
    )
    led_pin: int = field(default=27, metadata=_meta("BCM pin of a single status LED; -1 = none", -1, 53))
    led_pwm: bool = field(default=True, metadata=_meta("drive the single LED with PWM (allows pulsing)"))
    rgb_pins: tuple[int, ...] = field(
        default=(), metadata=_meta("BCM pins [red, green, blue] of an RGB LED; empty = use led_pin")
    )
    active_high: bool = field(default=True, metadata=_meta("LED lights when the pin is high"))


@dataclass(frozen=True, slots=True)
class ReconnectConfig:
    initial_delay: float = field(
        default=1.0, metadata=_meta("first delay before reconnecting, seconds", 0.05, 600)
    )
    multiplier: float = field(default=1.5, metadata=_meta("delay growth per failed attempt", 1.0, 10))
    max_delay: float = field(
        default=30.0, metadata=_meta("longest delay between attempts, seconds", 0.1, 3600)
    )
    jitter: float = field(default=0.2, metadata=_meta("random spread of each delay, as a fraction", 0, 1))
    max_attempts: int = field(
        default=0,
        metadata=_meta("failed attempts before giving up until a button press; 0 = forever", 0, 1000000),
    )


@dataclass(frozen=True, slots=True)
class HeartbeatConfig:
    interval: float = field(default=10.0, metadata=_meta("seconds between WebSocket pings; 0 = off", 0, 600))
    timeout: float = field(
        default=5.0,
        metadata=_meta("seconds to wait for the pong before dropping the link", 0.1, 600),
    )


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = field(default="info", metadata=_meta("log level"))


@dataclass(frozen=True, slots=True)
class StatusConfig:
    socket: str = field(
        default="",
        metadata=_meta("unix socket for `voiceterm status`; empty = the runtime directory"),
    )
    metrics_file: str = field(
        default="",
        metadata=_meta("Prometheus textfile (node_exporter collector) path; empty = off"),
    )
    metrics_interval: float = field(
        default=15.0, metadata=_meta("seconds between metrics file writes", 1, 3600)
    )


@dataclass(frozen=True, slots=True)
class EventsConfig:
    enabled: bool = field(
        default=True, metadata=_meta("serve the event stream and control socket (`voiceterm events`, `ctl`)")
    )
    socket: str = field(
        default="", metadata=_meta("unix socket path; empty = events.sock in the runtime directory")
    )
    group: str = field(
        default="",
        metadata=_meta(
            "group whose members may connect; empty = the daemon's own; another needs SupplementaryGroups="
        ),
    )
    group_access: bool = field(
        default=True, metadata=_meta("let that group connect (mode 0660); false = the daemon's user only")
    )
    queue: int = field(
        default=256,
        metadata=_meta("lines queued per client; a client that falls this far behind is dropped", 16, 65536),
    )
    max_clients: int = field(default=16, metadata=_meta("connections served at once", 1, 256))


@dataclass(frozen=True, slots=True)
class FunctionsConfig:
    commands: Mapping[str, Any] = field(
        default_factory=dict,
        metadata=_meta(
            "functions the bot may call on the device, one [functions.commands.NAME] table each: command "
            "(argv list, absolute path, no shell; gets the arguments as JSON on stdin, prints the result as "
            "JSON), timeout_s (default 5), max_running (default 1)"
        ),
    )
    builtin_set_volume: bool = field(
        default=False, metadata=_meta("let the bot call set_volume(percent): the voice's volume, 0-400")
    )
    builtin_mute: bool = field(default=False, metadata=_meta("let the bot call mute(muted): mute the mic"))
    builtin_end_session: bool = field(
        default=False, metadata=_meta("let the bot call end_session(): say goodbye and connect afresh")
    )
    claim_timeout_s: float = field(
        default=10.0,
        metadata=_meta("seconds an integration that claimed a function has to answer a call", 0.1, 300),
    )
    max_open: int = field(
        default=16, metadata=_meta("function calls open at once; more get an error answer", 1, 256)
    )
    max_argument_bytes: int = field(
        default=8192, metadata=_meta("largest arguments (as JSON) a call may carry", 64, 1 << 20)
    )
    max_result_bytes: int = field(
        default=16384, metadata=_meta("largest result (as JSON) sent back to the bot", 64, 1 << 20)
    )


@dataclass(frozen=True, slots=True)
class TwilioConfig:
    stream_sid: str = field(
        default="",
        metadata=_meta('streamSid of the posed call ([bot] serializer = "twilio"); empty = new each time'),
    )
    call_sid: str = field(
        default="", metadata=_meta("callSid of the posed call (what auto_hang_up bots hang up); empty = new")
    )
    account_sid: str = field(
        default="", metadata=_meta("accountSid of the posed call; empty = new each time")
    )
    custom_parameters: Mapping[str, str] = field(
        default_factory=dict,
        metadata=_meta(
            "start.customParameters of the call (pipecat runner bots read them as call_data.body)",
            secret=True,
        ),
    )


FRONTEND_RATES = (16000, 32000, 48000)  # the mic rates WebRTC's audio processing runs at


@dataclass(frozen=True, slots=True)
class FrontendConfig:
    mode: Literal["auto", "on", "off"] = field(
        default="auto",
        metadata=_meta(
            '"auto" (process the mic when pywebrtc-audio is installed), "on" (required) or "off" (raw mic)'
        ),
    )
    echo_cancellation: bool = field(
        default=True, metadata=_meta("remove the bot's own voice from the mic (barge-in by voice)")
    )
    noise_suppression: bool = field(default=True, metadata=_meta("suppress steady background noise"))
    noise_suppression_level: int = field(
        default=1, metadata=_meta("0-3: 6, 12, 18 or 21 dB of noise suppression", 0, 3)
    )
    high_pass: bool = field(default=True, metadata=_meta("cut rumble and DC below about 80 Hz"))
    auto_gain: bool = field(default=True, metadata=_meta("automatic gain for quiet or distant voices"))
    max_gain_db: float = field(
        default=10.0,
        metadata=_meta("most gain auto_gain adds (more also raises what is left of the echo)", 0, 30),
    )


@dataclass(frozen=True, slots=True)
class Config:
    bot: BotConfig = field(default_factory=BotConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    earcons: EarconsConfig = field(default_factory=EarconsConfig)
    push_to_talk: PushToTalkConfig = field(default_factory=PushToTalkConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    reconnect: ReconnectConfig = field(default_factory=ReconnectConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    status: StatusConfig = field(default_factory=StatusConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    functions: FunctionsConfig = field(default_factory=FunctionsConfig)
    twilio: TwilioConfig = field(default_factory=TwilioConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    source: str = field(default="<defaults>", compare=False, metadata={"internal": True})
    # One-line warnings about the configuration that do not stop it (a token file others can read).
    warnings: tuple[str, ...] = field(default=(), compare=False, metadata={"internal": True})

    @property
    def device_id(self) -> str:
        return self.bot.device_id or socket.gethostname()


SECTIONS: dict[str, type] = {
    f.name: typing.get_type_hints(Config)[f.name] for f in fields(Config) if not f.metadata.get("internal")
}


# --- loading -------------------------------------------------------------------------------------


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
            raise ConfigError(f"{where}: {key}: unknown section{_did_you_mean(key, SECTIONS)}")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key}: must be a table ([{key}]), got {_type_name(value)}")
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
            raise ConfigError(f"{where}: {dotted}: unknown key{_did_you_mean(key, names)}")
        f = names[key]
        values[key] = _coerce(value, hints[key], f.metadata, dotted, where)
    return cls(**values)


def _coerce(value: Any, hint: Any, meta: Mapping[str, Any], dotted: str, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            shown = ", ".join(f'"{c}"' for c in choices)
            raise ConfigError(f"{where}: {dotted}: must be one of {shown}, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {dotted}: must be true or false, got {_type_name(value)}")
        return value
    if hint is int or hint is float:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if hint is float:
            ok = ok or isinstance(value, float)
        if not ok:
            want = "an integer" if hint is int else "a number"
            raise ConfigError(f"{where}: {dotted}: must be {want}, got {_type_name(value)}")
        lo, hi = meta.get("min"), meta.get("max")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"{where}: {dotted}: {value} is out of range, use {lo:g} to {hi:g}")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {dotted}: must be a string, got {_type_name(value)}")
        return value
    if origin in (Mapping, dict, typing.Mapping) or (
        isinstance(origin, type) and issubclass(origin, Mapping)
    ):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {dotted}: must be a table, got {_type_name(value)}")
        val_type = typing.get_args(hint)[1]
        if val_type is str:
            for k, v in value.items():
                if not isinstance(v, str):
                    raise ConfigError(f"{where}: {dotted}.{k}: must be a string, got {_type_name(v)}")
                if "\n" in v or "\r" in v or "\n" in k or "\r" in k:
                    raise ConfigError(f"{where}: {dotted}.{k}: header must be one line")
        return types.MappingProxyType(dict(value))
    if origin is tuple:
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"{where}: {dotted}: must be a list of integers, got {_type_name(value)}")
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


def _did_you_mean(key: str, known: Mapping[str, Any] | typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    if close:
        return f'; did you mean "{close[0]}"?'
    return "; known: " + ", ".join(sorted(known))


def _type_name(value: Any) -> str:
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


# --- showing -------------------------------------------------------------------------------------


def effective_config(cfg: Config, *, masked: bool = True) -> dict[str, dict[str, Any]]:
    """The configuration as plain data, for `check-config` and comparing reloads. Secrets are masked
    (`masked=False` is for comparing two configurations only, never for showing one): tokens show as
    "<set>", secret-like query values in URLs as "<redacted>", secret-like or credential-like header
    values and body keys as "<set>"."""
    out: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        obj = getattr(cfg, section)
        table: dict[str, Any] = {}
        for f in fields(obj):
            value = getattr(obj, f.name)
            how = f.metadata.get("mask") or ("secret" if f.metadata.get("secret") else None)
            if not masked:
                how = None
            if how == "url":
                value = mask_url(value) if value else value
            elif how == "body":
                value = mask_body(value)
            elif isinstance(value, Mapping):
                value = mask_mapping(value) if how == "secret" else dict(value)
            elif how == "secret":
                value = mask_secret(value)
            elif isinstance(value, tuple):
                value = list(value)
            table[f.name] = value
        out[section] = table
    return out


def secret_values(cfg: Config) -> list[str]:
    """Every secret value this configuration holds, for `masking.remember_secrets`: the token, values of
    secret-like (or credential-like) headers, body keys and URL query parameters, URL passwords."""
    from urllib.parse import parse_qsl

    bot = cfg.bot
    found: list[str] = [bot.token]
    for headers in (bot.headers, bot.endpoint_headers):
        found += [v for k, v in headers.items() if is_secret_name(k) or looks_secret(v)]
    stack: list[Any] = [bot.endpoint_body]
    while stack:  # the body's secret-like keys at any depth (the TOML parser bounds it)
        node = stack.pop()
        if isinstance(node, Mapping):
            for k, v in node.items():
                if is_secret_name(str(k)) and isinstance(v, (str, int, float)):
                    found.append(str(v))
                else:
                    stack.append(v)
        elif isinstance(node, list):
            stack.extend(node)
        elif looks_secret(node):
            found.append(node)
    for url in (bot.url, bot.endpoint):
        parts = urlsplit(url)
        found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if is_secret_name(k)]
        if parts.password:
            found.append(parts.password)
    return [v for v in found if v]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
            if value
            else "{}"
        )
    raise TypeError(type(value))  # pragma: no cover


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def render_toml(cfg: Config, *, with_help: bool = False) -> str:
    """The effective configuration as TOML text (secrets masked)."""
    eff = effective_config(cfg)
    lines: list[str] = []
    for section, table in eff.items():
        if lines:
            lines.append("")
        lines.append(f"[{section}]")
        cls = SECTIONS[section]
        helps = {f.name: f.metadata.get("help", "") for f in fields(cls)}
        for key, value in table.items():
            if with_help and helps.get(key):
                lines.append(f"# {helps[key]}")
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
