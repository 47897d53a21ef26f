"""Which echo canceller for the front-end: candidates run on the same synthetic room (voiceterm_devkit.echo_scene),
each in a process of its own, fed 20 ms chunks as the daemon's capture thread would feed them.

    python -m voiceterm_devkit.frontend_compare            # the candidates installed here
    python -m voiceterm_devkit.frontend_compare --seconds 60 --delay-ms 250 --drift-ppm 300

Per candidate: ERLE over bot-only speech (after 3 s to converge), the user's loss in double talk, CPU per
second of audio (utime + stime of the whole process, all its threads, over the processing only), the RSS
the library adds (after import, construction and processing, minus before the import) and the threads it
starts. Candidates not installed are listed as such. The daemon's choice (pywebrtc-audio) is a dependency
of the `frontend` extra; the others are for this comparison only: `pip install livekit speexdsp-aec` (and
`apt-get install libspeexdsp1`) in a scratch virtualenv.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from voiceterm_devkit import voices
from voiceterm_devkit.echo_scene import EchoPath, build_scene, erle_db, output_lag, speech_loss_db

RATE = 16000
CHUNK = RATE // 50  # 20 ms, the daemon's default period
SETTLE_S = 3.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_status(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


# --- candidates: each returns process(near_chunk, far_chunk) -> out_chunk -------------------------------


def _pywebrtc(**options: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    from pywebrtc_audio import AudioProcessor

    ap = AudioProcessor(sample_rate=RATE, **options)
    return ap.process


def _livekit(**options: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    from livekit import rtc

    apm = rtc.AudioProcessingModule(**options)
    step = RATE // 100

    def process(near: np.ndarray, far: np.ndarray) -> np.ndarray:
        out = np.empty_like(near)
        for i in range(0, len(near), step):
            rev = rtc.AudioFrame(far[i : i + step].tobytes(), RATE, 1, step)
            apm.process_reverse_stream(rev)
            apm.set_stream_delay_ms(0)
            frame = rtc.AudioFrame(near[i : i + step].tobytes(), RATE, 1, step)
            apm.process_stream(frame)
            out[i : i + step] = np.frombuffer(frame.data, dtype=np.int16)
        return out

    return process


def _speex(tail_ms: int = 500) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    from speexdsp_aec import SpeexAec

    aec = SpeexAec(sample_rate=RATE, frame_ms=20, filter_tail_ms=tail_ms)

    def process(near: np.ndarray, far: np.ndarray) -> np.ndarray:
        out = np.frombuffer(aec.process(near, far), dtype=np.int16)
        return np.pad(out, (0, len(near) - len(out)))

    return process


CANDIDATES: dict[str, tuple[str, Callable[[], Callable[[np.ndarray, np.ndarray], np.ndarray]]]] = {
    "pywebrtc-audio 0.2.0 AEC3": ("pywebrtc_audio", lambda: _pywebrtc(echo_cancellation=True)),
    "pywebrtc-audio 0.2.0 AEC3+NS+HPF+AGC(10 dB)": (
        "pywebrtc_audio",
        lambda: _pywebrtc(
            echo_cancellation=True,
            noise_suppression=True,
            high_pass_filter=True,
            auto_gain_control=True,
            agc_max_gain_db=10.0,
        ),
    ),
    "livekit AudioProcessingModule AEC3": ("livekit", lambda: _livekit(echo_cancellation=True)),
    "livekit AudioProcessingModule AEC3+NS+HPF+AGC": (
        "livekit",
        lambda: _livekit(
            echo_cancellation=True, noise_suppression=True, high_pass_filter=True, auto_gain_control=True
        ),
    ),
    "speexdsp-aec 0.1.0 (libspeexdsp MDF, 500 ms tail)": ("speexdsp_aec", _speex),
}


def worker(name: str, scene_path: str, out_path: str) -> dict[str, Any]:
    """Run one candidate over the scene in this process; the output goes to `out_path` (.npy)."""
    data = np.load(scene_path)
    near, far = data["near"], data["far"]
    rss0 = _proc_status("VmRSS")
    threads0 = _threads()
    process = CANDIDATES[name][1]()
    out = np.zeros_like(near)
    t0 = os.times()
    wall0 = time.perf_counter()
    for i in range(0, len(near) - CHUNK + 1, CHUNK):
        out[i : i + CHUNK] = process(near[i : i + CHUNK], far[i : i + CHUNK])
    wall = time.perf_counter() - wall0
    t1 = os.times()
    np.save(out_path, out)
    cpu = (t1.user - t0.user) + (t1.system - t0.system)
    seconds = len(near) / RATE
    return {
        "cpu_ms_per_s": cpu / seconds * 1000,
        "wall_ms_per_s": wall / seconds * 1000,
        "rss_added_mib": (_proc_status("VmRSS") - rss0) / 1024,
        "threads_added": _threads() - threads0,
    }


def installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def run_candidate(name: str, scene_path: Path, work: Path) -> dict[str, Any]:
    out_path = work / f"out-{abs(hash(name))}.npy"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "voiceterm_devkit.frontend_compare",
            "--worker",
            name,
            str(scene_path),
            str(out_path),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["out"] = np.load(out_path)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voiceterm_devkit.frontend_compare", description=__doc__)
    parser.add_argument("--worker", nargs=3, metavar=("NAME", "SCENE", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--delay-ms", type=float, default=80.0)
    parser.add_argument("--gain-db", type=float, default=-20.0)
    parser.add_argument("--drift-ppm", type=float, default=0.0)
    parser.add_argument("--lines", type=int, default=12, help="bot sentences in the scene (~5 s each)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per candidate; CPU is the best of them")
    parser.add_argument("--json", metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return 0

    path = EchoPath(delay_ms=args.delay_ms, gain_db=args.gain_db, drift_ppm=args.drift_ppm)
    bot = [voices.bot_line(i, RATE) for i in range(args.lines)]
    user = [voices.user_line(i, RATE) for i in range(4)]
    scene = build_scene(RATE, bot, user, path=path)
    bot_only, double_talk = scene.masks(SETTLE_S)
    user_only = scene.user_active & ~scene.bot_active
    print(
        f"scene: {scene.n / RATE:.1f} s at {RATE} Hz; echo path {path.delay_ms:g} ms, {path.gain_db:g} dB, "
        f"{path.low_hz:g}-{path.high_hz:g} Hz speaker, soft clip x{path.drive:g}, {path.tail_s:g} s room tail, "
        f"drift {path.drift_ppm:g} ppm; bot-only {bot_only.sum() / RATE:.1f} s, double talk "
        f"{double_talk.sum() / RATE:.1f} s; {args.repeat} runs each (CPU: best run)"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="fe-compare-") as tmp:
        work = Path(tmp)
        scene_path = work / "scene.npz"
        np.savez(scene_path, near=scene.near, far=scene.far)
        for name, (module, _) in CANDIDATES.items():
            if not installed(module):
                rows.append({"name": name, "error": f"{module} not installed"})
                continue
            runs = [run_candidate(name, scene_path, work) for _ in range(max(1, args.repeat))]
            if "error" in runs[0]:
                rows.append({"name": name, "error": runs[0]["error"]})
                continue
            out = runs[0]["out"]
            lag = output_lag(scene.user, out, user_only)
            cpus = [r["cpu_ms_per_s"] for r in runs]
            rows.append(
                {
                    "name": name,
                    "erle_db": erle_db(scene.near, out, bot_only),
                    "double_talk_loss_db": speech_loss_db(scene.user, out, double_talk, RATE, lag),
                    "user_alone_loss_db": speech_loss_db(scene.user, out, user_only, RATE, lag),
                    "cpu_ms_per_s": min(cpus),
                    "cpu_ms_per_s_runs": [round(c, 2) for c in cpus],
                    "rss_added_mib": runs[0]["rss_added_mib"],
                    "threads_added": runs[0]["threads_added"],
                    "output_lag_ms": lag * 1000 / RATE,
                }
            )
    print(
        f"{'candidate':<50} {'ERLE dB':>8} {'DT loss':>8} {'alone':>6} {'CPU ms/s':>9} "
        f"{'(runs)':>20} {'RSS MiB':>8} {'threads':>7}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['name']:<50} {r['error']}")
            continue
        print(
            f"{r['name']:<50} {r['erle_db']:8.1f} {r['double_talk_loss_db']:8.1f} {r['user_alone_loss_db']:6.1f} "
            f"{r['cpu_ms_per_s']:9.2f} {r['cpu_ms_per_s_runs']!s:>20} {r['rss_added_mib']:8.1f} "
            f"{r['threads_added']:7d}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
