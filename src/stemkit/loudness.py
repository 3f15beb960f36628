"""Integrated loudness (ITU-R BS.1770-4, in LUFS) measured block by block, for ``normalize="loudness"``.

The signal is K-weighted (a high shelf of +4 dB above ~1.5 kHz, then a high pass at ~38 Hz: two biquads from
the Audio EQ Cookbook with BS.1770's parameters, designed for any sample rate), its mean square taken over
400 ms blocks that overlap by 75 %, and the blocks gated twice: at -70 LUFS, then 10 LU below the loudness of
what passed. Only 100 ms sums per channel are kept, so an hour of audio is measured in a few kilobytes of
memory, in the same streamed pass that reads the stems. Needs scipy (``pip install "stemkit[loudness]"``)
for the filters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from stemkit.errors import OutputError

__all__ = ["LoudnessMeter", "integrated_loudness", "require_scipy"]

FloatArray = npt.NDArray[np.float32]

_BLOCK_HOPS = 4  # a 400 ms gating block is four 100 ms hops
_ABSOLUTE_GATE = -70.0
_RELATIVE_GATE = -10.0
_OFFSET = -0.691  # BS.1770's constant: a 997 Hz sine at 0 dBFS reads -3.01 LUFS


def require_scipy(option: str = 'normalize="loudness"') -> Any:
    """scipy.signal, or an OutputError that says how to get it (checked before any separation runs)."""
    try:
        import scipy.signal
    except ImportError:
        raise OutputError(
            f'{option} measures loudness with scipy\'s filters; install them with pip install "stemkit[loudness]", '
            "or normalize by peak instead"
        ) from None
    return scipy.signal


def _k_weighting(sample_rate: int) -> npt.NDArray[np.float64]:
    """The two K-weighting biquads as second-order sections (b0, b1, b2, 1, a1, a2) for ``sample_rate``."""

    def shelf(gain_db: float, q: float, fc: float) -> list[float]:
        a = 10 ** (gain_db / 40)
        w0 = 2 * math.pi * fc / sample_rate
        alpha, cos = math.sin(w0) / (2 * q), math.cos(w0)
        root = 2 * math.sqrt(a) * alpha
        b = [
            a * ((a + 1) + (a - 1) * cos + root),
            -2 * a * ((a - 1) + (a + 1) * cos),
            a * ((a + 1) + (a - 1) * cos - root),
        ]
        den = [(a + 1) - (a - 1) * cos + root, 2 * ((a - 1) - (a + 1) * cos), (a + 1) - (a - 1) * cos - root]
        return [*(x / den[0] for x in b), 1.0, den[1] / den[0], den[2] / den[0]]

    def high_pass(q: float, fc: float) -> list[float]:
        w0 = 2 * math.pi * fc / sample_rate
        alpha, cos = math.sin(w0) / (2 * q), math.cos(w0)
        b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2]
        den = [1 + alpha, -2 * cos, 1 - alpha]
        return [*(x / den[0] for x in b), 1.0, den[1] / den[0], den[2] / den[0]]

    return np.array([shelf(4.0, 1 / math.sqrt(2), 1500.0), high_pass(0.5, 38.0)], dtype=np.float64)


class LoudnessMeter:
    """Feed (channels, n) blocks with :meth:`add`, read :meth:`integrated` (LUFS) at the end."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        self._signal = require_scipy()
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self._sos = _k_weighting(self.sample_rate)
        self._state = np.zeros((self._sos.shape[0], self.channels, 2), dtype=np.float64)
        self._position = 0  # frames seen
        self._hop = 0  # index of the 100 ms hop being filled
        self._partial = np.zeros(self.channels, dtype=np.float64)
        self._hops: list[npt.NDArray[np.float64]] = []

    def _boundary(self, hop: int) -> int:
        """First frame of 100 ms hop ``hop`` (exact integers, whatever the rate)."""
        return hop * self.sample_rate // 10

    def add(self, block: npt.NDArray[Any]) -> None:
        data = np.asarray(block, dtype=np.float64)
        if data.ndim == 1:
            data = data[np.newaxis, :]
        filtered, self._state = self._signal.sosfilt(self._sos, data, axis=-1, zi=self._state)
        squares = filtered * filtered
        start, end = self._position, self._position + squares.shape[1]
        offset = 0
        while self._boundary(self._hop + 1) <= end:
            cut = self._boundary(self._hop + 1) - start
            self._hops.append(self._partial + squares[:, offset:cut].sum(axis=1))
            self._partial = np.zeros(self.channels, dtype=np.float64)
            offset = cut
            self._hop += 1
        self._partial += squares[:, offset:].sum(axis=1)
        self._position = end

    def integrated(self) -> float:
        """The gated integrated loudness in LUFS; ``-inf`` when no 400 ms block passes the -70 LUFS gate (silence,
        or less than 400 ms of audio)."""
        if len(self._hops) < _BLOCK_HOPS:
            return -math.inf
        hops = np.stack(self._hops)  # (hops, channels)
        windows = np.lib.stride_tricks.sliding_window_view(hops, _BLOCK_HOPS, axis=0).sum(axis=-1)
        lengths = np.array(
            [self._boundary(j + _BLOCK_HOPS) - self._boundary(j) for j in range(windows.shape[0])], dtype=np.float64
        )
        power = (windows / lengths[:, np.newaxis]).sum(axis=1)  # channel weights are 1 for mono and stereo
        with np.errstate(divide="ignore"):
            levels = _OFFSET + 10 * np.log10(power)
        above = power[levels > _ABSOLUTE_GATE]
        if not above.size:
            return -math.inf
        relative = _OFFSET + 10 * math.log10(float(above.mean())) + _RELATIVE_GATE
        gated = power[(levels > _ABSOLUTE_GATE) & (levels > relative)]
        return _OFFSET + 10 * math.log10(float(gated.mean())) if gated.size else -math.inf


def integrated_loudness(blocks: Iterable[npt.NDArray[Any]], sample_rate: int, channels: int) -> float:
    """The integrated loudness (LUFS) of audio that arrives as (channels, n) blocks."""
    meter = LoudnessMeter(sample_rate, channels)
    for block in blocks:
        meter.add(block)
    return meter.integrated()
