"""File-backed ALSA devices for the tests, the demo and the benchmarks: real alsa-lib, no sound card.

`AlsaFileConfig` writes a self-contained ALSA configuration of `type file` PCMs (capture reads raw S16_LE
from an `infile`, playback writes raw S16_LE to a `file`, both over `slave.pcm "null"`) and points
`ALSA_CONFIG_PATH` at it. That variable replaces the whole configuration, alsa.conf included, so the file
defines everything it uses (the `null` slave too); names it does not define, `default` and `hw:0`
included, do not exist.

alsa-lib re-reads its configuration on every `snd_pcm_open` when a file's device, inode or mtime (whole
seconds) changed. `write()` therefore replaces the file by rename (a new inode), so removing a device and
bringing it back within the same second is seen at the next open.

These PCMs are unclocked (reads and writes return at once; reads past the end of `infile` repeat stale
data), so run the audio layer with `pacing = "wall-clock"` and size input files exactly. A `FifoTap`
as a PCM's `file` lets a test break an open device mid-stream: alsa-lib then fails the read or write
with EIO, as a USB device does when it is unplugged.
"""

from __future__ import annotations

import errno
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "AlsaFileConfig",
    "FifoTap",
    "noise",
    "read_raw",
    "write_raw",
]


@dataclass(frozen=True, slots=True)
class _Pcm:
    kind: str  # "capture" | "playback"
    infile: str | None
    file: str


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class AlsaFileConfig:
    """A self-contained ALSA config of file PCMs in `directory`, activated through ALSA_CONFIG_PATH."""

    def __init__(self, directory: str | os.PathLike[str], *, filename: str = "asound.conf") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / filename
        self._pcms: dict[str, _Pcm] = {}
        self._removed: set[str] = set()
        self._default: tuple[str, str] | None = None

    # --- defining devices ---------------------------------------------------------------------

    def add_capture(
        self, name: str, infile: str | os.PathLike[str], *, tee: str | os.PathLike[str] = "/dev/null"
    ) -> AlsaFileConfig:
        """A capture PCM that reads raw S16_LE from `infile` (and copies what it reads to `tee`)."""
        self._pcms[name] = _Pcm("capture", str(infile), str(tee))
        return self

    def add_playback(self, name: str, outfile: str | os.PathLike[str]) -> AlsaFileConfig:
        """A playback PCM that writes raw S16_LE to `outfile` (a regular file or a FifoTap path)."""
        self._pcms[name] = _Pcm("playback", None, str(outfile))
        return self

    def set_default(self, capture: str, playback: str) -> AlsaFileConfig:
        """Make `default` an asym PCM over two of the defined devices (for the demo)."""
        self._default = (capture, playback)
        return self

    def remove(self, name: str) -> None:
        """Take a device out of the configuration (as if unplugged); call write() to apply."""
        if name not in self._pcms:
            raise KeyError(name)
        self._removed.add(name)

    def restore(self, name: str) -> None:
        """Put a removed device back; call write() to apply."""
        self._removed.discard(name)

    # --- output -------------------------------------------------------------------------------

    def text(self) -> str:
        lines = [
            "# voiceterm test ALSA configuration (self-contained: ALSA_CONFIG_PATH replaces alsa.conf)",
            "pcm.null { type null }",
        ]
        for name, pcm in self._pcms.items():
            if name in self._removed:
                continue
            ioid = "Input" if pcm.kind == "capture" else "Output"
            lines.append(f"pcm.{_quote(name)} {{")
            lines.append("    type file")
            lines.append('    slave.pcm "null"')
            lines.append(f"    file {_quote(pcm.file)}")
            if pcm.infile is not None:
                lines.append(f"    infile {_quote(pcm.infile)}")
            lines.append('    format "raw"')
            # alsa-lib has no IOID key for software PCMs, but a hint is "NAME..|DESC..|IOID..": a
            # description ending in "|IOIDInput" makes the device list in one direction only.
            lines.append(f'    hint {{ show on description "voiceterm test {pcm.kind}|IOID{ioid}" }}')
            lines.append("}")
        if self._default is not None:
            capture, playback = self._default
            lines.append("pcm.!default {")
            lines.append("    type asym")
            lines.append(f"    capture.pcm {_quote(capture)}")
            lines.append(f"    playback.pcm {_quote(playback)}")
            lines.append("}")
        return "\n".join(lines) + "\n"

    def write(self) -> Path:
        """Write the file atomically (new inode: alsa-lib notices the change at its next open)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(self.text(), encoding="utf-8")
        os.replace(tmp, self.path)
        return self.path

    @property
    def env(self) -> Mapping[str, str]:
        """The environment that makes alsa-lib use this configuration."""
        return {"ALSA_CONFIG_PATH": str(self.path)}

    def activate(self) -> Path:
        """write() and set ALSA_CONFIG_PATH in this process (tests should prefer monkeypatch.setenv)."""
        path = self.write()
        os.environ["ALSA_CONFIG_PATH"] = str(path)
        return path


# --- raw audio files ----------------------------------------------------------------------------


def noise(n_frames: int, *, seed: int = 0, amplitude: int = 8000, nonzero: bool = True) -> np.ndarray:
    """Reproducible mono int16 noise; with `nonzero` no sample is 0, so it cannot pass for silence."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-amplitude, amplitude + 1, size=n_frames, dtype=np.int32)
    if nonzero:
        x[x == 0] = 1
    return x.astype("<i2")


def speech_like(seconds: float, rate: int) -> np.ndarray:
    """A deterministic voiced-speech stand-in (mono int16): a few harmonics with a syllable envelope and a
    little noise. Benchmarks feed it as the user's voice: it compresses, resamples and meters like speech."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    rng = np.random.default_rng(7)
    x = sum(np.sin(2 * math.pi * 140 * k * t) / k for k in range(1, 6))
    x = x * (0.5 + 0.5 * np.sin(2 * math.pi * 3 * t)) + 0.02 * rng.standard_normal(n)
    return (x / np.max(np.abs(x)) * 12000).astype("<i2")


# Vowel formants (F1, F2, F3 in Hz) the voice below moves between, one every VOICE_SEGMENT_S.
_VOWELS = (
    (730, 1090, 2440),
    (270, 2290, 3010),
    (530, 1840, 2480),
    (570, 840, 2410),
    (440, 1020, 2240),
    (300, 870, 2240),
    (660, 1720, 2410),
)
VOICE_SEGMENT_S = 0.08


def voiced_speech(seconds: float, rate: int, seed: int = 1) -> np.ndarray:
    """Formant-synthesised voiced speech (mono int16) that Silero VAD takes for a voice throughout: a
    glottal pulse train (100-150 Hz, gliding) through three formant resonators gliding between vowels, with a
    light syllable envelope. With the default seed, pipecat's Silero VAD finds no pause of 0.2 s in it (its
    stop time), so a user "talks" until the audio stops. (`speech_like` is cheaper, but Silero hears it only
    now and then.)"""
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    t = np.arange(n) / rate
    f0 = 125 + 20 * np.sin(2 * math.pi * 0.5 * t) + 8 * np.sin(2 * math.pi * 2.3 * t)
    phase = np.cumsum(f0 / rate) % 1.0
    opening = 0.6  # Rosenberg pulse: the opening part of each glottal period
    pulse = np.where(
        phase < opening,
        0.5 * (1 - np.cos(np.pi * phase / opening)),
        np.maximum(np.cos(np.pi * (phase - opening) / (2 * (1 - opening))), 0),
    )
    source = np.diff(np.concatenate([[0.0], pulse]))
    vowels = np.array(_VOWELS, dtype=float)
    segment = round(VOICE_SEGMENT_S * rate)
    formants = vowels[rng.permutation(len(vowels))[(np.arange(n) // segment) % len(vowels)]]
    glide = np.ones(round(0.04 * rate)) / round(0.04 * rate)
    out = np.zeros(n)
    for j, (bandwidth, gain) in enumerate(((80, 1.0), (100, 0.6), (140, 0.3))):
        out += gain * _resonate(source, np.convolve(formants[:, j], glide, mode="same"), bandwidth, rate)
    out *= 0.7 + 0.3 * np.sin(2 * math.pi * 4 * t) ** 2
    return (out / np.max(np.abs(out)) * 12000).astype("<i2")


def _resonate(x: np.ndarray, freq: np.ndarray, bandwidth: float, rate: int) -> np.ndarray:
    # A two-pole resonator whose centre frequency follows `freq` sample by sample.
    r = math.exp(-math.pi * bandwidth / rate)
    a1 = (-2 * r * np.cos(2 * np.pi * freq / rate)).tolist()
    a2, gain = r * r, 1 - r
    out = [0.0] * len(x)
    y1 = y2 = 0.0
    for i, v in enumerate(x.tolist()):
        y = gain * v - a1[i] * y1 - a2 * y2
        out[i], y2, y1 = y, y1, y
    return np.array(out)


def write_raw(path: str | os.PathLike[str], samples: np.ndarray) -> Path:
    """Write mono S16_LE samples as a headerless raw file, exactly len(samples) frames long."""
    path = Path(path)
    path.write_bytes(np.asarray(samples, dtype="<i2").tobytes())
    return path


def read_raw(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a raw S16_LE file (an odd trailing byte is ignored)."""
    data = Path(path).read_bytes()
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")


# --- breakable output ---------------------------------------------------------------------------


class FifoTap:
    """A named pipe used as a file PCM's output: a thread drains it into `data`; `cut()` breaks it.

    While the tap is cut, alsa-lib's writes to the pipe fail (EPIPE, reported as EIO by the PCM), which is
    how an unplugged USB device shows up to the application. Reconnect before the device is reopened:
    opening a pipe for writing waits for a reader.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            os.mkfifo(self.path)
        self._lock = threading.Lock()
        self._data = bytearray()
        self._fd: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.reconnect()

    @property
    def data(self) -> bytes:
        with self._lock:
            return bytes(self._data)

    @property
    def connected(self) -> bool:
        return self._fd is not None

    def reconnect(self) -> None:
        """Open the read end (non-blocking) and start draining."""
        if self._fd is not None:
            return
        self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._stop.clear()
        self._thread = threading.Thread(target=self._drain, args=(self._fd,), daemon=True, name="fifo-tap")
        self._thread.start()

    def cut(self) -> None:
        """Close the read end: the writer's next write fails."""
        if self._fd is None:
            return
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        os.close(self._fd)
        self._fd = None
        self._thread = None

    close = cut

    def _keep(self, chunk: bytes) -> None:
        """What to do with drained bytes: keep them (a subclass may only count them)."""
        with self._lock:
            self._data += chunk

    def _drain(self, fd: int) -> None:
        import select

        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(20):
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError as e:  # pragma: no cover - EAGAIN race between poll and read
                if e.errno == errno.EAGAIN:
                    continue
                raise
            if chunk:
                self._keep(chunk)
            else:
                # No writer right now (POLLHUP): wait for one without spinning.
                self._stop.wait(0.01)
