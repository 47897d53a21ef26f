"""Round trips against the real pipecat-ai serializers: what voiceterm encodes, pipecat decodes into the
frames its pipeline expects, and what pipecat's bot side emits, voiceterm decodes into typed events.

pipecat is asyncio, so each test drives it with ``asyncio.run`` inside a plain function.
"""

from __future__ import annotations

import asyncio
import json
import typing

import numpy as np
import pytest

pytest.importorskip("pipecat", reason="pipecat-ai is not installed (scripts/setup-venv test,bot installs it)")

import pipecat.processors.frameworks.rtvi.models as RTVI
from loguru import logger
from pipecat.audio.utils import create_stream_resampler, pcm_to_ulaw, ulaw_to_pcm
from pipecat.clocks.system_clock import SystemClock
from pipecat.frames.frames import (
    InputAudioRawFrame,
    InputTransportMessageFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
    TextFrame,
    TranscriptionFrame,
)
from pipecat.pipeline.capabilities import BotCapabilities
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.utils.asyncio.task_manager import TaskManager

from voiceterm.core.pcm import level_dbfs
from voiceterm.protocol import rtvi, rtvi_events
from voiceterm.protocol.events import (
    AudioChunk,
    Interruption,
    TextFrameEvent,
    TranscriptionEvent,
    TransportMessage,
)
from voiceterm.protocol.mulaw import mulaw_decode, mulaw_encode
from voiceterm.protocol.protobuf import ProtobufSerializer
from voiceterm.protocol.twilio import TwilioSerializer


@pytest.fixture(autouse=True, scope="module")
def quiet_pipecat():
    # pipecat logs every message it (de)serializes; keep the test output readable.
    logger.disable("pipecat")
    yield
    logger.enable("pipecat")


def sine(freq: float, rate: int, seconds: float, amplitude: float = 12000.0) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def dominant_frequency(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


def chunks(pcm: bytes, size: int) -> list[bytes]:
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


# ---------------------------------------------------------------------------------------------------
# Protobuf


def test_rtvi_protocol_version_matches_pipecat():
    ours = tuple(int(p) for p in rtvi.RTVI_PROTOCOL_VERSION.split("."))
    theirs = tuple(int(p) for p in RTVI.PROTOCOL_VERSION.split("."))
    assert ours[0] == theirs[0] and ours <= theirs
    assert rtvi.MESSAGE_LABEL == RTVI.MESSAGE_LABEL


def test_our_event_types_are_pipecats_message_types():
    pipecat_types = set()
    for model in vars(RTVI).values():
        fields = getattr(model, "model_fields", None)
        if (
            isinstance(fields, dict)
            and "type" in fields
            and typing.get_origin(fields["type"].annotation) is typing.Literal
        ):
            pipecat_types.update(typing.get_args(fields["type"].annotation))
    ours = {cls.TYPE for cls in rtvi_events.EVENT_CLASSES}
    # Every type we parse is one pipecat sends (no typos); ServerResponse/BotReady etc. included.
    assert ours <= pipecat_types, ours - pipecat_types


def test_our_audio_decodes_in_pipecat():
    async def run():
        pcm = sine(440, 16000, 0.02)
        frame = await ProtobufFrameSerializer().deserialize(ProtobufSerializer().encode_audio(pcm, 16000))
        assert type(frame) is InputAudioRawFrame
        assert (frame.audio, frame.sample_rate, frame.num_channels) == (pcm, 16000, 1)
        assert frame.num_frames == 320

    asyncio.run(run())


@pytest.mark.parametrize(
    "build",
    [
        lambda: rtvi.client_ready(device_id="kiosk-7"),
        lambda: rtvi.push_to_talk("start"),
        lambda: rtvi.push_to_talk("stop"),
        lambda: rtvi.client_message("volume", [1, "two", None]),
        lambda: rtvi.send_text("What's the weather? ☀", audio_response=False),
        lambda: rtvi.disconnect_bot(),
        lambda: rtvi.dtmf("42#"),
        lambda: rtvi.function_call_result(
            function_name="f", tool_call_id="t1", arguments={"x": 1}, result={"ok": 1}
        ),
    ],
)
def test_our_rtvi_messages_decode_and_validate_in_pipecat(build):
    message = build()

    async def run():
        return await ProtobufFrameSerializer().deserialize(ProtobufSerializer().encode_message(message))

    frame = asyncio.run(run())
    assert type(frame) is InputTransportMessageFrame
    assert frame.message == message
    # Exactly the checks pipecat's RTVIProcessor applies before acting on a message.
    parsed = RTVI.Message.model_validate(frame.message)
    assert parsed.label == RTVI.MESSAGE_LABEL and parsed.id == message["id"]
    data_model = {
        "client-ready": RTVI.ClientReadyData,
        "client-message": RTVI.RawClientMessageData,
        "send-text": RTVI.SendTextData,
        "dtmf": RTVI.DTMFInputData,
        "llm-function-call-result": RTVI.LLMFunctionCallResultData,
    }.get(parsed.type)
    if data_model is not None:
        data_model.model_validate(parsed.data)
    if parsed.type == "client-ready":
        about = RTVI.ClientReadyData.model_validate(parsed.data).about
        assert about.library == "voiceterm" and about.platform_details["device_id"] == "kiosk-7"


def serialize(serializer, frame):
    return asyncio.run(serializer.serialize(frame))


@pytest.mark.parametrize("rate", [16000, 24000, 48000])
def test_pipecat_bot_audio_decodes_in_ours(rate):
    pcm = sine(220, rate, 0.04)
    data = serialize(
        ProtobufFrameSerializer(), OutputAudioRawFrame(audio=pcm, sample_rate=rate, num_channels=1)
    )
    assert ProtobufSerializer().decode(data) == [AudioChunk(pcm, rate, 1)]


def test_pipecat_interruption_text_and_transcription_decode_in_ours():
    ours = ProtobufSerializer()
    assert ours.decode(serialize(ProtobufFrameSerializer(), InterruptionFrame())) == [Interruption()]
    assert ours.decode(serialize(ProtobufFrameSerializer(), TextFrame(text="hello"))) == [
        TextFrameEvent("hello")
    ]
    t = TranscriptionFrame(text="hi there", user_id="u1", timestamp="2026-01-01T00:00:00Z")
    assert ours.decode(serialize(ProtobufFrameSerializer(), t)) == [
        TranscriptionEvent("hi there", "u1", "2026-01-01T00:00:00Z")
    ]


def server_messages():
    """Server messages as pipecat's RTVIProcessor/RTVIObserver send them (model_dump(exclude_none=True)),
    with the typed event and field values we expect."""
    return [
        (
            RTVI.BotReady(
                id="c0ffee00",
                data=RTVI.BotReadyData(
                    version=RTVI.PROTOCOL_VERSION,
                    about={"library": "pipecat-ai", "library_version": "1.14.0"},
                    capabilities=BotCapabilities(audio_in=True, audio_out=True),
                ),
            ),
            rtvi_events.BotReady,
            {
                "id": "c0ffee00",
                "version": RTVI.PROTOCOL_VERSION,
                "about": {"library": "pipecat-ai", "library_version": "1.14.0"},
                "capabilities": {"audio_in": True, "audio_out": True},
            },
        ),
        (
            RTVI.Error(data=RTVI.ErrorData(error="LLM down", fatal=True)),
            rtvi_events.ServerError,
            {"error": "LLM down", "fatal": True},
        ),
        (
            RTVI.ErrorResponse(id="1", data=RTVI.ErrorResponseData(error="Unsupported type x")),
            rtvi_events.ErrorResponse,
            {"id": "1", "error": "Unsupported type x"},
        ),
        (
            RTVI.ServerResponse(id="2", data=RTVI.RawServerResponseData(t="vol", d={"v": 3})),
            rtvi_events.ServerResponse,
            {"id": "2", "t": "vol", "d": {"v": 3}},
        ),
        (
            RTVI.ServerMessage(data={"hello": "device"}),
            rtvi_events.ServerMessage,
            {"data": {"hello": "device"}},
        ),
        (RTVI.UserStartedSpeakingMessage(), rtvi_events.UserStartedSpeaking, {}),
        (RTVI.UserStoppedSpeakingMessage(), rtvi_events.UserStoppedSpeaking, {}),
        (RTVI.BotStartedSpeakingMessage(), rtvi_events.BotStartedSpeaking, {}),
        (RTVI.BotStoppedSpeakingMessage(), rtvi_events.BotStoppedSpeaking, {}),
        (RTVI.BotInterruptedMessage(), rtvi_events.BotInterrupted, {}),
        (RTVI.UserMuteStartedMessage(), rtvi_events.UserMuteStarted, {}),
        (RTVI.UserMuteStoppedMessage(), rtvi_events.UserMuteStopped, {}),
        (RTVI.BotLLMStartedMessage(), rtvi_events.BotLLMStarted, {}),
        (RTVI.BotLLMStoppedMessage(), rtvi_events.BotLLMStopped, {}),
        (RTVI.BotTTSStartedMessage(), rtvi_events.BotTTSStarted, {}),
        (RTVI.BotTTSStoppedMessage(), rtvi_events.BotTTSStopped, {}),
        (
            RTVI.UserTranscriptionMessage(
                data=RTVI.UserTranscriptionMessageData(text="hi", user_id="u", timestamp="t", final=False)
            ),
            rtvi_events.UserTranscription,
            {"text": "hi", "user_id": "u", "timestamp": "t", "final": False},
        ),
        (
            RTVI.STTRawTextMessage(
                data=RTVI.STTRawTextMessageData(text="hi", user_id="u", timestamp="t", final=True)
            ),
            rtvi_events.STTRawText,
            {"text": "hi", "final": True},
        ),
        (
            RTVI.UserInputMessage(
                data=RTVI.UserInputMessageData(
                    text="hi", input_type="chat", timestamp="t", final=True, msg_id="m1"
                )
            ),
            rtvi_events.UserInput,
            {"text": "hi", "input_type": "chat", "msg_id": "m1", "user_id": None},
        ),
        (
            RTVI.BotOutputMessage(
                data=RTVI.BotOutputMessageData(
                    text="Sunny.",
                    output_type="sentence",
                    segment_id=3,
                    will_be_spoken=True,
                    spoken_status="new",
                )
            ),
            rtvi_events.BotOutput,
            {
                "text": "Sunny.",
                "output_type": "sentence",
                "segment_id": 3,
                "will_be_spoken": True,
                "spoken_status": "new",
            },
        ),
        (
            RTVI.BotLLMTextMessage(data=RTVI.TextMessageData(text="Sun")),
            rtvi_events.BotLLMText,
            {"text": "Sun"},
        ),
        (
            RTVI.BotTTSTextMessage(data=RTVI.TextMessageData(text="Sunny")),
            rtvi_events.BotTTSText,
            {"text": "Sunny"},
        ),
        (
            RTVI.BotTranscriptionMessage(data=RTVI.TextMessageData(text="Sunny")),
            rtvi_events.BotTranscription,
            {"text": "Sunny"},
        ),
        (
            RTVI.UserLLMTextMessage(data=RTVI.TextMessageData(text="q")),
            rtvi_events.UserLLMText,
            {"text": "q"},
        ),
        (RTVI.LLMRawTextMessage(data=RTVI.TextMessageData(text="q")), rtvi_events.LLMRawText, {"text": "q"}),
        (RTVI.TTSRawTextMessage(data=RTVI.TextMessageData(text="q")), rtvi_events.TTSRawText, {"text": "q"}),
        (RTVI.MetricsMessage(data={"ttfb": [{"processor": "llm", "value": 0.31}]}), rtvi_events.Metrics, {}),
        (
            RTVI.BotAudioLevelMessage(data=RTVI.AudioLevelMessageData(value=0.25)),
            rtvi_events.BotAudioLevel,
            {"value": 0.25},
        ),
        (
            RTVI.UserAudioLevelMessage(data=RTVI.AudioLevelMessageData(value=0.5)),
            rtvi_events.UserAudioLevel,
            {"value": 0.5},
        ),
        (
            RTVI.LLMFunctionCallStartMessage(
                data=RTVI.LLMFunctionCallStartMessageData(function_name="weather")
            ),
            rtvi_events.LLMFunctionCallStarted,
            {"function_name": "weather"},
        ),
        (
            RTVI.LLMFunctionCallInProgressMessage(
                data=RTVI.LLMFunctionCallInProgressMessageData(
                    tool_call_id="t1", function_name="weather", arguments={"city": "Lisbon"}
                )
            ),
            rtvi_events.LLMFunctionCallInProgress,
            {"tool_call_id": "t1", "function_name": "weather", "arguments": {"city": "Lisbon"}},
        ),
        (
            RTVI.LLMFunctionCallStoppedMessage(
                data=RTVI.LLMFunctionCallStoppedMessageData(
                    tool_call_id="t1", cancelled=False, result={"t": 21}
                )
            ),
            rtvi_events.LLMFunctionCallStopped,
            {"tool_call_id": "t1", "cancelled": False, "result": {"t": 21}},
        ),
    ]


@pytest.mark.parametrize(
    ("model", "cls", "fields"), server_messages(), ids=lambda v: getattr(v, "type", None)
)
def test_pipecat_rtvi_server_messages_decode_into_typed_events(model, cls, fields):
    message = model.model_dump(exclude_none=True)
    for frame_cls in (OutputTransportMessageUrgentFrame, OutputTransportMessageFrame):
        data = serialize(ProtobufFrameSerializer(), frame_cls(message=message))
        [event] = ProtobufSerializer().decode(data)
        assert type(event) is cls
        assert event.type == message["type"]
        assert event.data == json.loads(json.dumps(message.get("data")))
        for name, value in fields.items():
            assert getattr(event, name) == value, name


def test_pipecat_app_transport_message_is_not_rtvi():
    data = serialize(
        ProtobufFrameSerializer(), OutputTransportMessageUrgentFrame(message={"kind": "app", "n": 1})
    )
    assert ProtobufSerializer().decode(data) == [TransportMessage({"kind": "app", "n": 1})]


# ---------------------------------------------------------------------------------------------------
# Twilio


def pipecat_twilio(ours: TwilioSerializer) -> TwilioFrameSerializer:
    return TwilioFrameSerializer(
        stream_sid=ours.stream_sid,
        call_sid=ours.call_sid,
        params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
    )


async def setup(serializer: TwilioFrameSerializer, audio_in_sample_rate: int) -> None:
    await serializer.setup(
        FrameProcessorSetup(
            clock=SystemClock(),
            task_manager=TaskManager(),
            pipeline_worker=None,  # type: ignore[arg-type]  # the serializer reads only the rates
            audio_in_sample_rate=audio_in_sample_rate,
        )
    )


class FakeStarletteSocket:
    """Just enough of a Starlette WebSocket for pipecat's runner: the text messages a client sent."""

    def __init__(self, messages: list[str]) -> None:
        self._messages = messages

    async def iter_text(self):
        for m in self._messages:
            yield m


def test_pipecat_runner_detects_our_fake_call_as_twilio():
    ours = TwilioSerializer()
    transport, call = asyncio.run(parse_telephony_websocket(FakeStarletteSocket(ours.opening_messages())))
    assert transport == "twilio"
    assert call["stream_id"] == ours.stream_sid and call["call_id"] == ours.call_sid


def test_our_media_decodes_in_pipecat_at_8khz_exactly():
    ours = TwilioSerializer()
    ours.opening_messages()
    pcm = sine(440, 8000, 0.02)

    async def run():
        theirs = pipecat_twilio(ours)
        await setup(theirs, 8000)
        return await theirs.deserialize(ours.encode_audio(pcm, 8000))

    frame = asyncio.run(run())
    assert type(frame) is InputAudioRawFrame
    assert (frame.sample_rate, frame.num_channels) == (8000, 1)
    assert frame.audio == mulaw_decode(mulaw_encode(pcm))


def test_our_media_decodes_in_pipecat_resampled_to_16khz():
    ours = TwilioSerializer()
    ours.opening_messages()
    pcm = sine(440, 8000, 1.0)

    async def run():
        theirs = pipecat_twilio(ours)
        await setup(theirs, 16000)
        out = []
        for chunk in chunks(pcm, 320):
            frame = await theirs.deserialize(ours.encode_audio(chunk, 8000))
            if frame is not None:
                assert type(frame) is InputAudioRawFrame and frame.sample_rate == 16000
                out.append(frame.audio)
        return b"".join(out)

    audio = asyncio.run(run())
    assert len(audio) >= 2 * 16000 * 0.9  # the stream resampler may still hold a few ms
    assert dominant_frequency(audio, 16000) == pytest.approx(440, abs=3)


@pytest.mark.parametrize("rate", [24000, 16000])
def test_pipecat_bot_audio_decodes_in_our_twilio(rate):
    ours = TwilioSerializer()
    pcm = sine(440, rate, 1.0)

    async def run():
        theirs = pipecat_twilio(ours)
        await setup(theirs, 8000)
        out = []
        for chunk in chunks(pcm, rate // 50 * 2):  # 20 ms chunks, as a bot's output transport sends
            data = await theirs.serialize(OutputAudioRawFrame(audio=chunk, sample_rate=rate, num_channels=1))
            if data is not None:
                out.append(data)
        return out

    messages = asyncio.run(run())
    decoded = [ev for m in messages for ev in ours.decode(m)]
    assert decoded and all(isinstance(ev, AudioChunk) and ev.sample_rate == 8000 for ev in decoded)
    audio = b"".join(ev.pcm for ev in decoded)
    assert len(audio) >= 2 * 8000 * 0.9
    assert dominant_frequency(audio, 8000) == pytest.approx(440, abs=3)
    rms, _ = level_dbfs(audio[len(audio) // 4 :])
    assert rms == pytest.approx(20 * np.log10(12000 / 32768 / np.sqrt(2)), abs=0.5)


def test_pipecat_twilio_clear_and_app_messages_decode_in_ours():
    ours = TwilioSerializer()
    theirs = pipecat_twilio(ours)
    assert ours.decode(serialize(theirs, InterruptionFrame())) == [Interruption()]
    app = serialize(theirs, OutputTransportMessageUrgentFrame(message={"kind": "app"}))
    assert ours.decode(app) == [TransportMessage({"kind": "app"})]
    # RTVI never travels over Twilio: pipecat drops it, and we have no channel for it.
    assert (
        serialize(
            theirs, OutputTransportMessageUrgentFrame(message=RTVI.BotInterruptedMessage().model_dump())
        )
        is None
    )
    assert ours.encode_message(rtvi.push_to_talk("start")) is None


def test_mulaw_against_pipecats_converters():
    """pipecat converts with audioop (G.711 via Sun's g711.c). Decoding agrees for all 256 codes.
    Encoding agrees for every non-negative sample; for negative ones audioop truncates toward minus
    infinity before taking the magnitude, which is exactly our (G.191) encoding of the sample 4 lower."""

    async def run():
        resampler = create_stream_resampler()
        codes = bytes(range(256))
        decoded = await ulaw_to_pcm(codes, 8000, 8000, resampler)
        x = np.arange(-32768, 32768, dtype="<i2")
        encoded = await pcm_to_ulaw(x.tobytes(), 8000, 8000, resampler)
        return decoded, x, np.frombuffer(encoded, np.uint8)

    decoded, x, theirs = asyncio.run(run())
    assert mulaw_decode(bytes(range(256))) == decoded
    ours = np.frombuffer(mulaw_encode(x.tobytes()), np.uint8)
    assert np.array_equal(ours[x >= 0], theirs[x >= 0])
    shifted = np.maximum(x.astype(np.int32) - 4, -32768).astype("<i2")
    ours_shifted = np.frombuffer(mulaw_encode(shifted.tobytes()), np.uint8)
    assert np.array_equal(ours_shifted[x < 0], theirs[x < 0])
    differ = (x < 0) & (ours != theirs)
    assert 0 < np.count_nonzero(differ) < 600
    assert np.all(np.abs(ours[differ].astype(int) - theirs[differ].astype(int)) == 1)  # one step apart
