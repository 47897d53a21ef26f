"""`scripts/bench --tier room`: the same benchmark on clocked devices (the simulated room, voiceterm_devkit.room) in
`pacing = "device"`, with the cost of the audio front-end published beside the rest.

The room's echo path is on (the bot's voice comes back into the microphone 60 ms later at -20 dB) and the room's
mouth keeps talking (the same speech-like signal the file tier reads from its mic file), so the bench bot's echo
makes the exchange full duplex and the canceller works the whole window. Every round measures the daemon twice
on the same devices, front-end on and off, and the baseline once; the front-end's cost is the difference
between the two daemon windows (CPU and RSS, best rounds), and, independently, the CPU time the front-end
counts for itself (`frontend.cpu_seconds_total` in the status, thread CPU time of its own calls).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from voiceterm_devkit.alsa_files import speech_like
from voiceterm_devkit.bench import MIB, MIC_RATE, Bench, Window
from voiceterm_devkit.daemonproc import DaemonProcess
from voiceterm_devkit.room import Room
from voiceterm_devkit.room_run import _RoomAlsa

TALK_CHUNK_S = 5.0
TARGET_FRONTEND_CORE = 0.01  # the issue's target: at most 1 % of a core for the front-end itself


class _Talker:
    """Keeps the room's mouth talking (speech-like audio, 5 s at a time) until stopped."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self._speech = speech_like(TALK_CHUNK_S, MIC_RATE)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-talker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        mouth = self.room.mouth
        assert mouth is not None
        while not self._stop.is_set():
            if not mouth.speaking:
                mouth.say(self._speech)
            self._stop.wait(0.5)


class RoomBench(Bench):
    """Bench on the room's clocked devices; `frontend_mode` picks the daemon's [frontend] mode."""

    def __init__(self, args: Any, out_dir: Path) -> None:
        super().__init__(args, out_dir)
        self.room = Room(self.work / "room")
        self.frontend_mode = "on"
        self.own: list[float] = []  # the front-end's own CPU per window (fraction of a core), front-end on

    def new_daemon(self, max_turn_s: float = 3600.0) -> DaemonProcess:
        self._runs += 1
        return DaemonProcess(
            self.work / f"daemon-{self._runs}",
            bot_url=self.bot.url,
            alsa=_RoomAlsa(self.room),  # type: ignore[arg-type]
            config={
                "audio": {"capture_device": "mic", "playback_device": "spk", "pacing": "device"},
                "push_to_talk": {"max_turn_s": max_turn_s},
                "frontend": {"mode": self.frontend_mode},
            },
        )

    def run(self) -> dict[str, Any]:
        self.room.start()
        talker = _Talker(self.room)
        talker.start()
        try:
            results = super().run()
            results["tier"] = "room (PulseAudio null sinks through ALSA's pulse plugin, pacing = device)"
            results["frontend_cost"] = self._frontend_cost(results)
        finally:
            talker.stop()
            self.room.stop()
        return results

    def _frontend_cost(self, results: dict[str, Any]) -> dict[str, Any]:
        """Windows with the front-end off, on the same devices; the difference to the windows with it on."""
        self.frontend_mode = "off"
        off: list[Window] = []
        self.bot.start()  # Bench.run stopped it
        self.bot.wait_listening()
        try:
            for round_no in range(1, self.args.rounds + 1):
                print(f"- round {round_no}: voiceterm with the front-end off", flush=True)
                daemon = self.new_daemon()
                daemon.start()
                try:
                    daemon.wait_ready()
                    window, _idle, _before, _after = self.daemon_window(daemon)
                    off.append(window)
                finally:
                    daemon.stop()
        finally:
            self.bot.stop()
            self.frontend_mode = "on"
        on_rounds = results["rounds"]["voiceterm"]
        best_on = min(on_rounds, key=lambda w: w["core_percent"])
        best_off = min(off, key=lambda w: w.core_fraction)
        own = self.own
        own_core = min(own) if own else None
        return {
            "off_rounds": [w.as_dict() for w in off],
            "core_percent_on": best_on["core_percent"],
            "core_percent_off": round(best_off.core_fraction * 100, 3),
            "core_percent_difference": round(best_on["core_percent"] - best_off.core_fraction * 100, 3),
            "rss_steady_mib_on": best_on["rss_steady_mib"],
            "rss_steady_mib_off": round(best_off.rss_steady_kib / MIB, 2),
            "rss_difference_mib": round(best_on["rss_steady_mib"] - best_off.rss_steady_kib / MIB, 2),
            "own_core_percent": None if own_core is None else round(own_core * 100, 3),
            "own_core_percent_rounds": [round(v * 100, 3) for v in own],
            "target_core_percent": TARGET_FRONTEND_CORE * 100,
        }

    def daemon_window(self, daemon: DaemonProcess) -> tuple[Window, float, dict[str, Any], dict[str, Any]]:
        window, idle, before, after = super().daemon_window(daemon)
        if self.frontend_mode == "on":
            spent = _own_cpu(after) - _own_cpu(before)
            self.own.append(spent / window.wall_s)
        return window, idle, before, after


def _own_cpu(snap: dict[str, Any]) -> float:
    return float((snap.get("frontend") or {}).get("cpu_seconds_total") or 0.0)


def print_frontend_cost(results: dict[str, Any]) -> None:
    cost = results.get("frontend_cost")
    if not cost:
        return
    own = cost["own_core_percent"]
    verdict = (
        "not measured"
        if own is None
        else "met"
        if own <= cost["target_core_percent"]
        else f"MISSED: over by {own - cost['target_core_percent']:.2f} % of a core"
    )
    print(
        f"  audio front-end (room tier, full duplex): its own CPU {own} % of a core "
        f"(rounds {cost['own_core_percent_rounds']}; target <= {cost['target_core_percent']:g} %: {verdict});\n"
        f"    daemon with it on {cost['core_percent_on']} % vs off {cost['core_percent_off']} % of a core "
        f"(difference {cost['core_percent_difference']} %); RSS {cost['rss_steady_mib_on']} vs "
        f"{cost['rss_steady_mib_off']} MiB (difference {cost['rss_difference_mib']} MiB)"
    )


__all__ = ["RoomBench", "print_frontend_cost"]
