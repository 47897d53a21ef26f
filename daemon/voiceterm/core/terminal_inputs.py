"""The panel's typed inputs to the terminal's brain: a button edge and a key of the keyboard stand-in, each
with the time it happened.

They travel on one bounded channel from the GPIO panel (`io/gpio.py`, which stamps an edge where gpiozero
reports it) and the keyboard (`io/keyboard.py`) to the app, which hands them to `Terminal.panel`. Debounce
and long presses are timed from `at`, the edge's own time, never from when the app got round to it.
"""

from __future__ import annotations

from typing import ClassVar, Union

from voiceterm.record import record

__all__ = ["ButtonEdge", "KeyPress", "PanelInput"]


@record
class ButtonEdge:
    """A raw edge of the push button (True = pressed) at trio time `at`; bounce is the brain's to filter."""

    SOURCE: ClassVar[str] = "button"  # what the event stream names as the cause of what it changes

    pressed: bool
    at: float


@record
class KeyPress:
    """A key of the terminal stand-in at trio time `at`: " " talk toggle, "m" mute, "r" reconnect, "q" quit."""

    SOURCE: ClassVar[str] = "keyboard"

    key: str
    at: float


PanelInput = Union[ButtonEdge, KeyPress]
