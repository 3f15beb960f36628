"""The signal processing behind the dsp baseline: an exact STFT/iSTFT pair and the masks it applies."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

Float32 = npt.NDArray[np.float32]
Complex64 = npt.NDArray[np.complex64]
OVERLAP = 4  # hop = n_fft / 4: Hann analysis and synthesis windows overlap-add to a constant


def stft(signal: Float32, n_fft: int) -> Complex64:
    """(frames, bins) spectrum of a 1-D signal, centred frames, Hann window, hop n_fft/4."""
    hop = n_fft // OVERLAP
    padded = _pad(signal, n_fft)
    frames = sliding_window_view(padded, n_fft)[::hop] * np.hanning(n_fft + 1)[:-1].astype(np.float32)
    # NumPy >= 2 transforms float32 in single precision: half the memory traffic of complex128.
    return np.fft.rfft(frames, axis=-1).astype(np.complex64, copy=False)


def istft(spectrum: Complex64, n_fft: int, length: int) -> Float32:
    """Inverse of :func:`stft` (weighted overlap-add, normalized by the summed squared window)."""
    hop = n_fft // OVERLAP
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    frames = np.fft.irfft(spectrum, n=n_fft, axis=-1).astype(np.float32, copy=False)
    frames *= window
    count = frames.shape[0]
    total = (count - 1) * hop + n_fft
    out = np.zeros(total + n_fft, dtype=np.float32)
    norm = np.zeros(total + n_fft, dtype=np.float32)
    square = window * window
    # n_fft = OVERLAP * hop, so each quarter of every frame lands on one hop-aligned grid: add them as blocks.
    for k in range(OVERLAP):
        block = frames[:, k * hop : (k + 1) * hop]
        out[k * hop : k * hop + count * hop].reshape(count, hop)[:] += block
        norm[k * hop : k * hop + count * hop].reshape(count, hop)[:] += square[k * hop : (k + 1) * hop]
    start = n_fft // 2
    out = out[start : start + length]
    norm = norm[start : start + length]
    return np.asarray(out / np.maximum(norm, 1e-8), dtype=np.float32)


def _pad(signal: Float32, n_fft: int) -> Float32:
    hop = n_fft // OVERLAP
    half = n_fft // 2
    body = len(signal) + 2 * half
    frames = max(1, -(-(body - n_fft) // hop) + 1)
    tail = (frames - 1) * hop + n_fft - body
    return np.pad(signal, (half, half + tail)).astype(np.float32)


def box_smooth(values: Float32, width: int, axis: int) -> Float32:
    """Centred moving average along ``axis`` (edges average what exists), in O(n) via cumulative sums.

    The running sum is taken of values minus their mean, so it stays small and float32 keeps its precision
    however long the signal.
    """
    n = values.shape[axis]
    width = max(1, min(width, n))
    mean = values.mean(axis=axis, keepdims=True, dtype=np.float64).astype(np.float32)
    moved = np.moveaxis(values - mean, axis, 0)
    csum = np.empty((n + 1, *moved.shape[1:]), dtype=np.float32)
    csum[0] = 0.0
    np.cumsum(moved, axis=0, out=csum[1:])
    idx = np.arange(n)
    lo = np.clip(idx - width // 2, 0, n)
    hi = np.clip(idx + (width - width // 2), 0, n)
    counts = (hi - lo).astype(np.float32).reshape(-1, *([1] * (moved.ndim - 1)))
    out = (csum[hi] - csum[lo]) / counts
    return np.asarray(np.moveaxis(out, 0, axis) + mean, dtype=np.float32)


def percussive_mask(power: Float32, kernel: int) -> Float32:
    """Soft mask of percussive energy: smoothing the log spectrogram across time keeps steady tones,
    across frequency keeps broadband transients; their ratio (squared, Wiener-like) says which dominates."""
    log_power = np.log(power + np.float32(1e-12))
    harmonic = box_smooth(log_power, kernel, axis=0)
    percussive = box_smooth(log_power, kernel, axis=1)
    # exp(2·(p−h)) = (P/H)²; the logistic form avoids overflow for extreme ratios.
    ratio: Float32 = np.clip(harmonic - percussive, -30.0, 30.0).astype(np.float32, copy=False)
    ratio *= 2.0
    np.exp(ratio, out=ratio)
    ratio += 1.0
    np.reciprocal(ratio, out=ratio)
    return ratio


def smooth3(values: Float32) -> Float32:
    """Average of each frame with its neighbours (edges: what exists) — the cheap case of box_smooth."""
    out = values.copy()
    out[1:] += values[:-1]
    out[:-1] += values[1:]
    counts = np.full((values.shape[0], 1), 3.0, dtype=np.float32)
    counts[0] = counts[-1] = 2.0 if values.shape[0] > 1 else 1.0
    out /= counts
    return out


def centre_mask(left: Complex64, right: Complex64, sharpness: float) -> Float32:
    """How much each bin comes from the stereo centre: the inter-channel coherence, smoothed over a few
    frames and raised to ``sharpness`` (1 = identical channels, 0 = one side only or uncorrelated)."""
    mag_left = np.abs(left)
    mag_right = np.abs(right)
    cross = smooth3(mag_left * mag_right)
    energy = smooth3(mag_left * mag_left + mag_right * mag_right)
    coherence = np.clip(2.0 * cross / (energy + np.float32(1e-12)), 0.0, 1.0)
    return np.asarray(coherence**sharpness, dtype=np.float32)


def lowpass(freqs: npt.NDArray[np.float64], cutoff: float, order: int = 8) -> npt.NDArray[np.float32]:
    return np.asarray(1.0 / (1.0 + (freqs / cutoff) ** order), dtype=np.float32)
