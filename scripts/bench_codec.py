"""Measure the wire codec's cost per 20 ms audio chunk and per RTVI message (run via scripts/bench-codec).

Prints the best-of-N time per operation in microseconds. Where pipecat-ai is installed, the same work
done by pipecat's own serializers is measured in the same run as the baseline, with the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import sys
import timeit
from collections.abc import Callable

from voiceterm.protocol import rtvi
from voiceterm.protocol.mulaw import mulaw_decode, mulaw_encode
from voiceterm.protocol.protobuf import ProtobufSerializer
from voiceterm.protocol.twilio import TwilioSerializer
from voiceterm_devkit import frames_pb2
from voiceterm_devkit.alsa_files import speech_like

TARGET_US = 10.0


def per_call_us(fn: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def per_call_async_us(make: Callable[[], object], number: int, repeat: int) -> float:
    """Time an async callable (pipecat's serializers) inside one event loop."""

    async def run() -> float:
        best = math.inf
        for _ in range(repeat):
            start = timeit.default_timer()
            for _ in range(number):
                await make()  # type: ignore[misc]
            best = min(best, timeit.default_timer() - start)
        return best / number * 1e6

    return asyncio.run(run())


def row(label: str, ours: float, baseline: float | None = None) -> None:
    flag = "ok" if ours < TARGET_US else "SLOW"
    extra = f"   pipecat {baseline:8.2f} us  (ours/pipecat {ours / baseline:5.2f})" if baseline else ""
    print(f"  {label:<44} {ours:8.2f} us  {flag}{extra}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    args = parser.parse_args()
    number, repeat = (2000, 3) if args.quick else (20000, 7)

    try:
        import logging

        from loguru import logger

        logger.remove()  # pipecat logs every message it deserializes at debug level
        logging.getLogger().setLevel(logging.WARNING)
        from pipecat.frames.frames import (
            OutputAudioRawFrame,
            OutputTransportMessageUrgentFrame,
        )
        from pipecat.serializers.protobuf import ProtobufFrameSerializer

        pipecat_ser: ProtobufFrameSerializer | None = ProtobufFrameSerializer()
    except ImportError:
        pipecat_ser = None

    from google.protobuf.internal import api_implementation

    print(
        f"bench-codec: Python {platform.python_version()} on {platform.machine()}, "
        f"protobuf {api_implementation.Type()} backend, best of {repeat} x {number} calls; target < {TARGET_US:g} us"
    )

    ser = ProtobufSerializer()
    print("protobuf audio (one 20 ms mono PCM16 chunk per message):")
    for rate in (16000, 24000):
        pcm = speech_like(0.02, rate).tobytes()
        wire = ser.encode_audio(pcm, rate)
        enc = per_call_us(lambda pcm=pcm, rate=rate: ser.encode_audio(pcm, rate), number, repeat)
        dec = per_call_us(lambda wire=wire: ser.decode(wire), number, repeat)
        base_enc = base_dec = None
        if pipecat_ser is not None:
            frame = OutputAudioRawFrame(audio=pcm, sample_rate=rate, num_channels=1)
            base_enc = per_call_async_us(lambda f=frame: pipecat_ser.serialize(f), number, repeat)
            base_dec = per_call_async_us(lambda w=wire: pipecat_ser.deserialize(w), number, repeat)
        row(f"encode {rate} Hz ({len(pcm)} bytes)", enc, base_enc)
        row(f"decode {rate} Hz ({len(pcm)} bytes)", dec, base_dec)

    print("RTVI messages in protobuf MessageFrames:")
    ptt = rtvi.push_to_talk("start")
    enc = per_call_us(lambda: ser.encode_message(ptt), number, repeat)
    bot_output = {
        "label": "rtvi-ai",
        "type": "bot-output",
        "data": {
            "text": "Sure, the weather in Lisbon is sunny today.",
            "output_type": "sentence",
            "will_be_spoken": True,
            "spoken_status": "new",
        },
    }
    # What the bot sends: built the way pipecat's serializer builds it (server events carry no id).
    wire = frames_pb2.Frame(message=frames_pb2.MessageFrame(data=json.dumps(bot_output))).SerializeToString()
    dec = per_call_us(lambda: ser.decode(wire), number, repeat)
    base_enc = base_dec = None
    if pipecat_ser is not None:
        ptt_frame = OutputTransportMessageUrgentFrame(message=ptt)
        base_enc = per_call_async_us(lambda: pipecat_ser.serialize(ptt_frame), number, repeat)
        base_dec = per_call_async_us(lambda: pipecat_ser.deserialize(wire), number, repeat)
    row("encode client-message push_to_talk", enc, base_enc)
    row("decode bot-output -> BotOutput", dec, base_dec)

    print("G.711 mu-law, 20 ms at 8 kHz (160 samples):")
    pcm8 = speech_like(0.02, 8000).tobytes()
    ulaw = mulaw_encode(pcm8)
    enc = per_call_us(lambda: mulaw_encode(pcm8), number, repeat)
    dec = per_call_us(lambda: mulaw_decode(ulaw), number, repeat)
    both = per_call_us(lambda: mulaw_decode(mulaw_encode(pcm8)), number, repeat)
    row("mulaw_encode", enc)
    row("mulaw_decode", dec)
    row("mulaw_encode + mulaw_decode", both)

    print("Twilio media messages (20 ms at 8 kHz, JSON + base64 + mu-law):")
    tw = TwilioSerializer()
    tw.opening_messages()
    media = tw.encode_audio(pcm8, 8000)
    row("encode media", per_call_us(lambda: tw.encode_audio(pcm8, 8000), number, repeat))
    row("decode media", per_call_us(lambda: tw.decode(media), number, repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
