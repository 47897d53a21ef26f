"""The canceller's figures measured around it (core/echo_stats.py): ERLE over the bot's speech, divergence, and
the echo's delay from the signals' envelopes."""

from __future__ import annotations

import numpy as np
import pytest

from voiceterm.core.echo_stats import EchoMeter

RATE = 16000
CHUNK = 320


def babble(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise under an irregular syllable envelope: speech-like energy changes without a period."""
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    syllables = rng.uniform(0.0, 1.0, size=n // 1600 + 2) ** 2
    envelope = np.interp(np.arange(n), np.arange(syllables.size) * 1600, syllables)
    return (rng.standard_normal(n) * envelope * 6000).astype(np.int16)


def feed(meter: EchoMeter, near: np.ndarray, far: np.ndarray, out: np.ndarray) -> None:
    for i in range(0, len(near) - CHUNK + 1, CHUNK):
        meter.observe(near[i : i + CHUNK], far[i : i + CHUNK], out[i : i + CHUNK])


def test_erle_and_delay_of_an_echo_reduced_by_40_db() -> None:
    far = babble(12)
    delay = round(0.123 * RATE)
    near = np.concatenate((np.zeros(delay, np.int16), far[:-delay] // 10))
    meter = EchoMeter(RATE)
    feed(meter, near, far, near // 100)
    fig = meter.figures()
    assert fig.erle_db == pytest.approx(40, abs=1)
    assert fig.erle_blocks >= 8 and fig.diverged_blocks == 0
    assert fig.delay_ms == pytest.approx(123, abs=2)
    assert fig.delay_correlation is not None and fig.delay_correlation > 0.9


def test_nothing_is_measured_while_the_bot_is_silent() -> None:
    meter = EchoMeter(RATE)
    near = babble(6, seed=4)  # the user talking alone
    feed(meter, near, np.zeros_like(near), near)
    fig = meter.figures()
    assert fig.erle_db is None and fig.erle_blocks == 0 and fig.delay_ms is None


def test_an_output_louder_than_its_input_while_the_bot_speaks_is_divergence() -> None:
    far = babble(5, seed=5)
    near = far // 10
    meter = EchoMeter(RATE)
    feed(meter, near, far, near * 2)
    fig = meter.figures()
    assert fig.diverged_blocks == fig.erle_blocks >= 4
    assert fig.erle_db == pytest.approx(-6, abs=0.5)


def test_the_figure_is_the_median_of_recent_blocks_so_one_double_talk_block_does_not_hide_it() -> None:
    far = babble(10, seed=6)
    near = far // 10
    out = near // 100
    out[RATE * 4 : RATE * 5] = near[RATE * 4 : RATE * 5]  # one second in which the user talked over the bot
    meter = EchoMeter(RATE)
    feed(meter, near, far, out)
    assert meter.figures().erle_db == pytest.approx(40, abs=1)


def test_a_reset_keeps_the_last_estimates_until_new_ones_replace_them() -> None:
    far = babble(6, seed=7)
    meter = EchoMeter(RATE)
    feed(meter, far // 10, far, far // 1000)
    before = meter.figures()
    meter.reset()
    assert meter.figures().erle_db == before.erle_db
