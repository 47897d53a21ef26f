"""The status view: what the LED and systemd's STATUS line show, as a pure function of the terminal's conditions.

Conditions are resolved by a fixed priority (fault > offline > muted > listening > bot speaking > thinking >
ready), never by "last event wins": a condition shows for as long as it holds and nothing of lower priority can
hide it. "starting" (no link status yet) and "failed" (reconnect budget spent) are kinds of offline. A mute
hidden by a higher-priority condition is still named in the text, and shows on the LED the moment that ends.
"""

from __future__ import annotations

from voiceterm.core.linkstate import LinkState, LinkStatus
from voiceterm.core.patterns import Blink, Color, Flash, On, Pattern, Pulse
from voiceterm.record import record

__all__ = [
    "PRIORITY",
    "STYLES",
    "Conditions",
    "StatusView",
    "resolve",
]

# Highest first. The order is the contract DESIGN.md states; tests walk every combination against it.
PRIORITY: tuple[str, ...] = (
    "fault",
    "failed",
    "offline",
    "starting",
    "muted",
    "listening",
    "speaking",
    "thinking",
    "ready",
)

# name -> (pattern, RGB colour). Patterns are told apart on a single plain LED as well (a steady light means
# ready or listening, anything blinking means "look at me"); the colour adds meaning on an RGB LED.
STYLES: dict[str, tuple[Pattern, Color]] = {
    "fault": (Blink(100, 100), (1.0, 0.0, 0.0)),  # fast red blink: an audio device is gone
    "failed": (Flash(3, 100, 150, 1500), (1.0, 0.0, 0.0)),  # three red flashes: gave up, press to retry
    "offline": (Blink(500, 500), (1.0, 0.45, 0.0)),  # slow amber blink: connecting / waiting to retry
    "starting": (Pulse(2000), (1.0, 1.0, 1.0)),  # slow white breathe
    "muted": (Flash(2, 80, 120, 1800), (0.7, 0.0, 1.0)),  # purple double flash
    "listening": (On(1.0), (0.0, 0.3, 1.0)),  # bright steady blue: the mic is going to the bot
    "speaking": (Pulse(800), (0.0, 1.0, 0.4)),  # green breathe: the bot is talking
    "thinking": (Blink(100, 300), (0.0, 0.8, 0.8)),  # cyan quick blink: waiting for the answer
    "ready": (On(0.2), (0.0, 1.0, 0.0)),  # dim steady green
}

_MAX_ERROR_CHARS = 120


@record
class StatusView:
    """What to show: a status name, the LED pattern and RGB colour, and a one-line text for people."""

    name: str
    pattern: Pattern
    color: Color
    text: str


@record
class Conditions:
    """Everything the view depends on; the terminal builds it from its state."""

    link: LinkStatus | None = None  # None: no link status has arrived yet (starting)
    faults: tuple[tuple[str, str], ...] = ()  # (device, one-line fault), device "capture" / "playback"
    muted: bool = False
    listening: bool = False  # the mic is going to the bot in a turn (button held / toggled on)
    bot_speaking: bool = False  # RTVI says so, or bot audio is audible locally
    thinking: bool = False  # a turn ended and the bot has not started answering yet


def _winner(c: Conditions) -> str:
    if c.faults:
        return "fault"
    if c.link is None:
        return "starting"
    if c.link.state is LinkState.FAILED:
        return "failed"
    if not c.link.state.is_up:
        return "offline"
    if c.muted:
        return "muted"
    if c.listening:
        return "listening"
    if c.bot_speaking:
        return "speaking"
    if c.thinking:
        return "thinking"
    return "ready"


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 1] + "…"
    return text


def _link_text(link: LinkStatus) -> str:
    err = f": {_one_line(link.last_error)}" if link.last_error else ""
    if link.state is LinkState.FAILED:
        if link.unfixable:
            return f"failed{err}; fix the cause, then press the button to retry"
        tries = f" after {link.attempt} attempts" if link.attempt else ""
        return f"failed{tries}{err}; press the button to retry"
    what = {
        LinkState.OFFLINE: "offline",
        LinkState.CONNECTING: "offline: connecting",
        LinkState.BACKING_OFF: "offline: waiting to retry",
    }.get(link.state, f"offline: {link.state.value}")
    # `attempt` counts failures so far: while connecting, this is attempt number attempt + 1.
    if not link.attempt:
        count = ""
    elif link.state is LinkState.CONNECTING:
        count = f" (attempt {link.attempt + 1})"
    else:
        count = f" ({link.attempt} failed)"
    return f"{what}{count}{err}"


def _text(name: str, c: Conditions) -> str:
    if name == "fault":
        text = "audio fault: " + "; ".join(f"{dev} device: {_one_line(msg)}" for dev, msg in c.faults)
        if c.link is not None and not c.link.state.is_up:
            text += "; " + _link_text(c.link)
    elif name == "starting":
        text = "starting"
    elif name in ("failed", "offline"):
        assert c.link is not None
        text = _link_text(c.link)
    else:
        text = {
            "muted": "muted",
            "listening": "listening",
            "speaking": "bot speaking",
            "thinking": "thinking",
            "ready": "ready",
        }[name]
    # Mute is state, not an event: when something more urgent hides it on the LED, the text still says it.
    if c.muted and name != "muted":
        text += "; muted"
    return text


def resolve(c: Conditions) -> StatusView:
    """The view of the highest-priority condition that holds."""
    name = _winner(c)
    pattern, color = STYLES[name]
    return StatusView(name=name, pattern=pattern, color=color, text=_text(name, c))
