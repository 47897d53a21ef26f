"""voiceterm's push-to-talk helper for bot authors (`voiceterm.pipecat_ptt`) in a stock Pipecat turn stack,
driven by the real daemon: the press starts the user's turn, the release ends it, the voice detector cannot end
it in between, the aggregator still gets the transcript; a session without push-to-talk keeps the stock turns.

Real parts: `voiceterm_devkit.turn_bot --helper` (pipecat's LLM user aggregator with Silero VAD and the default
smart-turn stack as the fallback, an STT stand-in), the Daemon on ALSA file PCMs streaming formant speech that
Silero takes for a voice. Order and causes only: the figures are `voiceterm_devkit.ptt_turns`'s job.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trio

from voiceterm.config import Config
from voiceterm.config_load import config_from_dict
from voiceterm_devkit.alsa_files import AlsaFileConfig, voiced_speech, write_raw
from voiceterm_devkit.bot import BotProcess, event_is
from voiceterm_devkit.eventsock import Client, running, wait_until
from voiceterm_devkit.ptt_turns import TurnBot

pytestmark = [pytest.mark.bot, pytest.mark.alsa]


@pytest.fixture(scope="module")
def helper_bot(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("pipecat", reason="pipecat-ai is not installed (install the 'bot' extra)")
    with TurnBot(helper=True, log_dir=tmp_path_factory.mktemp("turn-bot")) as bot:
        yield bot


def make_config(tmp_path: Path, bot: BotProcess, monkeypatch, mode: str, mic: np.ndarray) -> Config:
    pytest.importorskip("alsaaudio")
    alsa = AlsaFileConfig(tmp_path / "alsa")
    write_raw(tmp_path / "mic.raw", mic)
    alsa.add_capture("mic", tmp_path / "mic.raw").add_playback("spk", tmp_path / "spk.raw")
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(alsa.write()))
    return config_from_dict(
        {
            "bot": {"url": bot.url, "connect_timeout": 3.0, "ready_timeout": 3.0},
            "audio": {"capture_device": "mic", "playback_device": "spk", "pacing": "wall-clock"},
            "earcons": {"enabled": False},
            "push_to_talk": {"mode": mode},
            "gpio": {"enabled": False},
            "status": {"socket": str(tmp_path / "status.sock")},
            "events": {"socket": str(tmp_path / "events.sock")},
        }
    )


async def test_the_press_starts_the_turn_and_the_release_ends_it(
    helper_bot: BotProcess, tmp_path: Path, monkeypatch
) -> None:
    voice = voiced_speech(20, 16000)
    cfg = make_config(tmp_path, helper_bot, monkeypatch, "hold", np.tile(voice, 3))
    with trio.fail_after(40):
        async with running(cfg), Client.open(cfg.events.socket) as sub:
            await sub.request("subscribe", events=["user-started-speaking", "user-stopped-speaking"])
            mark = helper_bot.mark()
            assert (await sub.request("talk", state="start"))["ok"]
            await helper_bot.wait_for_async(event_is("user_started"), 5, since=mark)
            await helper_bot.wait_for_async(event_is("vad", state="started"), 5, since=mark)  # the user talks
            await trio.sleep(1.0)  # holding the button while talking
            assert (await sub.request("talk", state="stop"))["ok"]
            await helper_bot.wait_for_async(event_is("context"), 10, since=mark)
            await wait_until(lambda: "user-stopped-speaking" in sub.names(), 5)
    story = [e["event"] + (f":{e['state']}" if "state" in e else "") for e in helper_bot.events()[mark:]]
    turn = [
        s for s in story if s in ("push_to_talk:start", "user_started", "push_to_talk:stop", "user_stopped")
    ]
    # the button delimits the turn: nothing the voice detector heard ended it while the button was held
    assert turn == ["push_to_talk:start", "user_started", "push_to_talk:stop", "user_stopped"]
    # and the aggregator asked the "LLM" only with the transcript of the last words in hand
    assert story.index("transcript") < story.index("context")
    assert sub.names() == ["user-started-speaking", "user-stopped-speaking"]  # what the device shows


async def test_a_session_without_push_to_talk_keeps_the_stock_turns(
    helper_bot: BotProcess, tmp_path: Path, monkeypatch
) -> None:
    voice = voiced_speech(1.5, 16000)
    pause = np.zeros(16000 * 2, dtype="<i2")
    cfg = make_config(
        tmp_path, helper_bot, monkeypatch, "always-on", np.tile(np.concatenate([voice, pause]), 10)
    )
    with trio.fail_after(40):
        async with running(cfg):
            mark = helper_bot.mark()
            await helper_bot.wait_for_async(event_is("user_started"), 10, since=mark)
            await helper_bot.wait_for_async(event_is("user_stopped"), 10, since=mark)
    assert not [
        e for e in helper_bot.events()[mark:] if e["event"] == "push_to_talk"
    ]  # the voice, not a button
