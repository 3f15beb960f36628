"""Splitting a length into overlapping chunks, and stitching per-chunk audio back with crossfades.

Pure functions on frame counts and arrays; :mod:`stemkit.compose.fit` decides the sizes and does the I/O.

The crossfade is amplitude-complementary (raised cosine: fade-out cos², fade-in sin², summing to 1 at every
sample). The two chunks' estimates of a stem in an overlap are two estimates of the *same* signal, so they
are coherent: a power-complementary fade (cos and sin, "equal power" for unrelated signals) would lift a
coherent overlap by up to +3 dB at its middle. Complementary weights also keep stitching linear — stitched
stems still sum to the stitched mixture, and a derived stem stitched equals the sum of stitched parts.
``law="power"`` is kept for measuring that difference (``bench/compose_fit_seams.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["Bounds", "Stitcher", "chunk_bounds", "crossfade", "stitch"]

FloatArray = npt.NDArray[np.float32]
Bounds = tuple[int, int]
Law = Literal["amplitude", "power"]


def chunk_bounds(frames: int, max_frames: int, overlap: int, align: int = 1) -> tuple[Bounds, ...]:
    """``[start, stop)`` of the fewest chunks of at most ``max_frames`` that cover ``frames``, neighbours
    sharing at least ``overlap`` frames, all of (nearly) equal length so that no chunk is a sliver.

    Every start is a multiple of ``align``: a model whose STFT hop divides it then frames each chunk on the
    same grid as the whole input, so a chunk's interior separates exactly as it would in one piece (STFT
    masking is not shift-invariant). ``overlap + align`` must be under half of ``max_frames`` so that only
    neighbours overlap.
    """
    if frames <= 0 or max_frames <= 0 or align <= 0:
        raise ValueError(f"chunk_bounds: frames={frames}, max_frames={max_frames}, align={align} must be positive")
    if frames <= max_frames:
        return ((0, frames),)
    if not (overlap >= 0 and 3 * (overlap + align) < max_frames):
        raise ValueError(
            f"chunk_bounds: 3 x (overlap={overlap} + align={align}) must be under max_frames={max_frames}"
        )
    # Rounding a start down to the grid lengthens the chunk before it by up to align - 1 frames.
    usable = max_frames - (align - 1)
    span = frames - overlap
    count = -(-span // (usable - overlap))
    starts = [((i * span) // count) // align * align for i in range(count)]
    stops = [starts[i + 1] + overlap for i in range(count - 1)] + [frames]
    return tuple(zip(starts, stops, strict=True))


def crossfade(length: int, law: Law = "amplitude") -> tuple[FloatArray, FloatArray]:
    """(fade_out, fade_in) weights over ``length`` frames, sampled at frame centres."""
    t = (np.arange(length, dtype=np.float64) + 0.5) / max(length, 1)
    if law == "amplitude":
        fade_in = np.sin(0.5 * np.pi * t) ** 2
        fade_out = 1.0 - fade_in
    elif law == "power":
        fade_in = np.sin(0.5 * np.pi * t)
        fade_out = np.cos(0.5 * np.pi * t)
    else:
        raise ValueError(f"crossfade: law {law!r} is not 'amplitude' or 'power'")
    return fade_out.astype(np.float32), fade_in.astype(np.float32)


class Stitcher:
    """Stitches one stem chunk by chunk, in order, handing back finished output as soon as it is final.

    Only the overlap tail of the previous chunk is kept, so a long stem is stitched in the memory of one
    chunk. ``add(i, audio)`` takes chunk ``i`` as (channels, stop - start) and returns the output blocks it
    completes; together the blocks are exactly ``bounds[-1][1]`` frames.
    """

    def __init__(self, bounds: Sequence[Bounds], law: Law = "amplitude") -> None:
        self.bounds = tuple(bounds)
        if not self.bounds or self.bounds[0][0] != 0:
            raise ValueError(f"Stitcher: chunks {self.bounds} must start at frame 0")
        for i in range(1, len(self.bounds)):
            (_, stop), (start, next_stop) = self.bounds[i - 1], self.bounds[i]
            before = self.bounds[i - 2][1] if i >= 2 else 0
            if not before <= start <= stop <= next_stop:
                raise ValueError(f"Stitcher: chunks {self.bounds} must overlap only their neighbours, in order")
        self.law: Law = law
        self._next = 0
        self._tail: FloatArray | None = None

    def add(self, index: int, audio: FloatArray) -> list[FloatArray]:
        if index != self._next:
            raise ValueError(f"Stitcher: chunk {index} added, chunk {self._next} expected")
        start, stop = self.bounds[index]
        if audio.shape[-1] != stop - start:
            raise ValueError(f"Stitcher: chunk {index} has {audio.shape[-1]} frames, not {stop - start}")
        out: list[FloatArray] = []
        head = 0
        if self._tail is not None:
            head = self._tail.shape[-1]
            fade_out, fade_in = crossfade(head, self.law)
            out.append(np.asarray(self._tail * fade_out + audio[:, :head] * fade_in, dtype=np.float32))
        last = index == len(self.bounds) - 1
        keep_from = stop - start if last else self.bounds[index + 1][0] - start
        out.append(np.ascontiguousarray(audio[:, head:keep_from], dtype=np.float32))
        self._tail = None if last else np.array(audio[:, keep_from:], dtype=np.float32)
        self._next += 1
        return [block for block in out if block.shape[-1]]


def stitch(chunks: Sequence[FloatArray], bounds: Sequence[Bounds], law: Law = "amplitude") -> FloatArray:
    """The whole stem from its chunks (each (channels, stop - start)), crossfaded in the overlaps."""
    if len(chunks) != len(bounds):
        raise ValueError(f"stitch: {len(chunks)} chunks for {len(bounds)} bounds")
    stitcher = Stitcher(bounds, law)
    blocks = [block for i, chunk in enumerate(chunks) for block in stitcher.add(i, chunk)]
    return np.concatenate(blocks, axis=-1)
