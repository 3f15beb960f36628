"""Combining several estimates of one stem into one: the ensemble methods, as pure functions over arrays.

Each member's estimate arrives as an :class:`Aligned`: float32 ``(channels, frames)`` at the ensemble's rate
and channel count, plus the lag (in samples) that aligns it with the input. Nothing is shifted or stacked
whole: every method works block by block over the aligned views, so combining a long song costs a few
blocks of memory beyond the stems themselves.

Methods (UVR's names where UVR has one):

``mean``
    the weighted mean of the waveforms, ``Σ wᵢ xᵢ / Σ wᵢ`` — UVR's "Avg Wave".
``median``
    the (weighted) median of the waveforms, sample by sample.
``max_spec`` / ``min_spec`` / ``mean_spec``
    per STFT bin, the largest / smallest / weighted mean magnitude across members, with the phase of the
    reference member; back to a waveform by the inverse STFT (scipy's ``ShortTimeFFT``: Hann window, 75 %
    overlap, perfect reconstruction, exact length). The STFT runs over overlapping segments on the global
    frame grid, so a segment's interior is exactly what a whole-signal STFT would give.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from stemkit.audio import FloatArray
from stemkit.errors import ConfigError

__all__ = ["METHODS", "SPECTRAL_METHODS", "Aligned", "Method", "combine", "require_backend", "weighted_median"]

Method = Literal["mean", "median", "max_spec", "min_spec", "mean_spec"]
METHODS: tuple[Method, ...] = ("mean", "median", "max_spec", "min_spec", "mean_spec")
SPECTRAL_METHODS = frozenset({"max_spec", "min_spec", "mean_spec"})
#: methods whose result depends on member weights (max/min of magnitudes have no weighted form)
WEIGHTED_METHODS = frozenset({"mean", "median", "mean_spec"})

#: frames per block of waveform work (about 6 s at 44.1 kHz)
_BLOCK = 1 << 18


@dataclass(frozen=True)
class Aligned:
    """One member's estimate of one stem, read through its alignment: ``block(a, b)`` is
    ``audio[:, a + lag : b + lag]`` with zeros where that falls outside the estimate."""

    audio: FloatArray
    lag: int = 0

    def block(self, start: int, stop: int) -> FloatArray:
        channels, frames = self.audio.shape
        lo, hi = start + self.lag, stop + self.lag
        if lo >= 0 and hi <= frames:
            return self.audio[:, lo:hi]
        out = np.zeros((channels, stop - start), dtype=np.float32)
        a, b = max(lo, 0), min(hi, frames)
        if a < b:
            out[:, a - lo : b - lo] = self.audio[:, a:b]
        return out


def combine(
    members: Sequence[Aligned],
    weights: Sequence[float],
    method: Method,
    *,
    frames: int,
    sample_rate: int,
    reference: int = 0,
) -> FloatArray:
    """Combine the members' estimates of one stem into float32 ``(channels, frames)``.

    ``weights`` (one per member, ≥ 0, not all 0) weight ``mean``, ``median`` and ``mean_spec``;
    ``reference`` is the index of the member whose phase the spectral methods keep.
    """
    if not members:
        raise ValueError("combine: no member estimates")
    if len(weights) != len(members):
        raise ValueError("combine: one weight per member")
    w = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise ConfigError(f"weights: {list(weights)} must be finite, non-negative and not all zero")
    # A zero weight takes a member out of a weighted method entirely (a weighted median included).
    if method in WEIGHTED_METHODS:
        keep = [i for i in range(len(members)) if w[i] > 0]
        if reference not in keep:
            reference = keep[0]
        reference = keep.index(reference)
        members = [members[i] for i in keep]
        w = w[keep]
    if len(members) == 1:
        return np.ascontiguousarray(members[0].block(0, frames), dtype=np.float32)
    if method in SPECTRAL_METHODS:
        return _spectral(members, w, method, frames, sample_rate, reference)
    channels = members[0].audio.shape[0]
    out = np.empty((channels, frames), dtype=np.float32)
    for start in range(0, frames, _BLOCK):
        stop = min(start + _BLOCK, frames)
        if method == "mean":
            acc = np.zeros((channels, stop - start), dtype=np.float64)
            for member, weight in zip(members, w, strict=True):
                acc += weight * member.block(start, stop)
            out[:, start:stop] = acc / w.sum()
        elif method == "median":
            stack = np.stack([m.block(start, stop) for m in members])
            out[:, start:stop] = weighted_median(stack, w)
        else:
            raise ConfigError(f"method: unknown ensemble method {method!r}; choose from {', '.join(METHODS)}")
    return out


def weighted_median(stack: NDArray[Any], weights: NDArray[np.float64]) -> NDArray[np.float32]:
    """The weighted median along axis 0.

    With equal weights it is :func:`numpy.median` (the mean of the two middle values for an even count); in
    general the smallest value whose cumulative weight reaches half the total, averaged with the next one
    when the cumulative weight lands exactly on the half.
    """
    if np.allclose(weights, weights[0]):
        if stack.shape[0] == 2:  # the median of two is their mean, without a sort
            pair: NDArray[np.float32] = ((stack[0] + stack[1]) / 2).astype(np.float32)
            return pair
        median: NDArray[np.float32] = np.median(stack, axis=0).astype(np.float32)
        return median
    order = np.argsort(stack, axis=0, kind="stable")
    ordered = np.take_along_axis(stack, order, axis=0)
    cumulative = np.cumsum(weights[order], axis=0)
    half = weights.sum() / 2.0
    tolerance = 1e-12 * weights.sum()
    index = np.argmax(cumulative >= half - tolerance, axis=0)
    low = np.take_along_axis(ordered, index[np.newaxis], axis=0)[0]
    exact = np.abs(np.take_along_axis(cumulative, index[np.newaxis], axis=0)[0] - half) <= tolerance
    upper_index = np.minimum(index + 1, stack.shape[0] - 1)
    high = np.take_along_axis(ordered, upper_index[np.newaxis], axis=0)[0]
    result: NDArray[np.float32] = np.where(exact, (low + high) / 2.0, low).astype(np.float32)
    return result


def require_backend(method: str) -> None:
    """Fail early, with what to install, when a spectral method's STFT (scipy, an optional extra) is missing."""
    if method not in SPECTRAL_METHODS:
        return
    try:
        from scipy.signal import ShortTimeFFT  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"method={method} needs scipy's STFT; install it with: pip install 'stemkit[ensemble]' "
            "(or use mean or median, which need nothing more)"
        ) from None


def fft_size(sample_rate: int) -> int:
    """2048 at 44.1 kHz (≈ 46 ms, UVR's and the dsp baseline's choice), scaled to other rates, a power of two."""
    return int(2 ** max(8, round(math.log2(2048 * sample_rate / 44_100))))


def _spectral(
    members: Sequence[Aligned],
    weights: NDArray[np.float64],
    method: Method,
    frames: int,
    sample_rate: int,
    reference: int,
) -> FloatArray:
    require_backend(method)
    from scipy.signal import ShortTimeFFT
    from scipy.signal.windows import hann

    n_fft = fft_size(sample_rate)
    hop = n_fft // 4
    stft = ShortTimeFFT(hann(n_fft, sym=False), hop, fs=sample_rate, fft_mode="onesided")
    margin = n_fft  # a frame reaches at most n_fft samples from a sample it covers
    span = max(hop, (_BLOCK // hop) * hop)  # a whole number of hops keeps every segment on the global grid
    out = np.empty((members[0].audio.shape[0], frames), dtype=np.float32)
    for start in range(0, frames, span):
        stop = min(start + span, frames)
        seg_start, seg_stop = max(0, start - margin), min(frames, stop + margin)
        # One transform for every member and channel: (members, channels, bins, slices).
        stack = np.stack([m.block(seg_start, seg_stop) for m in members]).astype(np.float64)
        length = stack.shape[-1]
        if length < n_fft:  # the transform wants a window's worth; zeros past the end are what it pads with anyway
            stack = np.pad(stack, [(0, 0)] * (stack.ndim - 1) + [(0, n_fft - length)])
        spectra = stft.stft(stack, axis=-1)
        magnitudes = np.abs(spectra)
        if method == "max_spec":
            magnitude = magnitudes.max(axis=0)
        elif method == "min_spec":
            magnitude = magnitudes.min(axis=0)
        else:
            magnitude = np.tensordot(weights / weights.sum(), magnitudes, axes=1)
        ref, ref_magnitude = spectra[reference], magnitudes[reference]
        # The reference's unit phasor; where it is silent any phase will do (1).
        phase = np.divide(ref, ref_magnitude, out=np.ones_like(ref), where=ref_magnitude > 0)
        signal = stft.istft(magnitude * phase, k1=stack.shape[-1])
        out[:, start:stop] = signal[:, start - seg_start : stop - seg_start]
    return out
