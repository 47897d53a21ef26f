"""The demo: its keyless Pipecat bot over the real wire protocol, the user's voice, and the whole demo end to end.

The end-to-end test runs `python -m voiceterm_devkit.demo --turns 1` (the real daemon against the real demo bot over
file-backed ALSA devices) and checks its report; it takes about 15 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import trio

from voiceterm_devkit import demo, frames_pb2
from voiceterm_devkit.bot import event_is

pipecat = pytest.importorskip("pipecat", reason="the demo bot needs the bot extra (pipecat-ai)")

IN_RATE = 16000
OUT_RATE = 24000


# --- the user's voice and the script -------------------------------------------------------------------------


@pytest.mark.bot
def test_synthetic_voice_is_speech_to_silero_and_a_tone_is_not() -> None:
    voice = demo.synthetic_voice(1.8, seed=1)
    assert voice.dtype == np.dtype("<i2")
    assert len(voice) == int(1.8 * IN_RATE)
    fraction = demo.vad_speech_fraction(voice)
    assert fraction is not None
    assert fraction >= 0.5, f"Silero VAD heard speech in only {fraction:.0%} of the synthetic voice"
    tone = demo.to_int16(0.5 * np.sin(2 * np.pi * 220 * np.arange(IN_RATE * 2) / IN_RATE))
    assert demo.vad_speech_fraction(tone) == 0.0


def test_espeak_voice_when_installed(tmp_path: Path) -> None:
    pcm = demo.speak("Hello bot.", tmp_path)
    if pcm is None:
        pytest.skip("espeak-ng is not installed")
    assert pcm.dtype == np.dtype("<i2")
    assert 0.3 < len(pcm) / IN_RATE < 3.0
    assert np.abs(pcm.astype(np.int32)).max() > 10000  # normalised, not near-silence
    assert list(tmp_path.iterdir()) == []  # the temporary WAV is gone


def test_layout_is_exactly_as_long_as_the_script() -> None:
    utterances = [
        demo.Utterance("a", demo.synthetic_voice(1.0, seed=1), "synthetic"),
        demo.Utterance("b", demo.synthetic_voice(1.5, seed=2), "synthetic"),
    ]
    capture, cues = demo.lay_out(utterances)
    assert len(cues) == 2
    for utterance, cue in zip(utterances, cues, strict=True):
        start = round(cue.speech_start_s * IN_RATE)
        assert np.array_equal(capture[start : start + len(utterance.pcm)], utterance.pcm)
        assert not capture[round(cue.press_s * IN_RATE) : start].any()  # the press comes before the speech
        assert cue.press_s < cue.speech_start_s < cue.speech_end_s < cue.release_s
    # The second press waits for the first reply to be over.
    first_reply_end = cues[0].release_s + demo.expected_reply_s(cues[0].release_s - cues[0].press_s)
    assert cues[1].press_s > first_reply_end + 1.0
    # Nothing after the last reply but the room to quit: stale data past the end is never read.
    last = cues[-1]
    expected_end = (
        last.speech_end_s
        + demo.RELEASE_LAG_S
        + demo.expected_reply_s(last.release_s - last.press_s)
        + demo.REPLY_SLACK_S
        + demo.PRESS_LEAD_S
        + demo.TAIL_S
    )
    assert abs(len(capture) / IN_RATE - expected_end) < 3 / IN_RATE


def test_sound_segments_find_replies_and_merge_short_gaps() -> None:
    rate = OUT_RATE
    audio = np.zeros(rate * 4, dtype="<i2")
    burst = demo.to_int16(0.3 * np.sin(2 * np.pi * 440 * np.arange(rate // 2) / rate))
    audio[rate // 4 : rate // 4 + len(burst)] = burst  # 0.25-0.75 s
    audio[rate * 8 // 10 : rate * 8 // 10 + len(burst)] = burst  # 0.80-1.30 s: a 50 ms gap, same reply
    audio[rate * 3 : rate * 3 + len(burst)] = burst  # 3.0-3.5 s: another reply
    segments = demo.sound_segments(audio, rate)
    assert len(segments) == 2
    (s1, e1), (s2, e2) = segments
    assert s1 == rate // 4 + 1  # the first non-zero sample (sin(0) is 0)
    assert abs(e1 - int(1.3 * rate)) <= rate // 100
    assert abs(s2 - 3 * rate) <= 1
    assert abs(e2 - int(3.5 * rate)) <= rate // 100


@pytest.mark.bot
@pytest.mark.filterwarnings("ignore:websockets.legacy is deprecated:DeprecationWarning")
def test_reply_fidelity_recognises_the_bots_transform_only() -> None:
    from voiceterm_devkit.demo_bot import make_reply

    mic = demo.synthetic_voice(1.5, seed=5)
    around = np.concatenate([np.zeros(4000, dtype="<i2"), mic, np.zeros(4000, dtype="<i2")])
    reply = np.frombuffer(make_reply(mic.tobytes(), IN_RATE, OUT_RATE), dtype="<i2")
    assert demo.reply_fidelity(reply, around) > 0.99
    # Not pitched (a plain echo), or another voice: far from a match.
    assert demo.reply_fidelity(reply, around, pitch=1.0) < 0.5
    other = np.concatenate(
        [np.zeros(4000, dtype="<i2"), demo.synthetic_voice(1.5, seed=6), np.zeros(4000, dtype="<i2")]
    )
    assert demo.reply_fidelity(reply, other) < 0.5


# --- the demo bot over the wire ----------------------------------------------------------------------------------


def _rtvi(kind: str, data: object | None = None) -> bytes:
    frame = frames_pb2.Frame()
    message = {"label": "rtvi-ai", "type": kind, "id": uuid.uuid4().hex[:8]}
    if data is not None:
        message["data"] = data
    frame.message.data = json.dumps(message)
    return frame.SerializeToString()


def _ptt(state: str) -> bytes:
    return _rtvi("client-message", {"t": "push_to_talk", "d": {"state": state}})


def _audio(pcm: bytes) -> bytes:
    frame = frames_pb2.Frame()
    frame.audio.audio = pcm
    frame.audio.sample_rate = IN_RATE
    frame.audio.num_channels = 1
    return frame.SerializeToString()


class Received:
    """What the client got from the bot: RTVI message types in order, and bot audio."""

    def __init__(self) -> None:
        self.types: list[str] = []
        self.interruptions = 0
        self.audio = bytearray()
        self.rates: set[int] = set()
        self.changed = trio.Event()

    def note(self, raw: bytes) -> None:
        frame = frames_pb2.Frame()
        frame.ParseFromString(raw)
        kind = frame.WhichOneof("frame")
        if kind == "message":
            self.types.append(json.loads(frame.message.data).get("type", ""))
        elif kind == "audio":
            self.audio.extend(frame.audio.audio)
            self.rates.add(frame.audio.sample_rate)
        elif kind == "interruption":
            self.interruptions += 1
        self.changed.set()
        self.changed = trio.Event()

    async def wait(self, predicate, timeout: float = 10.0) -> None:
        with trio.fail_after(timeout):
            while not predicate():
                await self.changed.wait()


async def _stream(ws, pcm: np.ndarray, chunk_ms: int = 20) -> None:
    """Send int16 audio in real time, as the daemon does."""
    step = IN_RATE * chunk_ms // 1000
    for i in range(0, len(pcm), step):
        await ws.send_message(_audio(pcm[i : i + step].tobytes()))
        await trio.sleep(chunk_ms / 1000)


@pytest.fixture
def demo_bot(tmp_path: Path):
    bot = demo.DemoBotProcess(in_rate=IN_RATE, out_rate=OUT_RATE, log_dir=tmp_path)
    bot.start()
    try:
        bot.wait_listening(timeout=45.0)
        yield bot
    finally:
        bot.stop()


async def _session(bot, body) -> Received:
    from trio_websocket import open_websocket_url

    received = Received()
    async with open_websocket_url(bot.url) as ws, trio.open_nursery() as nursery:

        async def reader() -> None:
            while True:
                received.note(await ws.get_message())

        nursery.start_soon(reader)
        await ws.send_message(_rtvi("client-ready", {"version": "2.2.0", "about": {"library": "test"}}))
        await received.wait(lambda: "bot-ready" in received.types)
        await body(ws, received)
        nursery.cancel_scope.cancel()
    return received


@pytest.mark.bot
# Importing the demo bot (for make_reply) imports pipecat's server transport, which touches websockets.legacy.
@pytest.mark.filterwarnings("ignore:websockets.legacy is deprecated:DeprecationWarning")
async def test_push_to_talk_turn_is_answered_with_the_turn_pitched_up(demo_bot) -> None:
    voice = demo.synthetic_voice(1.2, seed=3)
    mark = demo_bot.mark()

    async def body(ws, received: Received) -> None:
        await ws.send_message(_ptt("start"))
        await _stream(ws, voice)
        await ws.send_message(_ptt("stop"))
        await received.wait(lambda: "bot-stopped-speaking" in received.types)

    with trio.fail_after(30):
        received = await _session(demo_bot, body)

    ended = demo_bot.wait_for(event_is("turn_ended"), 5.0, since=mark)
    assert ended["by"] == "push-to-talk"
    assert ended["bytes"] == len(voice) * 2  # every sample sent between start and stop, nothing else
    queued = demo_bot.wait_for(event_is("reply_queued"), 5.0, since=mark)
    assert queued["seconds"] == pytest.approx(demo.expected_reply_s(len(voice) / IN_RATE), abs=0.05)
    started = demo_bot.wait_for(event_is("reply_started"), 5.0, since=mark)
    assert started["t"] >= ended["t"]
    assert received.rates == {OUT_RATE}
    # The reply is whole (pipecat pads the last 40 ms chunk), and the user turn and bot speech were announced.
    assert len(received.audio) / 2 / OUT_RATE == pytest.approx(queued["seconds"], abs=0.045)
    order = [t for t in received.types if t.endswith("speaking")]
    assert order == [
        "user-started-speaking",
        "user-stopped-speaking",
        "bot-started-speaking",
        "bot-stopped-speaking",
    ]
    reply = np.frombuffer(bytes(received.audio), dtype="<i2").astype(np.float64)
    # The beep, then the voice pitched up: a 1.25x resampled copy of what was sent.
    expected = np.frombuffer(demo_bot_reply(voice.tobytes()), dtype="<i2").astype(np.float64)
    n = min(len(expected), len(reply))
    assert np.corrcoef(reply[:n], expected[:n])[0, 1] > 0.99


def demo_bot_reply(pcm: bytes) -> bytes:
    from voiceterm_devkit.demo_bot import make_reply

    return make_reply(pcm, IN_RATE, OUT_RATE)


@pytest.mark.bot
async def test_press_while_the_bot_speaks_interrupts_it(demo_bot) -> None:
    voice = demo.synthetic_voice(2.0, seed=4)
    mark = demo_bot.mark()

    async def body(ws, received: Received) -> None:
        await ws.send_message(_ptt("start"))
        await _stream(ws, voice)
        await ws.send_message(_ptt("stop"))
        await received.wait(lambda: "bot-started-speaking" in received.types)
        await received.wait(lambda: len(received.audio) >= OUT_RATE // 2)  # half a second in
        await ws.send_message(_ptt("start"))
        await received.wait(lambda: "bot-stopped-speaking" in received.types)
        await ws.send_message(_ptt("stop"))

    with trio.fail_after(30):
        received = await _session(demo_bot, body)

    assert received.interruptions >= 1
    assert "bot-interrupted" in received.types
    demo_bot.wait_for(event_is("reply_interrupted", turn=1), 5.0, since=mark)
    # Far less than the whole reply went out.
    full = demo.expected_reply_s(len(voice) / IN_RATE)
    assert len(received.audio) / 2 / OUT_RATE < full - 0.5
    # The second press began turn 2; a release with nothing said gets no reply.
    demo_bot.wait_for(event_is("turn_started", turn=2, by="push-to-talk"), 5.0, since=mark)


@pytest.mark.bot
async def test_without_push_to_talk_messages_vad_ends_the_turn(demo_bot) -> None:
    voice = demo.synthetic_voice(1.5, seed=2)
    lead = np.zeros(IN_RATE // 2, dtype="<i2")
    mark = demo_bot.mark()

    async def body(ws, received: Received) -> None:
        await _stream(ws, np.concatenate([lead, voice]))
        # Silence after speech: Silero's stop (0.2 s) plus the turn's speech timeout (0.3 s) end the turn.
        await _stream(ws, np.zeros(IN_RATE, dtype="<i2"))
        await received.wait(lambda: "bot-started-speaking" in received.types)

    with trio.fail_after(30):
        await _session(demo_bot, body)

    started = demo_bot.wait_for(event_is("turn_started"), 5.0, since=mark)
    assert started["by"] == "vad"
    ended = demo_bot.wait_for(event_is("turn_ended"), 5.0, since=mark)
    assert ended["by"] == "vad"
    # VAD confirms speech late, but the pre-roll keeps the start: the turn covers (nearly) all of the voice.
    assert ended["seconds"] >= len(voice) / IN_RATE - 0.1


@pytest.mark.bot
async def test_push_to_talk_taking_over_mid_speech_ends_the_turn_at_the_release(demo_bot) -> None:
    voice = demo.synthetic_voice(2.4, seed=3)
    half = len(voice) // 2
    lead = np.zeros(IN_RATE // 2, dtype="<i2")
    mark = demo_bot.mark()

    async def body(ws, received: Received) -> None:
        # VAD opens the turn; then the client starts using the button while still talking.
        await _stream(ws, np.concatenate([lead, voice[:half]]))
        await ws.send_message(_ptt("start"))
        await _stream(ws, voice[half:])
        # Keep the voice going after the release: VAD still hears speech, the release must still end the turn.
        await ws.send_message(_ptt("stop"))
        await _stream(ws, voice[:half])
        await received.wait(lambda: "bot-started-speaking" in received.types)

    with trio.fail_after(30):
        await _session(demo_bot, body)

    started = demo_bot.wait_for(event_is("turn_started"), 5.0, since=mark)
    assert started["by"] == "vad"
    ended = demo_bot.wait_for(event_is("turn_ended"), 5.0, since=mark)
    assert ended["by"] == "push-to-talk"
    assert ended["turn"] == started["turn"]  # one turn: the press joined the open one
    # It ended at the release, not when VAD next heard silence: it holds (nearly) the whole voice, no more.
    assert len(voice) / IN_RATE - 0.5 <= ended["seconds"] <= len(voice) / IN_RATE + 0.3
    assert [e["turn"] for e in demo_bot.events()[mark:] if e["event"] == "turn_started"] == [started["turn"]]


@pytest.mark.bot
async def test_disconnect_bot_ends_the_session_not_the_bot(demo_bot) -> None:
    from trio_websocket import ConnectionClosed, open_websocket_url

    with trio.fail_after(20):
        async with open_websocket_url(demo_bot.url) as ws:
            await ws.send_message(_rtvi("client-ready", {"version": "2.2.0", "about": {"library": "test"}}))
            await ws.send_message(_rtvi("disconnect-bot"))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.get_message()
            # trio-websocket 0.12 never closes its TCP end after a close handshake the server started (it waits
            # for the server's FIN, then leaves the socket open); the server waits 10 s for it. Close it here.
            await ws._stream.aclose()
        assert closed.value.reason.code == 1000
        await demo_bot.wait_for_async(event_is("disconnect_bot"), 5.0)
        await demo_bot.wait_for_async(event_is("client_disconnected"), 5.0)

        async def body(ws, received: Received) -> None:
            pass  # the handshake alone proves the bot serves the next session

        await _session(demo_bot, body)
    assert demo_bot.running


# --- the whole demo -----------------------------------------------------------------------------------------------


@pytest.mark.bot
@pytest.mark.alsa
@pytest.mark.timeout(90)
def test_demo_end_to_end_one_turn(tmp_path: Path) -> None:
    """The README's main job, shortened to one utterance: the real daemon, the real bot, file-backed ALSA."""
    out = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "voiceterm_devkit.demo",
            "--turns",
            "1",
            "--voice",
            "synthetic",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )
    assert proc.returncode == 0, f"demo failed:\n{proc.stdout}\n{proc.stderr}"
    report = json.loads((out / "report.json").read_text())
    assert report["ok"], report["problems"]
    assert report["handshake"]["bot_connected"]
    assert report["exit_status"] == 0
    (turn,) = report["turns"]
    assert turn["bot_turn_by"] == "push-to-talk"
    # The bot heard what the daemon sent while the key was down (the 20 ms mic period is the resolution).
    assert turn["bot_heard_s"] == pytest.approx(turn["held_s"], abs=0.15)
    assert turn["bot_reply_s"] == pytest.approx(demo.expected_reply_s(turn["bot_heard_s"]), abs=0.05)
    # The speaker got the whole reply (its silent edges may be trimmed by the energy cut).
    assert turn["speaker_reply_s"] == pytest.approx(turn["bot_reply_s"], abs=0.25)
    # What the speaker got is the mic audio of the turn, pitched up by the bot, sample for sample.
    assert turn["fidelity"] > 0.98
    # In causal order (the figures themselves are the demo's report, not a test's): the reply reached the
    # speaker after the release, and after the bot ended the turn.
    (latency,) = report["latency"]
    assert latency["release_to_speaker_s"] > 0
    assert latency["release_to_bot_turn_end_s"] < latency["release_to_speaker_s"]
    with demo.wave.open(str(out / "reply.wav")) as w:
        assert w.getframerate() == OUT_RATE
        assert w.getnframes() / OUT_RATE >= turn["speaker_reply_s"]
    assert "Latency" in proc.stdout and "Handshake" in proc.stdout
