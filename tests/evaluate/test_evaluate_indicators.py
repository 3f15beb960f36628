"""Reference-free indicators on synthetic stems whose answer is known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stemkit.errors import InputError
from stemkit.evaluate.indicators import activity, clipped_samples, consensus, leakage, loudness, peak_dbfs
from stemkit.evaluate.metrics import sdr

RATE = 16_000


def _noise(seed: int, seconds: float = 4.0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((2, int(seconds * RATE)))


def test_a_known_leak_shows_at_its_closed_form_level_and_clean_stems_do_not() -> None:
    vocals, drums = _noise(1), _noise(2)
    leaky = leakage({"vocals": vocals + 0.3 * drums, "drums": drums}, RATE)
    assert leaky["vocals"] == pytest.approx(10 * math.log10(0.09 / 1.09), abs=0.3)
    clean = leakage({"vocals": vocals, "drums": drums}, RATE)
    assert clean["vocals"] < -30
    assert clean["drums"] < -30


@settings(max_examples=25, deadline=None)
@given(st.sets(st.integers(min_value=0, max_value=2 * 999), max_size=40), st.floats(min_value=1.0, max_value=4.0))
def test_clipping_is_counted_exactly(positions: set[int], level: float) -> None:
    audio = np.full((2, 1000), 0.5)
    flat = audio.reshape(-1)
    for index in positions:
        flat[index] = level if index % 2 else -level
    assert clipped_samples(audio) == len(positions)


def test_a_sample_just_below_full_scale_does_not_clip_and_one_at_it_does() -> None:
    audio = np.array([[0.999999, 1.0, -1.0, 0.2]])
    assert clipped_samples(audio) == 2
    assert peak_dbfs(audio) == pytest.approx(0.0)
    assert peak_dbfs(np.zeros((2, 10))) == -math.inf


def test_loudness_of_the_ebu_calibration_tone_is_minus_23_lufs() -> None:
    # EBU Tech 3341, test 1: a stereo 1 kHz sine at -23 dBFS reads -23.0 LUFS (tolerance ±0.1).
    rate = 48_000
    t = np.arange(20 * rate) / rate
    tone = 10 ** (-23 / 20) * np.sin(2 * np.pi * 1000 * t)
    assert loudness(np.stack([tone, tone]), rate) == pytest.approx(-23.0, abs=0.1)
    assert loudness(np.zeros((2, rate)), rate) == -math.inf


def test_activity_is_the_share_of_blocks_above_the_threshold() -> None:
    audio = np.zeros((2, 10 * RATE))
    audio[:, : 3 * RATE] = 0.1 * _noise(3, 3.0)  # 3 of 10 seconds are active
    assert activity(audio, RATE) == pytest.approx(30.0)
    assert activity(np.zeros((1, RATE)), RATE) == 0.0


def test_consensus_singles_out_the_provider_that_disagrees_with_the_others() -> None:
    truth = _noise(4)
    rng = np.random.default_rng(5)
    estimates = {name: truth + 0.05 * rng.standard_normal(truth.shape) for name in ("a", "b", "c")}
    estimates["odd"] = _noise(6)
    values = consensus(estimates)
    assert values["odd"] < 0
    assert min(values[n] for n in ("a", "b", "c")) > 20
    pair = consensus({"a": estimates["a"], "b": estimates["b"]})
    assert pair["a"] == pytest.approx(float(sdr(estimates["b"], estimates["a"])))
    with pytest.raises(InputError, match="at least two providers"):
        consensus({"a": truth})
