"""The configuration's schema: every section and key of the TOML file, its type, default, range, help text and
whether a reload applies it live.

Every key has a default that works on a Raspberry Pi with a USB microphone and speaker, so an empty file is a
valid configuration. Each field's metadata is built by `_live` (a SIGHUP applies a new value at once) or
`_restart` (a new value waits for a restart, and the reload names it in the journal): `LIVE_KEYS` and the
shipped example's "(live)" marks are derived from it. Reading and validating a file is `config_load.py`;
showing one (masked, as TOML) is `config_render.py`.
"""

from __future__ import annotations

import socket
import typing
from collections.abc import Mapping
from dataclasses import field, fields
from typing import Any, Literal

from voiceterm.record import record

DEFAULT_CONFIG_PATH = "/etc/voiceterm/voiceterm.toml"
CREDENTIAL_NAME = "token"  # systemd LoadCredential=token:… ends up at $CREDENTIALS_DIRECTORY/token

LIVE = "live"  # a SIGHUP applies the new value at once
RESTART = "restart"  # the new value waits for a restart; the reload names the key in the journal


class ConfigError(Exception):
    """A configuration problem, worded as one line a person can act on."""


def _meta(reload: str, help_text: str, lo: float | None, hi: float | None, extra: dict[str, Any]) -> dict:
    # help: the example's comment; min/max: the range checked on load; reload: LIVE or RESTART; mask/secret: how
    # check-config shows the value; note: an extra comment line in the example; example: the example's own
    # comment in place of help.
    return {"help": help_text, "min": lo, "max": hi, "reload": reload, **extra}


def _live(help_text: str, lo: float | None = None, hi: float | None = None, **extra: Any) -> dict:
    """Metadata of a key a SIGHUP applies live (the components' reconfigure() takes it)."""
    return _meta(LIVE, help_text, lo, hi, extra)


def _restart(help_text: str, lo: float | None = None, hi: float | None = None, **extra: Any) -> dict:
    """Metadata of a key whose new value needs a restart (devices, pins, sockets, the bot's address ...)."""
    return _meta(RESTART, help_text, lo, hi, extra)


@record
class BotConfig:
    url: str = field(
        default="ws://localhost:8765",
        metadata=_restart(
            "WebSocket URL of the bot (ws:// or wss://); ignored when endpoint is set", mask="url"
        ),
    )
    endpoint: str = field(
        default="",
        metadata=_restart(
            "start endpoint (http:// or https://) POSTed before every connect; empty = use url", mask="url"
        ),
    )
    endpoint_body: Mapping[str, Any] = field(
        default_factory=dict,
        metadata=_restart(
            "JSON body POSTed to the start endpoint; {} = what the serializer needs: "
            '{ transport = "websocket" } for protobuf, { transport = "twilio" } for twilio',
            mask="body",
        ),
    )
    endpoint_headers: Mapping[str, str] = field(
        default_factory=dict,
        metadata=_restart("extra HTTP headers for the start endpoint", secret=True),
    )
    serializer: str = field(
        default="protobuf", metadata=_restart('wire format: "protobuf" (Pipecat frames) or "twilio"')
    )
    token: str = field(
        default="",
        metadata=_restart(
            "token: sent as ?token= on url, or as Authorization: Bearer to the endpoint",
            secret=True,
        ),
    )
    token_file: str = field(
        default="",
        metadata=_restart(
            "file holding the token (default: $CREDENTIALS_DIRECTORY/token when systemd provides it)",
            note="(chmod 600 it: a file its group or others can read is warned about, a world-writable one refused)",
        ),
    )
    headers: Mapping[str, str] = field(
        default_factory=dict,
        metadata=_restart("extra HTTP headers for the WebSocket upgrade", secret=True),
    )
    origin: str = field(default="", metadata=_restart("Origin header for the WebSocket; empty = none"))
    ca_file: str = field(
        default="", metadata=_restart("PEM file of extra CA certificates for wss:// and https://")
    )
    connect_timeout: float = field(
        default=10.0,
        metadata=_restart("seconds allowed for the start call plus the WebSocket handshake", 0.5, 300),
    )
    ready_timeout: float = field(
        default=5.0,
        metadata=_restart(
            "seconds to wait for bot-ready before treating the session as ready anyway", 0.1, 120
        ),
    )
    max_message_bytes: int = field(
        default=1 << 20,
        metadata=_restart("largest WebSocket message accepted or sent", 4096, 16 << 20),
    )
    device_id: str = field(
        default="", metadata=_restart("device id announced in client-ready; empty = the host name")
    )


@record
class AudioConfig:
    capture_device: str = field(default="default", metadata=_restart("ALSA PCM name of the microphone"))
    playback_device: str = field(default="default", metadata=_restart("ALSA PCM name of the speaker"))
    recorder_sample_rate: int = field(
        default=16000,
        metadata=_restart("mic sample rate in Hz; must equal the bot's input rate", 8000, 48000),
    )
    player_sample_rate: int = field(
        default=24000,
        metadata=_restart("speaker sample rate in Hz; bot audio at other rates is resampled", 8000, 48000),
    )
    period_ms: int = field(
        default=20, metadata=_restart("ALSA period (one mic chunk) in milliseconds", 5, 100)
    )
    buffer_periods: int = field(
        default=4, metadata=_restart("ALSA playback buffer in periods (small keeps flush fast)", 2, 16)
    )
    idle_fill_ms: int = field(
        default=320,
        metadata=_restart(
            "silence queued in the playback device while nothing plays: the idle speaker wakes once per "
            "this much less two periods, and its first sound restarts the stream; 0 = only the "
            "buffer_periods (for an amplifier that clicks on a restart); not used with the front-end",
            0,
            2000,
        ),
    )
    preroll_ms: int = field(
        default=60,
        metadata=_restart("bot audio buffered before playback starts (jitter cover)", 0, 1000),
    )
    playout_cap_ms: int = field(
        default=3000,
        metadata=_restart("most bot audio held for playout; older audio is dropped beyond it", 100, 60000),
    )
    mic_gain_db: float = field(default=0.0, metadata=_live("gain applied to the mic in dB", -40, 40))
    volume_percent: int = field(default=100, metadata=_live("software volume of the bot's voice", 0, 400))
    pacing: Literal["device", "wall-clock"] = field(
        default="device",
        metadata=_restart('"device" (real hardware paces I/O) or "wall-clock" (unclocked file PCMs)'),
    )
    half_duplex: bool = field(
        default=False, metadata=_restart("mute the mic while the bot speaks (no echo cancellation)")
    )
    reopen_min_s: float = field(
        default=0.5,
        metadata=_restart("first delay before reopening a vanished audio device", 0.05, 60),
    )
    reopen_max_s: float = field(
        default=10.0,
        metadata=_restart("longest delay between reopen attempts of an audio device", 0.1, 600),
    )
    chunk_ms: int = field(
        default=0,
        metadata=_restart(
            "mic audio per message to the bot in milliseconds (one capture period); 0 = period_ms. "
            "40 halves the messages, and their CPU, on the smallest boards for 20 ms more latency",
            0,
            100,
        ),
    )


@record
class EarconsConfig:
    enabled: bool = field(default=True, metadata=_live("play short tones for events on the speaker"))
    volume_percent: int = field(default=30, metadata=_live("tone volume", 0, 100))
    press: bool = field(default=True, metadata=_live("tone when a turn starts"))
    release: bool = field(default=True, metadata=_live("tone when a turn ends"))
    connected: bool = field(default=True, metadata=_live("tone when the bot is ready"))
    disconnected: bool = field(default=True, metadata=_live("tone when the link is lost"))
    error: bool = field(default=True, metadata=_live("tone on a fault"))


@record
class PushToTalkConfig:
    mode: Literal["hold", "toggle", "always-on"] = field(
        default="hold",
        metadata=_live('"hold" (talk while held), "toggle" or "always-on" (open mic)'),
    )
    start_muted: bool = field(default=False, metadata=_live("start with the mic muted"))
    tail_ms: int = field(
        default=300,
        metadata=_live("silence streamed after release so VAD-only bots end the turn", 0, 3000),
    )
    long_press_action: Literal["mute", "reconnect", "none"] = field(
        default="mute",
        metadata=_live('what a long press does: "mute" toggle, "reconnect" now, or "none"'),
    )
    send_messages: bool = field(
        default=True, metadata=_live("send push_to_talk start/stop client-messages to the bot")
    )
    barge_in: bool = field(default=True, metadata=_live("a press while the bot speaks interrupts it"))
    max_turn_s: float = field(
        default=120.0,
        metadata=_live("a turn held longer than this ends (stuck button guard)", 1, 3600),
    )


@record
class GpioConfig:
    enabled: bool = field(default=True, metadata=_restart("use GPIO for the button and LED"))
    pin_factory: str = field(
        default="",
        metadata=_restart(
            'gpiozero pin factory; empty = $GPIOZERO_PIN_FACTORY or lgpio; "mock" for development'
        ),
    )
    button_pin: int = field(default=17, metadata=_restart("BCM pin of the push button; -1 = none", -1, 53))
    pull_up: bool = field(default=True, metadata=_restart("button wired to ground with the internal pull-up"))
    debounce_ms: int = field(default=30, metadata=_restart("edges closer than this are bounce", 0, 500))
    long_press_ms: int = field(
        default=1000, metadata=_restart("a press held this long is a long press", 200, 10000)
    )
    led_pin: int = field(default=27, metadata=_restart("BCM pin of a single status LED; -1 = none", -1, 53))
    led_pwm: bool = field(default=True, metadata=_restart("drive the single LED with PWM (allows pulsing)"))
    rgb_pins: tuple[int, ...] = field(
        default=(), metadata=_restart("BCM pins [red, green, blue] of an RGB LED; empty = use led_pin")
    )
    active_high: bool = field(default=True, metadata=_restart("LED lights when the pin is high"))


@record
class ReconnectConfig:
    initial_delay: float = field(
        default=1.0, metadata=_live("first delay before reconnecting, seconds", 0.05, 600)
    )
    multiplier: float = field(default=1.5, metadata=_live("delay growth per failed attempt", 1.0, 10))
    max_delay: float = field(
        default=30.0, metadata=_live("longest delay between attempts, seconds", 0.1, 3600)
    )
    jitter: float = field(default=0.2, metadata=_live("random spread of each delay, as a fraction", 0, 1))
    max_attempts: int = field(
        default=0,
        metadata=_live("failed attempts before giving up until a button press; 0 = forever", 0, 1000000),
    )


@record
class HeartbeatConfig:
    interval: float = field(default=10.0, metadata=_live("seconds between WebSocket pings; 0 = off", 0, 600))
    timeout: float = field(
        default=5.0,
        metadata=_live("seconds to wait for the pong before dropping the link", 0.1, 600),
    )


@record
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = field(default="info", metadata=_live("log level"))


@record
class StatusConfig:
    socket: str = field(
        default="",
        metadata=_restart("unix socket for `voiceterm status`; empty = the runtime directory"),
    )
    metrics_file: str = field(
        default="",
        metadata=_restart("Prometheus textfile (node_exporter collector) path; empty = off"),
    )
    metrics_interval: float = field(
        default=15.0, metadata=_live("seconds between metrics file writes", 1, 3600)
    )


@record
class EventsConfig:
    enabled: bool = field(
        default=True,
        metadata=_restart("serve the event stream and control socket (`voiceterm events`, `ctl`)"),
    )
    socket: str = field(
        default="", metadata=_restart("unix socket path; empty = events.sock in the runtime directory")
    )
    group: str = field(
        default="",
        metadata=_restart(
            "group whose members may connect; empty = the daemon's own; another needs SupplementaryGroups="
        ),
    )
    group_access: bool = field(
        default=True, metadata=_restart("let that group connect (mode 0660); false = the daemon's user only")
    )
    queue: int = field(
        default=256,
        metadata=_restart(
            "lines queued per client; a client that falls this far behind is dropped", 16, 65536
        ),
    )
    max_clients: int = field(default=16, metadata=_restart("connections served at once", 1, 256))


@record
class FunctionsConfig:
    commands: Mapping[str, Any] = field(
        default_factory=dict,
        metadata=_restart(
            "functions the bot may call on the device, one [functions.commands.NAME] table each: command "
            "(argv list, absolute path, no shell; gets the arguments as JSON on stdin, prints the result as "
            "JSON), timeout_s (default 5), max_running (default 1)",
            example=(
                "Functions the bot may call on the device (its LLM's tools; the device answers "
                "llm-function-call-result).\n"
                "One [functions.commands.NAME] table each: command (argv list, absolute path, no shell; gets the "
                "arguments\n"
                "as JSON on stdin, prints the result as JSON on stdout; a non-zero exit or a timeout is an error "
                "result),\n"
                "timeout_s (default 5), max_running (default 1). For example:\n"
                "  [functions.commands.open_door]\n"
                '  command = ["/usr/local/bin/open-door", "--front"]\n'
                "  timeout_s = 3"
            ),
        ),
    )
    builtin_set_volume: bool = field(
        default=False, metadata=_restart("let the bot call set_volume(percent): the voice's volume, 0-400")
    )
    builtin_mute: bool = field(default=False, metadata=_restart("let the bot call mute(muted): mute the mic"))
    builtin_end_session: bool = field(
        default=False, metadata=_restart("let the bot call end_session(): say goodbye and connect afresh")
    )
    claim_timeout_s: float = field(
        default=10.0,
        metadata=_restart("seconds an integration that claimed a function has to answer a call", 0.1, 300),
    )
    max_open: int = field(
        default=16, metadata=_restart("function calls open at once; more get an error answer", 1, 256)
    )
    max_argument_bytes: int = field(
        default=8192, metadata=_restart("largest arguments (as JSON) a call may carry", 64, 1 << 20)
    )
    max_result_bytes: int = field(
        default=16384, metadata=_restart("largest result (as JSON) sent back to the bot", 64, 1 << 20)
    )


@record
class TwilioConfig:
    stream_sid: str = field(
        default="",
        metadata=_restart('streamSid of the posed call ([bot] serializer = "twilio"); empty = new each time'),
    )
    call_sid: str = field(
        default="",
        metadata=_restart("callSid of the posed call (what auto_hang_up bots hang up); empty = new"),
    )
    account_sid: str = field(
        default="", metadata=_restart("accountSid of the posed call; empty = new each time")
    )
    custom_parameters: Mapping[str, str] = field(
        default_factory=dict,
        metadata=_restart(
            "start.customParameters of the call (pipecat runner bots read them as call_data.body)",
            secret=True,
        ),
    )


FRONTEND_RATES = (16000, 32000, 48000)  # the mic rates WebRTC's audio processing runs at


@record
class FrontendConfig:
    mode: Literal["auto", "on", "off"] = field(
        default="auto",
        metadata=_restart(
            '"auto" (process the mic when pywebrtc-audio is installed), "on" (required) or "off" (raw mic)'
        ),
    )
    echo_cancellation: bool = field(
        default=True, metadata=_restart("remove the bot's own voice from the mic (barge-in by voice)")
    )
    noise_suppression: bool = field(default=True, metadata=_restart("suppress steady background noise"))
    noise_suppression_level: int = field(
        default=1, metadata=_restart("0-3: 6, 12, 18 or 21 dB of noise suppression", 0, 3)
    )
    high_pass: bool = field(default=True, metadata=_restart("cut rumble and DC below about 80 Hz"))
    auto_gain: bool = field(default=True, metadata=_restart("automatic gain for quiet or distant voices"))
    max_gain_db: float = field(
        default=10.0,
        metadata=_restart("most gain auto_gain adds (more also raises what is left of the echo)", 0, 30),
    )


@record
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


def _section_keys(reload: str) -> tuple[str, ...]:
    return tuple(
        f"{section}.{f.name}"
        for section, cls in SECTIONS.items()
        for f in fields(cls)
        if f.metadata["reload"] == reload
    )


# The dotted keys a SIGHUP applies live, and those that need a restart: every key is in exactly one.
LIVE_KEYS: tuple[str, ...] = _section_keys(LIVE)
RESTART_KEYS: tuple[str, ...] = _section_keys(RESTART)


def is_live(key: str) -> bool:
    """Whether a reload applies the dotted `key` ("audio.volume_percent") live."""
    return key in LIVE_KEYS


__all__ = [
    "CREDENTIAL_NAME",
    "DEFAULT_CONFIG_PATH",
    "FRONTEND_RATES",
    "LIVE",
    "LIVE_KEYS",
    "RESTART",
    "RESTART_KEYS",
    "SECTIONS",
    "AudioConfig",
    "BotConfig",
    "Config",
    "ConfigError",
    "EarconsConfig",
    "EventsConfig",
    "FrontendConfig",
    "FunctionsConfig",
    "GpioConfig",
    "HeartbeatConfig",
    "LoggingConfig",
    "PushToTalkConfig",
    "ReconnectConfig",
    "StatusConfig",
    "TwilioConfig",
    "is_live",
]
