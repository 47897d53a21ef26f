"""What the terminal's brain knows, as one read-only value: `Terminal.state()` returns it after any input.

The trio shell reads nothing else of the brain: the LED and systemd's STATUS line show `view`, the event
stream reports what changed between two states, the control socket answers from it (a refused talk says
`cannot_talk`), and the status socket shows `as_dict()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from voiceterm.core.linkstate import LinkStatus
from voiceterm.core.status import StatusView
from voiceterm.record import record

__all__ = ["TerminalState"]


@record
class TerminalState:
    """A snapshot of the terminal: its conditions, the status view resolved from them, and its counters."""

    mode: str  # push_to_talk.mode
    muted: bool
    turn: bool  # a user turn is open: the mic goes to the bot
    tail: bool  # the silence tail after a release is still being sent
    bot_speaking: bool  # RTVI says the bot speaks
    playing: bool  # bot audio is audible on the local speaker
    thinking: bool  # a turn ended and the bot has not started answering
    user_speaking: bool  # the bot's turn logic hears the user
    legacy_interruptions: bool  # a server so old that user-started-speaking is its interruption
    button_pressed: bool  # the debounced level of the button
    faults: tuple[tuple[str, str], ...]  # (device, one-line fault), sorted
    link: LinkStatus | None  # None until the link reported: "starting"
    view: StatusView  # what the LED and the STATUS line show
    cannot_talk: str | None  # why a turn cannot start now (one line), None when it can
    mic_wanted: bool  # mic() would send a chunk now: the mic thread hands chunks over only while it would
    bounces_total: int
    counters: Mapping[str, int]

    def as_dict(self) -> dict[str, Any]:
        """The status document's "terminal" table (JSON-able)."""
        return {
            "mode": self.mode,
            "muted": self.muted,
            "turn": self.turn,
            "tail": self.tail,
            "bot_speaking": self.bot_speaking,
            "playing": self.playing,
            "thinking": self.thinking,
            "user_speaking": self.user_speaking,
            "legacy_interruptions": self.legacy_interruptions,
            "button_pressed": self.button_pressed,
            "faults": dict(self.faults),
            "link_state": self.link.state.value if self.link else None,
            "status": self.view.name,
            "bounces_total": self.bounces_total,
            **self.counters,
        }
