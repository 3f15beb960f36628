"""What a saved set's samples become on their way to the encoder: resampled, scaled, clamped — block by block.

One gain scales every stem of a set (so the stems still sum to the equally scaled mixture): the normalization's
(``peak`` puts the loudest sample of the set at the target, ``loudness`` the mixture's integrated loudness),
then, with ``clip="rescale"``, demucs' rule: divide by ``max(1.01 × peak, 1)``. Both need the set's peak or
loudness before the first sample is written, so :func:`plan_levels` measures them in a first streamed pass
(at the output rate: resampling can raise a peak); :func:`rendered` then applies the plan to each stem's
blocks as they are written. ``clip="clamp"`` needs no pass: each sample is held within ±0.99.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from stemkit.audio import FloatArray
from stemkit.output import OutputSettings

__all__ = ["CLAMP_LIMIT", "RESCALE_HEADROOM", "Levels", "NonFiniteBlock", "plan_levels", "rendered", "resampled"]

#: demucs' clip handling: ``rescale`` keeps the peak 1 % under full scale, ``clamp`` holds samples within ±0.99.
RESCALE_HEADROOM = 1.01
CLAMP_LIMIT = 0.99

BlockSource = Callable[[], Iterable[FloatArray]]


class NonFiniteBlock(ValueError):
    """A stem holds NaN or infinite samples, found while measuring the set (nothing was written)."""

    def __init__(self, stem: str, count: int) -> None:
        self.stem = stem
        self.count = count
        super().__init__(f"stem {stem!r}: {count} NaN or infinite sample(s)")


@dataclass(frozen=True)
class Levels:
    """The level plan of one save: ``gain`` (linear) for every stem, and whether samples are clamped.

    ``peak`` is the set's loudest sample before the gain (at the output rate) and ``loudness`` the mixture's
    integrated loudness before it (LUFS), when they were measured; ``reasons`` say why the gain is what it is.
    """

    gain: float = 1.0
    clamp: bool = False
    peak: float | None = None
    loudness: float | None = None
    reasons: tuple[str, ...] = ()

    @property
    def gain_db(self) -> float:
        return 20 * math.log10(self.gain) if self.gain > 0 else -math.inf


def resampled(blocks: Iterable[FloatArray], from_rate: int, to_rate: int, channels: int) -> Iterator[FloatArray]:
    """(channels, n) blocks at ``to_rate``, resampled as a stream (soxr HQ): the same samples as resampling
    the whole signal at once, a block of memory at a time."""
    if from_rate == to_rate:
        yield from blocks
        return
    import soxr

    stream = soxr.ResampleStream(from_rate, to_rate, channels, dtype="float32", quality="HQ")
    for block in blocks:
        out = stream.resample_chunk(np.ascontiguousarray(block.T, dtype=np.float32), last=False)
        if len(out):
            yield np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(-1, channels).T)
    tail = stream.resample_chunk(np.zeros((0, channels), dtype=np.float32), last=True)
    if len(tail):
        yield np.ascontiguousarray(np.asarray(tail, dtype=np.float32).reshape(-1, channels).T)


def _peak(name: str, blocks: Iterable[FloatArray]) -> float:
    peak = 0.0
    for block in blocks:
        if not block.size:
            continue
        finite = np.isfinite(block)
        if not finite.all():
            raise NonFiniteBlock(name, int(finite.size - np.count_nonzero(finite)))
        peak = max(peak, float(np.max(np.abs(block))))
    return peak


def plan_levels(
    settings: OutputSettings,
    stems: dict[str, BlockSource],
    mixture: BlockSource,
    *,
    sample_rate: int,
    channels: int,
    label: str = "the stems",
) -> Levels:
    """The gain and clamping for a set saved with ``settings``.

    ``stems`` gives each stem's blocks at ``sample_rate`` (read again for each pass), ``mixture`` the mixture's
    (what loudness is measured on). Nothing is read when neither a normalization nor ``rescale`` applies.
    """
    mode = settings.clip_mode
    norm = settings.normalize
    clamp = mode == "clamp"
    if norm is None and mode != "rescale":
        return Levels(clamp=clamp)
    out_rate = settings.sample_rate or sample_rate
    peak = max(
        (_peak(name, resampled(source(), sample_rate, out_rate, channels)) for name, source in stems.items()),
        default=0.0,
    )
    gain, reasons, loudness = 1.0, [], None
    if norm is not None and norm.kind == "peak":
        if peak > 0:
            gain = 10 ** (norm.target / 20) / peak
            reasons.append(f"normalized to a peak of {norm.target:g} dBFS")
    elif norm is not None:
        from stemkit.loudness import integrated_loudness

        loudness = integrated_loudness(mixture(), sample_rate, channels)
        if math.isfinite(loudness):
            gain = 10 ** ((norm.target - loudness) / 20)
            reasons.append(f"normalized to {norm.target:g} LUFS (the mixture was {loudness:.1f} LUFS)")
        else:
            warnings.warn(
                f"{label}: the mixture is silent or shorter than 0.4 s, so its loudness cannot be measured; "
                "the stems are saved without loudness normalization",
                RuntimeWarning,
                stacklevel=3,
            )
    if mode == "rescale" and peak * gain * RESCALE_HEADROOM > 1.0:
        gain /= peak * gain * RESCALE_HEADROOM
        reasons.append("rescaled to avoid clipping")
    return Levels(gain=gain, clamp=clamp, peak=peak, loudness=loudness, reasons=tuple(reasons))


def rendered(
    blocks: Iterable[FloatArray], levels: Levels, *, sample_rate: int, out_rate: int, channels: int
) -> Iterator[FloatArray]:
    """A stem's blocks as they are written: resampled to ``out_rate``, scaled by the plan's gain, clamped."""
    for block in resampled(blocks, sample_rate, out_rate, channels):
        out = block
        if levels.gain != 1.0:
            out = (out * np.float32(levels.gain)).astype(np.float32, copy=False)
        if levels.clamp:
            out = np.clip(out, -CLAMP_LIMIT, CLAMP_LIMIT)
        yield out
