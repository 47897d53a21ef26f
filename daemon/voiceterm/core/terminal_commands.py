"""What the terminal's brain tells the trio shell to do: send a message to the bot, flush playback, play an
earcon, reconnect, wake a link that gave up, quit. Plain frozen values; the app carries each out with its
own handler (a dispatch table), in the order the brain returned them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

__all__ = ["Command", "Earcon", "FlushPlayback", "Quit", "ReconnectNow", "SendMessage", "WakeLink"]


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Send this RTVI message to the bot."""

    message: dict[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class FlushPlayback:
    """Drop all queued bot audio now."""

    reason: str


@dataclass(frozen=True, slots=True)
class Earcon:
    """Play a short tone: "press", "release", "connected", "disconnected" or "error"."""

    name: str


@dataclass(frozen=True, slots=True)
class ReconnectNow:
    """Drop the session (if any) and connect again without waiting."""


@dataclass(frozen=True, slots=True)
class WakeLink:
    """The link gave up (FAILED); start trying again."""


@dataclass(frozen=True, slots=True)
class Quit:
    """Stop the daemon."""


Command = Union[SendMessage, FlushPlayback, Earcon, ReconnectNow, WakeLink, Quit]
