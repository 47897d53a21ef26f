"""What the running daemon tells about itself: the status document (`voiceterm status`, the metrics file), the
one-line STATUS= for systemd, the drop counters for the event stream, the Prometheus textfile writer and the
watchdog, as tasks in the daemon's nursery.

Everything here only reads the daemon's parts; the terminal's part of it is `Terminal.state()`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from voiceterm import __version__
from voiceterm.core.lograte import RepeatSuppressor
from voiceterm.core.stream_reporter import DropCounters
from voiceterm.errors import os_reason
from voiceterm.logs import kv

if TYPE_CHECKING:
    from voiceterm.app import Daemon

__all__ = ["STATUS_MIN_INTERVAL_S", "STATUS_REFRESH_S", "DaemonStatus"]

log = logging.getLogger("voiceterm")

STATUS_MIN_INTERVAL_S = 0.25  # at most 4 STATUS= lines a second
STATUS_REFRESH_S = 5.0  # counters in the STATUS line refresh this often without a state change


class DaemonStatus:
    """The status document and the STATUS= line of `daemon`, and the tasks that publish them."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self._changed = trio.Event()
        self._last_line = ""

    def changed(self) -> None:
        """Something the STATUS= line may show changed: the reporter looks now (within its rate limit)."""
        self._changed.set()

    def line(self) -> str:
        """The one-line STATUS= text: the view's text, and mic drops and underruns when there are any."""
        d = self._daemon
        text = d.terminal.state().view.text
        extra = []
        dropped = d.link.counters.dropped_outgoing_audio_total
        if dropped:
            extra.append(f"mic drops {dropped}")
        underruns = d.speaker.stats().get("underruns_total") if d.speaker else 0
        if underruns:
            extra.append(f"underruns {underruns}")
        return text + (" | " + ", ".join(extra) if extra else "")

    def document(self) -> dict[str, Any]:
        """The status document: `voiceterm status`, the status socket, the metrics file."""
        d = self._daemon
        state = d.terminal.state()
        mic_stats = d.mic.stats() if d.mic else {}
        spk_stats = d.speaker.stats() if d.speaker else {}
        rms, peak = d.mic.level if d.mic else (-120.0, -120.0)
        return {
            "version": __version__,
            "uptime_s": round(time.monotonic() - d.started_at, 1),
            "status": state.view.name,
            "status_text": state.view.text,
            "link": d.link.snapshot(),
            "terminal": state.as_dict(),
            "audio": {
                "capture_fault": d.mic.fault if d.mic else None,
                "playback_fault": d.speaker.fault if d.speaker else None,
                "mic_rms_dbfs": None if math.isinf(rms) else round(rms, 1),
                "mic_peak_dbfs": None if math.isinf(peak) else round(peak, 1),
                "capture": mic_stats,
                "playback": spk_stats,
            },
            "daemon": dict(d.counters),
            "latency": self._latency(),
            "panel": {
                "gpio": d.panel is not None,
                "edges_dropped_total": getattr(d.panel, "edges_dropped_total", 0),
            },
            "events": {**d.events.snapshot(), "error": d.events_error},
            "integrations": d.integrations.snapshot(),
            "frontend": d.frontend.stats()
            if d.frontend
            else {
                "state": "unavailable" if d.frontend_off != "off" else "off",
                "error": d.frontend_off,
            },
        }

    def drop_counters(self) -> DropCounters:
        """The dropped-audio and dropped-message counters the event stream reports when one grows."""
        d = self._daemon
        link = d.link.counters
        capture = d.mic.stats() if d.mic else {}
        playback = d.speaker.stats() if d.speaker else {}
        return DropCounters(
            outgoing_audio=link.dropped_outgoing_audio_total,
            messages=link.dropped_messages_total,
            incoming=link.dropped_incoming_total,
            capture_overruns=capture.get("overruns_total"),
            capture_dropped=capture.get("dropped_total"),
            playback_dropped_frames=playback.get("dropped_frames_total"),
            playback_xruns=playback.get("xruns_total"),
            stale_bot_audio_frames=d.counters["stale_bot_audio_frames_total"],
            subscribers_dropped=d.events.counters["subscribers_dropped_total"],
        )

    def _latency(self) -> dict[str, Any]:
        """The always-on latency recorders (io/link.py, io/speaker.py) as summaries in ms plus buckets."""
        d = self._daemon
        recorders = {**d.link.latency, **getattr(d.speaker, "latency", {})}
        return {name: rec.as_dict() for name, rec in recorders.items()}

    # --- tasks -------------------------------------------------------------------------------------

    async def report(self, each_look: Callable[[], None]) -> None:
        """STATUS= on every change so `systemctl status` tells the truth: woken by state changes, at most
        4 lines a second, and every few seconds for the counters in the line. `each_look` runs with every
        look (the daemon's drop counters go to the event stream from there)."""
        notifier = self._daemon.notifier
        while True:
            line = self.line()
            if line != self._last_line:
                self._last_line = line
                notifier.status(line)
            each_look()
            with trio.move_on_after(STATUS_REFRESH_S):
                await self._changed.wait()
            self._changed = trio.Event()
            await trio.sleep(STATUS_MIN_INTERVAL_S)

    async def write_metrics(self) -> None:
        """The Prometheus textfile every `status.metrics_interval` seconds (a live key: read each time)."""
        from voiceterm.core.metrics import render_prometheus
        from voiceterm.io.control import write_textfile

        # Under ProtectSystem=strict the path needs ReadWritePaths=; say so once, then rarely.
        failures = RepeatSuppressor()
        while True:
            status = self._daemon.cfg.status
            try:
                await trio.to_thread.run_sync(
                    write_textfile, status.metrics_file, render_prometheus(self.document())
                )
            except OSError as e:
                report = failures.failure(os_reason(e), trio.current_time())
                if report is not None:
                    log.warning(
                        "metrics file not written %s",
                        kv(path=status.metrics_file, error=report.reason, repeats=report.repeats),
                    )
            else:
                failures.clear()
            await trio.sleep(status.metrics_interval)

    async def watchdog(self, period: float) -> None:
        """WATCHDOG=1 only while the loop is healthy: a wedged loop (a task hogging it) stops the pings."""
        notifier = self._daemon.notifier
        expected = trio.current_time() + period
        while True:
            await trio.sleep_until(expected)
            lag = trio.current_time() - expected
            if lag < period:
                notifier.watchdog()
            else:
                log.error("event loop stalled %s", kv(lag_s=round(lag, 2)))
            expected = trio.current_time() + period
