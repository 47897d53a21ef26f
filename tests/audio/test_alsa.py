"""Opening ALSA PCMs by name against real alsa-lib: clear errors, a clean stderr, listing, config reloads."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from voiceterm.io.alsa import (
    CAPTURE,
    PLAYBACK,
    AlsaPcm,
    AudioDeviceError,
    alsa_stderr_captured,
    describe_open_error,
    list_devices,
)
from voiceterm_devkit.alsa_files import noise, write_raw

if TYPE_CHECKING:
    from .conftest import AlsaEnv

pytestmark = pytest.mark.alsa


def test_unknown_device_is_one_clear_line_and_stderr_stays_clean(
    alsa_env: AlsaEnv, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(AudioDeviceError) as err:
        AlsaPcm(CAPTURE, "plughw:2", 16000, 320, 4)
    assert str(err.value) == (
        'capture device "plughw:2" not found (ALSA: No such file or directory); check `voiceterm devices`'
    )
    with pytest.raises(AudioDeviceError, match=r'^playback device "nosuch" not found'):
        AlsaPcm(PLAYBACK, "nosuch", 24000, 480, 4)
    captured = capfd.readouterr()
    assert "ALSA lib" not in captured.err  # alsa-lib's own line was kept out of the journal


def test_other_stderr_output_during_an_open_is_passed_through(capfd: pytest.CaptureFixture[str]) -> None:
    with alsa_stderr_captured() as lines:
        os.write(2, b"ALSA lib pcm.c:1:(x) Unknown PCM y\n")
        os.write(2, b"a log line from another thread\n")
    assert lines == ["ALSA lib pcm.c:1:(x) Unknown PCM y"]
    err = capfd.readouterr().err
    assert "a log line from another thread" in err
    assert "ALSA lib" not in err


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (
            "Device or resource busy",
            'capture device "hw:1" is busy (ALSA: Device or resource busy); another program',
        ),
        (
            "Permission denied",
            'capture device "hw:1" is not accessible (ALSA: Permission denied); add the user',
        ),
        ("Invalid argument", 'capture device "hw:1" cannot be opened (ALSA: Invalid argument)'),
    ],
)
def test_open_error_wording(reason: str, expected: str) -> None:
    assert describe_open_error(CAPTURE, "hw:1", reason).startswith(expected)


def test_open_reports_what_alsa_granted(alsa_env: AlsaEnv) -> None:
    write_raw(alsa_env.path("in.raw"), noise(16000))
    alsa_env.config.add_capture("mic", alsa_env.path("in.raw")).add_playback("spk", alsa_env.path("out.raw"))
    alsa_env.apply()
    mic = AlsaPcm(CAPTURE, "mic", 16000, 320, 8)
    spk = AlsaPcm(PLAYBACK, "spk", 24000, 480, 4)
    try:
        assert (mic.rate, mic.period_frames, mic.buffer_frames) == (16000, 320, 2560)
        assert (spk.rate, spk.period_frames, spk.buffer_frames) == (24000, 480, 1920)
        n, data = mic.read()
        assert n == 320 and len(data) == 640
        assert spk.fill() == 0  # the null slave plays instantly: only a pacer can clock it
    finally:
        mic.close()
        spk.close()


def test_list_devices_shows_capture_and_playback_names(alsa_env: AlsaEnv) -> None:
    write_raw(alsa_env.path("in.raw"), noise(160))
    alsa_env.config.add_capture("mic", alsa_env.path("in.raw")).add_playback("spk", alsa_env.path("out.raw"))
    alsa_env.apply()
    devices = list_devices()
    assert "mic" in devices["capture"] and "mic" not in devices["playback"]
    assert "spk" in devices["playback"] and "spk" not in devices["capture"]
    assert devices["cards"] == []  # no sound card on this machine


def test_a_rewritten_config_is_seen_at_the_next_open(alsa_env: AlsaEnv) -> None:
    write_raw(alsa_env.path("in.raw"), noise(3200))
    alsa_env.config.add_capture("mic", alsa_env.path("in.raw"))
    alsa_env.apply()
    AlsaPcm(CAPTURE, "mic", 16000, 320, 8).close()
    alsa_env.config.remove("mic")
    alsa_env.apply()  # same second: only the new inode tells alsa-lib
    with pytest.raises(AudioDeviceError, match="not found"):
        AlsaPcm(CAPTURE, "mic", 16000, 320, 8)
    alsa_env.config.restore("mic")
    alsa_env.apply()
    AlsaPcm(CAPTURE, "mic", 16000, 320, 8).close()


def test_default_can_point_at_the_file_devices(alsa_env: AlsaEnv) -> None:
    samples = noise(320 * 2, seed=5)
    write_raw(alsa_env.path("in.raw"), samples)
    alsa_env.config.add_capture("mic", alsa_env.path("in.raw")).add_playback("spk", alsa_env.path("out.raw"))
    alsa_env.config.set_default("mic", "spk")
    alsa_env.apply()
    mic = AlsaPcm(CAPTURE, "default", 16000, 320, 8)
    spk = AlsaPcm(PLAYBACK, "default", 16000, 320, 4)
    try:
        n, data = mic.read()
        assert n == 320
        assert data == samples[:320].tobytes()
        assert spk.write(data) == 320
    finally:
        mic.close()
        spk.close()
    assert alsa_env.path("out.raw").read_bytes() == samples[:320].tobytes()
