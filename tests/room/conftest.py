"""The clocked room tier: the tests start their own PulseAudio server (voiceterm_devkit.room), a real Pipecat bot
with Silero VAD (voiceterm_devkit.room_bot) and the real daemon on the room's devices in `pacing = "device"`.

They skip, with the reason, only when the room cannot run here (scripts/setup-venv installs pulseaudio,
pulseaudio-utils, libasound2-plugins and espeak-ng, so on CI they run).
"""

from __future__ import annotations

import importlib.util

import pytest

from voiceterm_devkit.room import room_missing
from voiceterm_devkit.voices import have_espeak


@pytest.fixture
def room_ready() -> None:
    missing = room_missing()
    if missing:
        pytest.skip(f"the simulated room cannot run here: {missing}")
    if not have_espeak():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng; scripts/setup-venv does)")
    if importlib.util.find_spec("pipecat") is None:
        pytest.skip("pipecat-ai is not installed (install the 'bot' extra)")
