"""Alignment (lag, rate, channels, length) and the SiSEC baselines (mixture, ideal ratio mask)."""

from __future__ import annotations

import numpy as np
import pytest

from stemkit.errors import InputError
from stemkit.evaluate.align import estimate_lag, match, shift
from stemkit.evaluate.baselines import mixture_estimates, oracle_estimates
from stemkit.evaluate.metrics import sdr

RATE = 16_000


def _noise(seed: int, samples: int = RATE) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((2, samples)).astype(np.float32)


@pytest.mark.parametrize("lag", [-300, -1, 0, 1, 57, 799])
def test_estimate_lag_recovers_a_known_delay(lag: int) -> None:
    ref = _noise(1)
    delayed = shift(ref, -lag)[:, : ref.shape[1]] if lag > 0 else shift(ref, -lag)
    assert estimate_lag(ref, delayed, max_lag=800) == lag
    aligned = match(ref, delayed, lag=lag)
    # Everything but the samples pushed out by the delay comes back exactly.
    keep = slice(0, ref.shape[1] - max(lag, 0)) if lag >= 0 else slice(-lag, ref.shape[1])
    np.testing.assert_array_equal(aligned[:, keep], ref[:, keep])


def test_estimate_lag_leaves_silence_and_out_of_range_alone() -> None:
    ref = _noise(2)
    assert estimate_lag(ref, np.zeros_like(ref), max_lag=100) == 0
    assert estimate_lag(np.zeros_like(ref), ref, max_lag=100) == 0
    assert estimate_lag(ref, ref, max_lag=0) == 0
    far = shift(ref, -500)[:, : ref.shape[1]]
    assert abs(estimate_lag(ref, far, max_lag=100)) <= 100


def test_match_resamples_repeats_mono_and_pads_to_the_reference_length() -> None:
    t = np.arange(2 * RATE) / RATE
    ref = np.stack([np.sin(2 * np.pi * 330 * t)] * 2).astype(np.float32)
    t_half = np.arange(RATE // 2) / (RATE // 2)  # the same tone at half the rate, mono, a second shorter
    est = np.sin(2 * np.pi * 330 * t_half).astype(np.float32)
    out = match(ref, est, reference_rate=RATE, estimate_rate=RATE // 2)
    assert out.shape == ref.shape
    assert out.dtype == np.float32
    assert np.all(out[:, ref.shape[1] // 2 + 100 :] == 0)  # zero-padded, as museval pads
    assert sdr(ref[:, 200 : RATE - 200], out[:, 200 : RATE - 200]) > 40
    with pytest.raises(InputError, match="both reference_rate and estimate_rate"):
        match(ref, est, reference_rate=RATE)


def test_the_mixture_baseline_is_the_mixture_for_every_stem() -> None:
    mix = _noise(3)
    out = mixture_estimates(mix, ("vocals", "drums"))
    assert set(out) == {"vocals", "drums"}
    np.testing.assert_array_equal(out["drums"], mix)


def test_the_oracle_masks_sum_to_the_mixture_and_isolate_disjoint_sources() -> None:
    t = np.arange(2 * RATE) / RATE
    low = np.stack([np.sin(2 * np.pi * 110 * t)] * 2).astype(np.float32)
    high = np.stack([0.5 * np.sin(2 * np.pi * 3000 * t)] * 2).astype(np.float32)
    mix = low + high
    out = oracle_estimates(mix, {"bass": low, "other": high})
    np.testing.assert_allclose(out["bass"] + out["other"], mix, atol=1e-4)
    assert sdr(low, out["bass"]) > 30  # spectrally disjoint: the ideal mask separates them
    assert sdr(high, out["other"]) > 30


def test_the_oracle_gives_uncovered_energy_its_own_share() -> None:
    mix = _noise(4)
    half = 0.5 * mix
    out = oracle_estimates(mix, {"vocals": half})  # the other half has no reference: the residual
    np.testing.assert_allclose(out["vocals"], half, atol=1e-4)


def test_the_oracle_power_mask_beats_the_magnitude_mask_on_overlapping_noise() -> None:
    a, b = _noise(5), 0.7 * _noise(6)
    mix = a + b
    irm2 = oracle_estimates(mix, {"vocals": a, "other": b}, alpha=2.0)
    irm1 = oracle_estimates(mix, {"vocals": a, "other": b}, alpha=1.0)
    assert sdr(a, irm2["vocals"]) > sdr(a, irm1["vocals"]) > sdr(a, mix)
    with pytest.raises(InputError, match="alpha must be positive"):
        oracle_estimates(mix, {"vocals": a}, alpha=0.0)
    with pytest.raises(InputError, match="align them first"):
        oracle_estimates(mix, {"vocals": a[:, :-1]})
