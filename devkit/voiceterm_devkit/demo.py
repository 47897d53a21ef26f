"""The demo (`scripts/demo`, `python -m voiceterm_devkit.demo`): the real daemon talking to a local keyless Pipecat bot.

It speaks scripted utterances into a file-backed ALSA microphone, presses the push-to-talk key through the
daemon's `--keyboard` stdin at the right moments, lets the bot (`voiceterm_devkit.demo_bot`) answer with what it
heard pitched up, and reports what happened: the handshake, each turn, the replies (cut out of the file-backed
speaker into `reply.wav`) and latency figures. Everything it writes lands in one directory (default `out/demo`).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voiceterm_devkit.alsa_files import AlsaFileConfig
from voiceterm_devkit.bot import BotError, BotProcess, event_is
from voiceterm_devkit.daemonproc import DaemonProcess

MIC_RATE = 16000  # the bot's input rate (pipecat's default); the daemon sends mic audio at this rate
SPEAKER_RATE = 24000  # the bot's output rate and the daemon's player rate: no resampling on the way out
CAPTURE_PCM = "demo_mic"
PLAYBACK_PCM = "demo_speaker"
SENTENCES = (
    "Hello bot, this is the voice terminal demo.",
    "Can you say that back to me, a little higher?",
)
LEAD_IN_S = 2.5  # mic audio before the first press: covers the daemon's start-up and its connect to the bot
PRESS_LEAD_S = 0.25  # press this long before the speech starts (as a person does)
RELEASE_LAG_S = 0.2  # release this long after it ends
REPLY_SLACK_S = 1.5  # after a reply's expected end, before the next press: latency plus a quiet moment
TAIL_S = 2.0  # mic audio after the last reply is expected to end: room to quit cleanly
POLL_S = 0.005  # how often the demo looks at the daemon's mic position and the speaker file
# A 10 ms block quieter than this is silence when cutting the replies out of the speaker file.
SILENCE_DBFS = -50.0
MERGE_GAP_S = 0.4  # sound separated by less silence than this belongs to the same reply


class DemoError(RuntimeError):
    """Something kept the demo from completing; the first line of the message says what."""


def repo_root() -> Path | None:
    """The source checkout this package runs from (an editable install), if any."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "daemon").is_dir() else None


# --- the user's voice -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Utterance:
    text: str  # what is said (or a description of the synthetic signal)
    pcm: np.ndarray = field(repr=False)  # int16 mono at MIC_RATE
    source: str  # "espeak-ng" or "synthetic"

    @property
    def seconds(self) -> float:
        return len(self.pcm) / MIC_RATE


def to_int16(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2")


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """A mono (or first-channel) 16-bit WAV as float32 in [-1, 1], and its rate."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise DemoError(f"{path}: expected 16-bit samples, got {8 * w.getsampwidth()}-bit")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        channels, rate = w.getnchannels(), w.getframerate()
    return data[::channels].astype(np.float32) / 32768.0, rate


def write_wav(path: str | os.PathLike[str], pcm: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
    return Path(path)


def speak(text: str, workdir: Path) -> np.ndarray | None:
    """`text` spoken by espeak-ng, trimmed of silence, as int16 at MIC_RATE; None when espeak-ng is missing."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    import soxr

    wav = workdir / "espeak.wav"
    try:
        subprocess.run([exe, "-s", "150", "-w", str(wav), text], check=True, capture_output=True, timeout=20)
        audio, rate = read_wav(wav)
    except (OSError, subprocess.SubprocessError, wave.Error, EOFError):
        return None
    finally:
        with contextlib.suppress(OSError):
            wav.unlink()
    audio = soxr.resample(audio, rate, MIC_RATE).astype(np.float32)
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    if loud.size == 0:
        return None
    audio = audio[loud[0] : loud[-1] + 1]
    # espeak-ng speaks at about -6 dBFS peak; a little lower leaves room and sounds like a real mic.
    return to_int16(audio / max(1e-6, float(np.max(np.abs(audio)))) * 0.6)


# (F1, F2, F3) of the vowels in "beet", "bet", "bat" and "father" (Hz): formants make a harmonic tone read as a
# voice rather than a buzz. Rounded back vowels ("boot") and higher pitches are what Silero trusts least.
_VOWELS = ((270, 2290, 3010), (530, 1840, 2480), (660, 1720, 2410), (730, 1090, 2440))


def synthetic_voice(seconds: float, *, seed: int = 1, f0: float = 90.0) -> np.ndarray:
    """A voice-like signal for when no speech synthesiser is installed, as int16 at MIC_RATE.

    Syllables of 0.14-0.30 s, each a vowel (a harmonic series falling 6 dB per octave at a gliding, low male
    pitch, shaped by three formants) opened by a short noise burst like a consonant. Silero VAD calls most of
    it speech (`vad_speech_fraction`: 70-80 %), where it rejects a plain tone or noise outright.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * MIC_RATE)
    out = np.zeros(n)
    pos = 0
    while pos < n:
        length = min(int(rng.uniform(0.14, 0.30) * MIC_RATE), n - pos)
        f1, f2, f3 = _VOWELS[rng.integers(len(_VOWELS))]
        p0 = f0 * (1 + rng.uniform(-0.15, 0.2))
        pitch = np.linspace(p0, p0 * rng.uniform(0.85, 1.1), length) * (
            1 + 0.004 * rng.standard_normal(length)
        )
        phase = 2 * np.pi * np.cumsum(pitch) / MIC_RATE
        syllable = np.zeros(length)
        for k in range(1, int(MIC_RATE / 2 / p0)):
            h = k * pitch
            gain = sum(
                a / (1 + ((h - fc) / bw) ** 2)
                for fc, bw, a in ((f1, 80, 1.0), (f2, 100, 0.6), (f3, 150, 0.3))
            )
            syllable += gain / k * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
        syllable /= np.max(np.abs(syllable)) + 1e-9
        syllable *= np.sin(np.pi * np.arange(length) / length) ** 0.5
        burst = min(length, int(rng.uniform(0.03, 0.06) * MIC_RATE))
        syllable[:burst] = syllable[:burst] * np.linspace(0, 1, burst) + 0.15 * rng.standard_normal(
            burst
        ) * np.hanning(burst)
        out[pos : pos + length] = syllable
        pos += length + int(rng.uniform(0.0, 0.05) * MIC_RATE)
    return to_int16(out / (np.max(np.abs(out)) + 1e-9) * 0.5)


def vad_speech_fraction(pcm: np.ndarray) -> float | None:
    """The share of `pcm` (int16 at MIC_RATE) that pipecat's Silero VAD, run as the bot runs it, calls speech.

    Fed in 20 ms chunks after half a second of silence (as the daemon streams it), with the bot's VAD
    parameters. None when pipecat is not installed.
    """
    try:
        from loguru import logger

        # Quiet, including the banner pipecat logs when it is first imported.
        logger.disable("pipecat")
        from pipecat.audio.vad.silero import SileroVADAnalyzer
        from pipecat.audio.vad.vad_analyzer import VADState
    except ImportError:
        return None
    try:
        vad = SileroVADAnalyzer(sample_rate=MIC_RATE)
        vad.set_sample_rate(MIC_RATE)
        stream = np.concatenate([np.zeros(MIC_RATE // 2, dtype="<i2"), pcm]).tobytes()
        chunk = MIC_RATE // 50 * 2
        lead_chunks = (MIC_RATE // 2 * 2) // chunk
        speaking = 0
        for i, start in enumerate(range(0, len(stream) - chunk + 1, chunk)):
            # The analyzer's synchronous core; analyze_audio() only moves it to a thread pool.
            state = vad._run_analyzer(stream[start : start + chunk])
            if i >= lead_chunks and state == VADState.SPEAKING:
                speaking += 1
        total = max(1, (len(stream) - chunk) // chunk + 1 - lead_chunks)
        return speaking / total
    finally:
        logger.enable("pipecat")


def make_utterances(count: int, voice: str, workdir: Path) -> list[Utterance]:
    """`count` utterances: espeak-ng sentences when `voice` allows and it is installed, else synthetic ones."""
    utterances = []
    for i in range(count):
        text = SENTENCES[i % len(SENTENCES)]
        pcm = speak(text, workdir) if voice in ("auto", "espeak") else None
        if pcm is not None:
            utterances.append(Utterance(text, pcm, "espeak-ng"))
            continue
        if voice == "espeak":
            raise DemoError("espeak-ng is not installed (or failed): install it, or use --voice synthetic")
        seconds = 1.8 + 0.3 * i
        utterances.append(
            Utterance(
                f"(synthetic voice, {seconds:.1f} s)", synthetic_voice(seconds, seed=i + 1), "synthetic"
            )
        )
    return utterances


# --- the script -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cue:
    """One scripted turn, in seconds from the start of the capture file."""

    press_s: float
    speech_start_s: float
    speech_end_s: float
    release_s: float


def expected_reply_s(held_s: float) -> float:
    """How long the demo bot's reply to a turn held `held_s` seconds lasts (beep + audio pitched up 1.25x)."""
    return 0.2 + held_s / 1.25


def lay_out(utterances: Sequence[Utterance]) -> tuple[np.ndarray, list[Cue]]:
    """The microphone's whole input (silence, utterance, silence ...) and when to press and release.

    The file is exactly as long as the script: ALSA file capture repeats stale data past its end.
    """
    parts: list[np.ndarray] = []
    cues: list[Cue] = []
    cursor = LEAD_IN_S
    parts.append(np.zeros(int(LEAD_IN_S * MIC_RATE), dtype="<i2"))
    for utterance in utterances:
        start = cursor
        end = start + utterance.seconds
        cue = Cue(start - PRESS_LEAD_S, start, end, end + RELEASE_LAG_S)
        cues.append(cue)
        parts.append(utterance.pcm)
        gap = RELEASE_LAG_S + expected_reply_s(cue.release_s - cue.press_s) + REPLY_SLACK_S + PRESS_LEAD_S
        parts.append(np.zeros(int(gap * MIC_RATE), dtype="<i2"))
        cursor = end + len(parts[-1]) / MIC_RATE
    # The last gap already covers the last reply; add the room to quit.
    parts.append(np.zeros(int(TAIL_S * MIC_RATE), dtype="<i2"))
    return np.concatenate(parts), cues


# --- watching the daemon's devices ----------------------------------------------------------------------------


def open_file_position(pid: int, path: Path) -> int | None:
    """Where process `pid` is in `path` (the offset of its open file description), from /proc; None if not open.

    alsa-lib's file plugin reads the capture `infile` sequentially as the daemon reads the mic, so this is
    exactly how much of the scripted input the daemon has consumed.
    """
    target = str(path.resolve())
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return None
    for fd in fds:
        try:
            if os.readlink(fd_dir / fd) != target:
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        for line in info.splitlines():
            if line.startswith("pos:"):
                return int(line.split()[1])
    return None


class SpeakerWatch:
    """Polls the playback file and records when each byte of it first appeared (time.monotonic()).

    With `arrival(offset)` the report can tell when the first sample of a reply reached the speaker, to within
    the poll interval plus one ALSA period (the file plugin writes a period at a time).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sizes: list[int] = []
        self._times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="speaker-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._poll()

    def _poll(self) -> None:
        try:
            size = self.path.stat().st_size
        except OSError:
            return
        if not self._sizes or size > self._sizes[-1]:
            self._sizes.append(size)
            self._times.append(time.monotonic())

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            self._poll()

    def arrival(self, byte_offset: int) -> float | None:
        """When the file first held the byte at `byte_offset`."""
        i = bisect.bisect_right(self._sizes, byte_offset)
        return self._times[i] if i < len(self._times) else None


def sound_segments(pcm: np.ndarray, rate: int) -> list[tuple[int, int]]:
    """(first, end) sample indexes of the stretches of sound in `pcm`, cut by energy in 10 ms blocks."""
    block = rate // 100
    n = len(pcm) // block
    if n == 0:
        return []
    blocks = pcm[: n * block].astype(np.float64).reshape(n, block)
    rms = np.sqrt(np.mean(blocks**2, axis=1)) / 32768.0
    loud = rms > 10 ** (SILENCE_DBFS / 20)
    segments: list[list[int]] = []
    merge = int(MERGE_GAP_S * 100)
    for i in np.flatnonzero(loud):
        if segments and i - segments[-1][1] <= merge:
            segments[-1][1] = i + 1
        else:
            segments.append([int(i), int(i) + 1])
    # Refine the onset to the first loud sample, so latency is measured to the sample, not the block.
    result = []
    for first, end in segments:
        chunk = np.abs(pcm[first * block : (first + 1) * block].astype(np.int32))
        above = np.flatnonzero(chunk > 32768 * 10 ** (SILENCE_DBFS / 20))
        start = first * block + (int(above[0]) if above.size else 0)
        result.append((start, end * block))
    return result


def reply_fidelity(heard: np.ndarray, mic: np.ndarray, pitch: float = 1.25, skip_s: float = 0.2) -> float:
    """How closely the reply heard on the speaker matches the mic audio pitched up as the demo bot does.

    `heard` is one reply cut out of the speaker file (int16 at SPEAKER_RATE, starting with the bot's 0.2 s
    beep, skipped with `skip_s`); `mic` the microphone input around the turn (int16 at MIC_RATE, a little wider
    than the turn). Returns the best normalised cross-correlation over all alignments: about 1.0 when the
    audio went mic → daemon → bot → daemon → speaker unaltered (but for the pitch), far lower otherwise.
    """
    import soxr

    a = heard[int(skip_s * SPEAKER_RATE) :].astype(np.float64)
    b = soxr.resample(mic.astype(np.float64) / 32768.0, MIC_RATE, SPEAKER_RATE / pitch) * 32768.0
    if len(a) == 0 or len(b) < len(a):
        return 0.0
    size = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    # Correlation at every lag by FFT; each window of b normalised by its own energy (running sum).
    dots = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)[: len(b) - len(a) + 1]
    energy = np.concatenate([[0.0], np.cumsum(b * b)])
    windows = energy[len(a) :] - energy[: len(b) - len(a) + 1]
    norm = np.sqrt(np.maximum(windows, 1e-9) * float(np.dot(a, a)))
    return float(np.max(dots / norm))


# --- the daemon -----------------------------------------------------------------------------------------------


def daemon_sections() -> dict[str, dict[str, Any]]:
    """The daemon's configuration for the demo (over DaemonProcess's own: the bot's url, the sockets)."""
    return {
        "bot": {"connect_timeout": 5.0, "ready_timeout": 3.0},
        # File PCMs are unclocked: the daemon paces its reads and writes by the wall clock.
        "audio": {
            "capture_device": CAPTURE_PCM,
            "playback_device": PLAYBACK_PCM,
            "recorder_sample_rate": MIC_RATE,
            "player_sample_rate": SPEAKER_RATE,
            "pacing": "wall-clock",
        },
        # Tones would mix into the speaker file the demo cuts the replies out of.
        "earcons": {"enabled": False},
        # File devices have no echo path, and the demo checks that the bot heard the mic sample for sample.
        "frontend": {"mode": "off"},
        # A terminal has no key-up events: space toggles talking.
        "push_to_talk": {"mode": "toggle"},
        "gpio": {"enabled": False},
        "reconnect": {"initial_delay": 0.2},
        "logging": {"level": "info"},
    }


# --- the bot ----------------------------------------------------------------------------------------------------


class DemoBotProcess(BotProcess):
    """`voiceterm_devkit.bot.BotProcess` running the demo bot instead of the echo bot."""

    def command(self) -> list[str]:
        return [
            self.python,
            "-m",
            "voiceterm_devkit.demo_bot",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--in-rate",
            str(self.in_rate),
            "--out-rate",
            str(self.out_rate),
            *self.extra_args,
        ]


# --- running it -----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class TurnResult:
    number: int
    press_t: float
    release_t: float
    bot_turn: dict[str, Any] | None = None  # the bot's turn_ended event
    bot_reply: dict[str, Any] | None = None  # reply_queued
    reply_started_t: float | None = None  # the bot's first reply frame went out
    reply_ended_t: float | None = None
    heard_first_t: float | None = None  # first reply sample reached the speaker file
    heard_s: float | None = None  # length of the reply cut out of the speaker file
    heard_offset_s: float | None = None  # where it starts in the speaker file
    fidelity: float | None = None  # reply_fidelity() of the reply against the mic input of the turn


@dataclass(slots=True)
class Run:
    out: Path
    t0: float = 0.0
    voice: str = ""
    utterances: list[Utterance] = field(default_factory=list)
    vad_fractions: list[float | None] = field(default_factory=list)
    cues: list[Cue] = field(default_factory=list)
    capture: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="<i2"), repr=False)
    bot_url: str = ""
    bot_startup_s: float | None = None
    handshake: dict[str, Any] = field(default_factory=dict)
    turns: list[TurnResult] = field(default_factory=list)
    exit_status: int | None = None
    exit_s: float | None = None
    status_doc: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    timeline: list[tuple[float, str, str]] = field(default_factory=list)  # (t, who, what)
    files: dict[str, str] = field(default_factory=dict)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL_S)


def is_ready_line(text: str) -> bool:
    """The daemon's log line saying the link is up and the bot answered the handshake."""
    lowered = text.lower()
    return "bot-ready" in lowered or "bot_ready" in lowered or ("link" in lowered and "ready" in lowered)


def run_demo(
    out: Path, *, turns: int = 2, voice: str = "auto", progress: Callable[[str], None] = print
) -> Run:
    """Run the whole demo and return what happened (`format_report` turns it into text)."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("playback.raw", "reply.wav", "daemon.log", "bot-events.jsonl"):
        with contextlib.suppress(OSError):
            (out / stale).unlink()
    for old in [*out.glob("reply-*.wav"), *out.glob("bot-*.stderr")]:
        old.unlink()
    run = Run(out=out, voice=voice)
    run.t0 = time.monotonic()

    progress("preparing the user's voice ...")
    run.utterances = make_utterances(turns, voice, out)
    run.vad_fractions = [vad_speech_fraction(u.pcm) for u in run.utterances]
    run.capture, run.cues = lay_out(run.utterances)
    capture_path = out / "capture.raw"
    capture_path.write_bytes(run.capture.tobytes())
    write_wav(out / "capture.wav", run.capture, MIC_RATE)
    playback_path = out / "playback.raw"
    playback_path.write_bytes(b"")

    alsa = AlsaFileConfig(out)
    alsa.add_capture(CAPTURE_PCM, capture_path).add_playback(PLAYBACK_PCM, playback_path)
    alsa.write()

    socket_dir = (
        out if len(str(out / "status.sock")) < 100 else Path(tempfile.mkdtemp(prefix="voiceterm-demo-"))
    )
    status_socket = socket_dir / "status.sock"

    progress("starting the Pipecat bot ...")
    bot = DemoBotProcess(in_rate=MIC_RATE, out_rate=SPEAKER_RATE, log_dir=out)
    daemon: DaemonProcess | None = None
    watch = SpeakerWatch(playback_path)
    try:
        bot.start()
        try:
            run.bot_startup_s = bot.wait_listening(timeout=45.0)
        except BotError as e:
            raise DemoError(f"the demo bot did not start: {e}") from None
        run.bot_url = bot.url
        progress("starting the daemon (voiceterm run --keyboard) ...")
        daemon = DaemonProcess(
            out, bot_url=bot.url, alsa=alsa, config=daemon_sections(), socket_dir=socket_dir
        )
        status_socket = Path(daemon.status_path)
        watch.start()
        daemon.start()
        _script(run, bot, daemon, capture_path, status_socket=status_socket, progress=progress)
        _finish(run, daemon, status_socket)
    finally:
        watch.stop()
        if daemon is not None:
            daemon.stop()
        bot.stop()
        if socket_dir != out:
            shutil.rmtree(socket_dir, ignore_errors=True)
        _collect(run, bot, daemon, watch, playback_path)
    return run


def _link_state(status_socket: Path) -> str | None:
    from voiceterm.io.control import read_status

    try:
        return read_status(str(status_socket)).get("link", {}).get("state")
    except (OSError, ValueError):
        return None


def _script(
    run: Run,
    bot: BotProcess,
    daemon: DaemonProcess,
    capture: Path,
    *,
    status_socket: Path,
    progress: Callable[[str], None],
) -> None:
    """Wait for the handshake, then press and release the key as the scripted speech plays."""
    try:
        connected = bot.wait_for(event_is("client_connected"), timeout=20.0)
    except TimeoutError:
        raise DemoError(
            f"the daemon did not connect to the bot within 20 s; its log:\n{daemon.log_tail(15)}"
        ) from None
    run.handshake["client_connected_t"] = connected["t"]
    try:
        run.handshake["ready_t"], run.handshake["ready_line"] = daemon.wait_log(is_ready_line, timeout=10.0)
    except TimeoutError:
        if _link_state(status_socket) == "ready":
            run.handshake["ready_line"] = "link.state=ready (from the status socket; no log line said so)"
            run.handshake["ready_t"] = time.monotonic()
        else:
            run.problems.append("the daemon's link did not become ready within 10 s of connecting")

    position = [0]

    def at(seconds: float) -> Callable[[], bool]:
        target = int(seconds * MIC_RATE) * 2

        def reached() -> bool:
            if not daemon.alive():
                raise DemoError(f"the daemon exited early (status {daemon.wait(0)}):\n{daemon.log_tail(15)}")
            pos = open_file_position(daemon.pid, capture)
            if pos is not None:
                position[0] = pos
            return pos is not None and pos >= target

        return reached

    for number, cue in enumerate(run.cues, start=1):
        at(0.0)()  # where the daemon's microphone is now
        if position[0] > int(cue.press_s * MIC_RATE) * 2:
            raise DemoError(
                f"the daemon's microphone is already {position[0] / 2 / MIC_RATE:.2f} s into the script, past "
                f"turn {number}'s press at {cue.press_s:.2f} s: the machine is too busy for the scripted timing"
            )
        wait_until(at(cue.press_s), cue.press_s + 30.0, f"the daemon's microphone to reach turn {number}")
        press = daemon.key(" ")
        progress(f"turn {number}: pressed (talking) ...")
        wait_until(
            at(cue.release_s), cue.release_s - cue.press_s + 10.0, "the microphone to reach the release"
        )
        release = daemon.key(" ")
        result = TurnResult(number, press, release)
        run.turns.append(result)
        progress(f"turn {number}: released, waiting for the reply ...")
        try:
            ended = bot.wait_for(event_is("reply_ended", turn=number), timeout=15.0)
        except TimeoutError:
            run.problems.append(f"turn {number}: the bot did not finish a reply within 15 s")
            continue
        result.reply_ended_t = ended["t"]


def _finish(run: Run, daemon: DaemonProcess, status_socket: Path) -> None:
    """Let the last reply finish playing, keep the daemon's status document, then quit with "q"."""
    from voiceterm.io.control import read_status

    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        try:
            run.status_doc = read_status(str(status_socket))
        except (OSError, ValueError):
            time.sleep(0.05)
            continue
        terminal = run.status_doc.get("terminal", {})
        if not terminal.get("playing") and not terminal.get("bot_speaking"):
            break
        time.sleep(0.05)
    quit_at = daemon.key("q")
    status = daemon.wait(5.0)
    run.exit_s = time.monotonic() - quit_at
    if status is None:
        run.problems.append('the daemon did not exit within 5 s of "q"; killed')
        status = daemon.stop(2.0)
    run.exit_status = status
    if status != 0:
        run.problems.append(f"the daemon exited with status {status}")


def _collect(
    run: Run, bot: BotProcess, daemon: DaemonProcess | None, watch: SpeakerWatch, playback_path: Path
) -> None:
    """Match bot events and the speaker file to the turns; write reply.wav; build the timeline."""
    events = [e for e in bot.events() if e.get("event") not in ("raw", "process_exit")]
    with open(run.out / "bot-events.jsonl", "w", encoding="utf-8") as f:
        for e in events:
            f.write(json.dumps({k: v for k, v in e.items() if k != "received"}) + "\n")
    for result in run.turns:
        for e in events:
            if e.get("turn") != result.number:
                continue
            if e["event"] == "turn_ended":
                result.bot_turn = e
            elif e["event"] == "reply_queued":
                result.bot_reply = e
            elif e["event"] == "reply_started" and result.reply_started_t is None:
                result.reply_started_t = e["t"]
            elif e["event"] == "reply_ended":
                result.reply_ended_t = e["t"]

    playback = np.frombuffer(playback_path.read_bytes()[: playback_path.stat().st_size // 2 * 2], dtype="<i2")
    segments = sound_segments(playback, SPEAKER_RATE)
    replies = []
    for result in run.turns:
        # The reply to a turn is the first sound the speaker got after the turn's release.
        for start, end in segments:
            arrived = watch.arrival(start * 2)
            if arrived is not None and arrived >= result.release_t:
                result.heard_first_t = arrived
                result.heard_s = (end - start) / SPEAKER_RATE
                result.heard_offset_s = start / SPEAKER_RATE
                cue = run.cues[result.number - 1]
                # The press and release land within a mic period or two of the cues: search a margin around.
                mic = run.capture[int((cue.press_s - 0.3) * MIC_RATE) : int((cue.release_s + 0.3) * MIC_RATE)]
                result.fidelity = reply_fidelity(playback[start:end], mic)
                replies.append((result.number, playback[start:end]))
                segments.remove((start, end))
                break
        if result.heard_first_t is None:
            run.problems.append(f"turn {result.number}: no reply reached the speaker")
    gap = np.zeros(SPEAKER_RATE // 2, dtype="<i2")
    if replies:
        joined = np.concatenate([part for _, audio in replies for part in (audio, gap)])
        run.files["reply.wav"] = str(write_wav(run.out / "reply.wav", joined, SPEAKER_RATE))
        for number, audio in replies:
            write_wav(run.out / f"reply-{number}.wav", audio, SPEAKER_RATE)
    run.files["capture.wav"] = str(run.out / "capture.wav")
    run.files["daemon log"] = str(run.out / "daemon.log")
    run.files["bot events"] = str(run.out / "bot-events.jsonl")

    # One timeline of what the daemon logged, what the bot reported and what the demo did.
    timeline = run.timeline
    for e in events:
        what = " ".join(f"{k}={v}" for k, v in e.items() if k not in ("event", "t", "gen", "received"))
        timeline.append((e["t"], "bot", f"{e['event']} {what}".strip()))
    if daemon is not None:
        for t, line in daemon.log_lines:
            timeline.append((t, "daemon", _strip_log_prefix(line)))
        for t, key in daemon.keys:
            timeline.append(
                (t, "demo", {" ": "key space (push-to-talk toggle)", "q": "key q (quit)"}.get(key, key))
            )
    for result in run.turns:
        if result.heard_first_t is not None:
            timeline.append(
                (
                    result.heard_first_t,
                    "speaker",
                    f"first sample of reply {result.number} in the playback file",
                )
            )
    timeline.sort(key=lambda item: item[0])


def _strip_log_prefix(text: str) -> str:
    """Drop the daemon's own "HH:MM:SS LEVEL" prefix: the timeline has its own clock."""
    parts = text.split(" ", 2)
    if len(parts) == 3 and parts[0].count(":") == 2 and parts[1].isupper():
        return parts[2] if parts[1] == "INFO" else f"{parts[1]} {parts[2]}"
    return text


# --- the report ---------------------------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    return "   -  " if seconds is None else f"{seconds * 1000:6.0f}"


def latency_rows(run: Run) -> list[dict[str, float | None]]:
    rows = []
    for r in run.turns:
        bot_end = r.bot_turn["t"] if r.bot_turn else None
        rows.append(
            {
                "turn": r.number,
                "release_to_bot_turn_end_s": None if bot_end is None else bot_end - r.release_t,
                "bot_turn_end_to_reply_start_s": (
                    None if bot_end is None or r.reply_started_t is None else r.reply_started_t - bot_end
                ),
                "reply_start_to_speaker_s": (
                    None
                    if r.reply_started_t is None or r.heard_first_t is None
                    else r.heard_first_t - r.reply_started_t
                ),
                "release_to_speaker_s": None if r.heard_first_t is None else r.heard_first_t - r.release_t,
            }
        )
    return rows


def status_summary(doc: dict[str, Any]) -> list[str]:
    """The parts of the daemon's status document that tell how the run went, a few `key=value` per line."""
    from voiceterm.cli import format_status

    keep = []
    for line in format_status(doc):
        key, _, value = line.partition(": ")
        if (
            key in ("status", "link.state", "link.session")
            or key.startswith(
                ("audio.capture.", "audio.playback.", "audio.capture_", "audio.playback_", "daemon.")
            )
            or (key.startswith("link.") and key.endswith("_total"))
        ):
            keep.append(f"{key}={value}")
    rows, row = [], ""
    for item in keep:
        if row and len(row) + len(item) > 100:
            rows.append(row)
            row = ""
        row = f"{row}  {item}" if row else item
    if row:
        rows.append(row)
    sent = doc.get("link", {}).get("sent_audio_bytes_total")
    if isinstance(sent, int):
        rows.append(
            f"(mic audio sent to the bot: {sent / 2 / MIC_RATE:.2f} s; each turn adds the release tail)"
        )
    return rows


def format_report(run: Run) -> str:
    rel = run.t0
    lines = [f"voiceterm demo — everything is in {run.out}", ""]
    sources = ", ".join(sorted({u.source for u in run.utterances}))
    lines.append(f"The user's voice ({sources}), laid out in capture.wav with silence between:")
    for i, (u, frac) in enumerate(zip(run.utterances, run.vad_fractions, strict=False), start=1):
        vad = "" if frac is None else f"; Silero VAD calls {frac:.0%} of it speech"
        lines.append(f"  {i}. {u.text!r} {u.seconds:.2f} s{vad}")
    lines.append("")
    lines.append("Handshake")
    if run.bot_startup_s is not None:
        lines.append(
            f"  bot (voiceterm_devkit.demo_bot, pipecat) listening on {run.bot_url} after {run.bot_startup_s:.1f} s"
        )
    if "client_connected_t" in run.handshake:
        lines.append(
            f"  +{run.handshake['client_connected_t'] - rel:6.2f} s  the bot accepted the daemon's WebSocket"
        )
    if "ready_t" in run.handshake:
        lines.append(
            f"  +{run.handshake['ready_t'] - rel:6.2f} s  daemon: {_strip_log_prefix(run.handshake['ready_line'])}"
        )
    else:
        lines.append("  (no daemon log line reported bot-ready)")
    lines.append("")
    lines.append("Turns (push-to-talk toggled with the space key on the daemon's stdin)")
    for r in run.turns:
        held = r.release_t - r.press_t
        heard = f"{r.bot_turn['seconds']:.2f} s ({r.bot_turn['by']})" if r.bot_turn else "nothing"
        reply = f"{r.bot_reply['seconds']:.2f} s" if r.bot_reply else "no reply"
        speaker = (
            f"{r.heard_s:.2f} s at {r.heard_offset_s:.2f} s into playback.raw" if r.heard_s else "nothing"
        )
        lines.append(
            f"  {r.number}. pressed +{r.press_t - rel:.2f} s, released +{r.release_t - rel:.2f} s (held {held:.2f} s)"
        )
        lines.append(f"     bot heard {heard}; it replied {reply}; the speaker got {speaker}")
        if r.fidelity is not None:
            lines.append(
                f"     the reply is the mic audio pitched up 1.25x: correlation {r.fidelity:.3f} (1 = unaltered)"
            )
    lines.append("")
    lines.append("Latency, per turn (ms)")
    lines.append("  turn  release→bot turn end  bot turn end→reply out  reply out→speaker  release→speaker")
    for row in latency_rows(run):
        lines.append(
            f"  {row['turn']:>4}  {_ms(row['release_to_bot_turn_end_s']):>20}  "
            f"{_ms(row['bot_turn_end_to_reply_start_s']):>22}  {_ms(row['reply_start_to_speaker_s']):>16}  "
            f"{_ms(row['release_to_speaker_s']):>15}"
        )
    lines.append(
        "  How: one clock (CLOCK_MONOTONIC, shared by the processes). 'release' is when the demo wrote the"
    )
    lines.append(
        "  key to the daemon's stdin; the bot stamps its events (turn end = push_to_talk stop processed,"
    )
    lines.append(
        "  reply out = pipecat's output transport sent the first reply frame); 'speaker' is when the first"
    )
    lines.append(
        "  sample of the reply appeared in the file-backed speaker, found by polling the file every 5 ms"
    )
    lines.append(
        "  (error: the poll interval plus one 20 ms ALSA period; the file plugin writes whole periods)."
    )
    lines.append("")
    if run.status_doc:
        lines.append("Daemon status (voiceterm status) before quitting: state and counters")
        lines.extend(f"  {line}" for line in status_summary(run.status_doc))
        lines.append("")
    lines.append("Timeline (seconds from the start of the demo)")
    for t, who, what in run.timeline:
        lines.append(f"  +{t - rel:6.2f}  {who:<7} {what}")
    lines.append("")
    exit_text = "not started" if run.exit_status is None else f"status {run.exit_status}"
    if run.exit_s is not None:
        exit_text += f", {run.exit_s:.2f} s after 'q'"
    lines.append(f"Daemon exit: {exit_text}")
    lines.append("Files")
    lines.append(f"  {run.out / 'reply.wav'}  the bot's replies as the speaker received them (24 kHz mono)")
    lines.append(f"  {run.out / 'capture.wav'}  what the microphone heard")
    lines.append(f"  {run.out / 'daemon.log'}, {run.out / 'bot-events.jsonl'}, {run.out / 'voiceterm.toml'}")
    lines.append("")
    if run.problems:
        lines.append("PROBLEMS")
        lines.extend(f"  - {p}" for p in run.problems)
    else:
        lines.append(f"OK: {len(run.turns)} turn(s), every one answered; the daemon exited cleanly.")
    return "\n".join(lines)


def report_json(run: Run) -> dict[str, Any]:
    return {
        "ok": not run.problems,
        "problems": run.problems,
        "voice": sorted({u.source for u in run.utterances}),
        "vad_speech_fraction": run.vad_fractions,
        "cues": [asdict(c) for c in run.cues],
        "handshake": {
            "bot_connected": "client_connected_t" in run.handshake,
            "ready_line": _strip_log_prefix(run.handshake["ready_line"])
            if "ready_line" in run.handshake
            else None,
        },
        "turns": [
            {
                "turn": r.number,
                "held_s": r.release_t - r.press_t,
                "bot_heard_s": r.bot_turn["seconds"] if r.bot_turn else None,
                "bot_turn_by": r.bot_turn["by"] if r.bot_turn else None,
                "bot_reply_s": r.bot_reply["seconds"] if r.bot_reply else None,
                "speaker_reply_s": r.heard_s,
                "fidelity": r.fidelity,
            }
            for r in run.turns
        ],
        "latency": latency_rows(run),
        "exit_status": run.exit_status,
        "files": run.files,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.split("\n\n")[0])
    root = repo_root()
    default_out = (root / "out" / "demo") if root else Path("out/demo")
    parser.add_argument(
        "--out", type=Path, default=default_out, help=f"work directory (default: {default_out})"
    )
    parser.add_argument("--turns", type=int, choices=(1, 2), default=2, help="how many utterances to speak")
    parser.add_argument(
        "--voice",
        choices=("auto", "espeak", "synthetic"),
        default="auto",
        help="espeak-ng speech (auto: when installed) or a synthetic voice-like signal",
    )
    args = parser.parse_args(argv)

    def progress(text: str) -> None:
        print(f"demo: {text}", file=sys.stderr, flush=True)

    out = args.out.resolve()
    try:
        run = run_demo(out, turns=args.turns, voice=args.voice, progress=progress)
    except DemoError as e:
        print(f"demo: {e}", file=sys.stderr)
        print(f"demo: logs are in {out}", file=sys.stderr)
        return 1
    report = format_report(run)
    (out / "report.txt").write_text(report + "\n", encoding="utf-8")
    (out / "report.json").write_text(json.dumps(report_json(run), indent=2) + "\n", encoding="utf-8")
    print(report)
    return 0 if not run.problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
