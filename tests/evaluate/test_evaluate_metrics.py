"""Metrics against closed-form values: noise at a chosen level, scaled references, permuted stems, silence."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stemkit.errors import InputError
from stemkit.evaluate.metrics import (
    DELTA,
    agreement,
    mixture_consistency,
    sdr,
    sdr_and_si_sdr,
    si_sdr,
    song_sdr,
)

RATE = 8000


def _signal(seed: int, channels: int = 2, samples: int = 3 * RATE) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((channels, samples))


def _noise_at(reference: np.ndarray, level_db: float, seed: int, *, orthogonal: bool = False) -> np.ndarray:
    """Noise whose energy is exactly ``level_db`` below the reference's (orthogonal to it if asked)."""
    noise = np.random.default_rng(seed).standard_normal(reference.shape)
    if orthogonal:
        noise -= (np.sum(noise * reference) / np.sum(reference * reference)) * reference
    target = np.sum(reference**2) * 10 ** (-level_db / 10)
    return noise * math.sqrt(target / np.sum(noise**2))


def mdx_challenge_sdr(references: np.ndarray, estimates: np.ndarray) -> np.ndarray:
    """The Music Demixing Challenge's own function, verbatim (arrays are (sources, samples, channels))."""
    delta = 1e-7  # avoid numerical errors
    num = np.sum(np.square(references), axis=(1, 2))
    den = np.sum(np.square(references - estimates), axis=(1, 2))
    num += delta
    den += delta
    return 10 * np.log10(num / den)


@pytest.mark.parametrize("level_db", [-10.0, 0.0, 6.0, 20.0, 45.0])
def test_sdr_of_reference_plus_noise_is_the_noise_level(level_db: float) -> None:
    ref = _signal(1)
    noise = _noise_at(ref, level_db, 2)
    energy = np.sum(ref**2)
    noise_energy = np.sum(((ref + noise) - ref) ** 2)
    expected = 10 * math.log10((energy + DELTA) / (noise_energy + DELTA))
    assert sdr(ref, ref + noise) == pytest.approx(expected, abs=1e-9)
    assert sdr(ref, ref + noise) == pytest.approx(level_db, abs=1e-6)


@pytest.mark.parametrize("level_db", [-5.0, 3.0, 12.0, 30.0, 80.0])
def test_sdr_matches_the_challenge_formula_to_a_micro_decibel_on_float32_stems(level_db: float) -> None:
    rng = np.random.default_rng(int(level_db * 10) + 100)
    refs = rng.standard_normal((4, 2, 5 * RATE)).astype(np.float32) * np.float32(0.3)
    ests = np.stack([r + _noise_at(r.astype(np.float64), level_db, i).astype(np.float32) for i, r in enumerate(refs)])
    # The challenge reads WAV files with soundfile's default dtype, float64, and uses (sources, samples, channels).
    expected = mdx_challenge_sdr(refs.transpose(0, 2, 1).astype(np.float64), ests.transpose(0, 2, 1).astype(np.float64))
    got = sdr(refs, ests)
    assert isinstance(got, np.ndarray)
    assert got.shape == (4,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    channels=st.integers(1, 2),
    samples=st.integers(1, 20_000),
    scale=st.floats(1e-4, 1e3),
)
def test_sdr_agrees_with_the_challenge_formula_for_any_shape_and_scale(
    seed: int, channels: int, samples: int, scale: float
) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal((3, channels, samples)) * scale
    est = ref + rng.standard_normal((3, channels, samples)) * scale * rng.uniform(0.001, 3.0)
    expected = mdx_challenge_sdr(ref.transpose(0, 2, 1), est.transpose(0, 2, 1))
    np.testing.assert_allclose(sdr(ref, est), expected, rtol=0, atol=1e-6)


def test_song_sdr_is_the_mean_over_reference_stems() -> None:
    refs = {name: _signal(i) for i, name in enumerate(["vocals", "drums", "bass", "other"])}
    levels = {"vocals": 3.0, "drums": 9.0, "bass": -2.0, "other": 14.0}
    ests = {name: refs[name] + _noise_at(refs[name], levels[name], 10 + i) for i, name in enumerate(refs)}
    assert song_sdr(refs, ests) == pytest.approx(np.mean(list(levels.values())), abs=1e-6)


def test_song_sdr_refuses_a_missing_estimate_naming_the_stem() -> None:
    refs = {"vocals": _signal(1), "drums": _signal(2)}
    with pytest.raises(InputError, match="drums"):
        song_sdr(refs, {"vocals": refs["vocals"]})


@pytest.mark.parametrize("level_db", [0.0, 10.0, 25.0])
@pytest.mark.parametrize("scale", [0.01, 0.5, -3.0, 1000.0])
def test_si_sdr_ignores_the_estimates_scale(level_db: float, scale: float) -> None:
    ref = _signal(3)
    noise = _noise_at(ref, level_db, 4, orthogonal=True)
    assert si_sdr(ref, scale * (ref + noise)) == pytest.approx(level_db, abs=1e-9)


def test_si_sdr_of_an_exactly_scaled_reference_is_plus_infinity_where_sdr_is_finite() -> None:
    ref = np.random.default_rng(5).integers(-1000, 1000, size=(2, 4000)).astype(np.float64)
    est = 0.5 * ref  # exact in binary floating point
    assert si_sdr(ref, est) == math.inf
    energy = np.sum(ref**2)
    assert sdr(ref, est) == pytest.approx(10 * math.log10((energy + DELTA) / (0.25 * energy + DELTA)), abs=1e-9)


def test_si_sdr_of_a_nearly_perfect_estimate_keeps_its_digits() -> None:
    ref = _signal(6)
    noise = _noise_at(ref, 110.0, 7, orthogonal=True)
    # 110 dB: the dot-product form would cancel to a few digits; the exact second pass must recover it.
    assert si_sdr(ref, 1.7 * (ref + noise)) == pytest.approx(110.0, abs=1e-4)


def test_a_permuted_stem_scores_its_closed_form() -> None:
    rng = np.random.default_rng(8)
    a = rng.standard_normal((2, 2 * RATE))
    b = rng.standard_normal((2, 2 * RATE))
    b -= np.sum(a * b) / np.sum(a * a) * a  # b ⟂ a: Σ(a − b)² = Σa² + Σb² exactly in real arithmetic
    b *= 0.5
    refs = np.stack([a, b])
    swapped = np.stack([b, a])
    ea, eb = np.sum(a**2), np.sum(b**2)
    expected_sdr = [
        10 * math.log10((ea + DELTA) / (ea + eb + DELTA)),
        10 * math.log10((eb + DELTA) / (ea + eb + DELTA)),
    ]
    np.testing.assert_allclose(sdr(refs, swapped), expected_sdr, atol=1e-9)
    # The swapped stem has no component along the reference: nothing recovered.
    got = si_sdr(refs, swapped)
    assert isinstance(got, np.ndarray)
    assert np.all(got < -250) or np.all(np.isneginf(got))


def test_silence_gives_the_documented_values_without_warnings() -> None:
    ref = _signal(9)
    zero = np.zeros_like(ref)
    with np.errstate(all="raise"):
        assert sdr(zero, zero) == 0.0
        assert sdr(ref, zero) == pytest.approx(0.0, abs=1e-12)
        assert sdr(zero, ref) == pytest.approx(10 * math.log10(DELTA / (np.sum(ref**2) + DELTA)))
        assert math.isnan(si_sdr(zero, zero))
        assert math.isnan(si_sdr(zero, ref))
        assert si_sdr(ref, zero) == -math.inf
        assert si_sdr(ref, ref) == math.inf
        assert sdr(ref, ref) == pytest.approx(10 * math.log10((np.sum(ref**2) + DELTA) / DELTA))


def test_non_finite_samples_give_nan_not_an_exception() -> None:
    ref = _signal(10)
    est = ref.copy()
    est[0, 5] = np.nan
    assert math.isnan(sdr(ref, est))
    assert math.isnan(si_sdr(ref, est))


def test_float32_and_float64_inputs_score_the_same() -> None:
    ref = _signal(11).astype(np.float32)
    est = (ref + 0.05 * _signal(12)).astype(np.float32)
    assert sdr(ref, est) == pytest.approx(sdr(ref.astype(np.float64), est.astype(np.float64)), abs=1e-9)
    assert si_sdr(ref, est) == pytest.approx(si_sdr(ref.astype(np.float64), est.astype(np.float64)), abs=1e-9)


def test_batched_scores_equal_scores_stem_by_stem() -> None:
    refs = np.stack([_signal(i) for i in range(3)])
    ests = refs + 0.1 * np.stack([_signal(10 + i) for i in range(3)])
    both = sdr_and_si_sdr(refs, ests)
    for i in range(3):
        assert both[0][i] == pytest.approx(sdr(refs[i], ests[i]), abs=1e-12)  # type: ignore[index]
        assert both[1][i] == pytest.approx(si_sdr(refs[i], ests[i]), abs=1e-12)  # type: ignore[index]
    mono = refs[0, 0]
    assert sdr(mono, ests[0, 0]) == pytest.approx(sdr(mono[None], ests[0, 0][None]), abs=1e-12)


def test_si_sdr_channels_share_one_scale_factor() -> None:
    ref = _signal(13)
    est = ref.copy()
    est[1] *= 2.0  # each channel alone is a perfect scaled copy; together they are not
    value = si_sdr(ref, est)
    assert math.isfinite(value)
    alpha = np.sum(ref * est) / np.sum(ref * ref)
    expected = 10 * math.log10(np.sum((alpha * ref) ** 2) / np.sum((est - alpha * ref) ** 2))
    assert value == pytest.approx(expected, abs=1e-9)


def test_zero_mean_si_sdr_ignores_a_dc_offset() -> None:
    ref = _signal(14)
    ref -= ref.mean(axis=1, keepdims=True)
    noise = _noise_at(ref, 12.0, 15, orthogonal=True)
    noise -= noise.mean(axis=1, keepdims=True)
    est = ref + noise + np.array([[0.7], [-0.2]])
    assert si_sdr(ref, est, zero_mean=True) == pytest.approx(
        10 * math.log10(np.sum(ref**2) / np.sum(noise**2)), abs=1e-6
    )
    assert si_sdr(ref, est) < si_sdr(ref, est, zero_mean=True)


def test_mismatched_shapes_are_an_input_error_naming_both_shapes() -> None:
    with pytest.raises(InputError, match=r"\(2, 100\).*\(2, 90\)"):
        sdr(np.zeros((2, 100)), np.zeros((2, 90)))
    with pytest.raises(InputError, match="empty"):
        si_sdr(np.zeros((2, 0)), np.zeros((2, 0)))


def test_mixture_consistency_measures_the_energy_the_stems_leave_out() -> None:
    stems = {name: _signal(20 + i) for i, name in enumerate(["vocals", "drums", "bass"])}
    mix = sum(stems.values())
    assert isinstance(mix, np.ndarray)
    # The stems sum back to the mixture (up to rounding): only δ bounds the ratio.
    ceiling = 10 * math.log10((np.sum(mix**2) + DELTA) / DELTA)
    assert mixture_consistency(mix, stems) == pytest.approx(ceiling, abs=1e-3)
    dropped = {k: v for k, v in stems.items() if k != "bass"}
    expected = 10 * math.log10((np.sum(mix**2) + DELTA) / (np.sum(stems["bass"] ** 2) + DELTA))
    assert mixture_consistency(mix, dropped) == pytest.approx(expected, abs=1e-9)


def test_agreement_is_the_sdr_of_each_provider_against_each_other() -> None:
    ref = _signal(30)
    a = {"vocals": ref, "drums": _signal(31)}
    b = {"vocals": ref + _noise_at(ref, 15.0, 32)}
    out = agreement({"a": a, "b": b})
    assert set(out) == {"vocals"}  # only stems both produced
    assert out["vocals"]["a"]["b"] == pytest.approx(15.0, abs=1e-6)
    assert out["vocals"]["b"]["a"] == pytest.approx(sdr(b["vocals"], a["vocals"]), abs=1e-12)
