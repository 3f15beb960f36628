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

import queue
import threading
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


class PrefetchFrames(FrameSource):
    """Reads ``source`` ahead in a worker thread (at most ``depth`` blocks), so decoding and resampling the
    input overlap with inference instead of adding to it. Memory: ``depth`` blocks of ``block`` frames."""

    def __init__(self, source: FrameSource, block: int, depth: int = 2) -> None:
        self._queue: queue.Queue[tuple[Float32Array, int] | BaseException] = queue.Queue(maxsize=depth)
        self._current: Float32Array | None = None
        self._offset = self._valid = 0
        self._done = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(source, block), name="stemkit-onnx-read", daemon=True)
        self._thread.start()

    def _fill(self, source: FrameSource, block: int) -> None:
        try:
            while not self._stop.is_set():
                buf = np.empty((2, block), dtype=np.float32)
                n = source.readinto(buf, block)
                self._put((buf, n))
                if n < block:
                    return
        except BaseException as exc:  # handed to the reading thread, raised there
            self._put(exc)

    def _put(self, item: tuple[Float32Array, int] | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def readinto(self, dst: Float32Array, count: int) -> int:
        done = 0
        while done < count:
            if self._current is None or self._offset == self._valid:
                if self._done:
                    break
                item = self._queue.get()
                if isinstance(item, BaseException):
                    self._done = True
                    raise item
                self._current, self._valid = item
                self._offset = 0
                if self._valid < self._current.shape[1]:
                    self._done = True
                continue
            n = min(count - done, self._valid - self._offset)
            dst[:, done : done + n] = self._current[:, self._offset : self._offset + n]
            done += n
            self._offset += n
        return done

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class _Writer:
    """Overlap-adds and emits in a worker thread, at most ``depth`` segments behind the model runs."""

    def __init__(self, ola: OverlapAdd, emit: Callable[[Float32Array], None], depth: int = 2) -> None:
        self._ola, self._emit = ola, emit
        self._queue: queue.Queue[tuple[Sequence[Float32Array], int, bool] | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.total = 0
        self._thread = threading.Thread(target=self._work, name="stemkit-onnx-write", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is not None:
                continue  # drain, so the producer never blocks
            try:
                block = self._ola.add(*item)
                self.total += int(block.shape[2])
                self._emit(block)
            except BaseException as exc:
                self.error = exc

    def put(self, stems: Sequence[Float32Array], valid: int, last: bool) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put((stems, valid, last))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


def run_overlap_add(
    source: FrameSource,
    runner: SegmentRunner,
    *,
    segment: int,
    n_stems: int,
    emit: Callable[[Float32Array], None],
    on_segment: Callable[[int], None] | None = None,
    background: bool = False,
) -> int:
    """Run ``runner`` over ``source`` segment by segment; ``emit`` each finished ``(S, 2, m)`` block, in order.

    Returns the number of model-rate frames emitted (the input length). ``on_segment(i)`` is called
    (in the calling thread) after segment ``i`` has run; it may raise to stop the run. With
    ``background``, input is read ahead and output overlap-added and emitted in worker threads, each
    at most two segments away from the model, so that only the model runs in the calling thread.
    """
    plan = SegmentPlan(segment)
    ola = OverlapAdd(plan, n_stems)
    overlap, stride = plan.overlap, plan.stride
    reader = PrefetchFrames(source, stride) if background else source
    writer = _Writer(ola, emit) if background else None
    x = np.zeros((1, 2, segment), dtype=np.float32)
    frames = x[0]
    total = 0
    try:
        filled = reader.readinto(frames, segment)
        index = 0
        while True:
            if filled < segment:
                frames[:, filled:] = 0.0
            last = filled <= stride
            stems = runner(x)
            if writer is not None:
                writer.put(stems, filled, last)
            else:
                block = ola.add(stems, filled, last)
                total += int(block.shape[2])
                emit(block)
            if on_segment is not None:
                on_segment(index)
            if last:
                break
            at_end = filled < segment
            frames[:, :overlap] = frames[:, stride:]
            filled -= stride
            if not at_end:
                filled += reader.readinto(frames[:, overlap:], stride)
            index += 1
    finally:
        if isinstance(reader, PrefetchFrames):
            reader.close()
        if writer is not None:
            writer.close()
    if writer is not None:
        if writer.error is not None:
            raise writer.error
        total = writer.total
    return total
