"""SIGHUP's live part: each component takes the keys it can change without a restart."""

from __future__ import annotations

import trio

from voiceterm.config import is_live
from voiceterm.config_load import config_from_dict
from voiceterm.config_reload import changed_keys, merge, plan_reload
from voiceterm.io.link import Link
from voiceterm.io.mic import Microphone
from voiceterm.io.speaker import Speaker


def test_changed_keys_and_merge_keep_restart_keys() -> None:
    old = config_from_dict({}, environ={})
    new = config_from_dict(
        {"audio": {"volume_percent": 50, "capture_device": "plughw:1"}, "reconnect": {"max_delay": 10.0}},
        environ={},
    )
    changed = changed_keys(old, new)
    assert sorted(changed) == ["audio.capture_device", "audio.volume_percent", "reconnect.max_delay"]
    live = [k for k in changed if is_live(k)]
    assert sorted(live) == ["audio.volume_percent", "reconnect.max_delay"]
    merged = merge(old, new, live)
    assert merged.audio.volume_percent == 50 and merged.reconnect.max_delay == 10.0
    assert merged.audio.capture_device == "default"  # needs a restart: the running value stays


def test_the_plan_applies_the_schemas_live_keys_and_keeps_the_rest() -> None:
    old = config_from_dict({}, environ={})
    new = config_from_dict(
        {"audio": {"volume_percent": 50, "capture_device": "plughw:1"}, "gpio": {"debounce_ms": 10}},
        environ={},
    )
    plan = plan_reload(old, new)
    assert plan.live == ("audio.volume_percent",)
    assert sorted(plan.restart) == ["audio.capture_device", "gpio.debounce_ms"]
    assert plan.config.audio.volume_percent == 50
    assert plan.config.audio.capture_device == "default" and plan.config.gpio.debounce_ms == 30


def test_token_change_is_seen_though_masked() -> None:
    old = config_from_dict({"bot": {"token": "a"}}, environ={})
    new = config_from_dict({"bot": {"token": "b"}}, environ={})
    assert changed_keys(old, new) == ["bot.token"]


async def test_components_take_live_values() -> None:
    old = config_from_dict({}, environ={})
    new = config_from_dict(
        {
            "audio": {"volume_percent": 25, "mic_gain_db": 6.0},
            "earcons": {"press": False},
            "reconnect": {"initial_delay": 2.0, "multiplier": 2.0, "max_delay": 8.0, "max_attempts": 3},
            "heartbeat": {"interval": 3.0},
        },
        environ={},
    )
    link = Link(old)
    link.reconfigure(new)
    assert link.policy.base_delay(1) == 2.0 and link.policy.base_delay(3) == 8.0
    assert link.policy.max_attempts == 3
    assert link.config.heartbeat.interval == 3.0
    spk = Speaker(old.audio, old.earcons)
    spk.reconfigure(new)
    assert spk.volume == 0.25 and spk.earcons.press is False
    mic = Microphone(old.audio)
    mic.reconfigure(new)
    assert mic.gain_db == 6.0
    await trio.lowlevel.checkpoint()
