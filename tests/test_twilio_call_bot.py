"""Twilio media-stream mode as configured in [twilio], against a real Pipecat bot: the call's identifiers and
custom parameters reach what pipecat's runner hands a bot (`call_data`, read by pipecat's own
parse_telephony_websocket), and keypad presses reach the bot as Twilio dtmf events (InputDTMFFrame)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from voiceterm.config_load import config_from_dict
from voiceterm_devkit.alsa_files import AlsaFileConfig
from voiceterm_devkit.bot import BotProcess, event_is
from voiceterm_devkit.eventsock import Client, running

pytestmark = [pytest.mark.bot, pytest.mark.alsa]

PARAMETERS = {"user_id": "u-42", "from_number": "+15550100", "lang": "de"}


async def test_twilio_custom_parameters_reach_the_runners_call_data_and_dtmf_reaches_the_bot(
    twilio_bot: BotProcess, tmp_path: Path, monkeypatch
) -> None:
    pytest.importorskip("alsaaudio")
    alsa = AlsaFileConfig(tmp_path / "alsa")
    (tmp_path / "mic.raw").write_bytes(bytes(8000 * 2 * 20))
    alsa.add_capture("mic", tmp_path / "mic.raw").add_playback("spk", tmp_path / "spk.raw")
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(alsa.write()))
    cfg = config_from_dict(
        {
            "bot": {"url": twilio_bot.url, "serializer": "twilio", "connect_timeout": 2.0},
            "audio": {"capture_device": "mic", "playback_device": "spk", "pacing": "wall-clock"},
            "earcons": {"enabled": False},
            "gpio": {"enabled": False},
            "status": {"socket": str(tmp_path / "status.sock")},
            "events": {"socket": str(tmp_path / "events.sock")},
            "twilio": {"stream_sid": "MZfixed01", "call_sid": "CAfixed01", "custom_parameters": PARAMETERS},
        }
    )
    mark = twilio_bot.mark()
    with trio.fail_after(40):
        async with running(cfg), Client.open(cfg.events.socket) as client:
            start = await twilio_bot.wait_for_async(event_is("twilio_start"), 10, since=mark)
            refused = await client.request("client-message", t="x", d=None)
            assert refused["error"] == "the twilio serializer carries no RTVI messages (only dtmf)"
            reply = await client.request("dtmf", buttons="4*2")
            assert reply["result"] == {"buttons": "4*2", "messages": 3}  # Twilio: one event per key
            keys = []
            since = mark
            for _ in range(3):
                key = await twilio_bot.wait_for_async(event_is("dtmf"), 5, since=since)
                since = twilio_bot.events().index(key) + 1
                keys.append(key["key"])
    assert start["transport"] == "twilio"
    call_data = start["call_data"]
    assert call_data["body"] == PARAMETERS
    assert (call_data["stream_id"], call_data["call_id"]) == ("MZfixed01", "CAfixed01")
    assert call_data["from"] == "+15550100"  # the runner promotes from_number, as for a real call
    assert keys == ["4", "*", "2"]
