"""Choosing the audio front-end at start-up without loading it: the configuration and the DSP library decide
whether there is one (io/frontend.py), and only then are numpy, soxr and the library imported. A daemon
without a front-end never loads them (about 17 MiB and 100 ms of start-up on a desktop core).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from voiceterm.config import FrontendConfig

if TYPE_CHECKING:
    from voiceterm.io.frontend import FrontEnd

log = logging.getLogger("voiceterm.audio")

LIBRARY = "pywebrtc_audio"


class FrontendUnavailable(Exception):
    """The DSP library is not installed; the message is one line naming what to install."""


def load_library() -> Any:
    try:
        import pywebrtc_audio
    except ImportError:
        raise FrontendUnavailable(
            f"{LIBRARY} is not installed (pip install 'voiceterm[frontend]'; no wheel for 32-bit ARM): "
            "the mic goes to the bot without echo cancellation"
        ) from None
    return pywebrtc_audio


def library_version() -> str:
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        return f"pywebrtc-audio {version('pywebrtc-audio')}"
    return "pywebrtc-audio"


def reference_of(frontend: FrontEnd | None) -> FrontEnd | None:
    """What the speaker feeds its blocks to: the front-end when it cancels echo (else nothing to do)."""
    return frontend if frontend is not None and frontend.cfg.echo_cancellation else None


def make_frontend(cfg: FrontendConfig, *, mic_rate: int, device_rate: int) -> tuple[FrontEnd | None, str]:
    """The front-end the configuration asks for, or (None, why not: "off" when turned off). mode "on"
    without the library is a configuration error caught before this (voiceterm/parts.py); "auto" says
    why once and goes on raw."""
    if cfg.mode == "off" or not (
        cfg.echo_cancellation or cfg.noise_suppression or cfg.high_pass or cfg.auto_gain
    ):
        return None, "off"
    try:
        lib = load_library()  # before numpy: a missing library costs nothing
        from voiceterm.io.frontend import FrontEnd

        return FrontEnd(cfg, mic_rate=mic_rate, device_rate=device_rate, lib=lib), ""
    except FrontendUnavailable as e:
        log.warning("audio front-end unavailable: %s", e)
        return None, str(e)


__all__ = [
    "LIBRARY",
    "FrontendUnavailable",
    "library_version",
    "load_library",
    "make_frontend",
    "reference_of",
]
