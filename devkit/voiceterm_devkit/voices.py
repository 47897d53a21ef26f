"""Spoken test material: real synthetic speech from espeak-ng, resampled to the rate a test needs.

Voice activity detectors (Silero in the bot) are trained on speech; a tone or a harmonic stand-in does not
trigger them the way a voice does. espeak-ng (Debian package `espeak-ng`, installed by scripts/setup-venv)
speaks a sentence to a WAV on stdout in a few milliseconds; the result is cached per text, voice and rate.
Two voices keep the bot and the user apart: the bot speaks `en-us`, the user `en-gb` a little faster.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import wave

import numpy as np
import soxr

BOT_VOICE = "en-us"
USER_VOICE = "en-gb-x-rp"

BOT_LINES = (
    "Good morning. The weather today is mostly sunny, with a light breeze from the west.",
    "Your next appointment is at half past ten, in the meeting room on the second floor.",
    "I found three restaurants nearby that are open now. The closest one is Italian.",
    "The train to the city centre leaves in twelve minutes from platform four.",
    "Sure. I have set a timer for fifteen minutes, and I will remind you when it ends.",
    "The museum is open until six tonight, and entry is free on the first Sunday.",
    "There is a pharmacy two streets away, next to the bakery on the corner.",
    "Your package was delivered this morning and left with the reception desk.",
)
USER_LINES = (
    "Wait, stop, that is not what I asked.",
    "Hold on, can you repeat the last part?",
    "No, I meant the one near the station.",
    "Sorry, which platform did you say?",
)


class VoiceUnavailable(RuntimeError):
    """espeak-ng is not installed; the message says how to get it."""


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


@functools.lru_cache(maxsize=64)
def _speak(text: str, voice: str, speed: int, rate: int) -> bytes:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise VoiceUnavailable(
            "espeak-ng is not installed: apt-get install espeak-ng (scripts/setup-venv does)"
        )
    wav = subprocess.run(
        [exe, "-v", voice, "-s", str(speed), "--stdout", text], capture_output=True, check=True, timeout=30
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        native = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    y = soxr.resample(x, native, rate) if native != rate else x
    # espeak speaks at about -12 dBFS peak; bring every line to the same peak so levels are comparable.
    peak = float(np.max(np.abs(y))) or 1.0
    return (np.clip(y / peak * 0.5, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def speak(text: str, rate: int, *, voice: str = BOT_VOICE, speed: int = 165) -> np.ndarray:
    """`text` spoken by espeak-ng as mono int16 at `rate` Hz, peak at -6 dBFS."""
    return np.frombuffer(_speak(text, voice, speed, rate), dtype="<i2").copy()


def bot_line(index: int, rate: int) -> np.ndarray:
    """The bot's `index`-th sentence (cycling through BOT_LINES)."""
    return speak(BOT_LINES[index % len(BOT_LINES)], rate, voice=BOT_VOICE)


def user_line(index: int, rate: int) -> np.ndarray:
    """The user's `index`-th interjection (cycling through USER_LINES), in another voice, a little faster."""
    return speak(USER_LINES[index % len(USER_LINES)], rate, voice=USER_VOICE, speed=180)


__all__ = [
    "BOT_LINES",
    "USER_LINES",
    "VoiceUnavailable",
    "bot_line",
    "have_espeak",
    "speak",
    "user_line",
]
