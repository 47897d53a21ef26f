"""core.earcon_queue: tones mixed over the speaker's blocks (bytes in and out): added with saturation over bot
audio, copied over the silence after it, continued across blocks, the oldest dropped beyond the limit."""

from __future__ import annotations

import numpy as np

from voiceterm.core.earcon_queue import EarconQueue


def pcm(values: list[int] | np.ndarray) -> bytes:
    return np.asarray(values, dtype="<i2").tobytes()


def samples(data: bytes) -> list[int]:
    return np.frombuffer(data, dtype="<i2").tolist()


def test_a_tone_is_added_over_bot_audio_and_copied_over_silence() -> None:
    q = EarconQueue(4)
    assert not q and q.mix(pcm([1, 2, 3]), 3) == pcm([1, 2, 3])
    q.add(pcm([10, 20, 30, 40, 50, 60]))
    # Four frames: two of bot audio, then silence.
    assert samples(q.mix(pcm([1, -2, 0, 0]), 2)) == [11, 18, 30, 40]
    assert q  # two frames of the tone left, for the next block
    assert samples(q.mix(pcm([5, 5, 5, 5]), 4)) == [55, 65, 5, 5]
    assert not q


def test_the_sum_saturates_at_the_int16_limits() -> None:
    q = EarconQueue(4)
    q.add(pcm([30000, -30000, 100]))
    assert samples(q.mix(pcm([30000, -30000, -32768]), 3)) == [32767, -32768, -32668]


def test_tones_play_one_after_another_and_the_oldest_goes_beyond_the_limit() -> None:
    q = EarconQueue(2)
    q.add(pcm([1, 1]))
    q.add(pcm([2, 2]))
    q.add(pcm([3, 3]))  # the first is dropped
    assert q.dropped == 1
    assert samples(q.mix(bytes(10), 0)) == [2, 2, 3, 3, 0]
    assert not q
