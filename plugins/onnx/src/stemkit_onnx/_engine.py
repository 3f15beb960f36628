"""Streaming chunked overlap-add with the same segment, overlap and window as demucs-onnx.

demucs-onnx runs a fixed-shape model over segments of ``N`` samples that start every
``N - N // 4`` samples, weights each segment's output by a triangular window (linear fade-in
and fade-out over ``N // 4`` samples, a zero at both ends), sums, and divides by the summed
window clamped to 1e-8. It holds the whole input and all outputs in memory.

Because consecutive segments overlap by a quarter and start three quarters apart, a sample is
touched by at most two segments, and once segment ``i`` has run, every sample before the start
of segment ``i + 1`` is final. So this engine keeps one segment of input, one quarter-segment
of carried output per stem, and hands each finished block (three quarters of a segment) to a
callback as soon as it is done: memory is bounded whatever the input length.

The arithmetic is done in float32 in the same order as demucs-onnx (``0 + a`` then ``+ b``,
window products, the clamped division), and where the window is exactly 1 the division is an
identity and the model output is copied as is, so the result is the same to the last bit given
the same model outputs. Two quirks are kept on purpose, because matching demucs-onnx's output
is the contract: the first sample of the output is always 0 (the window is 0 there and no other
segment covers it), and a last segment is run even when it only holds the final samples of the
previous segment's overlap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Float32Array = npt.NDArray[np.float32]

#: Runs the model(s) on one ``(1, 2, N)`` input and returns one ``(2, N)`` array per kept stem.
SegmentRunner = Callable[[Float32Array], Sequence[Float32Array]]

_WEIGHT_FLOOR = np.float32(1e-8)


def transition_window(segment: int) -> Float32Array:
    """The overlap-add window: 0 → 1 over the first quarter, flat, 1 → 0 over the last quarter."""
    if segment < 4:
        raise ValueError(f"segment length must be at least 4 samples, got {segment}")
    fade_len = int(segment * 0.25)
    ramp = np.linspace(0.0, 1.0, fade_len, dtype=np.float32)
    window = np.ones(segment, dtype=np.float32)
    window[:fade_len] = ramp
    window[segment - fade_len :] = ramp[::-1]
    return window


@dataclass(frozen=True)
class SegmentPlan:
    """Where segments start for a model with a fixed segment length (``N`` samples)."""

    segment: int

    @property
    def overlap(self) -> int:
        return self.segment // 4

    @property
    def stride(self) -> int:
        return self.segment - self.overlap

    def count(self, total: int) -> int:
        """Number of model runs for ``total`` samples (at least one, even for empty input)."""
        return max(1, -(-total // self.stride))


@dataclass
class OverlapAdd:
    """Accumulates segment outputs and releases each block of final samples."""

    plan: SegmentPlan
    n_stems: int
    window: Float32Array = field(init=False)
    _carry: Float32Array = field(init=False)
    _carry_weight: Float32Array = field(init=False)

    def __post_init__(self) -> None:
        self.window = transition_window(self.plan.segment)
        overlap = self.plan.overlap
        self._carry = np.zeros((self.n_stems, 2, overlap), dtype=np.float32)
        self._carry_weight = np.zeros(overlap, dtype=np.float32)

    def add(self, stems: Sequence[Float32Array], valid: int, last: bool) -> Float32Array:
        """Add one segment's outputs (``valid`` real samples); return the block now final.

        The block starts at this segment's first sample and is ``stride`` long, or ``valid``
        long for the last segment.
        """
        if len(stems) != self.n_stems:
            raise ValueError(f"expected {self.n_stems} stem outputs, got {len(stems)}")
        overlap, stride, window = self.plan.overlap, self.plan.stride, self.window
        size = valid if last else stride
        head = min(overlap, size)
        out = np.empty((self.n_stems, 2, size), dtype=np.float32)
        weight = self._carry_weight[:head] + window[:head]
        np.maximum(weight, _WEIGHT_FLOOR, out=weight)
        tail = max(0, valid - stride) if not last else 0
        for k, y in enumerate(stems):
            dst = out[k]
            np.multiply(y[:, :head], window[:head], out=dst[:, :head])
            dst[:, :head] += self._carry[k, :, :head]
            dst[:, :head] /= weight
            dst[:, head:size] = y[:, head:size]  # window == 1, weight == 1: exact identity
            # The part of this segment the next one overlaps: keep its weighted output.
            np.multiply(y[:, stride : stride + tail], window[stride : stride + tail], out=self._carry[k, :, :tail])
            self._carry[k, :, tail:] = 0.0
        self._carry_weight[:tail] = window[stride : stride + tail]
        self._carry_weight[tail:] = 0.0
        return out


class FrameSource:
    """Model-rate stereo input, read in blocks. ``readinto`` returns fewer frames only at the end."""

    def readinto(self, dst: Float32Array, count: int) -> int:  # pragma: no cover - interface
        raise NotImplementedError


class ArrayFrames(FrameSource):
    """A ``(2, frames)`` array already in memory (the non-streaming case)."""

    def __init__(self, audio: Float32Array) -> None:
        if audio.ndim != 2 or audio.shape[0] != 2:
            raise ValueError(f"expected (2, frames) audio, got {audio.shape}")
        self._audio = audio
        self._pos = 0

    def readinto(self, dst: Float32Array, count: int) -> int:
        n = min(count, int(self._audio.shape[1]) - self._pos)
        dst[:, :n] = self._audio[:, self._pos : self._pos + n]
        self._pos += n
        return n


def run_overlap_add(
    source: FrameSource,
    runner: SegmentRunner,
    *,
    segment: int,
    n_stems: int,
    emit: Callable[[Float32Array], None],
    on_segment: Callable[[int], None] | None = None,
) -> int:
    """Run ``runner`` over ``source`` segment by segment; ``emit`` each finished ``(S, 2, m)`` block.

    Returns the number of model-rate frames emitted (the input length). ``on_segment(i)`` is
    called after segment ``i`` has been emitted; it may raise to stop the run.
    """
    plan = SegmentPlan(segment)
    ola = OverlapAdd(plan, n_stems)
    overlap, stride = plan.overlap, plan.stride
    x = np.zeros((1, 2, segment), dtype=np.float32)
    frames = x[0]
    filled = source.readinto(frames, segment)
    index = 0
    total = 0
    while True:
        if filled < segment:
            frames[:, filled:] = 0.0
        last = filled <= stride
        block = ola.add(runner(x), filled, last)
        total += int(block.shape[2])
        emit(block)
        if on_segment is not None:
            on_segment(index)
        if last:
            return total
        at_end = filled < segment
        frames[:, :overlap] = frames[:, stride:]
        filled -= stride
        if not at_end:
            filled += source.readinto(frames[:, overlap:], stride)
        index += 1
