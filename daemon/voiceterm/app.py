"""The daemon whole: one trio nursery wiring the link, mic, speaker, panel, status and systemd notifier.

Each task owns one resource. The pure `Terminal` decides; this module only carries inputs to it and carries
its commands out. Signals: SIGTERM/SIGINT end the daemon within a second (saying goodbye to the bot when
connected) with status 0; SIGHUP re-reads the configuration and applies what can change live. An unexpected
task failure propagates out of the nursery and ends the process non-zero, so systemd restarts it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
import sys
import time
from functools import partial
from typing import Any

import trio

from voiceterm import __version__
from voiceterm.config import Config, ConfigError, effective_config, load_config, secret_values
from voiceterm.core import control_commands as cc
from voiceterm.core import device_events as de
from voiceterm.core.linkstate import LinkState, LinkStatus
from voiceterm.core.patterns import describe
from voiceterm.core.terminal import (
    Earcon,
    FlushPlayback,
    Quit,
    ReconnectNow,
    SendMessage,
    Terminal,
    WakeLink,
)
from voiceterm.io.event_socket import EventHub, current_client
from voiceterm.io.integrations import COMMANDS as INTEGRATION_COMMANDS
from voiceterm.io.integrations import Integrations, builtins_for
from voiceterm.io.link import Link, SessionEnded, SessionStarted
from voiceterm.io.lograte import Throttle
from voiceterm.io.notify import Notifier, watchdog_period
from voiceterm.logs import kv, set_level, setup_logging
from voiceterm.masking import remember_secrets
from voiceterm.protocol import rtvi
from voiceterm.protocol.events import AudioChunk
from voiceterm.protocol.registry import get_serializer

if sys.version_info < (3, 11):  # pragma: no cover - Python 3.10 only
    from exceptiongroup import BaseExceptionGroup

log = logging.getLogger("voiceterm")

EX_SOFTWARE = 70  # sysexits: an internal error; systemd restarts on it
SHUTDOWN_GRACE_S = 0.8  # SIGTERM must end the process within a second
EDGE_QUEUE = 64  # button edges / keys waiting for the brain
STATUS_MIN_INTERVAL_S = 0.25  # at most 4 STATUS= lines a second
STATUS_REFRESH_S = 5.0  # counters in the STATUS line refresh this often without a state change
STATUS_LOG_INTERVAL_S = 10.0  # one status change (previous -> new) is logged at most this often
BOT_EVENT_ERROR_LOG_S = 60.0  # a bot event that could not be handled: one journal line a minute at most


# Keys whose change a SIGHUP applies live; anything else needs a restart, and the log says which.
LIVE_KEYS = {
    "logging.level",
    "audio.volume_percent",
    "audio.mic_gain_db",
    "earcons.",
    "push_to_talk.",
    "reconnect.",
    "heartbeat.",
    "status.metrics_interval",
}


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
        self._view_changed = trio.Event()
        self._timer_changed = trio.Event()
        self._status_changed = trio.Event()
        self._last_status_line = ""
        self._last_view_name = "starting"
        # A bot flapping the view (20 ms of audio every 250 ms) must not write 8 lines a second.
        self._status_log: dict[tuple[str, str], Throttle] = {}
        self._bot_event_log = Throttle(BOT_EVENT_ERROR_LOG_S)
        self._nursery: trio.Nursery | None = None
        self._stopping = False
        self.events = EventHub(cfg.events.queue, cfg.events.max_clients)
        # Device functions and client requests: what integrations do with the bot (io/integrations.py).
        self.integrations = Integrations(
            cfg.functions,
            link=self.link,
            hub=self.events,
            builtins=builtins_for(set_volume=self._set_volume_by_bot, set_mute=self._set_mute_by_bot),
            rtvi_supported=self.serializer_cls.supports_rtvi,
        )
        self.events_error: str | None = None  # why the event socket is not served, for `voiceterm status`
        self.events_path: str | None = None  # where it is served, once it accepts connections
        self._observed = de.Observed()
        self._last_link_status: LinkStatus | None = None
        self._last_drops: dict[str, int] = {}
        # mic_chunks_pumped_total and stale_bot_audio_frames_total close the audio accounting (fault campaign).
        self.counters = {"reloads_total": 0, "mic_chunks_pumped_total": 0, "stale_bot_audio_frames_total": 0}
        self.counters["bot_events_failed_total"] = 0  # events dropped because handling them raised

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
            await nursery.start(self.link.run)
            await nursery.start(self.integrations.run)
            nursery.start_soon(self._contained, self._link_events, "bot event")
            nursery.start_soon(self._inputs, edge_recv)
            nursery.start_soon(self._timers)
            nursery.start_soon(self._playback_watch)
            nursery.start_soon(self._status_reporter)
            await self._start_control(nursery)
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
            period = watchdog_period()
            if period:
                nursery.start_soon(self._watchdog, period)
        return 0

    async def _start_panel(self, nursery: trio.Nursery, edge_send: trio.MemorySendChannel) -> None:
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
            await nursery.start(self.panel.run, edge_send.clone(), self.terminal.view, self._wait_view_change)
        if self.keyboard:
            from voiceterm.io.keyboard import read_keys

            nursery.start_soon(read_keys, edge_send.clone())
        edge_send.close()

    async def _start_control(self, nursery: trio.Nursery) -> None:
        from voiceterm.io.control import default_socket_path, serve_status

        path = self.cfg.status.socket or default_socket_path()
        try:
            await nursery.start(serve_status, path, self.snapshot)
        except OSError as e:
            # Diagnostics must never take the terminal down.
            log.warning("status socket unavailable %s", kv(path=path, error=e.strerror or str(e)))
        if self.cfg.events.enabled:
            await self._start_events(nursery)
        if self.cfg.status.metrics_file:
            nursery.start_soon(self._metrics_writer)

    async def _start_events(self, nursery: trio.Nursery) -> None:
        from voiceterm.io.control import default_socket_path
        from voiceterm.io.event_socket import SOCKET_NAME, serve_events

        ev = self.cfg.events
        path = ev.socket or default_socket_path(name=SOCKET_NAME)
        try:
            self.events_path = await nursery.start(
                partial(serve_events, group=ev.group, group_access=ev.group_access),
                path,
                self.events,
                self.control,
            )
        except OSError as e:
            # The terminal itself works without it: say why once, show it in `voiceterm status`.
            self.events_error = e.strerror or str(e)
            log.error("event socket unavailable %s", kv(path=path, error=self.events_error))

    # --- carrying inputs to the brain --------------------------------------------------------------

    def _apply(self, commands: list[Any], *, since: float | None = None, source: str = "daemon") -> None:
        """Carry out the brain's commands; `since` is when the bot event behind them arrived (it times the
        playback flush of an interruption)."""
        for cmd in commands:
            if isinstance(cmd, SendMessage):
                self.link.send_message(cmd.message)
            elif isinstance(cmd, FlushPlayback):
                dropped = self.speaker.flush(since=since) if self.speaker else 0
                log.debug("playback flushed %s", kv(reason=cmd.reason, frames=dropped))
            elif isinstance(cmd, Earcon):
                if self.speaker:
                    self.speaker.earcon(cmd.name)
            elif isinstance(cmd, ReconnectNow):
                log.info("reconnect requested")
                self.link.reconnect_now()
            elif isinstance(cmd, WakeLink):
                log.info("link woken by a press")
                self.link.wake()
            elif isinstance(cmd, Quit):
                self.request_stop("quit key")
        self._poke(source)

    def _poke(self, source: str = "daemon") -> None:
        """Something the view or the timers depend on may have changed: wake the LED and the timer task."""
        self._gate_mic()
        self._view_changed.set()
        self._timer_changed.set()
        self._status_changed.set()
        view = self.terminal.view()
        self._publish_changes(view, source)
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

    async def _contained(self, task: Any, what: str) -> None:
        """Run `task` again after an exception it raised: what came from outside (a bot event) must cost
        that one input, counted and logged at most once a minute, never the daemon."""
        while True:
            try:
                await task()
                return
            except Exception as e:
                self.counters["bot_events_failed_total"] += 1
                held = self._bot_event_log.allow(time.monotonic())
                if held is not None:
                    more = f" (+{held} more since the last report)" if held else ""
                    log.error("%s dropped: handling it failed %s%s", what, kv(error=type(e).__name__), more)
                    log.debug("%s handling failed", what, exc_info=True)

    def _publish_changes(self, view: Any, source: str) -> None:
        """Events for what the last input changed in the terminal (button, mute, turn, faults, LED)."""
        term = self.terminal
        observed = de.Observed(
            button_pressed=term.button_pressed,
            muted=term.muted,
            turn=term.turn,
            status=view.name,
            pattern=describe(view.pattern),
            color=view.color,
            text=view.text,
            faults=tuple(sorted(term.faults.items())),
        )
        if observed != self._observed:
            for event in de.diff(self._observed, observed, source):
                self.events.publish(event)
            self._observed = observed

    async def _wait_view_change(self) -> None:
        await self._view_changed.wait()
        self._view_changed = trio.Event()

    def _on_link_status(self, status: LinkStatus) -> None:
        for event in de.from_link_status(self._last_link_status, status):
            self.events.publish(event)
        self._last_link_status = status
        self._apply(self.terminal.link(status, trio.current_time()), source="link")

    def _fault_cb(self, device: str):
        def on_fault(fault: str | None) -> None:
            self._apply(self.terminal.audio_fault(device, fault, trio.current_time()), source=device)

        return on_fault

    def _mic_chunk(self, chunk: Any) -> None:
        """One captured chunk, called on the event loop as the mic hands it over: no queue, no task switch."""
        self.counters["mic_chunks_pumped_total"] += 1
        out = self.terminal.mic(chunk.pcm, trio.current_time())
        if out is not None:
            self.link.send_audio(out, self.mic_rate, captured_at=chunk.captured_at)
        else:
            self._gate_mic()  # the silence tail may have ended

    def _gate_mic(self) -> None:
        """Tell the mic whether its audio is wanted: while it is not, no chunk wakes this thread."""
        if self.mic is not None:
            self.mic.set_wanted(self.terminal.mic_wanted)

    async def _link_events(self) -> None:
        async for event in self.link.events:
            now = trio.current_time()
            if isinstance(event, AudioChunk):
                # Audio already in flight when the user barged in must not sound after the flush.
                if self.terminal.accept_bot_audio(now):
                    self.speaker.enqueue(event)
                else:
                    self.counters["stale_bot_audio_frames_total"] += event.n_frames
                continue
            if isinstance(event, SessionStarted):
                self.events.publish(de.Connected(event.session, event.url))
                self.integrations.session_started()
                self._apply(self.terminal.session_started(now), source="link")
                continue
            if isinstance(event, SessionEnded):
                self.events.publish(de.Disconnected(event.session, event.reason, event.failure))
                self.integrations.session_ended()
            else:
                self.integrations.bot_event(event)
            stream_event = de.from_bot(event)
            if stream_event is not None:
                self.events.publish(stream_event)
            self._apply(self.terminal.bot(event, now), since=getattr(event, "received_at", now), source="bot")

    async def _inputs(self, recv: trio.MemoryReceiveChannel) -> None:
        async with recv:
            async for item in recv:
                now = trio.current_time()
                if isinstance(item, str):
                    self._apply(self.terminal.key(item, now), source="keyboard")
                else:
                    pressed, _at = item
                    self._apply(self.terminal.button(pressed, now), source="button")

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
                self._apply(self.terminal.tick(trio.current_time()), source="timer")

    async def _playback_watch(self) -> None:
        """Feed 'local speaker audible' to the brain: the bot-speaking fallback when the server sends no RTVI
        (Twilio). The speaker says when it may have changed; nothing polls."""
        playing = False
        while True:
            await self.speaker.playing_changed()
            now_playing = bool(self.speaker and self.speaker.playing)
            if now_playing != playing:
                playing = now_playing
                self._apply(self.terminal.playback_active(playing, trio.current_time()), source="speaker")

    # --- status, watchdog, signals -----------------------------------------------------------------

    def status_line(self) -> str:
        view = self.terminal.view()
        text = view.text
        counters = self.link.counters
        extra = []
        if getattr(counters, "dropped_outgoing_audio_total", 0):
            extra.append(f"mic drops {counters.dropped_outgoing_audio_total}")
        if self.speaker and self.speaker.stats().get("underruns_total"):
            extra.append(f"underruns {self.speaker.stats()['underruns_total']}")
        return text + (" | " + ", ".join(extra) if extra else "")

    async def _status_reporter(self) -> None:
        """STATUS= on every change so `systemctl status` tells the truth: woken by state changes, at most
        4 lines a second, and every few seconds for the counters in the line."""
        while True:
            line = self.status_line()
            if line != self._last_status_line:
                self._last_status_line = line
                self.notifier.status(line)
            self._publish_drops()
            with trio.move_on_after(STATUS_REFRESH_S):
                await self._status_changed.wait()
            self._status_changed = trio.Event()
            await trio.sleep(STATUS_MIN_INTERVAL_S)

    def _publish_drops(self) -> None:
        """A `drops` event when any dropped-audio or dropped-message counter grew (checked with STATUS=)."""
        if not self.events.subscribers:
            return
        drops = de.drop_counters(self.snapshot())
        if any(value > self._last_drops.get(key, 0) for key, value in drops.items()):
            self.events.publish(de.Drops(drops))
        self._last_drops = drops

    # --- the control socket ------------------------------------------------------------------------

    def control(self, command: cc.Command) -> dict[str, Any]:
        """Carry out one control-socket command; CommandError (one line) refuses it and changes nothing."""
        now = trio.current_time()
        term = self.terminal
        if isinstance(command, cc.Talk):
            self._apply(term.talk(command.start, now), source="control")
            if command.start and not term.turn:
                raise cc.CommandError(term.cannot_talk() or "no turn could start")
            return {"turn": term.turn}
        if isinstance(command, cc.Mute):
            self._apply(term.set_mute(command.muted, now), source="control")
            return {"muted": term.muted}
        if isinstance(command, cc.Volume):
            if self.speaker is None:
                raise cc.CommandError("no speaker")
            if command.percent is not None:
                self._set_volume(command.percent, "control")
            return {"volume_percent": round(self.speaker.volume * 100)}
        if isinstance(command, INTEGRATION_COMMANDS):
            return self.integrations.control(command, current_client.get())
        if isinstance(command, cc.SendText):
            if not self.link.status.state.is_up:
                raise cc.CommandError("not connected to the bot")
            if not self.serializer_cls.supports_rtvi:
                raise cc.CommandError(f"the {self.cfg.bot.serializer} serializer carries no RTVI messages")
            message = rtvi.send_text(
                command.content,
                run_immediately=command.run_immediately,
                audio_response=command.audio_response,
            )
            if not self.link.send_message(message):
                raise cc.CommandError("the outgoing message queue is full; try again")
            return {"id": message["id"]}
        if isinstance(command, cc.Reconnect):
            log.info("reconnect requested via the control socket")
            self.link.reconnect_now()
            return {"link_state": self.link.status.state.value}
        if isinstance(command, cc.Status):
            return self.snapshot()
        return cc.help_result()

    def _set_volume(self, percent: int, via: str) -> int:
        """The bot's voice volume, from the control socket or the bot's set_volume function."""
        before = round(self.speaker.volume * 100)
        self.speaker.volume = percent / 100
        if percent != before:
            log.info("volume set %s", kv(percent=percent, via=via))
            self.events.publish(de.VolumeChanged(percent))
        return percent

    def _set_volume_by_bot(self, percent: int) -> int:
        from voiceterm.core.function_handlers import FunctionCallError

        if self.speaker is None:
            raise FunctionCallError("the device has no speaker")
        return self._set_volume(percent, "bot")

    def _set_mute_by_bot(self, muted: bool) -> bool:
        self._apply(self.terminal.set_mute(muted, trio.current_time()), source="bot")
        return self.terminal.muted

    async def _watchdog(self, period: float) -> None:
        """WATCHDOG=1 only while the loop is healthy: a wedged loop (a task hogging it) stops the pings."""
        expected = trio.current_time() + period
        while True:
            await trio.sleep_until(expected)
            lag = trio.current_time() - expected
            if lag < period:
                self.notifier.watchdog()
            else:
                log.error("event loop stalled %s", kv(lag_s=round(lag, 2)))
            expected = trio.current_time() + period

    async def _metrics_writer(self) -> None:
        from voiceterm.core.metrics import render_prometheus
        from voiceterm.io.control import write_textfile
        from voiceterm.io.lograte import RepeatSuppressor

        # Under ProtectSystem=strict the path needs ReadWritePaths=; say so once, then rarely.
        failures = RepeatSuppressor()
        while True:
            path = self.cfg.status.metrics_file
            try:
                await trio.to_thread.run_sync(write_textfile, path, render_prometheus(self.snapshot()))
            except OSError as e:
                report = failures.failure(e.strerror or str(e), trio.current_time())
                if report is not None:
                    log.warning(
                        "metrics file not written %s",
                        kv(path=path, error=report.reason, repeats=report.repeats),
                    )
            else:
                failures.clear()
            await trio.sleep(self.cfg.status.metrics_interval)

    def snapshot(self) -> dict:
        mic_stats = self.mic.stats() if self.mic else {}
        spk_stats = self.speaker.stats() if self.speaker else {}
        rms, peak = self.mic.level if self.mic else (-120.0, -120.0)
        link = self.link.snapshot()
        return {
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "status": self.terminal.view().name,
            "status_text": self.terminal.view().text,
            "link": link,
            "terminal": self.terminal.snapshot(),
            "audio": {
                "capture_fault": self.mic.fault if self.mic else None,
                "playback_fault": self.speaker.fault if self.speaker else None,
                "mic_rms_dbfs": None if math.isinf(rms) else round(rms, 1),
                "mic_peak_dbfs": None if math.isinf(peak) else round(peak, 1),
                "capture": mic_stats,
                "playback": spk_stats,
            },
            "daemon": dict(self.counters),
            "latency": self._latency(),
            "panel": {
                "gpio": self.panel is not None,
                "edges_dropped_total": getattr(self.panel, "edges_dropped_total", 0),
            },
            "events": {**self.events.snapshot(), "error": self.events_error},
            "integrations": self.integrations.snapshot(),
            "frontend": self.frontend.stats()
            if self.frontend
            else {
                "state": "unavailable" if self.frontend_off != "off" else "off",
                "error": self.frontend_off,
            },
        }

    def _latency(self) -> dict[str, Any]:
        """The always-on latency recorders (io/link.py, io/speaker.py) as summaries in ms plus buckets."""
        recorders = {**self.link.latency, **getattr(self.speaker, "latency", {})}
        return {name: rec.as_dict() for name, rec in recorders.items()}

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
        changed = _changed_keys(self.cfg, new)
        live = [k for k in changed if any(k == p or (p.endswith(".") and k.startswith(p)) for p in LIVE_KEYS)]
        restart = [k for k in changed if k not in live]
        if "logging.level" in live:
            set_level(new.logging.level)
        if live:
            self._apply(self.terminal.reconfigure(new))
            for part in (self.link, self.mic, self.speaker):
                reconfigure = getattr(part, "reconfigure", None)
                if reconfigure is not None:
                    reconfigure(new)
        if restart:
            log.warning("reload: these keys need a restart to apply %s", kv(keys=",".join(restart)))
            # Keep the running values for those keys: only the live ones move.
        self.cfg = _merge(self.cfg, new, live)
        log.info("reloaded %s", kv(applied=",".join(live) or "nothing", needs_restart=len(restart)))
        self.notifier.ready(self.status_line())
        self._poke()


def _changed_keys(old: Config, new: Config) -> list[str]:
    a, b = effective_config(old, masked=False), effective_config(new, masked=False)
    out = []
    for section, table in b.items():
        for key, value in table.items():
            if a[section][key] != value:
                out.append(f"{section}.{key}")
    # Secrets are masked in effective_config; compare them directly.
    if old.bot.token != new.bot.token and "bot.token" not in out:
        out.append("bot.token")
    return out


def _merge(old: Config, new: Config, live: list[str]) -> Config:
    sections: dict[str, Any] = {}
    for key in live:
        section, name = key.split(".", 1)
        current = sections.get(section, getattr(old, section))
        sections[section] = dataclasses.replace(current, **{name: getattr(getattr(new, section), name)})
    return dataclasses.replace(old, **sections)


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
        return 0
    except Exception as e:  # the last line of defence: one line in the journal, non-zero for systemd
        from voiceterm.io.gpio import PanelError

        first = _innermost(e)
        if isinstance(first, PanelError):
            log.error("%s", first)  # no GPIO: restarting cannot help, so EX_CONFIG stops systemd's loop
            return 78
        log.exception("daemon failed")
        return EX_SOFTWARE


def _innermost(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups (trio's strict groups)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


__all__ = ["Daemon", "LinkState", "run_daemon"]
