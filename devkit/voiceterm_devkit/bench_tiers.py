"""Where the benchmark's clients get their audio devices: the two tiers.

- `FileTier`: ALSA `type file` PCMs (the mic reads a speech-like file, the speaker writes a file), which return
  at once, so every client paces them by the wall clock (voiceterm's `pacing = "wall-clock"`).
- `RoomTier`: the simulated room's clocked PulseAudio devices (voiceterm_devkit.room) in `pacing = "device"`:
  blocking reads and writes paced by the server's clock, real poll descriptors, and an echo path (the bot's
  voice comes back into the mic 60 ms later at -20 dB). The room's mouth keeps talking (the same speech-like
  signal the file tier reads), so the echo bot's answer makes the exchange full duplex.

Each client names its devices "mic" and "spk"; `devices(run_dir)` gives what DaemonProcess wants of an ALSA
configuration (`write()` and `env`), and `client_env` the environment a reference client needs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from voiceterm_devkit.alsa_files import AlsaFileConfig, speech_like, write_raw
from voiceterm_devkit.room import Room
from voiceterm_devkit.room_run import _RoomAlsa

MIC_RATE = 16000
TALK_CHUNK_S = 5.0


class WithEnv:
    """An ALSA configuration with more environment for the process using it (the thread-name shim)."""

    def __init__(self, alsa: Any, extra: Mapping[str, str]) -> None:
        self.alsa = alsa
        self.extra = dict(extra)

    def write(self) -> Path:
        return self.alsa.write()

    @property
    def env(self) -> Mapping[str, str]:
        return {**self.alsa.env, **self.extra}


class FileTier:
    name = "files"
    pacing = "wall-clock"
    label = "file PCMs paced by the wall clock"

    def __init__(self, work: Path, mic_seconds: float) -> None:
        self.work = work
        self.mic_file = work / "mic.raw"
        # Longer than any client runs: reads past the end of a file PCM repeat stale data.
        write_raw(self.mic_file, speech_like(mic_seconds, MIC_RATE))

    def start(self) -> None:
        """Nothing to start: the files are the devices."""

    def stop(self) -> None:
        """Nothing to stop."""

    def devices(self, run_dir: Path) -> AlsaFileConfig:
        alsa = AlsaFileConfig(run_dir / "alsa")
        alsa.add_capture("mic", self.mic_file).add_playback("spk", run_dir / "spk.raw")
        return alsa


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


class RoomTier:
    name = "room"
    pacing = "device"
    label = "clocked PulseAudio devices (the simulated room), pacing = device"

    def __init__(self, work: Path) -> None:
        self.room = Room(work / "room")
        self._talker: _Talker | None = None

    def start(self) -> None:
        """Start the sound server and the talking mouth; RoomUnavailable says what is missing."""
        self.room.start()
        self._talker = _Talker(self.room)
        self._talker.start()

    def stop(self) -> None:
        if self._talker is not None:
            self._talker.stop()
            self._talker = None
        self.room.stop()

    def devices(self, run_dir: Path) -> _RoomAlsa:
        return _RoomAlsa(self.room)


def client_env(devices: Any, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a reference client on `devices` (after `devices.write()`)."""
    devices.write()
    return {**os.environ, **devices.env, **(extra or {})}


Tier = FileTier | RoomTier

__all__ = ["FileTier", "RoomTier", "Tier", "WithEnv", "client_env"]
