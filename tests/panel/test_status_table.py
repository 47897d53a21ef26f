"""Every combination of link state x mute x button x bot speaking (x audio fault x thinking) shows the view of
the highest-priority condition, on the status view and on the LED pins: never "last event wins"."""

from __future__ import annotations

import itertools

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from voiceterm.config_load import config_from_dict
from voiceterm.core.linkstate import LinkState, LinkStatus
from voiceterm.core.patterns import color_at, level_at
from voiceterm.core.status import PRIORITY, STYLES, Conditions, resolve
from voiceterm.io.gpio import Panel
from voiceterm.protocol.rtvi_events import BotStartedSpeaking

# The rule from DESIGN.md, written out as a table: (condition, status) highest first.
RULE = [
    ("fault", "fault"),
    ("starting", "starting"),
    ("failed", "failed"),
    ("offline", "offline"),
    ("muted", "muted"),
    ("held", "listening"),
    ("speaking", "speaking"),
    ("thinking", "thinking"),
]

LINKS = [None, *LinkState]
COMBOS = list(
    itertools.product(LINKS, [False, True], [False, True], [False, True], [False, True], [False, True])
)


def expected(link, muted, held, speaking, fault, thinking) -> str:
    holds = {
        "fault": fault,
        "starting": link is None,
        "failed": link is LinkState.FAILED,
        "offline": link is not None and not link.is_up and link is not LinkState.FAILED,
        "muted": muted,
        "held": held,
        "speaking": speaking,
        "thinking": thinking,
    }
    for cond, status in RULE:
        if holds[cond]:
            return status
    return "ready"


def drive(link, muted, held, speaking, fault, thinking):
    """Bring a real Terminal into the combination through its inputs, in an order that makes each asked-for
    condition hold unless a higher-priority one forbids it (a held button while muted is no turn, say)."""
    from voiceterm.core.terminal import Terminal
    from voiceterm.core.terminal_inputs import ButtonEdge, KeyPress

    term = Terminal(config_from_dict({}), 0.0)
    t = 1.0
    if link is not None:
        term.link(LinkStatus(LinkState.READY), t)
    if thinking and link is not None:
        term.panel(ButtonEdge(True, t))
        term.tick(t + 0.05)
        term.panel(ButtonEdge(False, t + 0.5))
        term.tick(t + 0.6)
        t += 1.0
    if held:
        term.panel(ButtonEdge(True, t))
        term.tick(t + 0.05)
        t += 0.1
    if speaking:
        term.bot(BotStartedSpeaking(), t)
    if muted:
        term.panel(KeyPress("m", t))
    if fault:
        term.audio_fault("capture", "no such device", t)
    if link is not None and link is not LinkState.READY:
        term.link(LinkStatus(link, attempt=2, last_error="refused"), t + 0.1)
    return term


@pytest.fixture(scope="module")
def panels():
    factory = MockFactory(pin_class=MockPWMPin)
    single = Panel(config_from_dict({"gpio": {"button_pin": 17, "led_pin": 27}}).gpio, pin_factory=factory)
    rgb = Panel(
        config_from_dict({"gpio": {"button_pin": -1, "rgb_pins": [5, 6, 13]}}).gpio, pin_factory=factory
    )
    yield factory, single, rgb
    single.close()
    rgb.close()
    factory.reset()


def test_the_table_is_complete() -> None:
    assert len(COMBOS) == 7 * 2**5
    assert {expected(*c) for c in COMBOS} == set(PRIORITY)


@pytest.mark.parametrize(
    "combo", COMBOS, ids=lambda c: "-".join(str(x.value if isinstance(x, LinkState) else x) for x in c)
)
def test_the_highest_priority_condition_wins(combo, panels) -> None:
    factory, single, rgb = panels
    want = expected(*combo)
    view = drive(*combo).state().view
    pattern, color = STYLES[want]
    assert (view.name, view.pattern, view.color) == (want, pattern, color)
    # the LED shows exactly that pattern, at its start and part-way through
    for t in (0.0, 0.13, 0.61):
        single.render(view, t)
        assert factory.pin(27).state == pytest.approx(level_at(pattern, t))
        rgb.render(view, t)
        states = tuple(factory.pin(p).state for p in (5, 6, 13))
        assert states == pytest.approx(color_at(pattern, color, t))
    # never "ready" with the link down, never hiding a mute behind a lower-priority state
    link, muted = combo[0], combo[1]
    if link is None or not link.is_up:
        assert view.name not in ("ready", "listening", "speaking", "thinking", "muted")
    if muted:
        assert PRIORITY.index(view.name) <= PRIORITY.index("muted")
        assert "muted" in view.text


def test_resolve_is_the_same_rule_on_bare_conditions() -> None:
    up = LinkStatus(LinkState.READY)
    for muted, listening, speaking, thinking in itertools.product([False, True], repeat=4):
        got = resolve(
            Conditions(link=up, muted=muted, listening=listening, bot_speaking=speaking, thinking=thinking)
        )
        assert got.name == expected(LinkState.READY, muted, listening, speaking, False, thinking)


def test_status_texts_are_short_and_human() -> None:
    link = LinkStatus(LinkState.CONNECTING, attempt=2, last_error="connection refused")
    assert resolve(Conditions(link=link)).text == "offline: connecting (attempt 3): connection refused"
    failed = LinkStatus(LinkState.FAILED, attempt=10, last_error="connection refused")
    assert resolve(Conditions(link=failed)).text == (
        "failed after 10 attempts: connection refused; press the button to retry"
    )
    unfixable = LinkStatus(LinkState.FAILED, attempt=1, last_error="HTTP 403", unfixable=True)
    assert "fix the cause" in resolve(Conditions(link=unfixable)).text
    both = Conditions(link=link, faults=(("capture", "gone"), ("playback", "gone too")), muted=True)
    assert resolve(both).text == (
        "audio fault: capture device: gone; playback device: gone too; "
        "offline: connecting (attempt 3): connection refused; muted"
    )
    long_error = LinkStatus(LinkState.BACKING_OFF, attempt=1, last_error="x" * 500 + "\nsecond line")
    text = resolve(Conditions(link=long_error)).text
    assert "\n" not in text and len(text) < 200
    assert resolve(Conditions()).text == "starting"
