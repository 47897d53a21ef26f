"""How late a push-to-talk turn ends on a stock Pipecat bot, with and without voiceterm's helper
(`voiceterm.pipecat_ptt`): the time from the button's release to the bot's UserStoppedSpeakingFrame.

    python -m voiceterm_devkit.ptt_turns [--turns 20] [--hold 1.5]

For each variant it starts `voiceterm_devkit.turn_bot` (Silero VAD and pipecat's default turn stack; with
``--helper`` the push-to-talk helper in front of it), runs the real daemon (file-backed ALSA paced by the wall
clock; the mic is speech-like sound, so the user talks until the release), and presses the on-screen talk
button over the control socket (the same wire traffic as the GPIO button) for `--hold` seconds, `--turns`
times. The release is stamped just before the stop goes to the daemon; the bot stamps the first push of the
frame; both with CLOCK_MONOTONIC, which is one clock for every process on Linux. Prints every turn and p50 /
max per variant. Figures from a shared machine are noisy: compare variants from the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import trio

from voiceterm.config_load import config_from_dict
from voiceterm_devkit.alsa_files import AlsaFileConfig, voiced_speech, write_raw
from voiceterm_devkit.bot import BotProcess, event_is
from voiceterm_devkit.eventsock import Client, running

TURN_TIMEOUT_S = 10.0  # the stock stack ends a stuck turn after user_turn_stop_timeout (5 s) anyway
GAP_S = 1.0  # between turns: the bot's VAD hears the tail of silence and settles
VOICE_S = 20.0  # the voice generated once and repeated


class TurnBot(BotProcess):
    """`voiceterm_devkit.turn_bot` under the echo bot's launcher (same events, ports and restarts)."""

    def __init__(self, *, helper: bool, **kwargs) -> None:
        super().__init__(**kwargs)
        self.helper = helper

    def command(self) -> list[str]:
        flags = ["--helper"] if self.helper else []
        return [
            self.python,
            "-m",
            "voiceterm_devkit.turn_bot",
            "--host",
            self.host,
            "--port",
            str(self.port),
            *flags,
        ]


async def measure(helper: bool, turns: int, hold: float, work: Path) -> tuple[list[float], int]:
    """Release-to-UserStoppedSpeakingFrame of each turn, in seconds (inf for a turn that never ended), and
    how often the bot ended the user's turn while the button was still held."""
    name = "helper" if helper else "stock "
    work.mkdir(parents=True, exist_ok=True)
    alsa = AlsaFileConfig(work / "alsa")
    seconds = turns * (hold + TURN_TIMEOUT_S + GAP_S) + 30
    voice = voiced_speech(VOICE_S, 16000)  # the user talks all through a hold (see voiced_speech)
    write_raw(work / "mic.raw", np.tile(voice, int(seconds / VOICE_S) + 1))
    alsa.add_capture("mic", work / "mic.raw").add_playback("spk", work / "spk.raw")
    os.environ["ALSA_CONFIG_PATH"] = str(alsa.write())
    out: list[float] = []
    cuts = 0
    with TurnBot(helper=helper, log_dir=work) as bot:
        cfg = config_from_dict(
            {
                "bot": {"url": bot.url, "connect_timeout": 3.0, "ready_timeout": 3.0},
                "audio": {"capture_device": "mic", "playback_device": "spk", "pacing": "wall-clock"},
                "earcons": {"enabled": False},
                "push_to_talk": {"mode": "hold"},
                "gpio": {"enabled": False},
                "status": {"socket": str(work / "status.sock")},
                "events": {"socket": str(work / "events.sock")},
            }
        )
        async with running(cfg), Client.open(cfg.events.socket) as client:
            for n in range(turns):
                await trio.sleep(GAP_S)
                pressed = bot.mark()
                assert (await client.request("talk", state="start"))["ok"]
                await trio.sleep(hold)
                mark = bot.mark()
                released = time.monotonic()
                assert (await client.request("talk", state="stop"))["ok"]
                try:
                    stopped = await bot.wait_for_async(event_is("user_stopped"), TURN_TIMEOUT_S, since=mark)
                    out.append(stopped["t"] - released)
                except TimeoutError:
                    out.append(float("inf"))
                during = [e["event"] for e in bot.events()[pressed:mark] if e["event"].startswith("user_")]
                early = during.count("user_stopped")
                cuts += early
                note = f"  (and {early}x while the button was held)" if early else ""
                if out[-1] == float("inf"):
                    open_at_release = bool(during) and during[-1] == "user_started"
                    after = [e["event"] for e in bot.events()[mark:] if e["event"] in ("vad", "transcript")]
                    why = "its turn stayed open" if open_at_release else "no turn was open at the release"
                    note += f"  ({why}; after the release: {', '.join(after) or 'nothing'})"
                print(f"  {name} turn {n + 1:2d}: {out[-1] * 1000:8.1f} ms{note}", flush=True)
    return out, cuts


def summary(name: str, values: list[float]) -> str:
    finite = [v for v in values if v != float("inf")]
    never = len(values) - len(finite)
    p50 = statistics.median(values) * 1000
    top = max(values) * 1000
    extra = f", {never} never ended within {TURN_TIMEOUT_S:g} s" if never else ""
    return f"{name:28s} p50 {p50:7.1f} ms   max {top:7.1f} ms   (n={len(values)}{extra})"


async def main_async(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="voiceterm-ptt-turns-"))
    results = {}
    for helper in (False, True):
        print(f"{'with' if helper else 'without'} the helper:", flush=True)
        results[helper] = await measure(
            helper, args.turns, args.hold, work / ("helper" if helper else "stock")
        )
    print("\nrelease -> bot's UserStoppedSpeakingFrame")
    for helper, label in ((False, "stock bot"), (True, "stock bot + voiceterm helper")):
        values, cuts = results[helper]
        print(summary(label, values) + f"; turns it ended while the button was held: {cuts}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voiceterm_devkit.ptt_turns", description=__doc__)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--hold", type=float, default=1.5, help="seconds the button is held")
    args = parser.parse_args(argv)
    trio.run(main_async, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
