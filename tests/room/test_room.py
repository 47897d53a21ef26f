"""Hands-free in the simulated room: the bot's own voice comes back into the microphone 60 ms later at -20 dB,
and the user talks over it. Asserted on the bot's own decisions (its VAD and turn logic) and the daemon's state,
never on timings; the 20-reply figures come from `scripts/room`.

With the front-end on and the playback buffer at its largest setting (the reference must still arrive before
its echo): the user's voice over the bot interrupts it, by the user's voice; the canceller converged (its own
ERLE and delay estimate); what the bot heard of its own voice is below what the microphone picked up and is
never taken for the user.
With it off: the bot takes its own echo for the user and cuts itself off — the failure the front-end removes.
"""

from __future__ import annotations

import dataclasses

import pytest

from voiceterm.config import AudioConfig
from voiceterm_devkit.room_run import RoomRig, figures

pytestmark = [pytest.mark.bot, pytest.mark.alsa, pytest.mark.timeout(240)]

MAX_BUFFER_PERIODS = next(f for f in dataclasses.fields(AudioConfig) if f.name == "buffer_periods").metadata[
    "max"
]


def test_with_the_front_end_the_user_barges_in_by_voice_and_the_echo_is_cancelled(
    room_ready, tmp_path
) -> None:
    audio = {"buffer_periods": MAX_BUFFER_PERIODS}
    with RoomRig(tmp_path, frontend={"mode": "on"}, audio=audio) as rig:
        rig.user_alone(0)
        plain = rig.reply(0)
        barge = rig.reply(1, burst_line=0)
        status = rig.status()
        result = figures(rig)
    # The user's voice reaches the bot through the front-end: its turn logic started a user turn.
    assert any(e["event"] == "user_started" for e in rig.bot.events())
    # Over the bot, the user's voice interrupted it: the bot's user turn began after the burst did.
    assert barge.burst is not None and barge.interrupted and barge.barged_in, barge
    # The daemon emptied its speaker on the interruption (timed from the interruption's arrival until no old
    # audio was left in the device) and went on streaming the mic without losing a period.
    assert status["latency"]["interruption"]["samples_total"] >= 1
    assert status["audio"]["capture"]["overruns_total"] == 0
    fe = status["frontend"]
    assert fe["state"] == "running" and fe["error"] is None
    assert fe["resets_total"] == 1  # the devices opened once
    # The canceller converged with the reference coming through the largest playback buffer.
    assert fe["echo_delay_ms"] is not None and fe["erle_db"] is not None and fe["erle_db"] > 20, fe
    assert fe["diverged_total"] == 0
    # What the bot heard of its own voice was below what the microphone picked up (how far below is the
    # figure `scripts/room` reports: the rig aligns two recordings by their clocks, which a busy machine
    # skews), and it was never taken for the user: no VAD on the bot's own voice, no self-interruption.
    assert plain.started is not None and result["erle_db"] is not None and result["erle_db"] > 0, result
    assert result["self_vad_total"] == 0 and result["self_interruptions"] == 0, result


def test_without_the_front_end_the_bot_interrupts_itself_on_its_own_echo(room_ready, tmp_path) -> None:
    with RoomRig(tmp_path, frontend={"mode": "off"}) as rig:
        trial = rig.reply(2)
        status = rig.status()
    assert status["frontend"]["state"] == "off"
    # No user spoke, yet the bot's VAD fired while it spoke and its reply was cut short by that turn.
    assert trial.burst is None and trial.self_vad >= 1 and trial.self_interrupted, trial
