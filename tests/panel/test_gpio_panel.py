"""The Panel against gpiozero's MockFactory (MockPWMPin) under trio's MockClock: button edges reach trio with
trio timestamps, from any thread; the LED follows the status view's pattern and changes within one period."""

from __future__ import annotations

import dataclasses

import pytest
import trio
import trio.testing

from voiceterm.config import GpioConfig
from voiceterm.config_load import config_from_dict
from voiceterm.core.linkstate import LinkState, LinkStatus
from voiceterm.core.patterns import Blink, Flash, On, Pulse, level_at, period
from voiceterm.core.status import STYLES, StatusView
from voiceterm.core.terminal import Terminal
from voiceterm.core.terminal_inputs import ButtonEdge, KeyPress
from voiceterm.io.gpio import Panel, PanelError, make_pin_factory
from voiceterm.protocol.rtvi_events import BotStartedSpeaking

BUTTON, LED_PIN, RGB = 17, 27, (5, 6, 13)


def gpio(**kw) -> GpioConfig:
    return config_from_dict({"gpio": kw}).gpio


class Poke:
    """The app's view-change signal: set on every state change, re-armed by the waiter."""

    def __init__(self) -> None:
        self.event = trio.Event()

    def set(self) -> None:
        self.event.set()

    async def wait(self) -> None:
        await self.event.wait()
        self.event = trio.Event()


class Holder:
    """A view that tests switch by hand."""

    def __init__(self, view: StatusView) -> None:
        self.view = view

    def __call__(self) -> StatusView:
        return self.view


def fixed(pattern, color=(1.0, 1.0, 1.0), name="test") -> StatusView:
    return StatusView(name=name, pattern=pattern, color=color, text=name)


# --- button ----------------------------------------------------------------------------------------


async def test_button_edges_arrive_with_trio_time(mock_factory, autojump_clock) -> None:
    panel = Panel(gpio(button_pin=BUTTON, led_pin=LED_PIN), pin_factory=mock_factory)
    send, recv = trio.open_memory_channel(8)
    pin = mock_factory.pin(BUTTON)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(panel.run, send, Holder(fixed(On())))
            await trio.sleep(1.0)
            t0 = trio.current_time()
            pin.drive_low()  # pull-up wiring: pressed pulls the pin to ground
            assert await recv.receive() == ButtonEdge(True, t0)
            await trio.sleep(0.25)
            pin.drive_high()
            assert await recv.receive() == ButtonEdge(False, t0 + 0.25)
            pin.drive_high()  # no change, no edge
            await trio.sleep(0.1)
            assert recv.statistics().current_buffer_used == 0
            nursery.cancel_scope.cancel()
    assert panel.edges_dropped_total == 0


async def test_button_edges_from_a_foreign_thread(mock_factory) -> None:
    # lgpio calls back on its own thread. Real clock here: MockClock's autojump would race the thread.
    panel = Panel(gpio(button_pin=BUTTON, led_pin=LED_PIN), pin_factory=mock_factory)
    send, recv = trio.open_memory_channel(8)
    pin = mock_factory.pin(BUTTON)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(panel.run, send, Holder(fixed(On())))
            before = trio.current_time()
            await trio.to_thread.run_sync(pin.drive_low)
            edge = await recv.receive()
            assert edge.pressed is True and before <= edge.at <= trio.current_time()
            await trio.to_thread.run_sync(pin.drive_high)
            assert (await recv.receive()).pressed is False
            nursery.cancel_scope.cancel()


async def test_button_without_pull_up_is_pressed_when_high(mock_factory, autojump_clock) -> None:
    panel = Panel(gpio(button_pin=BUTTON, led_pin=-1, pull_up=False), pin_factory=mock_factory)
    send, recv = trio.open_memory_channel(8)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(panel.run, send, Holder(fixed(On())))
            mock_factory.pin(BUTTON).drive_high()
            assert (await recv.receive()).pressed is True
            mock_factory.pin(BUTTON).drive_low()
            assert (await recv.receive()).pressed is False
            nursery.cancel_scope.cancel()


async def test_a_full_edge_channel_drops_and_counts(mock_factory, autojump_clock) -> None:
    panel = Panel(gpio(button_pin=BUTTON, led_pin=-1), pin_factory=mock_factory)
    send, recv = trio.open_memory_channel(2)
    pin = mock_factory.pin(BUTTON)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(panel.run, send, Holder(fixed(On())))
            for _ in range(3):
                pin.drive_low()
                pin.drive_high()
            await trio.sleep(0.01)  # let the run_sync_soon callbacks run
            assert [recv.receive_nowait().pressed for _ in range(2)] == [True, False]
            assert panel.edges_dropped_total == 4
            nursery.cancel_scope.cancel()


async def test_edges_through_the_terminal_debounce(mock_factory, autojump_clock) -> None:
    """The GPIO path end to end: mock pin chatter -> Panel -> Terminal: bounce is nothing, a press is a turn."""
    term = Terminal(config_from_dict({}), trio.current_time())
    term.link(LinkStatus(LinkState.READY), trio.current_time())
    panel = Panel(gpio(button_pin=BUTTON, led_pin=LED_PIN), pin_factory=mock_factory)
    send, recv = trio.open_memory_channel(64)
    pin = mock_factory.pin(BUTTON)
    commands: list = []

    async def consume() -> None:
        # the app's input and timer loops, folded into one
        while True:
            deadline = term.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else trio.current_time() + 60):
                commands.extend(term.panel(await recv.receive()))
                continue
            commands.extend(term.tick(trio.current_time()))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(panel.run, send, (lambda: term.state().view))
            nursery.start_soon(consume)
            for _ in range(4):  # 5 ms chatter: shorter than the 30 ms debounce
                pin.drive_low()
                await trio.sleep(0.005)
                pin.drive_high()
                await trio.sleep(0.005)
            await trio.sleep(0.5)
            assert commands == []
            pin.drive_low()
            await trio.sleep(0.1)
            assert term.state().turn and term.state().view.name == "listening"
            pin.drive_high()
            await trio.sleep(0.1)
            assert not term.state().turn
            nursery.cancel_scope.cancel()
    kinds = [c.message["data"]["d"]["state"] for c in commands if hasattr(c, "message")]
    assert kinds == ["start", "stop"]


# --- LED -------------------------------------------------------------------------------------------


async def sample(pin, t0: float, times: list[float]) -> list[float]:
    """The pin's value at t0 + each time (times chosen mid-step, away from any edge)."""
    out = []
    for t in times:
        await trio.sleep_until(t0 + t)
        out.append(pin.state)
    return out


@pytest.mark.parametrize(
    "pattern",
    [Blink(100, 300), Flash(2, 80, 120, 600), Pulse(800), On(0.2)],
    ids=["blink", "flash", "pulse", "dim"],
)
async def test_pwm_led_follows_the_pattern(mock_factory, autojump_clock, pattern) -> None:
    panel = Panel(gpio(button_pin=-1, led_pin=LED_PIN, led_pwm=True), pin_factory=mock_factory)
    send, _recv = trio.open_memory_channel(1)
    times = [k * 0.0125 + 0.003 for k in range(200)]  # 2.5 s, sampled 3 ms into every 12.5 ms
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(panel.run, send, Holder(fixed(pattern)))
            t0 = trio.current_time()
            got = await sample(mock_factory.pin(LED_PIN), t0, times)
            nursery.cancel_scope.cancel()
    assert got == pytest.approx([level_at(pattern, t) for t in times], abs=1e-9)
    assert mock_factory.pin(LED_PIN).state == 0  # the LED goes dark when the panel stops


async def test_plain_led_shows_pulse_as_a_square_wave_and_dim_as_on(mock_factory, autojump_clock) -> None:
    panel = Panel(gpio(button_pin=-1, led_pin=LED_PIN, led_pwm=False), pin_factory=mock_factory)
    holder = Holder(fixed(Pulse(800)))
    poke = Poke()
    send, _recv = trio.open_memory_channel(1)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(panel.run, send, holder, poke.wait)
            t0 = trio.current_time()
            got = await sample(mock_factory.pin(LED_PIN), t0, [0.1, 0.3, 0.5, 0.7, 0.9, 1.3])
            assert got == [1, 1, 0, 0, 1, 0]
            holder.view = fixed(On(0.2))
            poke.set()
            await trio.sleep(0.001)
            assert mock_factory.pin(LED_PIN).state == 1
            nursery.cancel_scope.cancel()


async def test_active_low_led_is_inverted(mock_factory, autojump_clock) -> None:
    panel = Panel(gpio(button_pin=-1, led_pin=LED_PIN, active_high=False), pin_factory=mock_factory)
    send, _recv = trio.open_memory_channel(1)
    holder = Holder(fixed(On(0.2)))
    poke = Poke()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(panel.run, send, holder, poke.wait)
            await trio.sleep(0.1)
            assert mock_factory.pin(LED_PIN).state == pytest.approx(0.8)
            holder.view = fixed(On(1.0))
            poke.set()
            await trio.sleep(0.001)
            assert mock_factory.pin(LED_PIN).state == 0  # fully on, for an active-low LED, is a low pin
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("pwm", [True, False])
async def test_rgb_led_shows_the_colour_of_the_state(mock_factory, autojump_clock, pwm) -> None:
    panel = Panel(gpio(button_pin=-1, rgb_pins=list(RGB), led_pwm=pwm), pin_factory=mock_factory)
    pattern, color = STYLES["offline"]  # amber slow blink
    send, _recv = trio.open_memory_channel(1)
    pins = [mock_factory.pin(p) for p in RGB]
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(panel.run, send, Holder(fixed(pattern, color)))
            t0 = trio.current_time()
            await trio.sleep_until(t0 + 0.25)
            on = [p.state for p in pins]
            await trio.sleep_until(t0 + 0.75)
            off = [p.state for p in pins]
            nursery.cancel_scope.cancel()
    assert on == (pytest.approx([1.0, 0.45, 0.0]) if pwm else [1, 1, 0])
    assert off == [0, 0, 0]


@pytest.mark.parametrize("signalled", [True, False], ids=["change-signal", "polling"])
async def test_led_follows_terminal_changes_within_one_period(
    mock_factory, autojump_clock, signalled
) -> None:
    """Walk a real Terminal through states; after each change the LED must show the new pattern's levels
    within one period of that pattern (at once with the change signal; within poll_s without it)."""
    term = Terminal(config_from_dict({}), trio.current_time())
    panel = Panel(gpio(button_pin=BUTTON, led_pin=LED_PIN), pin_factory=mock_factory, poll_s=0.05)
    poke = Poke()
    send, _recv = trio.open_memory_channel(8)
    pin = mock_factory.pin(LED_PIN)

    def step() -> None:
        poke.set()  # what the app's _apply does after every input

    async def check(name: str) -> None:
        """From the change on, the LED matches the new pattern (restarted at the change) for a full period,
        allowing `lag` for the LED task to notice."""
        view = term.state().view
        assert view.name == name
        pattern = view.pattern
        t_change = trio.current_time()
        lag = 0.0 if signalled else panel.poll_s
        span = period(pattern) or 0.5
        times = [lag + 0.003 + k * 0.0125 for k in range(int(span / 0.0125) + 1)]
        got = await sample(pin, t_change, times)
        # the pattern starts when the panel noticed: at t_change (signalled) or up to poll_s later
        best = min(
            sum(abs(g - level_at(pattern, t - shift)) > 1e-9 for g, t in zip(got, times, strict=True))
            for shift in ([0.0] if signalled else [k * 0.001 for k in range(int(lag * 1000) + 1)])
        )
        assert best == 0, f"{name}: LED did not follow {pattern}"

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                panel.run, send, (lambda: term.state().view), poke.wait if signalled else None
            )
            await check("starting")
            term.link(LinkStatus(LinkState.CONNECTING), trio.current_time())
            step()
            await check("offline")
            term.link(LinkStatus(LinkState.READY), trio.current_time())
            step()
            await check("ready")
            term.panel(KeyPress(" ", trio.current_time()))
            step()
            await check("listening")
            term.panel(KeyPress(" ", trio.current_time()))
            step()
            await check("thinking")
            term.bot(BotStartedSpeaking(), trio.current_time())
            step()
            await check("speaking")
            term.panel(KeyPress("m", trio.current_time()))
            step()
            await check("muted")
            term.audio_fault("playback", "gone", trio.current_time())
            step()
            await check("fault")
            term.audio_fault("playback", None, trio.current_time())
            term.link(LinkStatus(LinkState.FAILED, attempt=3), trio.current_time())
            step()
            await check("failed")
            nursery.cancel_scope.cancel()


async def test_a_steady_led_rechecks_the_view_even_without_a_signal(mock_factory, autojump_clock) -> None:
    """A lost wake-up cannot leave the LED lying for longer than idle_s."""
    panel = Panel(gpio(button_pin=-1, led_pin=LED_PIN), pin_factory=mock_factory, idle_s=0.5)
    holder = Holder(fixed(On(0.2)))
    poke = Poke()
    send, _recv = trio.open_memory_channel(1)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(panel.run, send, holder, poke.wait)
            await trio.sleep(0.1)
            holder.view = fixed(On(1.0))  # changed, but nobody says so
            await trio.sleep(0.3)
            assert mock_factory.pin(LED_PIN).state == pytest.approx(0.2)
            await trio.sleep(0.2)
            assert mock_factory.pin(LED_PIN).state == pytest.approx(1.0)
            nursery.cancel_scope.cancel()


# --- opening and closing ---------------------------------------------------------------------------


def test_missing_gpio_hardware_is_one_clear_line() -> None:
    with pytest.raises(PanelError) as info:
        make_pin_factory("lgpio", environ={})
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("GPIO unavailable (lgpio: ")
    assert 'set [gpio] enabled = false, or pin_factory = "mock"' in text


def test_the_default_factory_is_lgpio_unless_the_environment_says_otherwise() -> None:
    with pytest.raises(PanelError, match=r"\(lgpio: "):
        make_pin_factory("", environ={})
    from gpiozero.pins.mock import MockFactory

    factory = make_pin_factory("", environ={"GPIOZERO_PIN_FACTORY": "mock"})
    try:
        assert isinstance(factory, MockFactory)
    finally:
        factory.close()


def test_unknown_pin_factory_names_the_known_ones() -> None:
    with pytest.raises(PanelError) as info:
        make_pin_factory("lgpoi", environ={})
    assert "'lgpoi' is unknown" in str(info.value)
    assert "lgpio" in str(info.value)


def test_panel_with_the_mock_factory_from_config_owns_and_closes_it() -> None:
    panel = Panel(gpio(pin_factory="mock"))
    assert panel.led_kind == "pwm"
    assert panel.button is not None
    panel.close()
    panel.close()  # idempotent


def test_a_pin_clash_is_one_line(mock_factory) -> None:
    cfg = dataclasses.replace(gpio(), button_pin=27, led_pin=27)  # what config validation would refuse
    with pytest.raises(PanelError) as info:
        Panel(cfg, pin_factory=mock_factory)
    assert str(info.value).startswith("GPIO led_pin 27: ")
    assert "\n" not in str(info.value)
    # the half-built panel released the button pin
    Panel(gpio(button_pin=27, led_pin=-1), pin_factory=mock_factory).close()


def test_a_pwm_led_on_a_pin_without_pwm_is_one_line() -> None:
    from gpiozero.pins.mock import MockFactory, MockPin

    factory = MockFactory(pin_class=MockPin)
    try:
        with pytest.raises(PanelError, match=r"^GPIO led_pin 27: .*check \[gpio\]"):
            Panel(gpio(), pin_factory=factory)
    finally:
        factory.reset()


async def test_run_closes_the_pins_so_they_can_be_reopened(mock_factory, autojump_clock) -> None:
    panel = Panel(gpio(), pin_factory=mock_factory)
    send, recv = trio.open_memory_channel(1)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(panel.run, send, Holder(fixed(On())))
            await trio.sleep(0.1)
            assert mock_factory.pin(LED_PIN).state == 1
            nursery.cancel_scope.cancel()
    assert mock_factory.pin(LED_PIN).state == 0
    with pytest.raises(trio.EndOfChannel):
        recv.receive_nowait()  # the panel closed its end of the edge channel
    Panel(gpio(), pin_factory=mock_factory).close()


async def test_a_panel_with_no_button_and_no_led_just_waits(mock_factory, autojump_clock) -> None:
    panel = Panel(gpio(button_pin=-1, led_pin=-1), pin_factory=mock_factory)
    send, _recv = trio.open_memory_channel(1)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(panel.run, send, Holder(fixed(On())))
            await trio.sleep(3)
            nursery.cancel_scope.cancel()
    assert panel.led is None and panel.button is None
