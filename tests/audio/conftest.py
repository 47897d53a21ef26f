"""Fixtures for the audio tests: a per-test ALSA configuration of file PCMs and fast-reopening settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from voiceterm.config import AudioConfig, EarconsConfig
from voiceterm_devkit.alsa_files import AlsaFileConfig


class AlsaEnv:
    """One test's ALSA world: `config` (file PCMs in `dir`) and `apply()` to write it for alsa-lib."""

    def __init__(self, directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dir = directory
        self.config = AlsaFileConfig(directory)
        self._monkeypatch = monkeypatch
        self.apply()

    def apply(self) -> None:
        self.config.write()
        self._monkeypatch.setenv("ALSA_CONFIG_PATH", str(self.config.path))

    def path(self, name: str) -> Path:
        return self.dir / name


@pytest.fixture
def alsa_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AlsaEnv:
    pytest.importorskip("alsaaudio")
    return AlsaEnv(tmp_path / "alsa", monkeypatch)


@pytest.fixture
def audio_config() -> Callable[..., AudioConfig]:
    """AudioConfig for file PCMs: wall-clock pacing and quick reopening; keywords override."""

    def make(**overrides: object) -> AudioConfig:
        base = AudioConfig(
            capture_device="mic",
            playback_device="spk",
            pacing="wall-clock",
            reopen_min_s=0.05,
            reopen_max_s=0.2,
        )
        return dataclasses.replace(base, **overrides)

    return make


@pytest.fixture
def speaker_env(alsa_env: AlsaEnv) -> AlsaEnv:
    """A playback file PCM named "spk" writing to out.raw."""
    alsa_env.config.add_playback("spk", alsa_env.path("out.raw"))
    alsa_env.apply()
    return alsa_env


@pytest.fixture
def no_earcons() -> EarconsConfig:
    return EarconsConfig(enabled=False)


async def _wait_until(predicate: Callable[[], bool], *, timeout: float = 5.0, what: str = "") -> None:
    """Poll `predicate` on the trio loop until it holds; fail after `timeout` seconds."""
    import trio

    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.005)
        return
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


@pytest.fixture
def wait_until() -> Callable[..., object]:
    return _wait_until
