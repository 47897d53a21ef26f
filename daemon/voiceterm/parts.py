"""Optional parts: the Python packages a configuration needs beyond a plain install, and the one-line error
that names what to install when one is missing.

A plain `pip install voiceterm` carries what every terminal uses (trio, the WebSocket, protobuf, ALSA,
numpy/soxr, gpiozero). gpiozero is imported only when [gpio] is enabled (it costs memory and start-up
time), but it is a dependency, so the shipped example configuration works after a plain install; a
system install that left it out still gets the one-line error. The start endpoint (httpx) is an extra,
imported only when the configuration turns it on; the Twilio codec is ours and is imported only when it
is the configured serializer. The audio front-end (echo cancellation, noise suppression, gain: WebRTC's audio
processing through pywebrtc-audio) is the `frontend` extra: wheels exist for x86_64 and aarch64, none for
32-bit ARM, so `[frontend] mode = "auto"` (the default) runs without it and says so once, and only
`mode = "on"` makes it a requirement. `voiceterm run` and `check-config` call `check_parts` so a missing part is a configuration
error (exit 78) before anything starts, not an ImportError in the middle of the night.
"""

from __future__ import annotations

import importlib.util
import sys

from voiceterm.config import Config, ConfigError
from voiceterm.record import record


@record
class Part:
    module: str  # what must import
    pip: str  # what to pip install to bring it
    apt: str  # Debian / Raspberry Pi OS package that brings it, for a system-wide install ("" = none)
    key: str  # the setting that asks for it
    instead: str  # how to not need it


GPIO = Part("gpiozero", "gpiozero", "python3-gpiozero", "gpio.enabled", "set gpio.enabled = false")
ENDPOINT = Part(
    "httpx", "'voiceterm[endpoint]'", "python3-httpx", "bot.endpoint", 'set bot.endpoint = "" and use bot.url'
)
FRONTEND = Part(
    "pywebrtc_audio",
    "'voiceterm[frontend]' (wheels for x86_64 and aarch64 only)",
    "",
    "frontend.mode",
    'set frontend.mode = "auto" or "off" (then there is no echo cancellation: see audio.half_duplex)',
)


def needed(cfg: Config) -> list[Part]:
    """The optional parts `cfg` turns on."""
    parts = []
    if cfg.gpio.enabled:
        parts.append(GPIO)
    if cfg.bot.endpoint:
        parts.append(ENDPOINT)
    if cfg.frontend.mode == "on":
        parts.append(FRONTEND)
    return parts


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it (a part is heavy: that is why it is optional)."""
    if module in sys.modules:
        return sys.modules[module] is not None  # None: import blocked on purpose
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_parts(cfg: Config) -> None:
    """Raise ConfigError (one line) for the first part `cfg` needs that is not installed."""
    for part in needed(cfg):
        if not installed(part.module):
            apt = f" (or apt install {part.apt})" if part.apt else ""
            raise ConfigError(
                f"{cfg.source}: {part.key}: needs {part.module}, which is not installed; "
                f"pip install {part.pip}{apt}, or {part.instead}"
            )


__all__ = ["ENDPOINT", "FRONTEND", "GPIO", "Part", "check_parts", "installed", "needed"]
