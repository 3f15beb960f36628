"""The SiSEC baselines that give every comparison its floor and its ceiling.

- ``mixture``: the mixture itself as the estimate of every stem (SiSEC's "MIX"). Any separator worth its
  cost beats it.
- ``oracle``: the ideal ratio mask (SiSEC's "IRM"), which needs the references: each stem's mask is
  ``|S_j|^α / Σ_k |S_k|^α`` in the STFT domain, applied to the mixture. α = 2 (power, "IRM2", a Wiener-like
  mask) by default, α = 1 for "IRM1". Whatever part of the mixture the references do not cover (it is zero
  for MUSDB18, where the stems sum to the mixture) takes part in the denominator as one more source, so the
  oracle's stems still sum to the mixture.

Both are pseudo-providers of :func:`stemkit.compare` (spec strings ``mixture`` and ``oracle`` /
``oracle?alpha=1``), not registered separators: the oracle needs the references, which the Separator
protocol does not carry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from stemkit.errors import InputError

__all__ = ["ORACLE_HOP", "ORACLE_NFFT", "mixture_estimates", "oracle_estimates"]

#: STFT used by the oracle: the sigsep oracle toolkit's 4096-sample Hann window, hop of a quarter window.
ORACLE_NFFT = 4096
ORACLE_HOP = 1024
_BLOCK_FRAMES = 128


def mixture_estimates(mixture: NDArray[Any], stems: tuple[str, ...]) -> dict[str, NDArray[np.float32]]:
    """The ``mixture`` baseline: the mixture, unchanged, for every stem."""
    mix = np.ascontiguousarray(mixture, dtype=np.float32)
    mix.setflags(write=False)
    return dict.fromkeys(stems, mix)


def _frames(padded: NDArray[np.float32], first: int, count: int, n_fft: int, hop: int) -> NDArray[np.float32]:
    segment = padded[:, first * hop : (first + count - 1) * hop + n_fft]
    return sliding_window_view(segment, n_fft, axis=-1)[:, ::hop]


def _overlap_add(out: NDArray[np.float64], frames: NDArray[Any], first: int, n_fft: int, hop: int) -> None:
    """Add (channels, T, n_fft) frames starting at frame ``first``: every ``n_fft // hop``-th frame tiles
    without overlap, so each phase is one contiguous slice add."""
    ratio = n_fft // hop
    channels, count, _ = frames.shape
    for phase in range(min(ratio, count)):
        tiles = frames[:, phase::ratio]
        start = (first + phase) * hop
        flat = tiles.reshape(channels, -1)
        out[:, start : start + flat.shape[1]] += flat


def oracle_estimates(
    mixture: NDArray[Any],
    references: Mapping[str, NDArray[Any]],
    *,
    alpha: float = 2.0,
    n_fft: int = ORACLE_NFFT,
    hop: int = ORACLE_HOP,
) -> dict[str, NDArray[np.float32]]:
    """The ``oracle`` baseline: ideal ratio masks from ``references`` applied to ``mixture``.

    All arrays are ``(channels, samples)`` at one rate and length. Processed in blocks of STFT frames, so
    memory stays bounded on a long song.
    """
    if not references:
        raise InputError("oracle: no reference stems given; the oracle needs references to build its masks")
    if alpha <= 0:
        raise InputError(f"oracle: alpha must be positive (1 for IRM1, 2 for IRM2), got {alpha}")
    if n_fft % hop:
        raise InputError(f"oracle: the hop ({hop}) must divide the window ({n_fft})")
    mix = np.asarray(mixture, dtype=np.float32)
    names = list(references)
    refs = [np.asarray(references[n], dtype=np.float32) for n in names]
    for name, ref in zip(names, refs, strict=True):
        if ref.shape != mix.shape:
            raise InputError(
                f"oracle: reference {name!r} has shape {ref.shape}, the mixture {mix.shape}; align them first"
            )
    residual = mix - np.sum(refs, axis=0, dtype=np.float32)
    sources = [*refs, residual]
    channels, samples = mix.shape
    pad = n_fft
    total = samples + 2 * pad
    n_frames = (total - n_fft) // hop + 1
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann: constant overlap-add at hop n/4

    def padded(x: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.pad(x, ((0, 0), (pad, pad)))

    mix_p = padded(mix)
    src_p = [padded(s) for s in sources]
    outs = [np.zeros((channels, total), dtype=np.float64) for _ in names]
    norm = np.zeros((1, total), dtype=np.float64)
    tiny = np.finfo(np.float32).tiny
    for first in range(0, n_frames, _BLOCK_FRAMES):
        count = min(_BLOCK_FRAMES, n_frames - first)
        spec_mix = np.fft.rfft(_frames(mix_p, first, count, n_fft, hop) * window, axis=-1)
        powers = [np.abs(np.fft.rfft(_frames(s, first, count, n_fft, hop) * window, axis=-1)) ** alpha for s in src_p]
        denominator = np.maximum(np.sum(powers, axis=0), tiny)
        for j in range(len(names)):
            masked = np.fft.irfft(powers[j] / denominator * spec_mix, n=n_fft, axis=-1) * window
            _overlap_add(outs[j], masked, first, n_fft, hop)
        weights = np.broadcast_to(window * window, (1, count, n_fft))
        _overlap_add(norm, weights, first, n_fft, hop)
    norm = np.where(norm > 1e-8, norm, 1.0)
    return {
        name: np.ascontiguousarray((out / norm)[:, pad : pad + samples], dtype=np.float32)
        for name, out in zip(names, outs, strict=True)
    }
