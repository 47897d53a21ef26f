"""The panel: the gpiozero push button and status LED, in the trio shell.

Button edges arrive on gpiozero's own threads, are stamped there with trio's clock (the time of the edge, not
of when the trio loop gets to it) and hop into trio with `TrioToken.run_sync_soon` as typed `ButtonEdge`s;
debounce and long presses are the pure terminal's job (`core/buttons.py`), timed from that stamp. The LED has one owner,
a trio task that renders the status view's pattern itself (`core/patterns.py`) instead of gpiozero's
background blink threads: one writer, no thread racing a state change, and MockClock tests see exactly what
a person would.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from voiceterm.config import GpioConfig
from voiceterm.core.patterns import color_at, describe, level_at, next_change
from voiceterm.core.status import StatusView
from voiceterm.core.terminal_inputs import ButtonEdge
from voiceterm.errors import reason
from voiceterm.logs import kv

__all__ = ["DEFAULT_PIN_FACTORY", "Panel", "PanelError", "make_pin_factory"]

log = logging.getLogger("voiceterm.gpio")

# lgpio is the pin factory that works on current Raspberry Pi kernels (RPi.GPIO and the native factory
# poke /dev/gpiomem, which the Pi 5 does not have); gpiozero's own fallback chain would hide that behind a
# warning, so the default is explicit.
DEFAULT_PIN_FACTORY = "lgpio"
_HINT = 'set [gpio] enabled = false, or pin_factory = "mock" to develop without GPIO'


class PanelError(Exception):
    """GPIO is missing or misconfigured; the message is one line saying what to do."""


def make_pin_factory(name: str = "", environ: Mapping[str, str] | None = None) -> Any:
    """The gpiozero pin factory `name` names; empty means $GPIOZERO_PIN_FACTORY, else lgpio.

    "mock" gives gpiozero's MockFactory with PWM-capable pins (for development and tests).
    Raises PanelError with one line when the factory cannot be loaded or finds no GPIO hardware.
    """
    environ = os.environ if environ is None else environ
    name = name or environ.get("GPIOZERO_PIN_FACTORY", "") or DEFAULT_PIN_FACTORY
    if name.lower() == "mock":
        from gpiozero.pins.mock import MockFactory, MockPWMPin

        return MockFactory(pin_class=MockPWMPin)
    from importlib.metadata import entry_points

    eps = {ep.name: ep for ep in entry_points(group="gpiozero_pin_factories")}
    ep = eps.get(name) or eps.get(name.lower())
    if ep is None:
        known = ", ".join(sorted(eps)) or "none"
        raise PanelError(f"GPIO pin factory {name!r} is unknown (known: {known}); {_HINT}")
    try:
        return ep.load()()
    except ImportError as e:
        missing = getattr(e, "name", None) or name
        how = "; on Raspberry Pi OS: apt install python3-lgpio" if missing == "lgpio" else ""
        raise PanelError(
            f"GPIO unavailable ({name}: the {missing} Python module is not installed{how}); {_HINT}"
        ) from None
    except Exception as e:  # each factory fails its own way (lgpio.error, OSError, RuntimeError...)
        raise PanelError(f"GPIO unavailable ({name}: {reason(e)}); {_HINT}") from None


class Panel:
    """The push button and the status LED (single, PWM, or RGB), or whichever of them is configured."""

    def __init__(
        self,
        gpio: GpioConfig,
        *,
        pin_factory: Any = None,
        idle_s: float = 1.0,
        poll_s: float = 0.05,
    ) -> None:
        """Open the pins. `pin_factory` overrides the configured one (tests pass a MockFactory).

        `idle_s` bounds how long the LED task trusts its change signal before looking at the view anyway;
        `poll_s` is its re-render interval when it is given no change signal at all.
        """
        from gpiozero import LED, PWMLED, RGBLED, DigitalInputDevice
        from gpiozero.exc import GPIOZeroError

        self.config = gpio
        self._owns_factory = pin_factory is None
        self.factory = pin_factory if pin_factory is not None else make_pin_factory(gpio.pin_factory)
        self.idle_s = idle_s
        self.poll_s = poll_s
        self.button: Any = None
        self.led: Any = None
        self.led_kind: str | None = None  # "rgb", "pwm", "digital" or None
        self.edges_dropped_total = 0
        self.pattern_changes_total = 0
        self.showing: str | None = None  # the status name the LED shows now (for the status socket, tests)
        self.led_write_errors_total = 0
        self._token: trio.lowlevel.TrioToken | None = None
        self._clock: trio.abc.Clock | None = None
        self._edges: trio.MemorySendChannel[ButtonEdge] | None = None
        self._last_value: Any = None
        self._closed = False
        what = ""
        try:
            if gpio.button_pin >= 0:
                what = f"button_pin {gpio.button_pin}"
                # bounce_time=None: debounce is done in core/buttons.py, where it is tested. Not a gpiozero
                # Button: its hold thread wakes 10 times a second for ever, and long presses are timed in
                # core/buttons.py too.
                self.button = DigitalInputDevice(
                    gpio.button_pin, pull_up=gpio.pull_up, bounce_time=None, pin_factory=self.factory
                )
            if gpio.rgb_pins:
                what = f"rgb_pins {list(gpio.rgb_pins)}"
                self.led = RGBLED(
                    *gpio.rgb_pins,
                    active_high=gpio.active_high,
                    pwm=gpio.led_pwm,
                    pin_factory=self.factory,
                )
                self.led_kind = "rgb"
            elif gpio.led_pin >= 0:
                what = f"led_pin {gpio.led_pin}"
                cls = PWMLED if gpio.led_pwm else LED
                self.led = cls(gpio.led_pin, active_high=gpio.active_high, pin_factory=self.factory)
                self.led_kind = "pwm" if gpio.led_pwm else "digital"
        except (GPIOZeroError, OSError, ValueError) as e:
            self.close()
            raise PanelError(f"GPIO {what}: {reason(e)}; check [gpio] in the configuration") from None

    @property
    def binary(self) -> bool:
        """True when the LED can only be on or off (no PWM)."""
        return not self.config.led_pwm

    # --- button edges ----------------------------------------------------------------------------

    def _from_thread(self, pressed: bool) -> None:
        # Runs on a gpiozero/lgpio thread (or, with the mock, whoever drove the pin): never touch trio here
        # beyond the token and the clock. The clock's current_time() is a plain read (perf_counter plus an
        # offset; MockClock's virtual time), safe from any thread: the edge keeps the time it happened.
        token, clock = self._token, self._clock
        if token is None or clock is None:
            return
        edge = ButtonEdge(pressed, clock.current_time())
        with contextlib.suppress(trio.RunFinishedError):  # the daemon is gone; so is the edge's audience
            token.run_sync_soon(self._deliver, edge)

    def _deliver(self, edge: ButtonEdge) -> None:
        # Runs in the trio thread. run_sync_soon callbacks must never raise, so every outcome is handled.
        edges = self._edges
        if edges is None:
            return
        try:
            edges.send_nowait(edge)
        except trio.WouldBlock:
            self.edges_dropped_total += 1
            if self.edges_dropped_total in (1, 10, 100) or self.edges_dropped_total % 1000 == 0:
                log.warning("button edges dropped %s", kv(total=self.edges_dropped_total))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    # --- the LED ---------------------------------------------------------------------------------

    def render(self, view: StatusView, t: float) -> Any:
        """Set the LED for `view` at `t` seconds into its pattern; returns the value written (or None)."""
        if self.led is None:
            return None
        if self.led_kind == "rgb":
            value: Any = color_at(view.pattern, view.color, t, binary=self.binary)
        else:
            level = level_at(view.pattern, t, binary=self.binary)
            value = level if self.led_kind == "pwm" else (1 if level > 0 else 0)
        if value != self._last_value:
            try:
                self.led.value = value
            except Exception as e:  # a flaky pin must not take the terminal down; the next change retries
                self.led_write_errors_total += 1
                if self.led_write_errors_total in (1, 10, 100):
                    log.warning("LED write failed %s", kv(error=reason(e), total=self.led_write_errors_total))
                return None
            self._last_value = value
        return value

    async def run(
        self,
        edges: trio.MemorySendChannel[ButtonEdge],
        view: Callable[[], StatusView],
        changed: Callable[[], Awaitable[object]] | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Deliver button edges as `ButtonEdge`s on `edges`, and keep the LED showing `view()`.

        `changed()` returns when the view may have changed (the LED re-renders at once); without it the LED
        looks every `poll_s`. Either way a pattern step re-reads the view, so a change shows within one
        pattern step. Owns `edges` (closes it) and the pins (closes them, LED off) when it ends.
        """
        self._token = trio.lowlevel.current_trio_token()
        self._clock = trio.lowlevel.current_clock()
        self._edges = edges
        try:
            with edges:
                if self.button is not None:
                    if self.button.is_active:
                        log.warning("button reads pressed at start %s", kv(pin=self.config.button_pin))
                    self.button.when_activated = lambda: self._from_thread(True)
                    self.button.when_deactivated = lambda: self._from_thread(False)
                task_status.started()
                await self._led_loop(view, changed)
        finally:
            self._token = None
            self._clock = None
            self._edges = None
            self.close()

    async def _led_loop(
        self, view: Callable[[], StatusView], changed: Callable[[], Awaitable[object]] | None
    ) -> None:
        current: tuple[Any, Any] | None = None
        started = 0.0
        while True:
            now = trio.current_time()
            v = view()
            key = (v.pattern, v.color)
            if key != current:
                # A new state restarts its pattern at the beginning, so it shows at once.
                current = key
                started = now
                self.pattern_changes_total += 1
                log.debug("led %s", kv(status=v.name, pattern=describe(v.pattern)))
            if self.led is None and changed is None:
                await trio.sleep_forever()  # nothing to show and no one to tell us: just deliver edges
            t = now - started
            self.render(v, t)
            self.showing = v.name
            wake = now + (self.idle_s if changed is not None else self.poll_s)
            step = next_change(v.pattern, t, binary=self.binary)
            if step is not None:
                wake = min(wake, started + step)
            with trio.move_on_at(wake):
                if changed is not None:
                    await changed()
                else:
                    await trio.sleep_forever()

    def close(self) -> None:
        """Turn the LED off and release the pins (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for device in (self.button, self.led):
            if device is None:
                continue
            try:
                if device is self.led:
                    device.off()
                device.close()
            except Exception as e:  # closing is best effort; the process is usually ending
                log.debug("gpio close %s", kv(error=reason(e)))
        if self._owns_factory and self.factory is not None:
            try:
                self.factory.close()
            except Exception as e:
                log.debug("pin factory close %s", kv(error=reason(e)))
