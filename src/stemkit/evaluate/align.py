"""Bring estimates onto their references before scoring: same rate, channels, start and length.

The reference is the truth: an estimate is resampled to the reference's rate, its channels matched
(mono is repeated, a wider estimate downmixed), shifted by the lag that best aligns it, then truncated or
zero-padded to the reference's length, as museval's ``pad_or_truncate`` does (missing samples count as
error rather than being dropped from the score).

A lag is estimated once per separation (from the sum of its stems against the mixture, see
:func:`estimate_lag`) and applied to every stem, so one quiet stem cannot pull its own alignment.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from stemkit.audio import FloatArray, resample
from stemkit.errors import InputError

__all__ = ["DEFAULT_MAX_LAG_SECONDS", "estimate_lag", "match", "shift"]

#: Codec delays and padding are a few thousand samples at most; a larger offset means different audio.
DEFAULT_MAX_LAG_SECONDS = 0.1


def _mono(x: NDArray[Any]) -> NDArray[np.float64]:
    arr = np.asarray(x, dtype=np.float64)
    return arr if arr.ndim == 1 else arr.mean(axis=0)


def estimate_lag(reference: NDArray[Any], estimate: NDArray[Any], max_lag: int) -> int:
    """The delay, in samples, of ``estimate`` against ``reference`` (positive: the estimate starts late).

    The peak of the cross-correlation of the mono downmixes within ``±max_lag``, computed with one FFT
    pair. Ties and silent or uncorrelated inputs give 0: the signals are left where they are unless a
    shift is clearly better.
    """
    if max_lag <= 0:
        return 0
    ref = _mono(reference)
    est = _mono(estimate)
    if not ref.any() or not est.any():
        return 0
    size = 1 << int(np.ceil(np.log2(max(ref.shape[-1], est.shape[-1]) + max_lag)))
    spectrum = np.conj(np.fft.rfft(ref, size)) * np.fft.rfft(est, size)
    corr = np.fft.irfft(spectrum, size)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    values = np.concatenate([corr[: max_lag + 1], corr[size - max_lag :]])
    best = int(np.argmax(values))
    peak = values[best]
    if not np.isfinite(peak) or peak <= 0:
        return 0
    # Prefer no shift when it is as good as the peak to within rounding.
    if values[0] >= peak * (1.0 - 1e-9):
        return 0
    return int(lags[best])


def shift(audio: NDArray[Any], lag: int) -> NDArray[Any]:
    """Undo a delay of ``lag`` samples: drop the first ``lag`` samples (or prepend ``-lag`` zeros)."""
    arr = np.asarray(audio)
    if lag == 0:
        return arr
    if lag > 0:
        return arr[..., lag:]
    pad = [(0, 0)] * (arr.ndim - 1) + [(-lag, 0)]
    return np.pad(arr, pad)


def _match_channels(audio: NDArray[Any], channels: int) -> FloatArray:
    data = np.asarray(audio, dtype=np.float32)
    if data.shape[0] == channels:
        return data
    if data.shape[0] == 1:
        return np.repeat(data, channels, axis=0)
    down = data.mean(axis=0, keepdims=True, dtype=np.float32)
    return down if channels == 1 else np.repeat(down, channels, axis=0)


def match(
    reference: NDArray[Any],
    estimate: NDArray[Any],
    *,
    reference_rate: int | None = None,
    estimate_rate: int | None = None,
    lag: int = 0,
) -> FloatArray:
    """The estimate at the reference's rate and channel count, shifted by ``lag`` (in samples at the
    reference's rate), truncated or zero-padded to the reference's length; float32 ``(channels, samples)``.
    """
    ref = np.asarray(reference)
    if ref.ndim == 1:
        ref = ref[np.newaxis, :]
    if ref.ndim != 2:
        raise InputError(f"align: a reference must be (channels, samples), got shape {ref.shape}")
    est = np.asarray(estimate)
    if est.ndim == 1:
        est = est[np.newaxis, :]
    if est.ndim != 2:
        raise InputError(f"align: an estimate must be (channels, samples), got shape {est.shape}")
    if (reference_rate is None) != (estimate_rate is None):
        raise InputError("align: give both reference_rate and estimate_rate, or neither")
    rate = reference_rate or 1
    from_rate = estimate_rate or 1
    channels, frames = ref.shape
    # Match channels and rate first; the shift and the length come after, in the reference's time base.
    resampled = resample(_match_channels(est, channels), from_rate, rate)
    shifted = shift(resampled, lag)
    out = shifted[:, :frames]
    if out.shape[1] < frames:
        out = np.pad(out, ((0, 0), (0, frames - out.shape[1])))
    return np.ascontiguousarray(out, dtype=np.float32)
