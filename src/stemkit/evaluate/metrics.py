"""Separation quality metrics, computed the way the field's references compute them.

Array convention (stemkit's own): one stem is ``(channels, samples)`` (a 1-D array is a mono stem);
several stems stack on leading axes, ``(stems, channels, samples)``, and every function reduces over
the last two axes, so the result has the leading shape (a float for a single stem).

All sums run in float64 whatever the input dtype, chunk by chunk, so a float32 song scores the same
as its float64 copy (to ~1e-10 dB) without materialising a float64 copy of the whole song.

Defined values for silence (never an exception, never a warning):

============================  =====================================  ==========================
case                          :func:`sdr` (MDX, δ = 1e-7)             :func:`si_sdr`
============================  =====================================  ==========================
reference and estimate silent  0 dB                                   NaN
silent reference only          ``10·log10(δ / (Σŝ² + δ))`` (< 0)       NaN (no target to scale)
silent estimate only           0 dB                                   -inf
estimate equals the reference  ``10·log10((Σs² + δ) / δ)`` (finite)    +inf
============================  =====================================  ==========================

A NaN or infinite sample in an input gives NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from stemkit.errors import InputError

__all__ = [
    "DELTA",
    "agreement",
    "mixture_consistency",
    "sdr",
    "sdr_and_si_sdr",
    "si_sdr",
    "song_sdr",
]

#: The Music Demixing Challenge's regulariser, added to numerator and denominator of :func:`sdr`.
DELTA = 1e-7

# Elements per float64 work block (64 KiB). Small enough that a block of reference, estimate and difference
# stays in cache, and below OpenBLAS's threading threshold for a dot product (10 000 elements): a threaded
# ddot on a busy machine spends more on waking threads than it saves (measured: 2**15 blocks were 3-10x
# slower in the median on a loaded 2-core machine, 2**13 blocks steady).
_BLOCK = 1 << 13

# When the SI-SDR residual computed from dot products is smaller than this fraction of the estimate's
# energy, cancellation could cost digits: recompute it directly from the samples.
_EXACT_BELOW = 1e-6

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class _Sums:
    """Per-row (stem × channel) sums that every metric here is built from, in float64.

    Only the sums a metric asked for are computed; the others stay zero.
    """

    n: int
    rr: FloatArray  # Σ s²
    ee: FloatArray  # Σ ŝ²
    re: FloatArray  # Σ s·ŝ
    dd: FloatArray  # Σ (s − ŝ)²
    rs: FloatArray  # Σ s
    es: FloatArray  # Σ ŝ


def _rows(reference: ArrayLike, estimate: ArrayLike, what: str) -> tuple[NDArray[Any], NDArray[Any], tuple[int, ...]]:
    """Check shapes and view both inputs as ``(rows, samples)``; return the leading (stem) shape too."""
    ref = np.asarray(reference)
    est = np.asarray(estimate)
    if ref.shape != est.shape:
        raise InputError(
            f"{what}: reference shape {ref.shape} and estimate shape {est.shape} differ; "
            "pass arrays of the same (channels, samples) shape, or align them first with "
            "stemkit.evaluate.align.match(reference, estimate)"
        )
    if ref.ndim == 0 or ref.size == 0:
        raise InputError(f"{what}: empty input of shape {ref.shape}; pass at least one sample per channel")
    for name, arr in (("reference", ref), ("estimate", est)):
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise InputError(f"{what}: {name} has dtype {arr.dtype}; pass real-valued audio samples")
    if ref.ndim == 1:
        return ref.reshape(1, -1), est.reshape(1, -1), ()
    lead = ref.shape[:-2]
    return ref.reshape(-1, ref.shape[-1]), est.reshape(-1, est.shape[-1]), lead


def _sums(ref: NDArray[Any], est: NDArray[Any], need: frozenset[str]) -> _Sums:
    rows, n = ref.shape
    out = {name: np.zeros(rows, dtype=np.float64) for name in ("rr", "ee", "re", "dd", "rs", "es")}
    want_dd, want_ee, want_re = "dd" in need, "ee" in need, "re" in need
    want_sums = "rs" in need
    for i in range(rows):
        rr = ee = re = dd = rs = es = 0.0
        for start in range(0, n, _BLOCK):
            r = ref[i, start : start + _BLOCK].astype(np.float64)
            e = est[i, start : start + _BLOCK].astype(np.float64)
            rr += float(r @ r)
            if want_ee:
                ee += float(e @ e)
            if want_re:
                re += float(r @ e)
            if want_dd:
                np.subtract(r, e, out=e)
                dd += float(e @ e)
            if want_sums:
                rs += float(r.sum())
                es += float(est[i, start : start + _BLOCK].sum(dtype=np.float64))
        out["rr"][i], out["ee"][i], out["re"][i], out["dd"][i] = rr, ee, re, dd
        out["rs"][i], out["es"][i] = rs, es
    return _Sums(n, out["rr"], out["ee"], out["re"], out["dd"], out["rs"], out["es"])


def _per_stem(values: FloatArray, lead: tuple[int, ...], channels: int) -> FloatArray:
    """Sum per-row values over the channels of each stem."""
    return values.reshape(*lead, channels) if lead else values.reshape(1, channels)


def _shape_result(values: FloatArray, lead: tuple[int, ...]) -> float | FloatArray:
    return float(values.reshape(())) if not lead else values.reshape(lead)


def _mdx_ratio(num: FloatArray, den: FloatArray, delta: float) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(10.0 * np.log10((num + delta) / (den + delta)), dtype=np.float64)


def _channels(reference: ArrayLike) -> int:
    return 1 if np.ndim(reference) == 1 else int(np.shape(reference)[-2])


def _sdr_from(sums: _Sums, lead: tuple[int, ...], channels: int, delta: float) -> FloatArray:
    num = _per_stem(sums.rr, lead, channels).sum(axis=-1)
    den = _per_stem(sums.dd, lead, channels).sum(axis=-1)
    return _mdx_ratio(num, den, delta)


def _si_sdr_from(
    sums: _Sums,
    ref: NDArray[Any],
    est: NDArray[Any],
    lead: tuple[int, ...],
    channels: int,
    zero_mean: bool,
) -> FloatArray:
    rr, ee, re = sums.rr, sums.ee, sums.re
    if zero_mean:
        n = float(sums.n)
        rr = np.maximum(rr - sums.rs * sums.rs / n, 0.0)
        ee = np.maximum(ee - sums.es * sums.es / n, 0.0)
        re = re - sums.rs * sums.es / n
    rr_s = _per_stem(rr, lead, channels).sum(axis=-1)
    ee_s = _per_stem(ee, lead, channels).sum(axis=-1)
    re_s = _per_stem(re, lead, channels).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(rr_s > 0, re_s / np.where(rr_s > 0, rr_s, 1.0), np.nan)
        target = alpha * alpha * rr_s
        residual = np.maximum(ee_s - alpha * re_s, 0.0)
    # ‖ŝ − αs‖² = ‖ŝ‖² − α⟨s, ŝ⟩ loses digits when the two terms nearly cancel (a near-perfect or
    # near-scaled estimate): recompute those residuals from the samples.
    exact = np.flatnonzero(np.ravel((rr_s > 0) & (residual <= _EXACT_BELOW * ee_s)))
    if exact.size:
        flat_residual = np.ravel(residual).copy()
        flat_alpha = np.ravel(alpha)
        for stem in exact:
            flat_residual[stem] = _exact_residual(ref, est, int(stem), channels, float(flat_alpha[stem]), zero_mean)
        residual = flat_residual.reshape(np.shape(residual))
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 10.0 * np.log10(target / residual)
    value = np.where(rr_s > 0, value, np.nan)  # silent reference: no target to scale, undefined
    value = np.where((rr_s > 0) & (ee_s == 0), -np.inf, value)  # silent estimate: nothing recovered
    return np.asarray(value, dtype=np.float64)


def sdr(reference: ArrayLike, estimate: ArrayLike, *, delta: float = DELTA) -> float | FloatArray:
    """Signal-to-distortion ratio in dB exactly as the Music Demixing Challenge 2021/2023 scores it.

    ``10·log10((Σ s² + δ) / (Σ (s − ŝ)² + δ))`` with the sums over channels and samples of one stem.
    The challenge's song score is the mean over stems: :func:`song_sdr`.
    """
    ref, est, lead = _rows(reference, estimate, "sdr")
    sums = _sums(ref, est, frozenset({"dd"}))
    return _shape_result(_sdr_from(sums, lead, _channels(reference), delta), lead)


def song_sdr(references: Mapping[str, ArrayLike], estimates: Mapping[str, ArrayLike]) -> float:
    """The challenge's score of one song: the mean of :func:`sdr` over the reference stems.

    Every reference stem must have an estimate: a missing stem is an error, not a silent skip.
    """
    missing = sorted(set(references) - set(estimates))
    if missing:
        raise InputError(
            f"song_sdr: no estimate for stem(s) {', '.join(missing)}; every reference stem needs an estimate "
            f"(estimates have: {', '.join(sorted(estimates)) or 'none'})"
        )
    if not references:
        raise InputError("song_sdr: no reference stems given; pass a mapping of stem name to audio")
    return float(np.mean([sdr(references[name], estimates[name]) for name in references]))


def si_sdr(reference: ArrayLike, estimate: ArrayLike, *, zero_mean: bool = False) -> float | FloatArray:
    """Scale-invariant SDR in dB (Le Roux, Wisdom, Erdogan & Hershey, ICASSP 2019).

    ``α = ⟨ŝ, s⟩ / ‖s‖²``, ``SI-SDR = 10·log10(‖α s‖² / ‖ŝ − α s‖²)``. The channels of a stem share one
    scale factor α (the stem is one signal, as in :func:`sdr`, whose sums also run over channels).
    ``zero_mean=True`` removes each channel's mean from both signals first, as the paper recommends for
    signals with a DC offset; audio from a separator rarely has one, so the default keeps the samples.
    See the module docstring for the values of silent inputs.
    """
    ref, est, lead = _rows(reference, estimate, "si_sdr")
    sums = _sums(ref, est, frozenset({"ee", "re", "rs"} if zero_mean else {"ee", "re"}))
    return _shape_result(_si_sdr_from(sums, ref, est, lead, _channels(reference), zero_mean), lead)


def sdr_and_si_sdr(
    reference: ArrayLike, estimate: ArrayLike, *, delta: float = DELTA, zero_mean: bool = False
) -> tuple[float | FloatArray, float | FloatArray]:
    """:func:`sdr` and :func:`si_sdr` from one pass over the samples (what :func:`stemkit.compare` uses)."""
    ref, est, lead = _rows(reference, estimate, "sdr_and_si_sdr")
    sums = _sums(ref, est, frozenset({"dd", "ee", "re", "rs"} if zero_mean else {"dd", "ee", "re"}))
    channels = _channels(reference)
    return (
        _shape_result(_sdr_from(sums, lead, channels, delta), lead),
        _shape_result(_si_sdr_from(sums, ref, est, lead, channels, zero_mean), lead),
    )


def _exact_residual(
    ref: NDArray[Any], est: NDArray[Any], stem: int, channels: int, alpha: float, zero_mean: bool
) -> float:
    total = 0.0
    for row in range(stem * channels, (stem + 1) * channels):
        r_all = ref[row]
        e_all = est[row]
        r_mean = float(np.mean(r_all, dtype=np.float64)) if zero_mean else 0.0
        e_mean = float(np.mean(e_all, dtype=np.float64)) if zero_mean else 0.0
        for start in range(0, r_all.shape[-1], _BLOCK):
            r = r_all[start : start + _BLOCK].astype(np.float64) - r_mean
            e = e_all[start : start + _BLOCK].astype(np.float64) - e_mean
            res = e - alpha * r
            total += float(res @ res)
    return total


def _stack(stems: Mapping[str, ArrayLike] | Sequence[ArrayLike] | ArrayLike, what: str) -> NDArray[Any]:
    if isinstance(stems, Mapping):
        if not stems:
            raise InputError(f"{what}: no stems given; pass at least one stem")
        arrays = [np.asarray(a) for a in stems.values()]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise InputError(
                f"{what}: stems have different shapes {sorted(shapes)}; align them first (stemkit.evaluate.align.match)"
            )
        return np.stack(arrays)
    return np.asarray(stems)


def mixture_consistency(
    mixture: ArrayLike,
    stems: Mapping[str, ArrayLike] | Sequence[ArrayLike] | ArrayLike,
    *,
    delta: float = DELTA,
) -> float:
    """How well the stems add back up to the mixture, in dB; needs no reference.

    ``10·log10((Σ mix² + δ) / (Σ (mix − Σ stems)² + δ))``: the mixture's energy against the residual
    the stems leave. A separator whose stems sum to its input by construction scores very high (the
    float32 rounding floor, ~100+ dB); one that drops or invents energy scores low. The stems must be
    a partition of the mixture (e.g. vocals, drums, bass, other; or vocals + instrumental, not both).
    Inputs must already be aligned and resampled (see :mod:`stemkit.evaluate.align`).
    """
    mix = np.asarray(mixture)
    stacked = _stack(stems, "mixture_consistency")
    if stacked.shape[1:] != mix.shape:
        raise InputError(
            f"mixture_consistency: stems of shape {stacked.shape[1:]} do not match the mixture's {mix.shape}; "
            "align them first (stemkit.evaluate.align.match)"
        )
    total = np.zeros(mix.shape, dtype=np.float64)
    for stem in stacked:
        total += stem
    return float(sdr(mix, total, delta=delta))


def agreement(
    estimates: Mapping[str, Mapping[str, ArrayLike]],
) -> dict[str, dict[str, dict[str, float]]]:
    """Cross-provider agreement without references: the MDX SDR of each provider's stem against each other's.

    ``estimates`` maps provider → stem → audio (already aligned, same shape per stem). The result maps
    stem → reference provider → estimating provider → dB, for every ordered pair of distinct providers
    that both produced the stem. High agreement says two systems make the same choices, not that either is
    right; its value is in spotting the odd one out.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    providers = list(estimates)
    stems = sorted({stem for per in estimates.values() for stem in per})
    for stem in stems:
        having = [p for p in providers if stem in estimates[p]]
        for a in having:
            for b in having:
                if a == b:
                    continue
                value = float(sdr(estimates[a][stem], estimates[b][stem]))
                out.setdefault(stem, {}).setdefault(a, {})[b] = value
    return out
