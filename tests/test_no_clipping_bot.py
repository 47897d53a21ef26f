"""Never clip the bot: a real Pipecat bot whose interruptions are off hears the user talk over it (it sends
RTVI user-started-speaking) and talks on; every sample it sent must reach the speaker.

Real parts: the echo bot in its `no-interrupt` mode (pipecat's Silero VAD and user-turn processor, with a VAD
turn start that does not interrupt), the whole Daemon in always-on mode streaming a speech-like mic file, and
the speaker on an ALSA file PCM. The bot speaks `noise_signal`, which has no zero sample: stripped of the
silence the speaker plays around and between chunks, the file must hold that signal exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trio

from voiceterm.config_load import config_from_dict
from voiceterm_devkit.alsa_files import AlsaFileConfig, read_raw, speech_like, write_raw
from voiceterm_devkit.bot import BotProcess, event_is
from voiceterm_devkit.echo_bot import noise_signal
from voiceterm_devkit.eventsock import Client, running, wait_until

pytestmark = [pytest.mark.bot, pytest.mark.alsa]

MIC_RATE = 16000
OUT_RATE = 24000
SAY_MS = 3000
SEED = 5
TALK_S, PAUSE_S = 0.6, 0.6  # the user's speech on the mic: bursts, so VAD reports turns all along


def talking_mic(seconds: float) -> np.ndarray:
    burst = speech_like(TALK_S, MIC_RATE)
    cycle = np.concatenate([burst, np.zeros(round(PAUSE_S * MIC_RATE), dtype="<i2")])
    return np.tile(cycle, int(seconds / (TALK_S + PAUSE_S)) + 1)


async def test_with_interruptions_off_every_sample_the_bot_sent_reaches_the_speaker(
    tmp_path: Path, monkeypatch
) -> None:
    pytest.importorskip("alsaaudio")
    pytest.importorskip("pipecat", reason="pipecat-ai is not installed (install the 'bot' extra)")
    alsa = AlsaFileConfig(tmp_path / "alsa")
    write_raw(tmp_path / "mic.raw", talking_mic(40))
    speaker_file = tmp_path / "spk.raw"
    alsa.add_capture("mic", tmp_path / "mic.raw").add_playback("spk", speaker_file)
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(alsa.write()))
    with BotProcess(log_dir=tmp_path, mode="no-interrupt", out_rate=OUT_RATE) as bot:
        cfg = config_from_dict(
            {
                "bot": {
                    "url": bot.url,
                    "connect_timeout": 2.0,
                    "ready_timeout": 2.0,
                    "device_id": "clip-test",
                },
                "audio": {
                    "capture_device": "mic",
                    "playback_device": "spk",
                    "pacing": "wall-clock",
                    "player_sample_rate": OUT_RATE,
                },
                "earcons": {"enabled": False},  # the speaker then plays the bot and silence, nothing else
                # The synthetic talker must reach the bot's VAD as it is: noise suppression and gain are
                # for real voices in real rooms (tests/room), and file devices have no echo to cancel.
                "frontend": {"mode": "off"},
                "push_to_talk": {"mode": "always-on"},
                "gpio": {"enabled": False},
                "status": {"socket": str(tmp_path / "status.sock")},
                "events": {"socket": str(tmp_path / "events.sock")},
            }
        )
        with trio.fail_after(60):
            async with running(cfg) as daemon, Client.open(cfg.events.socket) as sub:
                await sub.request("subscribe")
                mark = bot.mark()
                say = {"ms": SAY_MS, "signal": "noise", "seed": SEED}
                assert (await sub.request("client-message", t="say", d=say))["ok"]
                said = await bot.wait_for_async(event_is("say"), 5, since=mark)
                # the cause: the bot heard the user start talking while it was speaking, and talked on
                await bot.wait_for_async(
                    event_is("user_turn", state="started", bot_speaking=True), 10, since=mark
                )
                await wait_until(lambda: "bot-stopped-speaking" in sub.names(), 15, "the bot to finish")
                await wait_until(lambda: not daemon.speaker.playing, 5, "the speaker to play it all")
                flushed = daemon.speaker.stats()["flushed_frames_total"]
    names = sub.names()
    talking = names[names.index("bot-started-speaking") : names.index("bot-stopped-speaking")]
    assert "user-started-speaking" in talking  # the event that used to flush the speaker came mid-speech
    assert "bot-interrupted" not in names
    assert flushed == 0
    sent = np.frombuffer(noise_signal(SAY_MS, OUT_RATE, SEED), dtype="<i2")
    assert said["samples"] == len(sent)
    played = read_raw(speaker_file)
    audible = played[played != 0]
    print(
        f"\nbot sent {len(sent)} samples; the speaker played {len(audible)} of them ({len(played)} written)"
    )
    assert len(audible) == len(sent)
    assert np.array_equal(audible, sent)
