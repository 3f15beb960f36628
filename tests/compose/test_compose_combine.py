"""The combination methods as pure functions: what must hold whatever the audio."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stemkit.compose.combine import METHODS, Aligned, combine, weighted_median
from stemkit.errors import ConfigError
from stemkit.evaluate.align import match
from stemkit.evaluate.metrics import sdr

RATE = 8_000


def noise(seed: int, shape: tuple[int, ...], scale: float = 0.1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("method", METHODS)
def test_one_member_comes_back_unchanged(method: str) -> None:
    x = noise(1, (2, 20_000))
    out = combine([Aligned(x)], [1.0], method, frames=x.shape[1], sample_rate=RATE)  # type: ignore[arg-type]
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("method", METHODS)
@given(frames=st.integers(1, 30_000), members=st.integers(2, 4), channels=st.sampled_from([1, 2]))
@settings(max_examples=15, deadline=None)
def test_identical_members_give_the_member_back_at_its_exact_length(
    method: str, frames: int, members: int, channels: int
) -> None:
    """Through the whole method (the STFT and back, for the spectral ones): perfect reconstruction."""
    x = noise(frames, (channels, frames))
    out = combine([Aligned(x)] * members, [1.0] * members, method, frames=frames, sample_rate=RATE)  # type: ignore[arg-type]
    assert out.shape == x.shape
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, x, atol=1e-6)


def test_spectral_methods_give_the_same_result_in_segments_as_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments overlap by a window on the global frame grid, so their interiors are exact."""
    import stemkit.compose.combine as module

    a, b = noise(2, (2, 50_000)), noise(3, (2, 50_000))
    segmented = combine([Aligned(a), Aligned(b)], [1.0, 1.0], "max_spec", frames=50_000, sample_rate=RATE)
    monkeypatch.setattr(module, "_BLOCK", 1 << 20)
    whole = combine([Aligned(a), Aligned(b)], [1.0, 1.0], "max_spec", frames=50_000, sample_rate=RATE)
    np.testing.assert_allclose(segmented, whole, atol=1e-6)


def test_max_and_min_spec_bound_mean_spec_in_energy() -> None:
    a, b = noise(4, (1, 40_000)), noise(5, (1, 40_000), scale=0.3)
    energy = {
        m: float(np.sum(combine([Aligned(a), Aligned(b)], [1, 1], m, frames=40_000, sample_rate=RATE) ** 2))
        for m in ("min_spec", "mean_spec", "max_spec")
    }
    assert energy["min_spec"] < energy["mean_spec"] < energy["max_spec"]


def test_spectral_methods_keep_the_reference_members_phase() -> None:
    """Scaling a member changes magnitudes, never phases: mean_spec of x and 3x is 2x, whichever is the
    reference; with a sign-flipped member, the reference decides the sign."""
    x = noise(6, (2, 30_000))
    out = combine([Aligned(x), Aligned(3 * x)], [1, 1], "mean_spec", frames=30_000, sample_rate=RATE)
    np.testing.assert_allclose(out, 2 * x, atol=1e-5)
    flipped = combine([Aligned(x), Aligned(-x)], [1, 1], "max_spec", frames=30_000, sample_rate=RATE, reference=1)
    np.testing.assert_allclose(flipped, -x, atol=1e-5)


def test_weighted_mean_and_zero_weights() -> None:
    a, b = noise(7, (2, 1000)), noise(8, (2, 1000))
    out = combine([Aligned(a), Aligned(b)], [3.0, 1.0], "mean", frames=1000, sample_rate=RATE)
    np.testing.assert_allclose(out, (3 * a + b) / 4, atol=1e-6)
    only_b = combine([Aligned(a), Aligned(b)], [0.0, 2.0], "median", frames=1000, sample_rate=RATE)
    np.testing.assert_array_equal(only_b, b)


@given(st.lists(st.floats(-1, 1, width=32), min_size=1, max_size=7))
def test_weighted_median_with_equal_weights_is_numpys_median(values: list[float]) -> None:
    stack = np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)
    got = weighted_median(stack, np.ones(len(values)))
    assert got[0, 0] == pytest.approx(float(np.median(stack)), abs=1e-6)


@given(
    st.lists(st.tuples(st.floats(-1, 1, width=32), st.integers(1, 5)), min_size=1, max_size=6),
)
def test_weighted_median_equals_the_median_of_values_repeated_by_weight(pairs: list[tuple[float, int]]) -> None:
    """An integer weight w is the same value given w times."""
    values = np.asarray([v for v, _ in pairs], dtype=np.float32).reshape(-1, 1, 1)
    weights = np.asarray([w for _, w in pairs], dtype=np.float64)
    repeated = np.repeat(values[:, 0, 0], [w for _, w in pairs])
    assert weighted_median(values, weights)[0, 0] == pytest.approx(float(np.median(repeated)), abs=1e-6)


@given(frames=st.integers(1, 400), lag=st.integers(-300, 300))
def test_an_aligned_view_is_evaluates_shift_and_pad(frames: int, lag: int) -> None:
    """One meaning of a lag in stemkit: the view reads exactly what evaluate.align.match would produce."""
    x = noise(frames, (2, frames))
    np.testing.assert_array_equal(Aligned(x, lag).block(0, frames), match(x, x, lag=lag))


def test_mean_of_members_with_independent_errors_gains_10log10_k_db() -> None:
    """x_i = s + n_i, the n_i independent with equal power P: the mean's error is Σn_i / K, of power P / K
    (the cross terms vanish), so its SDR is each member's plus 10·log10(K) — 6.02 dB for four members."""
    s = noise(0, (2, 200_000), scale=0.2)
    members = [s + noise(10 + i, s.shape, scale=0.1) for i in range(4)]
    single = np.mean([sdr(s, m) for m in members])
    mean = combine([Aligned(m) for m in members], [1.0] * 4, "mean", frames=s.shape[1], sample_rate=RATE)
    assert sdr(s, mean) - single == pytest.approx(10 * np.log10(4), abs=0.05)


def test_median_of_members_with_gaussian_errors_gains_less_than_the_mean() -> None:
    """The median of K Gaussians has a larger variance than their mean (π/2 times for large K): it improves
    SDR, by less — the price of its robustness."""
    s = noise(0, (1, 200_000), scale=0.2)
    members = [s + noise(20 + i, s.shape, scale=0.1) for i in range(5)]
    single = float(np.mean([sdr(s, m) for m in members]))
    median = combine([Aligned(m) for m in members], [1.0] * 5, "median", frames=s.shape[1], sample_rate=RATE)
    mean = combine([Aligned(m) for m in members], [1.0] * 5, "mean", frames=s.shape[1], sample_rate=RATE)
    assert single + 3.0 < sdr(s, median) < sdr(s, mean)


def test_median_shrugs_off_one_member_gone_wrong() -> None:
    s = noise(0, (1, 50_000), scale=0.2)
    members = [s + noise(30 + i, s.shape, scale=0.02) for i in range(2)] + [s + noise(99, s.shape, scale=2.0)]
    median = combine([Aligned(m) for m in members], [1.0] * 3, "median", frames=s.shape[1], sample_rate=RATE)
    mean = combine([Aligned(m) for m in members], [1.0] * 3, "mean", frames=s.shape[1], sample_rate=RATE)
    assert sdr(s, median) > sdr(s, mean) + 10


def test_weights_must_be_finite_and_not_all_zero() -> None:
    x = noise(1, (1, 100))
    with pytest.raises(ConfigError, match="not all zero"):
        combine([Aligned(x), Aligned(x)], [0.0, 0.0], "mean", frames=100, sample_rate=RATE)
