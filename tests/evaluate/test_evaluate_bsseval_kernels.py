"""The two numerical kernels under the native BSSEval v4, against their definitions: short-lag correlations
over runs and across points (blocked FFTs), and the block-Toeplitz Cholesky factorization (Schur algorithm)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from stemkit.evaluate._lagcorr import crossing_correlations, lag_correlations
from stemkit.evaluate._toeplitz import block_toeplitz_cholesky


def _direct(x: np.ndarray, y: np.ndarray, start: int, end: int, lags: int, restrict: bool = False) -> np.ndarray:
    """Σ_{start ≤ n < end} x[n]·y[n + k], by definition (y beyond its end, or beyond `end` if restricted, is 0)."""
    out = np.zeros(lags)
    limit = end if restrict else len(y)
    for k in range(lags):
        n = np.arange(start, min(end, limit - k))
        out[k] = np.dot(x[n], y[n + k]) if n.size else 0.0
    return out


@st.composite
def _partitions(draw: st.DrawFn) -> tuple[int, int, list[tuple[int, int]]]:
    lags = draw(st.integers(1, 40))
    length = draw(st.integers(1, 400))
    cuts = sorted(set(draw(st.lists(st.integers(1, length - 1), max_size=6)))) if length > 1 else []
    bounds = [0, *cuts, length]
    return lags, length, list(itertools.pairwise(bounds))


@settings(max_examples=60, deadline=None)
@given(_partitions(), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**32 - 1))
def test_run_correlations_are_the_lagged_sums_over_each_run(
    partition: tuple[int, int, list[tuple[int, int]]], dtype: type, seed: int
) -> None:
    lags, length, runs = partition
    rng = np.random.default_rng(seed)
    xs = list(rng.standard_normal((2, length)).astype(dtype))
    ys = [list(rng.standard_normal((3, length)).astype(dtype)), list(rng.standard_normal((1, length)).astype(dtype))]
    got = lag_correlations(xs, ys, np.array(runs, dtype=np.int64), lags)
    assert [g.shape for g in got] == [(len(runs), 2, 3, lags), (len(runs), 2, 1, lags)]
    for group, out in zip(ys, got, strict=True):
        for r, (start, end) in enumerate(runs):
            for a, x in enumerate(xs):
                for b, y in enumerate(group):
                    expected = _direct(x.astype(np.float64), y.astype(np.float64), start, end, lags)
                    np.testing.assert_allclose(out[r, a, b], expected, atol=1e-9 * max(1, end - start))


def test_long_runs_are_cut_into_blocks_with_a_short_last_one() -> None:
    rng = np.random.default_rng(1)
    lags, length = 64, 5_000  # blocks of up to 5·64 samples: 16 blocks per run, the last one short
    xs, ys = list(rng.standard_normal((2, length))), list(rng.standard_normal((2, length)))
    runs = np.array([(0, 2_345), (2_345, 5_000)], dtype=np.int64)
    (out,) = lag_correlations(xs, [ys], runs, lags)
    for r, (start, end) in enumerate(runs.tolist()):
        for a in range(2):
            for b in range(2):
                np.testing.assert_allclose(out[r, a, b], _direct(xs[a], ys[b], start, end, lags), atol=1e-8)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(2, 200), st.integers(0, 2**32 - 1), st.data())
def test_crossing_correlations_are_the_pairs_straddling_each_point(
    lags: int, length: int, seed: int, data: st.DataObject
) -> None:
    rng = np.random.default_rng(seed)
    xs, ys = list(rng.standard_normal((2, length))), list(rng.standard_normal((2, length)))
    points = sorted(data.draw(st.lists(st.integers(1, length), min_size=1, max_size=5)))
    floors = [data.draw(st.integers(0, p - 1)) for p in points]
    out = crossing_correlations(xs, ys, np.array(points, dtype=np.int64), np.array(floors, dtype=np.int64), lags)
    for p, (point, floor) in enumerate(zip(points, floors, strict=True)):
        for a in range(2):
            for b in range(2):
                # the pairs with floor ≤ n < point ≤ n + k: all pairs from the floor on, less those inside
                inside = _direct(xs[a], ys[b], floor, point, lags, restrict=True)
                expected = _direct(xs[a], ys[b], floor, point, lags) - inside
                np.testing.assert_allclose(out[p, a, b], expected, atol=1e-10)


def _correlations(signals: np.ndarray, lags: int) -> np.ndarray:
    """R[a, b, τ] = Σ_n x_a[n]·x_b[n + τ], 0 ≤ τ < lags."""
    m, n = signals.shape
    out = np.zeros((m, m, lags))
    for a in range(m):
        for b in range(m):
            for tau in range(lags):
                out[a, b, tau] = signals[a, : n - tau] @ signals[b, tau:]
    return out


def _dense(correlations: np.ndarray, shift: float) -> np.ndarray:
    """The block-Toeplitz matrix, ordered (delay, channel): block (p, q) is R(p − q), R(−τ) = R(τ)ᵀ."""
    m, _, lags = correlations.shape
    matrix = np.empty((lags, m, lags, m))
    for p in range(lags):
        for q in range(lags):
            matrix[p, :, q, :] = correlations[:, :, p - q] if p >= q else correlations[:, :, q - p].T
    flat = matrix.reshape(lags * m, lags * m)
    return flat + shift * np.eye(lags * m)


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_the_schur_factor_is_the_cholesky_factor_of_the_block_toeplitz_matrix(channels: int) -> None:
    rng = np.random.default_rng(channels)
    lags = 24
    signals = rng.standard_normal((channels, 400))
    signals[-1] = np.convolve(signals[-1], [1.0, 0.6, 0.2], mode="same")  # not white: a structured matrix
    correlations = _correlations(signals, lags)
    (factor,) = block_toeplitz_cholesky(correlations[np.newaxis], 1e-12)
    dense = _dense(correlations, 1e-12)
    assert factor.lower is not None
    np.testing.assert_allclose(factor.lower @ factor.lower.T, dense, atol=1e-10 * np.abs(dense).max())
    np.testing.assert_allclose(factor.lower, scipy.linalg.cholesky(dense, lower=True), atol=1e-9)
    exact_rcond = 1 / (np.linalg.norm(dense, 1) * np.linalg.norm(np.linalg.inv(dense), 1))
    assert exact_rcond / 10 < factor.rcond < exact_rcond * 10  # LAPACK's estimate, within its usual factor
    vectors = rng.standard_normal((lags * channels, 3))
    np.testing.assert_allclose(factor.apply(vectors), dense @ vectors, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(factor.solve(dense @ vectors), vectors, rtol=1e-8, atol=1e-8)


def test_a_singular_matrix_in_a_batch_is_flagged_and_the_others_are_still_factored() -> None:
    rng = np.random.default_rng(7)
    lags = 16
    fine = rng.standard_normal((2, 300))
    mono = np.stack([fine[0], fine[0]])  # identical channels: the delayed copies are dependent
    batch = np.stack([_correlations(fine, lags), _correlations(mono, lags), _correlations(fine[::-1], lags)])
    factors = block_toeplitz_cholesky(batch, 2.2e-16)
    assert factors[1].lower is None
    assert factors[1].rcond == 0.0
    for i in (0, 2):
        lower = factors[i].lower
        assert lower is not None
        dense = _dense(batch[i], 2.2e-16)
        np.testing.assert_allclose(lower @ lower.T, dense, atol=1e-10 * np.abs(dense).max())


def test_a_channel_that_is_a_delayed_copy_of_another_is_singular_though_its_first_block_is_not() -> None:
    rng = np.random.default_rng(8)
    lags = 16
    source = rng.standard_normal(300)
    source[-3:] = 0.0  # so that the copy delayed by 3 loses nothing: x_b = S³ x_a exactly
    delayed = np.concatenate([np.zeros(3), source[:-3]])
    pair = np.stack([source, delayed])
    correlations = _correlations(pair, lags)
    assert np.linalg.eigvalsh(_dense(correlations[:, :, :1], 0.0))[0] > 1.0  # lag 0 alone is well-conditioned
    fine = _correlations(rng.standard_normal((2, 300)), lags)
    factors = block_toeplitz_cholesky(np.stack([correlations, fine]), 2.2e-16)
    assert factors[0].lower is None or factors[0].rcond < 1e-10  # singular, found in the factorization
    assert factors[1].lower is not None
    assert factors[1].rcond > 1e-3
