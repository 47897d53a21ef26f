"""The room experiment: the real daemon in always-on mode on the simulated room's clocked devices
(voiceterm_devkit.room), talking to a real Pipecat bot with Silero VAD and interruptions on
(voiceterm_devkit.room_bot). The bot speaks sentences on command; the user (the room's mouth) sometimes talks
over it. Everything is judged by the bot's own events and by what the bot received:

- self-interruption: the bot's VAD started (VADUserStartedSpeakingFrame) while it spoke and before any user
  burst could have been heard: it took its own echo for the user; an interrupted reply with that cause;
- barge-in: a user burst over a reply, followed by the bot's turn logic starting a user turn and the reply
  being interrupted;
- ERLE: the room's microphone signal (recorded by a second listener, the room's ear) over what the bot
  received, on the same stretch of time, while only the bot spoke;
- double-talk loss: the user's speech in what the bot received while the bot also spoke, against the same
  sentence received with the bot silent (least-squares gain on the known sentence, so residual echo does
  not count).

`scripts/room` runs 20 replies with the front-end on and 20 with it off and prints the figures; the test
suite (tests/room/) runs a few trials and asserts on causes and states.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voiceterm_devkit import voices
from voiceterm_devkit.bot import BotProcess
from voiceterm_devkit.daemonproc import DaemonProcess
from voiceterm_devkit.room import Room

MIC_RATE = 16000
BOT_RATE = 24000
SETTLE_S = 1.2  # after a reply: the echo tail, the VAD's stop and the turn's timeout
SELF_MARGIN_S = (
    0.15  # a VAD start earlier than this after a burst began cannot be the user's (start_secs 0.2)
)


class RoomBotProcess(BotProcess):
    """voiceterm_devkit.room_bot, told what to say on its stdin, recording what it hears to `record`."""

    stdin = subprocess.PIPE

    def __init__(self, *, record: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.record = record

    def command(self) -> list[str]:
        return [
            self.python,
            "-m",
            "voiceterm_devkit.room_bot",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--in-rate",
            str(self.in_rate),
            "--out-rate",
            str(self.out_rate),
            "--record",
            str(self.record),
        ]


class _RoomAlsa:
    """What DaemonProcess needs of an ALSA configuration: the room wrote its own."""

    def __init__(self, room: Room) -> None:
        self.room = room

    def write(self) -> Path:
        return self.room.alsa_conf

    @property
    def env(self) -> Mapping[str, str]:
        return self.room.alsa_env


@dataclass
class Trial:
    reply: int
    burst_line: int | None = None  # the user's sentence spoken over the reply, if any
    started: float | None = None  # the bot's reply_started (monotonic)
    ended: float | None = None  # reply_ended or reply_interrupted
    interrupted: bool = False
    burst: tuple[float, float] | None = None  # when the mouth spoke (monotonic)
    self_vad: int = 0  # the bot's VAD starts caused by its own echo
    self_interrupted: bool = False
    barged_in: bool | None = None  # a burst trial: did the user's voice interrupt the bot?
    events: list[dict[str, Any]] = field(default_factory=list)


class RoomRig:
    """The room, the bot and the daemon, started and stopped together in `workdir`."""

    def __init__(
        self,
        workdir: str | Path,
        *,
        frontend: Mapping[str, Any] | None = None,
        audio: Mapping[str, Any] | None = None,
        echo_delay_ms: int = 60,
        echo_gain: float = 0.1,
        user_gain_db: float = -6.0,
    ) -> None:
        self.work = Path(workdir).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.room = Room(self.work / "room", echo_delay_ms=echo_delay_ms, echo_gain=echo_gain)
        self.bot = RoomBotProcess(record=self.work / "heard.raw", log_dir=self.work)
        self.user_gain = 10 ** (user_gain_db / 20)
        self.config = {
            "audio": {"capture_device": "mic", "playback_device": "spk", "pacing": "device", **(audio or {})},
            "push_to_talk": {"mode": "always-on"},
            "gpio": {"enabled": False},
            "logging": {"level": "debug"},
            "earcons": {"enabled": True},
            "frontend": dict(frontend or {}),
        }
        self.daemon: DaemonProcess | None = None
        self.trials: list[Trial] = []
        self.alone: list[tuple[int, tuple[float, float]]] = []  # user sentences spoken with the bot silent

    def start(self) -> RoomRig:
        self.room.start()
        try:
            self.bot.start()
            self.bot.wait_listening(30)
            self.daemon = DaemonProcess(
                self.work / "daemon", bot_url=self.bot.url, alsa=_RoomAlsa(self.room), config=self.config
            )
            self.daemon.start()
            self.daemon.wait_ready(30)
            self.daemon.wait_status(lambda s: s["link"]["state"] == "ready", 30, "the link to be ready")
            time.sleep(1.0)  # the connected earcon and its echo die away before the first trial
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
        self.bot.stop()
        self.room.stop()

    def __enter__(self) -> RoomRig:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def status(self) -> dict[str, Any]:
        assert self.daemon is not None
        return self.daemon.status() or {}

    # --- trials ---------------------------------------------------------------------------------------

    def _user(self, line: int) -> np.ndarray:
        x = voices.user_line(line, MIC_RATE).astype(np.float64) * self.user_gain
        return np.clip(x, -32768, 32767).astype("<i2")

    def reply(self, index: int, *, burst_line: int | None = None, burst_after_s: float = 1.2) -> Trial:
        """The bot says sentence `index`; with `burst_line`, the user says that sentence over it."""
        mouth = self.room.mouth
        assert mouth is not None
        trial = Trial(index, burst_line)
        mark = self.bot.mark()
        spoke_before = len(mouth.spoke)
        self.bot.send(f"say {index}")
        started = self.bot.wait_for(
            lambda e: e.get("event") == "reply_started" and e.get("reply") == index, 15, since=mark
        )
        trial.started = started["t"]
        if burst_line is not None:
            while time.monotonic() < trial.started + burst_after_s:
                time.sleep(0.01)
            mouth.say(self._user(burst_line))
        seconds = self.bot.events("say")[-1].get("seconds", 10.0)
        end = self.bot.wait_for(
            lambda e: e.get("event") in ("reply_ended", "reply_interrupted") and e.get("reply") == index,
            seconds + 10,
            since=mark,
        )
        trial.ended = end["t"]
        trial.interrupted = end["event"] == "reply_interrupted"
        self._settle(mark)
        if burst_line is not None and len(mouth.spoke) > spoke_before:
            trial.burst = mouth.spoke[spoke_before]
        trial.events = [
            {k: e[k] for k in ("event", "t", "heard", "bot_speaking") if k in e}
            for e in self.bot.events()[mark:]
            if e.get("event") in ("vad_started", "user_started", "reply_interrupted", "reply_ended")
        ]
        self._judge(trial)
        self.trials.append(trial)
        return trial

    def user_alone(self, line: int) -> tuple[float, float]:
        """The user says sentence `line` with the bot silent (the double-talk figure's baseline)."""
        mouth = self.room.mouth
        assert mouth is not None
        mark = self.bot.mark()
        before = len(mouth.spoke)
        mouth.say(self._user(line))
        deadline = time.monotonic() + 20
        while len(mouth.spoke) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        self._settle(mark)
        spoke = mouth.spoke[before]
        self.alone.append((line, spoke))
        return spoke

    def _settle(self, mark: int) -> None:
        """Wait until the mouth is quiet and any user turn the bot started has ended, then a little more."""
        mouth = self.room.mouth
        assert mouth is not None
        deadline = time.monotonic() + 20
        while mouth.speaking and time.monotonic() < deadline:
            time.sleep(0.02)
        events = self.bot.events()[mark:]
        starts = sum(1 for e in events if e.get("event") == "user_started")
        stops = sum(1 for e in events if e.get("event") == "user_stopped")
        if starts > stops:
            with contextlib.suppress(TimeoutError):
                self.bot.wait_for(lambda e: e.get("event") == "user_stopped", 10, since=mark + len(events))
        time.sleep(SETTLE_S)

    @staticmethod
    def _judge(trial: Trial) -> None:
        burst_start = trial.burst[0] if trial.burst else math.inf
        assert trial.started is not None and trial.ended is not None
        for e in trial.events:
            if e["event"] == "vad_started" and trial.started <= e["t"] < burst_start + SELF_MARGIN_S:
                trial.self_vad += 1
        user_starts = [e["t"] for e in trial.events if e["event"] == "user_started" and e["t"] <= trial.ended]
        if trial.interrupted and user_starts:
            if user_starts[0] < burst_start + SELF_MARGIN_S:
                trial.self_interrupted = True
            elif trial.burst is not None:
                trial.barged_in = True
        if trial.burst is not None and trial.barged_in is None:
            trial.barged_in = False if not trial.self_interrupted else None


# --- figures from the recordings -----------------------------------------------------------------------


def _time_map(bot: BotProcess) -> float:
    """time.monotonic() of the first sample the bot recorded: events carry (t, heard) and happen after the
    audio they count arrived, so the smallest t - heard/rate is the closest estimate."""
    pairs = [(e["t"], e["heard"]) for e in bot.events() if "heard" in e and "t" in e]
    return min(t - h / MIC_RATE for t, h in pairs)


def _segment(x: np.ndarray, start: float, t0: float, seconds: float) -> np.ndarray:
    i = max(0, round((start - t0) * MIC_RATE))
    return x[i : i + max(0, round(seconds * MIC_RATE))].astype(np.float64)


def _burst_gain(rec: np.ndarray, t0: float, burst: np.ndarray, at: float, seconds: float) -> float | None:
    """The gain (dB) at which the first `seconds` of `burst` appear in `rec` around time `at`: the lag is
    found by cross-correlation (±0.3 s), then per 20 ms frame the least-squares gain, power-weighted."""
    search = round(0.3 * MIC_RATE)
    n = min(len(burst), round(seconds * MIC_RATE))
    clean = burst[:n].astype(np.float64)
    i0 = round((at - t0) * MIC_RATE) - search
    lo = max(0, i0)
    seg = rec[lo : lo + n + 2 * search].astype(np.float64)
    if len(seg) < n + 1:
        return None
    scores = np.correlate(seg, clean, mode="valid")
    k = int(np.argmax(np.abs(scores)))
    y = seg[k : k + n]
    f = MIC_RATE // 50
    num = den = 0.0
    for s in range(0, n - f + 1, f):
        c, o = clean[s : s + f], y[s : s + f]
        cc = float(np.dot(c, c))
        if cc <= 1.0:
            continue
        g = float(np.dot(o, c)) / cc
        num += cc * g * g
        den += cc
    if den == 0 or num <= 0:
        return None
    return 10 * math.log10(num / den)


def figures(rig: RoomRig) -> dict[str, Any]:
    """Self-interruptions, barge-ins, ERLE and double-talk loss from a finished run."""
    trials = rig.trials
    heard = np.frombuffer(rig.bot.record.read_bytes(), dtype="<i2")
    ear = rig.room.ear.audio() if rig.room.ear else np.zeros(0, np.int16)
    ear_t0 = rig.room.ear.started if rig.room.ear and rig.room.ear.started else 0.0
    heard_t0 = _time_map(rig.bot)
    mic_power = out_power = 0.0
    per_reply = []
    for t in trials:
        if t.started is None or t.ended is None or t.self_vad or t.self_interrupted:
            continue
        # Bot-only speech: from 0.6 s into the reply (the echo has arrived) to the burst or the reply's end.
        start = t.started + 0.6
        stop = min(t.ended, t.burst[0] if t.burst else math.inf)
        if stop - start < 0.5:
            continue
        a = _segment(ear, start, ear_t0, stop - start)
        b = _segment(heard, start, heard_t0, stop - start)
        m = min(len(a), len(b))
        if m == 0:
            continue
        pa, pb = float(np.dot(a[:m], a[:m])), float(np.dot(b[:m], b[:m]))
        mic_power += pa
        out_power += pb
        per_reply.append(10 * math.log10((pa + 1e-9) / (pb + 1e-9)))
    dt_gains, alone_gains = [], []
    for t in trials:
        if t.burst is None or t.burst_line is None or not t.barged_in or t.ended is None:
            continue
        # Double talk lasts from the burst's start until the interruption has silenced the speaker.
        seconds = min(t.burst[1], t.ended + 0.1) - t.burst[0]
        if seconds < 0.2:
            continue
        burst = rig._user(t.burst_line)
        g = _burst_gain(heard, heard_t0, burst, t.burst[0], seconds)
        ga = _alone_gain(rig, heard, heard_t0, t.burst_line, seconds)
        if g is not None and ga is not None:
            dt_gains.append(g)
            alone_gains.append(ga)
    bursts = [t for t in trials if t.burst is not None]
    return {
        "replies": len(trials),
        "self_vad_total": sum(t.self_vad for t in trials),
        "self_interruptions": sum(1 for t in trials if t.self_interrupted),
        "replies_with_self_vad": sum(1 for t in trials if t.self_vad),
        "barge_ins": sum(1 for t in bursts if t.barged_in),
        "bursts": len(bursts),
        "erle_db": 10 * math.log10((mic_power + 1e-9) / (out_power + 1e-9)) if per_reply else None,
        "erle_db_per_reply": [round(v, 1) for v in per_reply],
        "double_talk_loss_db": (
            float(np.mean(np.array(alone_gains) - np.array(dt_gains))) if dt_gains else None
        ),
        "double_talk_loss_db_each": [round(a - d, 1) for a, d in zip(alone_gains, dt_gains, strict=True)],
        "user_gain_db_double_talk": float(np.mean(dt_gains)) if dt_gains else None,
        "user_gain_db_alone": float(np.mean(alone_gains)) if alone_gains else None,
    }


def _alone_gain(rig: RoomRig, heard: np.ndarray, t0: float, line: int, seconds: float) -> float | None:
    for spoken, (start, _end) in rig.alone:
        if spoken == line:
            return _burst_gain(heard, t0, rig._user(line), start, seconds)
    return None


# --- the script ------------------------------------------------------------------------------------------


def run_phase(
    workdir: Path, *, frontend: Mapping[str, Any], replies: int, barge_every: int, audio: Mapping[str, Any]
) -> dict[str, Any]:
    with RoomRig(workdir, frontend=frontend, audio=audio) as rig:
        for line in range(len(voices.USER_LINES)):
            rig.user_alone(line)
        for i in range(replies):
            burst = (
                (i // barge_every) % len(voices.USER_LINES) if barge_every and i % barge_every == 1 else None
            )
            t = rig.reply(i, burst_line=burst)
            what = (
                "self-interrupted"
                if t.self_interrupted
                else "barged in"
                if t.barged_in
                else "NOT barged in"
                if t.burst
                else "interrupted"
                if t.interrupted
                else "played out"
            )
            print(
                f"  reply {i + 1:2d}: {what}{f' (self VAD x{t.self_vad})' if t.self_vad else ''}", flush=True
            )
        result = figures(rig)
        if rig.room.ear is not None:  # for a closer look: what the room's microphone heard
            (workdir / "ear.raw").write_bytes(rig.room.ear.audio().tobytes())
            result["ear_started"] = rig.room.ear.started
            result["heard_started"] = _time_map(rig.bot)
        snap = rig.status()
        result["daemon_frontend"] = snap.get("frontend", {})
        result["daemon_capture"] = snap.get("audio", {}).get("capture", {})
        result["trials"] = [asdict(t) for t in rig.trials]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/room", description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=20)
    parser.add_argument(
        "--barge-every", type=int, default=2, help="every Nth reply gets a user burst (0 = none)"
    )
    parser.add_argument("--buffer-periods", type=int, default=4, help="audio.buffer_periods of the daemon")
    parser.add_argument("--phases", default="on,off", help="front-end on, off, or both")
    parser.add_argument("--out", default="out/room")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"settings": vars(args)}
    for phase in args.phases.split(","):
        frontend = {"mode": "on"} if phase == "on" else {"mode": "off"}
        print(f"- front-end {phase}: {args.replies} replies", flush=True)
        results[phase] = run_phase(
            out / f"work-{phase}",
            frontend=frontend,
            replies=args.replies,
            barge_every=args.barge_every,
            audio={"buffer_periods": args.buffer_periods},
        )
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print_report(results)
    return 0


def print_report(results: dict[str, Any]) -> None:
    print()
    print(f"{'':<46} {'front-end on':>14} {'front-end off':>14}")
    rows = [
        ("replies", "replies", "{:d}"),
        ("self-interruptions (echo taken for the user)", "self_interruptions", "{:d}"),
        ("replies in which the VAD fired on the echo", "replies_with_self_vad", "{:d}"),
        ("VAD starts on the echo", "self_vad_total", "{:d}"),
        ("user bursts over the bot", "bursts", "{:d}"),
        ("... that interrupted it", "barge_ins", "{:d}"),
        ("ERLE, bot-only speech, as the bot heard it (dB)", "erle_db", "{:.1f}"),
        ("user speech lost in double talk (dB)", "double_talk_loss_db", "{:.1f}"),
    ]
    for label, key, fmt in rows:
        cells = []
        for phase in ("on", "off"):
            value = results.get(phase, {}).get(key)
            cells.append("-" if value is None else fmt.format(value))
        print(f"{label:<46} {cells[0]:>14} {cells[1]:>14}")
    fe = results.get("on", {}).get("daemon_frontend", {})
    if fe:
        print(
            f"daemon's own figures (on): ERLE {fe.get('erle_db')} dB, echo delay {fe.get('echo_delay_ms')} ms, "
            f"diverged {fe.get('diverged_total')}, late reference frames {fe.get('reference_late_frames_total')}, "
            f"front-end CPU {fe.get('cpu_seconds_total')} s"
        )


if __name__ == "__main__":
    sys.exit(main())
