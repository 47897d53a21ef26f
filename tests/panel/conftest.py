"""Shared helpers for the panel tests: a driver for the pure Terminal, and gpiozero's MockFactory per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from voiceterm.config_load import config_from_dict
from voiceterm.core.linkstate import LinkState, LinkStatus
from voiceterm.core.terminal import Terminal
from voiceterm.core.terminal_commands import Command, SendMessage
from voiceterm.core.terminal_inputs import ButtonEdge, KeyPress

CHUNK = b"\x01\x02" * 320  # 20 ms of 16 kHz mono s16le, recognisably not silence


class Rig:
    """Drives a Terminal the way the app does: inputs at explicit times, tick() exactly at next_deadline()."""

    def __init__(self, config: dict[str, Any] | None = None, start: float = 100.0) -> None:
        self.config = config_from_dict(config or {})
        self.now = start
        self.term = Terminal(self.config, start)
        self.log: list[tuple[float, Command]] = []
        self.period = self.config.audio.period_ms / 1000

    def _record(self, cmds: list[Command]) -> list[Command]:
        self.log += [(self.now, c) for c in cmds]
        return cmds

    def advance(self, t: float) -> list[Command]:
        """Let time pass to `t`, running every timer that falls due on the way."""
        out: list[Command] = []
        while (d := self.term.next_deadline()) is not None and d <= t:
            self.now = max(self.now, d)
            out += self._record(self.term.tick(self.now))
        self.now = max(self.now, t)
        return out

    def link(self, state: LinkState, t: float | None = None, **kw: Any) -> list[Command]:
        out = self.advance(self.now if t is None else t)
        return out + self._record(self.term.link(LinkStatus(state=state, **kw), self.now))

    def edge(self, pressed: bool, t: float) -> list[Command]:
        out = self.advance(t)
        return out + self._record(self.term.panel(ButtonEdge(pressed, t)))

    def press(self, t: float, held: float) -> list[Command]:
        """A clean press at t for `held` seconds; returns everything up to the settled release."""
        out = self.edge(True, t)
        out += self.edge(False, t + held)
        out += self.advance(t + held + self.config.gpio.debounce_ms / 1000)
        return out

    def key(self, k: str, t: float | None = None) -> list[Command]:
        out = self.advance(self.now if t is None else t)
        return out + self._record(self.term.panel(KeyPress(k, self.now)))

    def bot(self, event: object, t: float | None = None) -> list[Command]:
        out = self.advance(self.now if t is None else t)
        return out + self._record(self.term.bot(event, self.now))

    def mic_run(self, t0: float, t1: float) -> list[bytes | None]:
        """Capture one chunk every period from t0 (inclusive) to t1 (exclusive); what the gate lets out."""
        outs = []
        n = round((t1 - t0) / self.period)
        for i in range(n):
            self.advance(t0 + i * self.period)
            outs.append(self.term.mic(CHUNK, self.now))
        return outs


def messages(cmds: list[Command]) -> list[str]:
    """Commands as short names: push_to_talk start/stop by state, others by class (and reason/name)."""
    out = []
    for c in cmds:
        if isinstance(c, SendMessage):
            data = c.message["data"]
            if data.get("t") == "push_to_talk":
                out.append(f"ptt-{data['d']['state']}")
            else:
                out.append(f"msg-{c.message['type']}")
        elif hasattr(c, "reason"):
            out.append(f"flush:{c.reason}")
        elif hasattr(c, "name"):
            out.append(f"earcon:{c.name}")
        else:
            out.append(type(c).__name__)
    return out


def summarize(outs: list[bytes | None]) -> list[tuple[str, int]]:
    """Run-length summary of gate results: ('pcm'|'zeros'|'none', count)."""
    runs: list[tuple[str, int]] = []
    for o in outs:
        kind = "none" if o is None else ("zeros" if o == bytes(len(o)) else "pcm")
        if o is not None:
            assert len(o) == len(CHUNK)
        if runs and runs[-1][0] == kind:
            runs[-1] = (kind, runs[-1][1] + 1)
        else:
            runs.append((kind, 1))
    return runs


Rig.messages = staticmethod(messages)  # type: ignore[attr-defined]
Rig.summarize = staticmethod(summarize)  # type: ignore[attr-defined]


@pytest.fixture
def make_rig() -> Callable[..., Rig]:
    return Rig


@pytest.fixture
def mock_factory() -> Iterator[MockFactory]:
    """gpiozero's MockFactory with PWM pins, fresh for each test and reset afterwards."""
    factory = MockFactory(pin_class=MockPWMPin)
    previous = Device.pin_factory
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = previous
