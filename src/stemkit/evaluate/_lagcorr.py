"""Short-lag correlations of long multichannel signals, run by run: the heavy lifting of BSSEval v4.

BSSEval v4 needs, for lags ``0 ≤ k < lags`` only (a few hundred), sums ``Σ x_a[n]·y_b[n + k]`` over every
pair of channels — over the whole track (the Gram matrix and the projections' right-hand sides) and over
each 1 s frame (the per-frame energies). Both come from one pass over the signals:

- The track is cut into **runs** (for SiSEC's 1 s hop and window: the frames, then the tail), each run into
  blocks of a few thousand samples. Per block, the FFT of the ``x`` block (time-reversed, zero-padded) times
  the FFT of the ``y`` window starting there (``lags − 1`` samples longer than the block) is the block's
  correlation at the wanted lags, free of circular wrap-around. The products are summed over a run's blocks
  in the frequency domain — one small matrix product per frequency covers every channel pair — and brought
  back once per run.
- A run's sum reads ``y`` past the run's end (as the whole-track correlation must); the **crossing** pairs
  (``n`` before a point, ``n + k`` after it) are what a frame-restricted correlation must leave out, computed
  separately from the ``lags − 1`` samples on either side of the point.

Channels are 1-D arrays of any float dtype (views of the callers' audio, never copied whole); each run's
samples are widened to float64 in small buffers reused from run to run, so memory stays a few megabytes
beyond the results however long the track.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Channel = NDArray[np.floating[Any]]

#: Samples per block, in multiples of the lag count: the FFT is ~(BLOCK_LAGS + 1) × lags long. Longer blocks
#: waste less of each transform on the overlap; shorter ones make the per-frequency products and the one
#: inverse transform per run cheaper. 5 (a ~3000-point FFT at 512 lags) is the measured optimum.
BLOCK_LAGS = 5
_CROSSING_CHUNK = 32  # points whose crossing pairs are transformed at once


def _plan(length: int, lags: int) -> tuple[int, int, int]:
    """(blocks, samples per block, FFT size) for a run of ``length`` samples."""
    from scipy.fft import next_fast_len

    cap = BLOCK_LAGS * lags
    blocks = -(-length // cap)
    block = -(-length // blocks)
    return blocks, block, int(next_fast_len(block + lags - 1, real=True))


def _fill(target: FloatArray, channels: Sequence[Channel], start: int) -> None:
    """``target[i] = channels[i][start : start + width]`` as float64, zeros past the channels' end."""
    width = target.shape[1]
    available = max(0, min(width, len(channels[0]) - start))
    for row, channel in zip(target, channels, strict=True):
        row[:available] = channel[start : start + available]
        row[available:] = 0.0


def lag_correlations(
    xs: Sequence[Channel], ys: Sequence[Sequence[Channel]], runs: IntArray, lags: int
) -> list[FloatArray]:
    """``out[i][r, a, b, k] = Σ_{start_r ≤ n < end_r} xs[a][n] · ys[i][b][n + k]`` for ``0 ≤ k < lags``.

    ``runs`` is an ``(R, 2)`` array of ``[start, end)`` sample ranges; ``y`` is read past a run's end (zeros
    beyond the signal's). The groups of ``ys`` share each run's transforms and products.
    """
    from scipy import fft

    targets = [y for group in ys for y in group]
    split = np.cumsum([0, *(len(group) for group in ys)])
    outs = [np.empty((len(runs), len(xs), len(group), lags)) for group in ys]
    plans: dict[int, tuple[int, int, int, FloatArray, FloatArray]] = {}
    for r, (start, end) in enumerate(runs.tolist()):
        length = end - start
        if length not in plans:
            blocks, block, size = _plan(length, lags)
            reversed_blocks = np.zeros((size, len(xs), blocks))
            windows = np.empty((len(targets), (blocks - 1) * block + size))
            plans[length] = (blocks, block, size, reversed_blocks, windows)
        blocks, block, size, reversed_blocks, windows = plans[length]
        # reversed_blocks[t, a, u] = x_a[start + u·block + block − 1 − t]: each block time-reversed, so that
        # multiplying spectra correlates instead of convolving; lag k lands at index block − 1 + k. The last
        # block may be short: its first `excess` entries stay zero.
        excess = blocks * block - length
        last = start + (blocks - 1) * block
        for a, x in enumerate(xs):
            item = x.itemsize
            if blocks > 1:
                whole = as_strided(x[start + block - 1 :], (block, blocks - 1), (-item, block * item))
                reversed_blocks[:block, a, : blocks - 1] = whole
            reversed_blocks[excess:block, a, blocks - 1] = x[last:end][::-1]
            reversed_blocks[:excess, a, blocks - 1] = 0.0
        spectrum_x = fft.rfft(reversed_blocks, axis=0)  # (bins, x channel, block)
        _fill(windows, targets, start)
        item = windows.itemsize
        strided = as_strided(windows, (size, blocks, len(targets)), (item, block * item, windows.strides[0]))
        spectrum_y = fft.rfft(strided, axis=0)  # (bins, block, y channel)
        # Per frequency, (x channels × blocks) @ (blocks × y channels): every pair, summed over the blocks.
        correlation = fft.irfft(np.matmul(spectrum_x, spectrum_y), n=size, axis=0)[block - 1 : block - 1 + lags]
        for i, out in enumerate(outs):
            out[r] = correlation[:, :, split[i] : split[i + 1]].transpose(1, 2, 0)
    return outs


def crossing_correlations(
    xs: Sequence[Channel], ys: Sequence[Channel], points: IntArray, floors: IntArray, lags: int
) -> FloatArray:
    """``out[p, a, b, k] = Σ_{max(floor_p, point_p − k) ≤ n < point_p} xs[a][n] · ys[b][n + k]``: the pairs
    that straddle ``point_p`` (with ``n`` no earlier than ``floor_p``), for ``0 ≤ k < lags``."""
    from scipy import fft

    width = lags - 1
    out = np.zeros((len(points), len(xs), len(ys), lags))
    if width == 0 or len(points) == 0:
        return out
    size = int(fft.next_fast_len(2 * width, real=True))
    offsets = np.arange(width)
    for first in range(0, len(points), _CROSSING_CHUNK):
        part = slice(first, first + _CROSSING_CHUNK)
        point, floor = points[part, None], floors[part, None]
        before = point - width + offsets  # the `width` x samples before each point, none before its floor
        inside = before >= floor
        x_part = np.stack([np.where(inside, x[np.maximum(before, 0)], 0.0) for x in xs]).astype(np.float64)
        after = point + offsets  # the `width` y samples from each point on, zeros past the signal's end
        within = after < len(ys[0])
        y_part = np.stack([np.where(within, y[np.minimum(after, len(y) - 1)], 0.0) for y in ys]).astype(np.float64)
        x_spectrum = fft.rfft(x_part, n=size).conj().transpose(1, 0, 2)[:, :, None]  # (point, a, 1, bin)
        y_spectrum = fft.rfft(y_part, n=size).transpose(1, 0, 2)[:, None]  # (point, 1, b, bin)
        correlation = fft.irfft(x_spectrum * y_spectrum, n=size)
        # x_part[i] is sample point − width + i, so the pair (n, n + k) is at relative lag k − width: lags
        # 0 .. width − 1 wrap around to the end of the transform, lag `width` is at its start.
        out[part, :, :, :width] = correlation[..., size - width :]
        out[part, :, :, width] = correlation[..., 0]
    return out
