"""The daemon whole: one trio nursery wiring the link, mic, speaker, panel, status and systemd notifier.

Each task owns one resource. The pure `Terminal` decides; this module only carries inputs to it, carries its
commands out (a table: one handler per command type) and publishes the stream events for what changed, from
one place (`Daemon.publish`; `core/stream_reporter.py` decides what they are). The control socket's commands
are `app_control.py`'s, the status document and STATUS= lines `app_status.py`'s, what a reload applies
`config_reload.py`'s. Signals: SIGTERM/SIGINT end the daemon within a second (saying goodbye to the bot when
connected) with status 0; SIGHUP re-reads the configuration and applies what can change live. An unexpected
task failure propagates out of the nursery and ends the process non-zero, so systemd restarts it.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any

import trio

from voiceterm import __version__
from voiceterm.app_control import carry_out, set_mute_by_bot, set_volume_by_bot
from voiceterm.app_sockets import start_sockets
from voiceterm.app_status import DaemonStatus
from voiceterm.config import Config, ConfigError
from voiceterm.config_load import load_config
from voiceterm.config_reload import plan_reload
from voiceterm.config_render import secret_values
from voiceterm.core import control_commands as cc
from voiceterm.core import device_events as de
from voiceterm.core.dispatch import Dispatch
from voiceterm.core.linkevents import SessionEnded, SessionStarted
from voiceterm.core.linkstate import LinkStatus
from voiceterm.core.lograte import Throttle
from voiceterm.core.status import StatusView
from voiceterm.core.stream_reporter import StreamReporter
from voiceterm.core.terminal import Terminal
from voiceterm.core.terminal_commands import (
    Command,
    Earcon,
    FlushPlayback,
    Quit,
    ReconnectNow,
    SendMessage,
    WakeLink,
)
from voiceterm.core.terminal_inputs import PanelInput
from voiceterm.errors import first_real
from voiceterm.exitcodes import EX_CONFIG, EX_OK, EX_SOFTWARE
from voiceterm.io.event_socket import EventHub
from voiceterm.io.integrations import Integrations, builtins_for
from voiceterm.io.link import Link
from voiceterm.io.notify import Notifier, watchdog_period
from voiceterm.logs import kv, set_level, setup_logging
from voiceterm.masking import remember_secrets
from voiceterm.protocol.events import AudioChunk
from voiceterm.protocol.registry import get_serializer

log = logging.getLogger("voiceterm")

SHUTDOWN_GRACE_S = 0.8  # SIGTERM must end the process within a second
EDGE_QUEUE = 64  # button edges / keys waiting for the brain
STATUS_LOG_INTERVAL_S = 10.0  # one status change (previous -> new) is logged at most this often
BOT_EVENT_ERROR_LOG_S = 60.0  # a bot event that could not be handled: one journal line a minute at most


class Daemon:
    """Owns the nursery and the glue between the parts."""

    def __init__(self, cfg: Config, *, keyboard: bool = False, notifier: Notifier | None = None) -> None:
        self.cfg = cfg
        self.keyboard = keyboard
        self.notifier = notifier or Notifier()
        self.started_at = time.monotonic()
        self.serializer_cls = get_serializer(cfg.bot.serializer)
        if hasattr(self.serializer_cls, "bound"):  # Twilio: the posed call's identity from [twilio]
            tw = cfg.twilio
            self.serializer_cls = self.serializer_cls.bound(
                stream_sid=tw.stream_sid,
                call_sid=tw.call_sid,
                account_sid=tw.account_sid,
                custom_parameters=tw.custom_parameters,
            )
        self.mic_rate = (
            getattr(self.serializer_cls, "input_sample_rate", None) or cfg.audio.recorder_sample_rate
        )
        self.terminal = Terminal(cfg, trio.current_time())
        self.link = Link(cfg, serializer_cls=self.serializer_cls)
        self.mic: Any = None
        self.speaker: Any = None
        self.frontend: Any = None  # io/frontend.FrontEnd: echo cancellation etc. on the capture thread
        self.frontend_off = "off"  # why there is none
        self.panel: Any = None
        self.status = DaemonStatus(self)
        self._view_changed = trio.Event()
        self._timer_changed = trio.Event()
        self._last_view_name = "starting"
        # A bot flapping the view (20 ms of audio every 250 ms) must not write 8 lines a second.
        self._status_log: dict[tuple[str, str], Throttle] = {}
        self._bot_event_log = Throttle(BOT_EVENT_ERROR_LOG_S)
        self._nursery: trio.Nursery | None = None
        self._stopping = False
        self.events = EventHub(cfg.events.queue, cfg.events.max_clients)
        self.reporter = StreamReporter()  # what the event stream says about each change
        # Device functions and client requests: what integrations do with the bot (io/integrations.py).
        self.integrations = Integrations(
            cfg.functions,
            link=self.link,
            hub=self.events,
            builtins=builtins_for(
                set_volume=partial(set_volume_by_bot, self), set_mute=partial(set_mute_by_bot, self)
            ),
            rtvi_supported=self.serializer_cls.supports_rtvi,
        )
        self.events_error: str | None = None  # why the event socket is not served, for `voiceterm status`
        self.events_path: str | None = None  # where it is served, once it accepts connections
        # mic_chunks_pumped_total and stale_bot_audio_frames_total close the audio accounting (fault campaign).
        self.counters = {"reloads_total": 0, "mic_chunks_pumped_total": 0, "stale_bot_audio_frames_total": 0}
        self.counters["bot_events_failed_total"] = 0  # events dropped because handling them raised
        # The brain's commands, and what the link delivers, each to its handler.
        self._commands: Dispatch[Callable[[Any, float | None], None]] = Dispatch(
            {
                SendMessage: self._send_message,
                FlushPlayback: self._flush_playback,
                Earcon: self._earcon,
                ReconnectNow: self._reconnect_now,
                WakeLink: self._wake_link,
                Quit: self._quit,
            }
        )
        self._deliveries: Dispatch[Callable[[Any, float], None]] = Dispatch(
            {
                AudioChunk: self._bot_audio,
                SessionStarted: self._session_started,
                SessionEnded: self._session_ended,
            }
        )

    # --- wiring ------------------------------------------------------------------------------------

    async def run(self) -> int:
        from voiceterm.io.frontend_setup import make_frontend, reference_of
        from voiceterm.io.mic import Microphone
        from voiceterm.io.speaker import Speaker

        cfg = self.cfg
        self.frontend, self.frontend_off = make_frontend(
            cfg.frontend, mic_rate=self.mic_rate, device_rate=cfg.audio.player_sample_rate
        )
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._signals)
            self.link.subscribe(self._on_link_status)
            self.link.handle_audio(self._bot_audio_from_link)
            self.speaker = Speaker(
                cfg.audio,
                cfg.earcons,
                on_fault=self._fault_cb("playback"),
                reference=reference_of(self.frontend),
            )
            self.mic = Microphone(
                cfg.audio,
                sample_rate=self.mic_rate,
                on_fault=self._fault_cb("capture"),
                frontend=self.frontend,
            )
            edge_send, edge_recv = trio.open_memory_channel(EDGE_QUEUE)
            await nursery.start(self.speaker.run)
            await nursery.start(self.mic.run, self._mic_chunk)
            await self._start_panel(nursery, edge_send)
            await nursery.start(self.integrations.run)
            nursery.start_soon(self._contained, self._link_events, "bot event")
            nursery.start_soon(self._inputs, edge_recv)
            nursery.start_soon(self._timers)
            nursery.start_soon(self._playback_watch)
            nursery.start_soon(self.status.report, self._publish_drops)
            await start_sockets(self, nursery)
            self.notifier.ready(self.status_line())
            log.info(
                "ready %s",
                kv(
                    version=__version__,
                    serializer=cfg.bot.serializer,
                    mic_rate=self.mic_rate,
                    player_rate=cfg.audio.player_sample_rate,
                    startup_ms=round((time.monotonic() - self.started_at) * 1000),
                ),
            )
            # The link last, after READY: READY says the device's own parts work (audio, panel, sockets);
            # the bot is reached over a network that may be down, and its WebSocket stack is imported by
            # the first attempt (io/wsopen.py), which is then off the path to READY.
            await nursery.start(self.link.run)
            period = watchdog_period()
            if period:
                nursery.start_soon(self.status.watchdog, period)
        return EX_OK

    async def _start_panel(
        self, nursery: trio.Nursery, edge_send: trio.MemorySendChannel[PanelInput]
    ) -> None:
        cfg = self.cfg
        if cfg.gpio.enabled:
            from voiceterm.io.gpio import Panel, PanelError

            try:
                self.panel = Panel(cfg.gpio)
            except PanelError as e:
                if not self.keyboard:
                    raise  # reported by run_daemon as one line, exit 78
                # A laptop trying a bot: the terminal is the button, no LED.
                log.warning("%s; using the keyboard only", e)
        if self.panel is not None:
            await nursery.start(self.panel.run, edge_send.clone(), self._view, self._wait_view_change)
        if self.keyboard:
            from voiceterm.io.keyboard import read_keys

            nursery.start_soon(read_keys, edge_send.clone())
        edge_send.close()

    # --- carrying out the brain's commands ---------------------------------------------------------

    def apply(self, commands: list[Command], *, since: float | None = None, source: str = "daemon") -> None:
        """Carry out the brain's commands, in order, then tell everyone what changed. `since` is when the
        bot event behind them arrived (it times the playback flush of an interruption); `source` is the
        input that caused them, as the event stream names it."""
        for command in commands:
            handler = self._commands.get(command)
            assert handler is not None, f"no handler for {type(command).__name__}"  # a bug, not input
            handler(command, since)
        self._poke(source)

    def _send_message(self, command: SendMessage, since: float | None) -> None:
        self.link.send_message(command.message)

    def _flush_playback(self, command: FlushPlayback, since: float | None) -> None:
        dropped = self.speaker.flush(since=since) if self.speaker else 0
        log.debug("playback flushed %s", kv(reason=command.reason, frames=dropped))

    def _earcon(self, command: Earcon, since: float | None) -> None:
        if self.speaker:
            self.speaker.earcon(command.name)

    def _reconnect_now(self, command: ReconnectNow, since: float | None) -> None:
        log.info("reconnect requested")
        self.link.reconnect_now()

    def _wake_link(self, command: WakeLink, since: float | None) -> None:
        log.info("link woken by a press")
        self.link.wake()

    def _quit(self, command: Quit, since: float | None) -> None:
        self.request_stop("quit key")

    def _poke(self, source: str = "daemon") -> None:
        """Something the view or the timers depend on may have changed: wake the LED, the timer task and the
        STATUS= reporter, tell the mic whether its audio is wanted, and publish the events for what the
        terminal's state shows now."""
        self._gate_mic()
        self._view_changed.set()
        self._timer_changed.set()
        self.status.changed()
        state = self.terminal.state()
        self.publish(self.reporter.terminal(state, source))
        view = state.view
        if view.name != self._last_view_name:
            # One line per visible state change (a turn is press, release, answer): the LED's story in the
            # journal. A reconnect loop stays "offline" throughout; the same change repeating fast (a bot
            # flapping "speaking") is logged once per STATUS_LOG_INTERVAL_S with the count held back.
            change = (self._last_view_name, view.name)
            throttle = self._status_log.setdefault(change, Throttle(STATUS_LOG_INTERVAL_S))
            held = throttle.allow(time.monotonic())
            if held is not None:
                more = f" (+{held} more since the last one)" if held else ""
                log.info("status %s%s", kv(status=view.name, previous=self._last_view_name), more)
            self._last_view_name = view.name

    def publish(self, events: Iterable[de.DeviceEvent]) -> None:
        """The one place the daemon's own stream events are published (the subscribers' queues never wait)."""
        for event in events:
            self.events.publish(event)

    # --- carrying inputs to the brain --------------------------------------------------------------

    async def _contained(self, task: Callable[[], Awaitable[None]], what: str) -> None:
        """Run `task` again after an exception it raised: what came from outside (a bot event) must cost
        that one input, counted and logged at most once a minute, never the daemon."""
        while True:
            try:
                await task()
                return
            except Exception as e:
                self._handling_failed(what, e)

    def _handling_failed(self, what: str, e: Exception) -> None:
        self.counters["bot_events_failed_total"] += 1
        held = self._bot_event_log.allow(time.monotonic())
        if held is not None:
            more = f" (+{held} more since the last report)" if held else ""
            log.error("%s dropped: handling it failed %s%s", what, kv(error=type(e).__name__), more)
            log.debug("%s handling failed", what, exc_info=True)

    def _view(self) -> StatusView:
        return self.terminal.state().view

    async def _wait_view_change(self) -> None:
        await self._view_changed.wait()
        self._view_changed = trio.Event()

    def _on_link_status(self, status: LinkStatus) -> None:
        self.publish(self.reporter.link(status))
        self.apply(self.terminal.link(status, trio.current_time()), source="link")

    def _fault_cb(self, device: str) -> Callable[[str | None], None]:
        def on_fault(fault: str | None) -> None:
            self.apply(self.terminal.audio_fault(device, fault, trio.current_time()), source=device)

        return on_fault

    def _mic_chunk(self, chunk: Any) -> None:
        """One captured chunk, called on the event loop as the mic hands it over (no queue, no task switch),
        timed by its own capture stamp as panel inputs are."""
        self.counters["mic_chunks_pumped_total"] += 1
        out = self.terminal.mic(chunk.pcm, chunk.captured_at)
        if out is not None:
            self.link.send_audio(out, self.mic_rate, captured_at=chunk.captured_at)
        else:
            self._gate_mic()  # the silence tail may have ended

    def _gate_mic(self) -> None:
        """Tell the mic whether its audio is wanted: while it is not, no chunk wakes this thread."""
        if self.mic is not None:
            self.mic.set_wanted(self.terminal.state().mic_wanted)

    async def _link_events(self) -> None:
        async for event in self.link.events:
            (self._deliveries.get(event) or self._bot_event)(event, trio.current_time())

    def _bot_audio_from_link(self, chunk: AudioChunk) -> None:
        """Bot audio the link hands over itself while `_link_events` waits idle (Link.handle_audio)."""
        try:
            self._bot_audio(chunk, trio.current_time())
        except Exception as e:
            self._handling_failed("bot event", e)

    def _bot_audio(self, chunk: AudioChunk, now: float) -> None:
        # Audio already in flight when the user barged in must not sound after the flush.
        if self.terminal.accept_bot_audio(now):
            self.speaker.enqueue(chunk)
        else:
            self.counters["stale_bot_audio_frames_total"] += chunk.n_frames

    def _session_started(self, event: SessionStarted, now: float) -> None:
        self.publish(self.reporter.bot(event))
        self.integrations.session_started()
        self.apply(self.terminal.session_started(now), source="link")

    def _session_ended(self, event: SessionEnded, now: float) -> None:
        self.publish(self.reporter.bot(event))
        self.integrations.session_ended()
        self.apply(self.terminal.bot(event, now), since=now, source="bot")

    def _bot_event(self, event: object, now: float) -> None:
        self.integrations.bot_event(event)
        self.publish(self.reporter.bot(event))
        self.apply(self.terminal.bot(event, now), since=getattr(event, "received_at", now), source="bot")

    async def _inputs(self, recv: trio.MemoryReceiveChannel[PanelInput]) -> None:
        """Button edges and keys, each timed by its own stamp (the brain runs debounce on the edge's time)."""
        async with recv:
            async for item in recv:
                self.apply(self.terminal.panel(item), source=item.SOURCE)

    async def _timers(self) -> None:
        while True:
            deadline = self.terminal.next_deadline()
            self._timer_changed = trio.Event()
            if deadline is None:
                await self._timer_changed.wait()
                continue
            with trio.move_on_at(deadline):
                await self._timer_changed.wait()
            if trio.current_time() >= deadline:
                self.apply(self.terminal.tick(trio.current_time()), source="timer")

    async def _playback_watch(self) -> None:
        """Feed 'local speaker audible' to the brain: the bot-speaking fallback when the server sends no RTVI
        (Twilio). The speaker says when it may have changed; nothing polls."""
        playing = False
        while True:
            await self.speaker.playing_changed()
            now_playing = bool(self.speaker and self.speaker.playing)
            if now_playing != playing:
                playing = now_playing
                self.apply(self.terminal.playback_active(playing, trio.current_time()), source="speaker")

    # --- status and the control socket -------------------------------------------------------------

    def status_line(self) -> str:
        return self.status.line()

    def snapshot(self) -> dict[str, Any]:
        """The status document (`voiceterm status`, the status socket, the metrics file)."""
        return self.status.document()

    def _publish_drops(self) -> None:
        """A `drops` event when any dropped-audio or dropped-message counter grew (checked with STATUS=)."""
        if self.events.subscribers:
            self.publish(self.reporter.drops(self.status.drop_counters()))

    def control(self, command: cc.Command) -> dict[str, Any]:
        """Carry out one control-socket command (`app_control.py`); CommandError refuses it."""
        return carry_out(self, command)

    # --- stopping and reloading --------------------------------------------------------------------

    def request_stop(self, why: str) -> None:
        if self._stopping or self._nursery is None:
            return
        self._stopping = True
        log.info("stopping %s", kv(reason=why))
        self.notifier.stopping()
        self._nursery.start_soon(self._stop)

    async def _stop(self) -> None:
        with trio.move_on_after(SHUTDOWN_GRACE_S):
            await self.link.close(graceful=True)
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self.reload()
                else:
                    self.request_stop(signal.Signals(signum).name)

    async def reload(self) -> None:
        """SIGHUP: re-read the file; apply what can change live, name what needs a restart."""
        self.notifier.reloading()
        self.counters["reloads_total"] += 1
        try:
            new = load_config(self.cfg.source)
        except ConfigError as e:
            log.error("reload refused, keeping the running configuration: %s", e)
            self.notifier.ready(self.status_line())
            return
        for warning in new.warnings:
            log.warning("%s", warning)
        remember_secrets(secret_values(new))
        plan = plan_reload(self.cfg, new)
        if "logging.level" in plan.live:
            set_level(new.logging.level)
        if plan.live:
            self.apply(self.terminal.reconfigure(new))
            for part in (self.link, self.mic, self.speaker):
                reconfigure = getattr(part, "reconfigure", None)
                if reconfigure is not None:
                    reconfigure(new)
        if plan.restart:
            log.warning("reload: these keys need a restart to apply %s", kv(keys=",".join(plan.restart)))
            # Keep the running values for those keys: only the live ones move.
        self.cfg = plan.config
        log.info("reloaded %s", kv(applied=",".join(plan.live) or "nothing", needs_restart=len(plan.restart)))
        self.notifier.ready(self.status_line())
        self._poke()


def run_daemon(cfg: Config, *, keyboard: bool = False, log_level: str | None = None) -> int:
    """Entry point of `voiceterm run`: returns the process exit status."""
    setup_logging(log_level or cfg.logging.level)
    log.info("starting %s", kv(version=__version__, config=cfg.source, pid=os.getpid()))
    for warning in cfg.warnings:
        log.warning("%s", warning)

    async def main() -> int:
        return await Daemon(cfg, keyboard=keyboard).run()

    try:
        return trio.run(main)
    except KeyboardInterrupt:
        return EX_OK
    except Exception as e:  # the last line of defence: one line in the journal, non-zero for systemd
        from voiceterm.io.gpio import PanelError

        first = first_real(e, skip=trio.Cancelled)
        if isinstance(first, PanelError):
            log.error("%s", first)  # no GPIO: restarting cannot help, so EX_CONFIG stops systemd's loop
            return EX_CONFIG
        log.exception("daemon failed")
        return EX_SOFTWARE


__all__ = ["Daemon", "run_daemon"]
