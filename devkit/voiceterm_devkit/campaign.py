"""The fault campaign (`scripts/fault-campaign`; a short version runs in CI): the real `voiceterm run`, an open
mic streaming to the real Pipecat echo bot through `ChaosProxy`, and faults at random moments:

  bot kill -9 and restart, black-holed network, garbage frames, a frame over the size limit, bot audio at
  10x real time, the playback or capture device unplugged and plugged back, SIGHUP reloads.

After each fault the campaign waits for the daemon to recover (link ready, audio moving, fault cleared)
and times it. At the end it mutes the mic, lets the audio settle and balances the books: every frame of
bot audio and every mic chunk that entered the daemon is either delivered or in one of its drop counters.
It reports recoveries / attempts, RSS growth, exceptions that escaped (must be 0) and that accounting.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio

from voiceterm_devkit.alsa_files import AlsaFileConfig, FifoTap, write_raw
from voiceterm_devkit.bot import BotProcess
from voiceterm_devkit.chaos import ChaosProxy, garbage_frames, ws_frame
from voiceterm_devkit.daemonproc import DaemonProcess, RssSampler, memory_kib

MIC_RATE = 16000
MAX_MESSAGE_BYTES = 256 * 1024  # the daemon's bot.max_message_bytes in the campaign
MIC_QUEUE = 8  # chunks the mic thread may have handed to the event loop and it has not run yet (a bound)
KINDS = ("kill", "blackhole", "garbage", "oversized", "flood", "device", "sighup")


@dataclass
class Plan:
    kills: int = 20
    blackholes: int = 3
    garbage: int = 3
    oversized: int = 2
    floods: int = 2
    device_removals: int = 4
    sighups: int = 3
    seed: int = 1
    blackhole_s: float = 4.0
    flood_s: float = 2.0
    gap_s: tuple[float, float] = (0.5, 3.0)  # random wait before each fault
    recovery_timeout_s: float = 30.0

    def schedule(self) -> list[str]:
        kinds = (
            ["kill"] * self.kills
            + ["blackhole"] * self.blackholes
            + ["garbage"] * self.garbage
            + ["oversized"] * self.oversized
            + ["flood"] * self.floods
            + ["device"] * self.device_removals
            + ["sighup"] * self.sighups
        )
        random.Random(self.seed).shuffle(kinds)
        return kinds


@dataclass
class Outcome:
    kind: str
    at_s: float  # since the campaign started
    recovered: bool
    recovery_s: float | None
    detail: dict[str, Any] = field(default_factory=dict)


class CountingTap(FifoTap):
    """A FifoTap that counts what it drains instead of keeping it (a long campaign writes a lot of audio)."""

    bytes_total = 0

    def _keep(self, chunk: bytes) -> None:
        self.bytes_total += len(chunk)


async def blocking(fn: Callable[..., Any], *args: Any) -> Any:
    return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)


class Campaign:
    def __init__(self, plan: Plan, workdir: Path, *, say: Callable[[str], None] = print) -> None:
        self.plan = plan
        self.work = Path(workdir).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.say = say
        self.rng = random.Random(plan.seed + 1)
        self.bot = BotProcess(mode="echo", log_dir=self.work)
        self.proxy = ChaosProxy(self.bot.port)
        self.outcomes: list[Outcome] = []
        self.device_turn = 0
        self.volume = 100

    # --- set-up -----------------------------------------------------------------------------------------

    def _daemon(self) -> DaemonProcess:
        alsa = AlsaFileConfig(self.work / "alsa")
        mic = self.work / "mic.raw"
        faults = len(self.plan.schedule())
        # Longer than the campaign can run: reads past the end of a file PCM repeat stale data.
        seconds = 120 + faults * (self.plan.gap_s[1] + self.plan.blackhole_s + 15)
        from voiceterm_devkit.alsa_files import speech_like

        write_raw(mic, speech_like(seconds, MIC_RATE))
        self.mic_tap = CountingTap(self.work / "mic.tee")
        self.spk_tap = CountingTap(self.work / "spk.fifo")
        alsa.add_capture("mic", mic, tee=self.mic_tap.path).add_playback("spk", self.spk_tap.path)
        return DaemonProcess(
            self.work / "daemon",
            bot_url=self.proxy.url,
            alsa=alsa,
            config={
                # The default connect_timeout (10 s): through the proxy with the bot down, an attempt fails
                # at once on the closed connection (io/wsopen.py), not at the timeout.
                "bot": {"ready_timeout": 2.0, "max_message_bytes": MAX_MESSAGE_BYTES},
                "audio": {"reopen_min_s": 0.1, "reopen_max_s": 0.5, "volume_percent": self.volume},
                "push_to_talk": {"mode": "always-on"},
                "reconnect": {"initial_delay": 0.2, "max_delay": 1.0},
                "heartbeat": {"interval": 1.0, "timeout": 1.0},
            },
        )

    # --- observing the daemon ------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        snap = await blocking(self.daemon.status)
        return snap or {}

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], Any], timeout: float
    ) -> dict[str, Any] | None:
        """The first status satisfying `predicate` within `timeout`, else None."""
        deadline = trio.current_time() + timeout
        while True:
            snap = await self.status()
            with contextlib.suppress(KeyError, TypeError):
                if snap and predicate(snap):
                    return snap
            if not self.daemon.alive() or trio.current_time() >= deadline:
                return None
            await trio.sleep(0.05)

    async def healthy(
        self, since_session: int | None = None, timeout: float | None = None
    ) -> dict[str, Any] | None:
        """Link ready (on a newer session than `since_session`, if given), no audio fault, and the bot
        hearing mic audio again."""
        timeout = timeout or self.plan.recovery_timeout_s

        def ready(s: dict[str, Any]) -> bool:
            link = s["link"]
            newer = since_session is None or link["session"] > since_session
            faults = s["audio"]["capture_fault"] or s["audio"]["playback_fault"]
            return link["state"] == "ready" and newer and not faults

        start = trio.current_time()
        snap = await self.wait_for(ready, timeout)
        if snap is None:
            return None
        heard = self.bot.audio_in_total()
        left = max(1.0, timeout - (trio.current_time() - start))
        deadline = trio.current_time() + left
        while self.bot.audio_in_total() <= heard:
            if trio.current_time() >= deadline:
                return None
            await trio.sleep(0.05)
        return snap

    # --- the faults -----------------------------------------------------------------------------------

    async def fault_kill(self) -> Outcome:
        before = await self.status()
        downtime = self.rng.uniform(0.0, 1.0)
        t0 = trio.current_time()
        await blocking(self.bot.kill)
        await trio.sleep(downtime)
        self.bot.start()
        await blocking(self.bot.wait_listening)
        snap = await self.healthy(since_session=before["link"]["session"])
        return self._outcome("kill", t0, snap, {"extra_downtime_s": round(downtime, 2)})

    async def fault_blackhole(self) -> Outcome:
        before = await self.status()
        t0 = trio.current_time()
        self.proxy.blackhole()
        await trio.sleep(self.plan.blackhole_s)
        self.proxy.resume()
        lost = await self.wait_for(lambda s: s["link"]["session"] > before["link"]["session"], 5)
        snap = await self.healthy()
        return self._outcome(
            "blackhole",
            t0,
            snap,
            {"seconds": self.plan.blackhole_s, "dead_link_detected": lost is not None},
        )

    async def fault_garbage(self) -> Outcome:
        before = await self.status()
        frames = garbage_frames()
        t0 = trio.current_time()
        reached = await self.proxy.inject(frames, garbage=len(frames))
        want = before["link"]["garbage_frames_total"] + reached * len(frames)
        snap = await self.wait_for(lambda s: s["link"]["garbage_frames_total"] >= want, 5)
        counted = (snap or await self.status())["link"]["garbage_frames_total"] - before["link"][
            "garbage_frames_total"
        ]
        healthy = await self.healthy()
        kept = bool(healthy) and healthy["link"]["session"] == before["link"]["session"]
        return self._outcome(
            "garbage",
            t0,
            healthy if snap is not None else None,
            {"injected": reached * len(frames), "counted": counted, "session_kept": kept},
        )

    async def fault_oversized(self) -> Outcome:
        before = await self.status()
        t0 = trio.current_time()
        reached = await self.proxy.inject([ws_frame(b"\x00" * (MAX_MESSAGE_BYTES + 4096))], oversized=1)
        snap = await self.healthy(since_session=before["link"]["session"] if reached else None)
        error = (snap or {}).get("link", {}).get("last_error")
        return self._outcome("oversized", t0, snap, {"reached": reached, "reason": error})

    async def fault_flood(self) -> Outcome:
        before = await self.status()
        t0 = trio.current_time()
        chunks = await self.proxy.flood(self.plan.flood_s, speed=10.0)
        after = await self.status()
        # Recovered: the backlog is back under the cap and audio plays on, the session kept.
        cap = 3 * 24000  # audio.playout_cap_ms default, in frames
        snap = await self.wait_for(lambda s: s["audio"]["playback"]["queued_frames"] <= cap, 10)
        healthy = await self.healthy() if snap else None
        b, a = before["audio"]["playback"], after["audio"]["playback"]
        return self._outcome(
            "flood",
            t0,
            healthy,
            {
                "chunks_injected": chunks,
                "seconds_of_audio_injected": round(chunks * 0.040, 1),
                "cap_drops_frames": a["dropped_frames_total"] - b["dropped_frames_total"],
                "link_drops_bytes": after["link"]["dropped_incoming_audio_bytes_total"]
                - before["link"]["dropped_incoming_audio_bytes_total"],
                "session_kept": bool(healthy) and healthy["link"]["session"] == before["link"]["session"],
            },
        )

    async def fault_device(self) -> Outcome:
        which = ("spk", "mic")[self.device_turn % 2]
        self.device_turn += 1
        tap = self.spk_tap if which == "spk" else self.mic_tap
        key = "playback" if which == "spk" else "capture"
        before = await self.status()
        t0 = trio.current_time()
        alsa = self.daemon.alsa
        alsa.remove(which)
        alsa.write()
        await blocking(tap.cut)
        seen = await self.wait_for(lambda s: s["audio"][f"{key}_fault"], 10)
        await trio.sleep(self.rng.uniform(0.5, 2.0))
        await blocking(tap.reconnect)  # a pipe's writer waits for a reader: the reader first
        alsa.restore(which)
        alsa.write()
        reopens = before["audio"][key]["reopens_total"]
        back = await self.wait_for(
            lambda s: s["audio"][key]["reopens_total"] > reopens, self.plan.recovery_timeout_s
        )
        snap = await self.healthy() if back else None
        return self._outcome("device", t0, snap, {"device": key, "fault_seen": bool(seen)})

    async def fault_sighup(self) -> Outcome:
        before = await self.status()
        self.volume = 90 if self.volume == 100 else 100
        await blocking(self.daemon.write_config, {"audio": {"volume_percent": self.volume}})
        t0 = trio.current_time()
        since = time.monotonic()
        self.daemon.signal(signal.SIGHUP)
        try:
            _, line = await blocking(self.daemon.wait_log, r"reloaded ", 10, since)
        except TimeoutError:
            line = ""
        reloads = before["daemon"]["reloads_total"]
        snap = await self.wait_for(lambda s: s["daemon"]["reloads_total"] > reloads, 5)
        healthy = await self.healthy() if snap else None
        applied = "audio.volume_percent" in line
        return self._outcome(
            "sighup",
            t0,
            healthy if applied else None,
            {
                "volume_percent": self.volume,
                "applied": applied,
                "session_kept": bool(healthy) and healthy["link"]["session"] == before["link"]["session"],
            },
        )

    def _outcome(self, kind: str, t0: float, snap: dict[str, Any] | None, detail: dict[str, Any]) -> Outcome:
        now = trio.current_time()
        return Outcome(
            kind=kind,
            at_s=round(t0 - self.t_start, 2),
            recovered=snap is not None,
            recovery_s=round(now - t0, 3) if snap is not None else None,
            detail=detail,
        )

    # --- the books ----------------------------------------------------------------------------------------

    async def settle(self) -> dict[str, Any]:
        """Mute, wait until no audio moves and nothing is queued, and return that status."""
        self.daemon.key("m")
        await self.wait_for(lambda s: s["terminal"]["muted"], 5)
        last: tuple[int, ...] | None = None
        stable_since = trio.current_time()
        deadline = trio.current_time() + 30
        while trio.current_time() < deadline:
            s = await self.status()
            key = (
                s["link"]["received_audio_bytes_total"],
                s["link"]["sent_audio_total"],
                s["audio"]["playback"]["frames_in_total"],
                s["audio"]["playback"]["queued_frames"],
                s["link"]["outgoing_audio_queued"],
            )
            if key != last:
                last, stable_since = key, trio.current_time()
            elif trio.current_time() - stable_since >= 1.5 and key[3] == 0 and key[4] == 0:
                return s
            await trio.sleep(0.1)
        return await self.status()

    def books(self, s: dict[str, Any]) -> dict[str, Any]:
        link, play, cap = s["link"], s["audio"]["playback"], s["audio"]["capture"]
        term, daemon = s["terminal"], s["daemon"]
        received = link["received_audio_bytes_total"] // 2
        link_dropped = link["dropped_incoming_audio_bytes_total"] // 2
        stale = daemon["stale_bot_audio_frames_total"]
        into_speaker = play["frames_in_total"]
        speaker_out = (
            play["frames_played_total"]
            + play["dropped_frames_total"]
            + play["flushed_frames_total"]
            + play["queued_frames"]
        )
        offered = (self.proxy.counters.audio_bytes_forwarded + self.proxy.counters.audio_bytes_injected) // 2
        down = {
            "unit": "frames (24 kHz samples)",
            "offered_by_bot_and_injector": offered,
            "received_by_daemon": received,
            "not_received_in_transit_when_sessions_were_cut": offered - received,
            "played": play["frames_played_total"],
            "dropped_counted": {
                "link_channel_full": link_dropped,
                "stale_after_barge_in": stale,
                "playout_cap_or_device_gone": play["dropped_frames_total"],
                "flushed_interruption_or_session_end": play["flushed_frames_total"],
            },
            "queued": play["queued_frames"],
            # received = dropped at the link + stale + into the speaker, and into = played + dropped + ...
            "unaccounted": received - link_dropped - stale - speaker_out,
            "unaccounted_link_to_speaker": received - link_dropped - stale - into_speaker,
        }
        by_terminal = term["mic_chunks_sent_total"] + term["tail_chunks_sent_total"]
        gated = cap.get("gated_total", 0)  # read while no one wanted the mic: never handed over
        in_flight = cap["chunks_total"] - cap["dropped_total"] - gated - daemon["mic_chunks_pumped_total"]
        bot_heard = self.bot.audio_in_total()
        up = {
            "unit": "20 ms chunks (bot side: bytes)",
            "captured": cap["chunks_total"],
            "to_send_by_terminal": by_terminal,
            "not_sent_by_design_muted_or_link_down": daemon["mic_chunks_pumped_total"] - by_terminal + gated,
            "of_which_not_handed_over_by_the_mic": gated,
            "sent": link["sent_audio_total"],
            "dropped_counted": {
                "capture_overruns": cap["overruns_total"],
                "mic_channel_full": cap["dropped_total"],
                "link_down_or_queue_full_or_session_end": link["dropped_outgoing_audio_total"],
            },
            "in_flight_to_the_pump": in_flight,
            "unaccounted": by_terminal
            - link["sent_audio_total"]
            - link["dropped_outgoing_audio_total"]
            - link["outgoing_audio_queued"]
            - link.get("outgoing_audio_in_send", 0),
            "bytes_sent": link["sent_audio_bytes_total"],
            "bytes_heard_by_bot": bot_heard,
            "bytes_unconfirmed_by_the_bot": link["sent_audio_bytes_total"] - bot_heard,
        }
        garbage = {"injected": self.proxy.counters.garbage_injected, "counted": link["garbage_frames_total"]}
        return {
            "bot_audio": down,
            "mic_audio": up,
            "garbage_frames": garbage,
            "balanced": down["unaccounted"] == 0
            and up["unaccounted"] == 0
            and 0 <= in_flight <= MIC_QUEUE
            and garbage["injected"] == garbage["counted"],
        }

    # --- the run ------------------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        plan = self.plan
        schedule = plan.schedule()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.proxy.run)
            self.bot.start()
            await blocking(self.bot.wait_listening)
            self.daemon = self._daemon()
            self.daemon.start()
            try:
                await blocking(self.daemon.wait_ready)
                if await self.healthy(timeout=20) is None:
                    raise RuntimeError(f"the daemon never got going; log:\n{self.daemon.log_tail()}")
                await trio.sleep(2.0)  # warm-up: imports done, buffers at their working size
                rss_start = memory_kib(self.daemon.pid)
                sampler = RssSampler(self.daemon.pid, interval=0.5).start()
                self.t_start = trio.current_time()
                self.say(f"fault campaign: {len(schedule)} faults, seed {plan.seed}")
                for i, kind in enumerate(schedule, 1):
                    await trio.sleep(self.rng.uniform(*plan.gap_s))
                    outcome = await getattr(self, f"fault_{kind}")()
                    self.outcomes.append(outcome)
                    mark = f"{outcome.recovery_s:.2f} s" if outcome.recovered else "NOT RECOVERED"
                    self.say(f"  {i:>3}/{len(schedule)} {kind:<9} {mark:<14} {_short(outcome.detail)}")
                    if not self.daemon.alive():
                        self.say("  the daemon died")
                        break
                duration = trio.current_time() - self.t_start
                final = await self.settle()
                rss_end = memory_kib(self.daemon.pid) if self.daemon.alive() else {}
                samples = sampler.stop()
            finally:
                alive_at_end = self.daemon.alive()
                code = await blocking(self.daemon.stop)
                escaped = self.daemon.escaped_exceptions()
                await blocking(self.bot.stop)
                for tap in (self.mic_tap, self.spk_tap):
                    with contextlib.suppress(OSError):
                        tap.cut()
                nursery.cancel_scope.cancel()
        return self.report(
            final,
            rss_start=rss_start,
            rss_end=rss_end,
            samples=samples,
            duration=duration,
            alive=alive_at_end,
            code=code,
            escaped=escaped,
        )

    def report(
        self,
        final: dict[str, Any],
        *,
        rss_start: dict[str, int],
        rss_end: dict[str, int],
        samples: list[tuple[float, int]],
        duration: float,
        alive: bool,
        code: int | None,
        escaped: list[str],
    ) -> dict[str, Any]:
        by_kind: dict[str, dict[str, Any]] = {}
        for o in self.outcomes:
            k = by_kind.setdefault(o.kind, {"attempts": 0, "recovered": 0, "recovery_s": []})
            k["attempts"] += 1
            k["recovered"] += o.recovered
            if o.recovery_s is not None:
                k["recovery_s"].append(o.recovery_s)
        for k in by_kind.values():
            times = sorted(k.pop("recovery_s"))
            k["recovery_p50_s"] = times[len(times) // 2] if times else None
            k["recovery_max_s"] = times[-1] if times else None
        peak = max((kib for _, kib in samples), default=0)
        errors = [line for _, line in self.daemon.log_lines if " ERROR " in line]
        return {
            "plan": asdict(self.plan),
            "duration_s": round(duration, 1),
            "attempts": len(self.outcomes),
            "recoveries": sum(o.recovered for o in self.outcomes),
            "by_kind": by_kind,
            "rss_mib": {
                "start": round(rss_start.get("VmRSS", 0) / 1024, 2),
                "end": round(rss_end.get("VmRSS", 0) / 1024, 2),
                "growth": round((rss_end.get("VmRSS", 0) - rss_start.get("VmRSS", 0)) / 1024, 2),
                "max_during": round(peak / 1024, 2),
            },
            "exceptions_escaped": len(escaped) + (0 if alive else 1),
            "escaped_lines": escaped[:20],
            "daemon_alive_at_end": alive,
            "exit_code": code,
            "error_log_lines": len(errors),
            "log_lines_total": len(self.daemon.log_lines),
            "books": self.books(final) if final else {},
            "link": {k: v for k, v in final.get("link", {}).items() if k.endswith("_total")},
            # The daemon's own latency recorders over the whole campaign, faults included (no buckets).
            "latency": {
                name: {k: v for k, v in rec.items() if k != "buckets"}
                for name, rec in final.get("latency", {}).items()
            },
            "outcomes": [asdict(o) for o in self.outcomes],
        }


def _short(detail: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in detail.items() if v is not None)


def run_campaign(plan: Plan, workdir: Path, *, say: Callable[[str], None] = print) -> dict[str, Any]:
    return trio.run(Campaign(plan, workdir, say=say).run)


def print_report(r: dict[str, Any]) -> None:
    print()
    print(f"recoveries / attempts: {r['recoveries']} / {r['attempts']} in {r['duration_s']} s")
    print(f"  {'fault':<10} {'attempts':>8} {'recovered':>9} {'p50 s':>7} {'max s':>7}")
    for kind, k in r["by_kind"].items():
        p50 = "-" if k["recovery_p50_s"] is None else f"{k['recovery_p50_s']:.2f}"
        mx = "-" if k["recovery_max_s"] is None else f"{k['recovery_max_s']:.2f}"
        print(f"  {kind:<10} {k['attempts']:>8} {k['recovered']:>9} {p50:>7} {mx:>7}")
    m = r["rss_mib"]
    print(
        f"RSS: {m['start']} MiB after warm-up, {m['end']} MiB at the end (growth {m['growth']:+} MiB), max {m['max_during']} MiB"
    )
    verdict = "ok" if r["exceptions_escaped"] == 0 else "MUST BE 0"
    print(
        f"exceptions escaped: {r['exceptions_escaped']} ({verdict}); exit code {r['exit_code']}; ERROR log lines {r['error_log_lines']}; log lines {r['log_lines_total']}"
    )
    books = r.get("books") or {}
    if books:
        d, u, g = books["bot_audio"], books["mic_audio"], books["garbage_frames"]
        print(
            f"bot audio ({d['unit']}): offered {d['offered_by_bot_and_injector']}, received {d['received_by_daemon']} "
            f"(not received, in transit when sessions were cut: {d['not_received_in_transit_when_sessions_were_cut']})"
        )
        print(
            f"  played {d['played']}, queued {d['queued']}, dropped and counted {d['dropped_counted']}, unaccounted {d['unaccounted']}"
        )
        print(
            f"mic audio ({u['unit']}): captured {u['captured']}, for the bot {u['to_send_by_terminal']}, sent {u['sent']}, not sent by design {u['not_sent_by_design_muted_or_link_down']}"
        )
        print(
            f"  dropped and counted {u['dropped_counted']}, in flight {u['in_flight_to_the_pump']}, unaccounted {u['unaccounted']}; "
            f"bytes sent but not confirmed by the bot (in transit or unreported when it was killed): "
            f"{u['bytes_unconfirmed_by_the_bot']}"
        )
        print(f"garbage frames: injected {g['injected']}, counted {g['counted']}")
        print(f"every drop accounted for: {'yes' if books['balanced'] else 'NO'}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = Plan()
    parser = argparse.ArgumentParser(prog="scripts/fault-campaign", description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=d.kills, help="bot kill -9 / restart cycles")
    parser.add_argument("--blackholes", type=int, default=d.blackholes)
    parser.add_argument("--garbage", type=int, default=d.garbage, help="bursts of garbage frames")
    parser.add_argument("--oversized", type=int, default=d.oversized, help="frames over the size limit")
    parser.add_argument("--floods", type=int, default=d.floods, help="bursts of bot audio at 10x real time")
    parser.add_argument(
        "--device-removals", type=int, default=d.device_removals, help="alternating playback/capture"
    )
    parser.add_argument("--sighups", type=int, default=d.sighups)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--short", action="store_true", help="the CI size: 3 kills and one of each other fault"
    )
    parser.add_argument("--out", default="out/fault-campaign", help="directory for results.json and logs")
    return parser.parse_args(argv)


def short_plan(seed: int = 1) -> Plan:
    return Plan(
        kills=3,
        blackholes=1,
        garbage=1,
        oversized=1,
        floods=1,
        device_removals=1,
        sighups=1,
        seed=seed,
        blackhole_s=2.5,
        flood_s=1.0,
        gap_s=(0.2, 0.8),
        recovery_timeout_s=20.0,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.short:
        plan = short_plan(args.seed)
    else:
        plan = Plan(
            kills=args.kills,
            blackholes=args.blackholes,
            garbage=args.garbage,
            oversized=args.oversized,
            floods=args.floods,
            device_removals=args.device_removals,
            sighups=args.sighups,
            seed=args.seed,
        )
    out = Path(args.out)
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    report = run_campaign(plan, work)
    path = out / "results.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print_report(report)
    print(f"results: {path}; daemon log: {work / 'daemon' / 'daemon.log'}")
    ok = (
        report["exceptions_escaped"] == 0
        and report["recoveries"] == report["attempts"]
        and (report.get("books") or {}).get("balanced", False)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
