"""A simulated room with clocked audio devices: a private PulseAudio server on loopback, reached through ALSA's
`pulse` plugin, where what the daemon plays comes back into its microphone with a delay and an attenuation,
mixed with a user's voice.

    speaker (null sink, 24 kHz) --monitor--> module-loopback (delay, gain) --> room (null sink, 16 kHz)
    user's mouth (ALSA "user" -> room)  -----------------------------------------^        |
    daemon's mic = ALSA "mic" (room.monitor) <---------------------------------------------'

The devices are clocked by the server's timers (device-paced blocking reads and writes, real poll
descriptors, two clocks), unlike `type file` PCMs. Facts this relies on (shared/CLOCKED-AUDIO.md): the server
runs as root in user mode with HOME, PULSE_RUNTIME_PATH and PULSE_STATE_PATH in a temporary directory and
autospawn off; `adjust_time=0` keeps the loopback from time-stretching; a null sink renders far ahead until a
low-latency stream is attached, so `start()` waits for every sink's latency to drop under 100 ms.

`Room.start()` raises `RoomUnavailable` with one line when PulseAudio or the pulse ALSA plugin is missing
(scripts/setup-venv installs pulseaudio, pulseaudio-utils and libasound2-plugins).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from voiceterm_devkit.bot import terminate

PLUGIN_GLOB = "/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so"
START_TIMEOUT_S = 15.0
MAX_SINK_LATENCY_US = 100_000


class RoomUnavailable(RuntimeError):
    """The sound server cannot run here; the message says what is missing."""


def room_missing() -> str | None:
    """Why a room cannot start here, or None when the packages are there."""
    for exe in ("pulseaudio", "pactl"):
        if shutil.which(exe) is None:
            return f"{exe} is not installed (apt-get install pulseaudio pulseaudio-utils; scripts/setup-venv does)"
    if not list(Path("/").glob(PLUGIN_GLOB.lstrip("/"))):
        return "ALSA's pulse plugin is not installed (apt-get install libasound2-plugins; scripts/setup-venv does)"
    return None


class _DeviceThread:
    """A thread owning one clocked ALSA PCM of the room: opened at `start()`, served by `_serve(pcm)`."""

    kind = "playback"
    periods = 4

    def __init__(self, device: str, rate: int, period_ms: int) -> None:
        self.device = device
        self.rate = rate
        self.period = rate * period_ms // 1000
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._opened = threading.Event()
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"room-{self.kind}", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._opened.wait(10) or self.error:
            raise RoomUnavailable(f"the room's {self.kind} device did not open: {self.error or 'timeout'}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(5)

    def _run(self) -> None:
        import alsaaudio

        try:
            pcm = alsaaudio.PCM(
                alsaaudio.PCM_PLAYBACK if self.kind == "playback" else alsaaudio.PCM_CAPTURE,
                device=self.device,
                rate=self.rate,
                channels=1,
                format=alsaaudio.PCM_FORMAT_S16_LE,
                periodsize=self.period,
                periods=self.periods,
            )
        except alsaaudio.ALSAAudioError as e:
            self.error = str(e)
            self._opened.set()
            return
        self._opened.set()
        try:
            self._serve(pcm)
        finally:
            with contextlib.suppress(Exception):
                pcm.close()

    def _serve(self, pcm: Any) -> None:
        raise NotImplementedError


class Mouth(_DeviceThread):
    """The user: a thread writing to the room through a clocked ALSA PCM, silence unless told to speak.

    `say(samples)` queues a burst (int16 at the room's rate); it starts at the next period boundary. Bursts
    queue up to `MAX_QUEUED`; more are dropped and counted. `spoke` records (start, end) time.monotonic()
    times of each burst as written to the device.
    """

    MAX_QUEUED = 8

    def __init__(self, device: str, rate: int, period_ms: int = 10) -> None:
        super().__init__(device, rate, period_ms)
        self._queue: deque[np.ndarray] = deque()
        self.dropped = 0
        self.spoke: list[tuple[float, float]] = []

    def say(self, samples: np.ndarray) -> None:
        with self._lock:
            if len(self._queue) >= self.MAX_QUEUED:
                self.dropped += 1
                return
            self._queue.append(np.asarray(samples, dtype="<i2"))

    @property
    def speaking(self) -> bool:
        with self._lock:
            return bool(self._queue)

    def _serve(self, pcm: Any) -> None:
        silence = np.zeros(self.period, dtype="<i2")
        current: np.ndarray | None = None
        pos = 0
        started = 0.0
        while not self._stop.is_set():
            if current is None:
                with self._lock:
                    current = self._queue[0] if self._queue else None
                pos = 0
                started = time.monotonic()
            if current is None:
                pcm.write(silence.tobytes())
                continue
            chunk = current[pos : pos + self.period]
            if chunk.shape[0] < self.period:
                chunk = np.concatenate((chunk, silence[: self.period - chunk.shape[0]]))
            pcm.write(chunk.tobytes())
            pos += self.period
            if pos >= current.shape[0]:
                self.spoke.append((started, time.monotonic()))
                with self._lock:
                    self._queue.popleft()
                current = None


class Ear(_DeviceThread):
    """A second listener on the room (what the daemon's mic hears, before any processing), recorded by a
    thread from a clocked ALSA capture PCM for at most `max_s` seconds (later audio is counted, not kept).

    `audio()` is everything recorded; `started` the time.monotonic() of its first sample (the first read's
    return time less one period).
    """

    kind = "capture"
    periods = 8

    def __init__(self, device: str, rate: int, period_ms: int = 10, max_s: float = 900.0) -> None:
        super().__init__(device, rate, period_ms)
        self.max_samples = int(max_s * rate)
        self._chunks: list[bytes] = []
        self._kept = 0
        self.dropped = 0
        self.started: float | None = None

    def audio(self) -> np.ndarray:
        with self._lock:
            return np.frombuffer(b"".join(self._chunks), dtype="<i2").copy()

    def _serve(self, pcm: Any) -> None:
        while not self._stop.is_set():
            n, data = pcm.read()
            if n <= 0:
                continue
            if self.started is None:
                self.started = time.monotonic() - n / self.rate
            with self._lock:
                if self._kept + n > self.max_samples:
                    self.dropped += n
                    continue
                self._chunks.append(data)
                self._kept += n


class Room:
    """One private PulseAudio server in `directory` with the speaker, the room and the echo path.

    `alsa_env` is the environment that makes alsa-lib see the devices "mic" (what the room hears), "spk"
    (the loudspeaker) and "user" (the user's mouth, into the room); `env` adds the server's address for
    the PulseAudio tools. `echo_gain` is linear (0.1 = -20 dB); `echo_delay_ms` is module-loopback's
    latency (the ALSA playback buffer and the server's own latency come on top).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        mic_rate: int = 16000,
        speaker_rate: int = 24000,
        echo_delay_ms: int = 60,
        echo_gain: float = 0.1,
    ) -> None:
        self.dir = Path(directory).resolve()
        self.mic_rate = mic_rate
        self.speaker_rate = speaker_rate
        self.echo_delay_ms = echo_delay_ms
        self.echo_gain = echo_gain
        self.socket = self.dir / "native"
        self.alsa_conf = self.dir / "asound.conf"
        self.log_path = self.dir / "pa.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.mouth: Mouth | None = None
        self.ear: Ear | None = None

    # --- environment ------------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """For PulseAudio clients (pactl) and alsa-lib: this server and this ALSA configuration only."""
        return {
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_CLIENTCONFIG": str(self.dir / "client.conf"),
            "PULSE_RUNTIME_PATH": str(self.dir / "runtime"),
            "PULSE_STATE_PATH": str(self.dir / "state"),
            "HOME": str(self.dir / "home"),
            "ALSA_CONFIG_PATH": str(self.alsa_conf),
        }

    @property
    def alsa_env(self) -> dict[str, str]:
        """What a child using the ALSA devices needs (its HOME is left alone)."""
        return {"ALSA_CONFIG_PATH": str(self.alsa_conf), "PULSE_CLIENTCONFIG": str(self.dir / "client.conf")}

    def _write_files(self) -> None:
        for sub in ("runtime", "state", "home"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "client.conf").write_text("autospawn = no\n")
        script = [
            f"load-module module-null-sink sink_name=speaker rate={self.speaker_rate} channels=1 format=s16le",
            f"load-module module-null-sink sink_name=room rate={self.mic_rate} channels=1 format=s16le",
            "load-module module-loopback source=speaker.monitor sink=room "
            f"latency_msec={self.echo_delay_ms} adjust_time=0 source_dont_move=true sink_dont_move=true",
            f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket}",
        ]
        (self.dir / "room.pa").write_text("\n".join(script) + "\n")
        server = f'server "unix:{self.socket}"'
        pcms = {
            "mic": ('device "room.monitor"', "room microphone|IOIDInput"),
            "spk": ('device "speaker"', "room loudspeaker|IOIDOutput"),
            "user": ('device "room"', "the user's voice into the room|IOIDOutput"),
        }
        lines = ["# voiceterm room: ALSA devices on a private PulseAudio server (ALSA_CONFIG_PATH)"]
        for name, (device, description) in pcms.items():
            lines.append(
                f'pcm.{name} {{ type pulse {server} {device} hint {{ show on description "{description}" }} }}'
            )
        self.alsa_conf.write_text("\n".join(lines) + "\n")

    # --- life ---------------------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT_S) -> Room:
        missing = room_missing()
        if missing:
            raise RoomUnavailable(missing)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_files()
        env = {**os.environ, **self.env}
        self._proc = subprocess.Popen(
            [
                "pulseaudio",
                "--system=false",
                "-n",
                "-F",
                str(self.dir / "room.pa"),
                "--exit-idle-time=-1",
                "--daemonize=no",
                "--use-pid-file=no",
                f"--log-target=file:{self.log_path}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        try:
            self._wait_socket(timeout, deadline)
            self.mouth = Mouth("user", self.mic_rate)
            self.ear = Ear("mic", self.mic_rate)
            self._start_devices()
            self.set_echo_gain(self.echo_gain)
            self._wait_low_latency(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_socket(self, timeout: float, deadline: float) -> None:
        """Until the server answers a client (its socket file appears before it accepts connections)."""
        assert self._proc is not None
        while True:
            if self._proc.poll() is not None:
                raise RoomUnavailable(f"pulseaudio exited ({self._proc.returncode}): {self.log_tail()}")
            if self.socket.exists():
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    self.pactl("info")
                    return
            if time.monotonic() > deadline:
                raise RoomUnavailable(f"pulseaudio did not start within {timeout:g} s: {self.log_tail()}")
            time.sleep(0.05)

    def _start_devices(self) -> None:
        """Open the mouth's and the ear's PCMs with this room's ALSA configuration, then give the environment
        back (an open PCM keeps its server; alsa-lib reads ALSA_CONFIG_PATH again at the next open)."""
        saved = {key: os.environ.get(key) for key in self.alsa_env}
        os.environ.update(self.alsa_env)
        try:
            assert self.mouth is not None and self.ear is not None
            self.mouth.start()
            self.ear.start()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def _wait_low_latency(self, deadline: float) -> None:
        """Until every sink renders less than 100 ms ahead (a fresh null sink renders up to 2 s ahead)."""
        while True:
            latencies = self.sink_latencies_us()
            if latencies and all(v < MAX_SINK_LATENCY_US for v in latencies.values()):
                return
            if time.monotonic() > deadline:
                raise RoomUnavailable(f"the room's sinks stay at {latencies} us of latency")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.mouth is not None:
            self.mouth.stop()
            self.mouth = None
        if self.ear is not None:
            self.ear.stop()
        if self._proc is not None:
            terminate(self._proc, 5.0)
        self._proc = None

    def __enter__(self) -> Room:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def log_tail(self, n: int = 5) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return "<no log>"

    # --- control ------------------------------------------------------------------------------------

    def pactl(self, *args: str) -> str:
        done = subprocess.run(
            ["pactl", *args],
            capture_output=True,
            text=True,
            timeout=10,
            env={**os.environ, **self.env},
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def sink_latencies_us(self) -> dict[str, int]:
        out = self.pactl("list", "sinks")
        result: dict[str, int] = {}
        name = None
        for raw in out.splitlines():
            line = raw.strip()
            if line.startswith("Name:"):
                name = line.split(":", 1)[1].strip()
            m = re.match(r"Latency: (\d+) usec", line)
            if m and name:
                result[name] = int(m.group(1))
        return result

    def _loopback_input(self) -> str:
        """The sink-input index of the echo path (the loopback's stream into the room)."""
        out = self.pactl("list", "sink-inputs")
        index = None
        for raw in out.splitlines():
            line = raw.strip()
            if line.startswith("Sink Input #"):
                index = line.split("#", 1)[1]
            if "module-loopback" in line and index is not None:
                return index
            if line.startswith("Driver:") and "loopback" in line and index is not None:
                return index
        raise RuntimeError("the room's echo path (module-loopback) is missing")

    def set_echo_gain(self, gain: float) -> None:
        """The echo path's linear gain (0 mutes it; pactl takes no negative dB)."""
        self.pactl("set-sink-input-volume", self._loopback_input(), f"{max(0.0, gain):.4f}")
        self.echo_gain = gain


__all__ = ["Ear", "Mouth", "Room", "RoomUnavailable", "room_missing"]
