"""Streaming chunked overlap-add: demucs-onnx's segments and window by default, any stride and window on request.

demucs-onnx runs a fixed-shape model over segments of ``N`` samples that start every
``N - N // 4`` samples, weights each segment's output by a triangular window (linear fade-in
and fade-out over ``N // 4`` samples, a zero at both ends), sums, and divides by the summed
window clamped to 1e-8. It holds the whole input and all outputs in memory.

Segments start every ``stride`` samples, so once segment ``i`` has run, every sample before the
start of segment ``i + 1`` is final. This engine keeps one segment of input and the part of the
running sum that later segments still add to (``N - stride`` samples per stem), and hands each
finished block (``stride`` samples) to a callback as soon as it is done: memory is bounded
whatever the input length. A larger overlap (a smaller stride) only means more segments and a
longer carried sum; an MDX-Net model brings its own window (Hann) and stride.

The arithmetic is done in float32 in the same order as demucs-onnx (``0 + a`` then ``+ b``,
window products, the clamped division), and where the window is exactly 1 and no other segment
contributes, the division is an identity and the model output is copied as is, so with the
default plan the result is the same to the last bit given the same model outputs. Two quirks are
kept on purpose, because matching demucs-onnx's output is the contract: the first sample of the
output is always 0 (the window is 0 there and no other segment covers it), and a last segment is
run even when it only holds the final samples of the previous segment's overlap.

:func:`run_passes` adds what demucs' ``shifts`` and MDX-Net's leading padding need: each pass
reads the input delayed by some samples (zeros first), its output is advanced by as many, and
the passes are averaged — all in one streaming sweep over the input.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Float32Array = npt.NDArray[np.float32]

#: Runs the model(s) on one ``(1, 2, N)`` input and returns one ``(2, N)`` array per kept stem.
SegmentRunner = Callable[[Float32Array], Sequence[Float32Array]]

_WEIGHT_FLOOR = np.float32(1e-8)


def transition_window(segment: int, fade: int | None = None) -> Float32Array:
    """The overlap-add window: 0 → 1 over ``fade`` samples (default a quarter), flat, 1 → 0 over the last ``fade``."""
    if segment < 4:
        raise ValueError(f"segment length must be at least 4 samples, got {segment}")
    fade_len = int(segment * 0.25) if fade is None else fade
    if not 0 <= fade_len <= segment // 2:
        raise ValueError(f"a fade of {fade_len} samples does not fit twice in a segment of {segment}")
    window = np.ones(segment, dtype=np.float32)
    if fade_len:
        ramp = np.linspace(0.0, 1.0, fade_len, dtype=np.float32)
        window[:fade_len] = ramp
        window[segment - fade_len :] = ramp[::-1]
    return window


@dataclass(frozen=True)
class SegmentPlan:
    """Where segments start for a model with a fixed segment length (``N`` samples).

    ``stride`` defaults to demucs-onnx's ``N - N // 4`` (a quarter-segment overlap).
    """

    segment: int
    stride: int = 0

    def __post_init__(self) -> None:
        if self.stride == 0:
            object.__setattr__(self, "stride", self.segment - self.segment // 4)
        if not 1 <= self.stride <= self.segment:
            raise ValueError(f"stride must be between 1 and the segment length {self.segment}, got {self.stride}")

    @classmethod
    def for_overlap(cls, segment: int, overlap: float) -> SegmentPlan:
        """demucs' ``overlap``: consecutive segments share ``int(overlap * N)`` samples (0 <= overlap < 1)."""
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must be at least 0 and below 1, got {overlap}")
        return cls(segment, max(1, segment - int(overlap * segment)))

    @property
    def overlap(self) -> int:
        return self.segment - self.stride

    def count(self, total: int) -> int:
        """Number of model runs for ``total`` samples (at least one, even for empty input)."""
        return max(1, -(-total // self.stride))

    def demucs_window(self) -> Float32Array:
        """demucs-onnx's window generalized to this plan: fades as long as the overlap (at most half a segment)."""
        return transition_window(self.segment, min(self.overlap, self.segment // 2))


@dataclass
class OverlapAdd:
    """Accumulates segment outputs and releases each block of final samples."""

    plan: SegmentPlan
    n_stems: int
    window: Float32Array = field(default_factory=lambda: np.empty(0, dtype=np.float32))
    _carry: Float32Array = field(init=False)
    _carry_weight: Float32Array = field(init=False)
    _flat: bool = field(init=False)

    def __post_init__(self) -> None:
        if not self.window.size:
            self.window = self.plan.demucs_window()
        if self.window.shape != (self.plan.segment,):
            raise ValueError(f"the window has {self.window.shape} samples for a segment of {self.plan.segment}")
        overlap, stride = self.plan.overlap, self.plan.stride
        self._carry = np.zeros((self.n_stems, 2, overlap), dtype=np.float32)
        self._carry_weight = np.zeros(overlap, dtype=np.float32)
        # Between the overlaps a flat window makes the division an identity: copy instead (bit-exact, cheaper).
        self._flat = bool(np.all(self.window[overlap:stride] == 1.0))

    def add(self, stems: Sequence[Float32Array], valid: int, last: bool) -> Float32Array:
        """Add one segment's outputs (``valid`` real samples); return the block now final.

        The block starts at this segment's first sample and is ``stride`` long, or ``valid``
        long for the last segment.
        """
        if len(stems) != self.n_stems:
            raise ValueError(f"expected {self.n_stems} stem outputs, got {len(stems)}")
        overlap, stride, window = self.plan.overlap, self.plan.stride, self.window
        size = valid if last else stride
        head = min(overlap, size)  # samples earlier segments contributed to
        out = np.empty((self.n_stems, 2, size), dtype=np.float32)
        weight = self._carry_weight[:head] + window[:head]
        np.maximum(weight, _WEIGHT_FLOOR, out=weight)
        own = window[head:size]
        own_weight = None if self._flat else np.maximum(own, _WEIGHT_FLOOR)
        # What the next segment overlaps: samples [stride, N) of this one, of which ``tail`` are real input.
        tail = min(overlap, max(0, valid - stride)) if not last else 0
        shared = max(0, min(overlap - stride, tail))  # of those, the ones earlier segments also reached
        # Earlier segments' share of samples the next segment also reaches (only when overlap > stride).
        previous = self._carry[:, :, stride : stride + shared].copy() if shared else None
        previous_weight = self._carry_weight[stride : stride + shared].copy() if shared else None
        for k, y in enumerate(stems):
            dst = out[k]
            np.multiply(y[:, :head], window[:head], out=dst[:, :head])
            dst[:, :head] += self._carry[k, :, :head]
            dst[:, :head] /= weight
            if own_weight is None:
                dst[:, head:size] = y[:, head:size]  # window == 1, weight == 1: exact identity
            else:
                np.multiply(y[:, head:size], own, out=dst[:, head:size])
                dst[:, head:size] /= own_weight
            carry = self._carry[k]
            np.multiply(y[:, stride : stride + tail], window[stride : stride + tail], out=carry[:, :tail])
            if previous is not None:
                carry[:, :shared] += previous[k]
            carry[:, tail:] = 0.0
        self._carry_weight[:tail] = window[stride : stride + tail]
        if previous_weight is not None:
            self._carry_weight[:shared] += previous_weight
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


class DelayedFrames(FrameSource):
    """``delay`` zero frames, then ``source``: the input as a pass that starts ``delay`` samples late sees it."""

    def __init__(self, source: FrameSource, delay: int) -> None:
        if delay < 0:
            raise ValueError(f"delay must be at least 0, got {delay}")
        self._source, self._zeros = source, delay

    def readinto(self, dst: Float32Array, count: int) -> int:
        lead = min(count, self._zeros)
        dst[:, :lead] = 0.0
        self._zeros -= lead
        if lead == count:
            return lead
        return lead + self._source.readinto(dst[:, lead:], count - lead)


class SharedFrames:
    """One source read once for several passes, each at its own position (``view(i)``).

    Keeps only the frames between the slowest and the fastest pass; passes run in step, so that is
    the spread of their delays plus one block.
    """

    def __init__(self, source: FrameSource, views: int, block: int) -> None:
        self._source, self._block = source, block
        self._buffer = np.zeros((2, 0), dtype=np.float32)
        self._base = 0  # input index of the buffer's first frame
        self._positions = [0] * views
        self._exhausted = False

    def view(self, index: int) -> FrameSource:
        shared = self

        class _View(FrameSource):
            def readinto(self, dst: Float32Array, count: int) -> int:
                return shared._read(index, dst, count)

        return _View()

    def _read(self, index: int, dst: Float32Array, count: int) -> int:
        wanted = self._positions[index] + count
        while not self._exhausted and self._base + self._buffer.shape[1] < wanted:
            block = np.empty((2, self._block), dtype=np.float32)
            n = self._source.readinto(block, self._block)
            self._exhausted = n < self._block
            if n:
                self._buffer = np.concatenate([self._buffer, block[:, :n]], axis=1)
        start = self._positions[index] - self._base
        n = max(0, min(count, self._buffer.shape[1] - start))
        dst[:, :n] = self._buffer[:, start : start + n]
        self._positions[index] += n
        consumed = min(self._positions) - self._base
        if consumed > 0:
            self._buffer = self._buffer[:, consumed:]
            self._base += consumed
        return n


class _Sweep:
    """One pass of the model over a frame source: the segment buffer and where the pass stands."""

    def __init__(self, reader: FrameSource, plan: SegmentPlan) -> None:
        self.reader, self.plan = reader, plan
        self.x = np.zeros((1, 2, plan.segment), dtype=np.float32)
        self.filled = -1  # nothing read yet
        self.last = False

    def advance(self) -> bool:
        """Load the next segment's input into ``x`` (zero-padded); False once the pass is over."""
        frames, segment, stride, overlap = self.x[0], self.plan.segment, self.plan.stride, self.plan.overlap
        if self.filled < 0:
            self.filled = self.reader.readinto(frames, segment)
        elif self.last:
            return False
        else:
            at_end = self.filled < segment
            frames[:, :overlap] = frames[:, stride:]  # numpy copies overlapping slices correctly
            self.filled -= stride
            if not at_end:
                self.filled += self.reader.readinto(frames[:, overlap:], stride)
            if self.filled == 0:
                return False  # no overlap carried (stride == N) and the input ended on a segment boundary
        if self.filled < segment:
            frames[:, self.filled :] = 0.0
        # Last when the input ends within this segment's first ``stride`` samples. A full segment is never
        # last: with no overlap (stride == N) the input may go on, which only the next read can tell.
        self.last = self.filled <= stride and self.filled < segment
        return True


class _Averager:
    """Drops each pass's first ``delay`` output samples and emits the mean of the passes, in order."""

    def __init__(self, delays: Sequence[int], emit: Callable[[Float32Array], None]) -> None:
        self._skip = list(delays)
        self._emit = emit
        self._pending: list[deque[Float32Array]] = [deque() for _ in delays]
        self._available = [0] * len(delays)
        self.total = 0

    def push(self, index: int, block: Float32Array) -> None:
        drop = min(self._skip[index], block.shape[2])
        if drop:
            self._skip[index] -= drop
            block = block[:, :, drop:]
        if not block.shape[2]:
            return
        if len(self._pending) == 1:
            self.total += int(block.shape[2])
            self._emit(block)
            return
        self._pending[index].append(block)
        self._available[index] += int(block.shape[2])
        ready = min(self._available)
        if ready:
            self._release(ready)

    def _take(self, index: int, count: int) -> Float32Array:
        pending = self._pending[index]
        parts = []
        while count:
            head = pending[0]
            n = min(count, head.shape[2])
            parts.append(head[:, :, :n])
            if n == head.shape[2]:
                pending.popleft()
            else:
                pending[0] = head[:, :, n:]
            count -= n
        self._available[index] -= sum(int(p.shape[2]) for p in parts)
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)

    def _release(self, count: int) -> None:
        # demucs: out += pass_k for every pass, then out /= shifts (float32, in pass order).
        total = self._take(0, count).copy()
        for index in range(1, len(self._pending)):
            total += self._take(index, count)
        total /= np.float32(len(self._pending))
        self.total += count
        self._emit(total)


class _Writer:
    """Runs ``work`` on each queued item in a worker thread, at most ``depth`` items behind the producer."""

    def __init__(self, work: Callable[..., None], depth: int = 2) -> None:
        self._work_on = work
        self._queue: queue.Queue[tuple[object, ...] | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
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
                self._work_on(*item)
            except BaseException as exc:
                self.error = exc

    def put(self, *item: object) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put(item)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


def run_passes(
    source: FrameSource,
    runner: SegmentRunner,
    *,
    plan: SegmentPlan,
    n_stems: int,
    emit: Callable[[Float32Array], None],
    delays: Sequence[int] = (0,),
    window: Float32Array | None = None,
    on_segment: Callable[[int], None] | None = None,
    background: bool = False,
) -> int:
    """Run ``runner`` over ``source`` segment by segment; ``emit`` each finished ``(S, 2, m)`` block, in order.

    One pass per entry of ``delays``: pass ``k`` sees the input ``delays[k]`` samples late and its
    output is advanced by as many; the passes run in step over one read of the input and their
    outputs are averaged (demucs' ``shifts``; a single delayed pass is MDX-Net's leading padding).
    ``window`` defaults to demucs-onnx's (see :meth:`SegmentPlan.demucs_window`).

    Returns the number of frames emitted (the input length). ``on_segment(i)`` is called (in the
    calling thread) after the ``i``-th model run, counting every pass; it may raise to stop the run.
    With ``background``, input is read ahead and output overlap-added and emitted in worker threads,
    each at most two segments away from the model, so that only the model runs in the calling thread.
    """
    if not delays:
        raise ValueError("at least one pass is needed")
    win = plan.demucs_window() if window is None else window
    olas = [OverlapAdd(plan, n_stems, win) for _ in delays]
    averager = _Averager(delays, emit)

    def settle(index: int, stems: Sequence[Float32Array], valid: int, last: bool) -> None:
        averager.push(index, olas[index].add(stems, valid, last))

    prefetch = PrefetchFrames(source, plan.stride) if background else None
    base: FrameSource = prefetch if prefetch is not None else source
    if len(delays) == 1:
        readers = [DelayedFrames(base, delays[0]) if delays[0] else base]
    else:
        shared = SharedFrames(base, len(delays), plan.stride)
        readers = [DelayedFrames(shared.view(k), d) if d else shared.view(k) for k, d in enumerate(delays)]
    writer = _Writer(settle) if background else None
    sweeps = [_Sweep(reader, plan) for reader in readers]
    active = list(range(len(sweeps)))
    index = 0
    try:
        while active:
            for k in list(active):
                sweep = sweeps[k]
                if not sweep.advance():
                    active.remove(k)
                    continue
                stems = runner(sweep.x)
                if writer is not None:
                    writer.put(k, stems, sweep.filled, sweep.last)
                else:
                    settle(k, stems, sweep.filled, sweep.last)
                if on_segment is not None:
                    on_segment(index)
                index += 1
    finally:
        if prefetch is not None:
            prefetch.close()
        if writer is not None:
            writer.close()
    if writer is not None and writer.error is not None:
        raise writer.error
    return averager.total


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
    """One pass with demucs-onnx's plan and window: :func:`run_passes` with ``SegmentPlan(segment)``."""
    return run_passes(
        source, runner, plan=SegmentPlan(segment), n_stems=n_stems, emit=emit, on_segment=on_segment,
        background=background,
    )
