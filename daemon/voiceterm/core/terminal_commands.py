"""What the terminal's brain tells the trio shell to do: send a message to the bot, flush playback, play an
earcon, reconnect, wake a link that gave up, quit. Plain frozen values; the app carries each out with its
own handler (a dispatch table), in the order the brain returned them.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, Union

from voiceterm.record import record

__all__ = ["Command", "Earcon", "FlushPlayback", "Quit", "ReconnectNow", "SendMessage", "WakeLink"]


@record
class SendMessage:
    """Send this RTVI message to the bot."""

    message: dict[str, Any] = field(hash=False)


@record
class FlushPlayback:
    """Drop all queued bot audio now."""

    reason: str


@record
class Earcon:
    """Play a short tone: "press", "release", "connected", "disconnected" or "error"."""

    name: str


@record
class ReconnectNow:
    """Drop the session (if any) and connect again without waiting."""


@record
class WakeLink:
    """The link gave up (FAILED); start trying again."""


@record
class Quit:
    """Stop the daemon."""


Command = Union[SendMessage, FlushPlayback, Earcon, ReconnectNow, WakeLink, Quit]
