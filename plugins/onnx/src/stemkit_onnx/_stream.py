"""Block-wise audio in and out of the engine: decode → stereo → model rate, and back → files.

The models run on 44.1 kHz stereo. Input is decoded in blocks, up-mixed if mono and resampled
with a soxr stream (the same HQ filter demucs-onnx uses in one shot; the streamed output is the
same); output blocks are resampled back with another stream, folded to the input's channel count
and written to one float WAV per stem, cut or padded to the input's exact length.

A sink can also write the *residual*, the input minus the stems, exactly and as it goes: a
:class:`MixtureTap` keeps the decoded input blocks from the moment the reader takes them until the
sink has written the same samples (a few segments), so an MDX-Net model's second stem is the
mixture minus its estimate at the input's own rate, without a second read of the input.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from stemkit_onnx._engine import Float32Array, FrameSource

__all__ = ["MODEL_RATE", "MixtureTap", "ModelRateInput", "StemArrays", "StemFiles"]

MODEL_RATE = 44_100
_WAV_LIMIT_BYTES = 4_000_000_000  # RIFF's 32-bit sizes; beyond this write RF64


def _stereo(block: Float32Array) -> Float32Array:
    if block.shape[0] == 2:
        return block
    if block.shape[0] == 1:
        return np.repeat(block, 2, axis=0)
    raise ValueError(f"expected mono or stereo blocks, got {block.shape[0]} channels")


class ModelRateInput(FrameSource):
    """Stereo 44.1 kHz frames from ``(channels, n)`` blocks at ``sample_rate``, without reading ahead."""

    def __init__(self, blocks: Iterator[Float32Array], sample_rate: int) -> None:
        self._blocks = blocks
        self._resampler: Any = (
            None
            if sample_rate == MODEL_RATE
            else soxr.ResampleStream(sample_rate, MODEL_RATE, 2, dtype="float32", quality="HQ")
        )
        self._pending: deque[Float32Array] = deque()  # (2, n) blocks, the first partly consumed
        self._offset = 0
        self._exhausted = False

    def _pull(self) -> bool:
        """Queue the next model-rate block; False once input and resampler are drained."""
        while not self._exhausted:
            block = next(self._blocks, None)
            if block is None:
                self._exhausted = True
                if self._resampler is not None:
                    tail = self._resampler.resample_chunk(np.zeros((0, 2), dtype=np.float32), last=True)
                    if len(tail):
                        self._pending.append(np.asarray(tail, dtype=np.float32).T)
                        return True
                return False
            stereo = _stereo(block)
            if self._resampler is not None:
                out = self._resampler.resample_chunk(np.ascontiguousarray(stereo.T))
                if not len(out):
                    continue
                stereo = np.asarray(out, dtype=np.float32).T
            if stereo.shape[1]:
                self._pending.append(stereo)
                return True
        return False

    def readinto(self, dst: Float32Array, count: int) -> int:
        done = 0
        while done < count:
            if not self._pending and not self._pull():
                break
            head = self._pending[0]
            n = min(count - done, head.shape[1] - self._offset)
            dst[:, done : done + n] = head[:, self._offset : self._offset + n]
            done += n
            self._offset += n
            if self._offset == head.shape[1]:
                self._pending.popleft()
                self._offset = 0
        return done


class MixtureTap:
    """Passes the input's ``(channels, n)`` blocks through, keeping each until :meth:`take` has used it.

    The reader (one thread) iterates; a sink (another thread) takes the same samples, later, in order.
    """

    def __init__(self, blocks: Iterator[Float32Array]) -> None:
        self._blocks = blocks
        self._kept: deque[Float32Array] = deque()
        self._offset = 0  # frames of the first kept block already taken
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[Float32Array]:
        for block in self._blocks:
            with self._lock:
                self._kept.append(block)
            yield block

    def take(self, count: int) -> Float32Array:
        """The next ``count`` input frames, ``(channels, count)``; they must have been read already."""
        parts = []
        with self._lock:
            while count:
                if not self._kept:
                    raise RuntimeError("the residual needs input frames the reader has not read yet")
                head = self._kept[0]
                n = min(count, head.shape[1] - self._offset)
                parts.append(head[:, self._offset : self._offset + n])
                self._offset += n
                count -= n
                if self._offset == head.shape[1]:
                    self._kept.popleft()
                    self._offset = 0
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


class _StemSink:
    """Takes model-rate ``(S, 2, m)`` blocks; stores them at the input's rate, channels and exact length.

    With ``residual`` (the tapped input), one more output follows the stems: the input minus their sum.
    """

    def __init__(
        self, n_stems: int, *, sample_rate: int, channels: int, frames: int, residual: MixtureTap | None = None
    ) -> None:
        if channels not in (1, 2):
            raise ValueError(f"expected a mono or stereo target, got {channels} channels")
        self._residual = residual
        self._n_stems = n_stems
        self._channels = channels
        self._frames = frames
        self._written = 0
        self._resampler: Any = (
            None
            if sample_rate == MODEL_RATE
            else soxr.ResampleStream(MODEL_RATE, sample_rate, 2 * n_stems, dtype="float32", quality="HQ")
        )

    def write(self, block: Float32Array) -> None:
        n_stems, _, m = block.shape
        if self._resampler is None:
            frames_first = block.transpose(0, 2, 1)  # (S, m, 2), a view
        else:
            interleaved = np.ascontiguousarray(block.reshape(n_stems * 2, m).T)
            out = self._resampler.resample_chunk(interleaved)
            frames_first = np.asarray(out, dtype=np.float32).reshape(-1, n_stems, 2).transpose(1, 0, 2)
        self._emit(frames_first)

    def _emit(self, frames_first: Float32Array) -> None:
        take = min(frames_first.shape[1], self._frames - self._written)
        if take <= 0:
            return
        rest = None if self._residual is None else np.ascontiguousarray(self._residual.take(take).T)  # (take, ch)
        for k in range(self._n_stems):
            data = frames_first[k, :take]
            if self._channels == 1:
                data = data.mean(axis=1, keepdims=True, dtype=np.float32)
            self._store(k, self._written, data)
            if rest is not None:
                rest -= data
        if rest is not None:
            self._store(self._n_stems, self._written, rest)
        self._written += take

    def _store(self, stem: int, start: int, data: Float32Array) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def finish(self) -> None:
        """Flush the resampler and pad to the exact length."""
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros((0, 2 * self._n_stems), dtype=np.float32), last=True)
            if len(tail):
                self._emit(np.asarray(tail, dtype=np.float32).reshape(-1, self._n_stems, 2).transpose(1, 0, 2))
        missing = self._frames - self._written
        if missing > 0:
            self._emit(np.zeros((self._n_stems, missing, 2), dtype=np.float32))


class StemArrays(_StemSink):
    """Stems kept in memory: one preallocated ``(channels, frames)`` array per stem."""

    def __init__(
        self, n_stems: int, *, sample_rate: int, channels: int, frames: int, residual: MixtureTap | None = None
    ) -> None:
        super().__init__(n_stems, sample_rate=sample_rate, channels=channels, frames=frames, residual=residual)
        self.arrays = np.empty((n_stems + (residual is not None), channels, frames), dtype=np.float32)

    def _store(self, stem: int, start: int, data: Float32Array) -> None:
        self.arrays[stem, :, start : start + data.shape[0]] = data.T


class StemFiles(_StemSink):
    """Stems streamed to one float WAV each (RF64 beyond 4 GB): memory stays one block."""

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        sample_rate: int,
        channels: int,
        frames: int,
        residual: MixtureTap | None = None,
    ) -> None:
        """One file per stem; with ``residual``, the last path is the residual's."""
        n_stems = len(paths) - (residual is not None)
        super().__init__(n_stems, sample_rate=sample_rate, channels=channels, frames=frames, residual=residual)
        self.paths = list(paths)
        fmt = "WAV" if frames * channels * 4 < _WAV_LIMIT_BYTES else "RF64"
        self._files: list[Any] = []
        try:
            for path in self.paths:
                self._files.append(
                    sf.SoundFile(path, "w", samplerate=sample_rate, channels=channels, format=fmt, subtype="FLOAT")
                )
        except BaseException:
            self._close_files()
            raise

    def _store(self, stem: int, start: int, data: Float32Array) -> None:
        self._files[stem].write(np.ascontiguousarray(data))

    def finish(self) -> None:
        super().finish()
        self._close_files()

    def _close_files(self) -> None:
        for fh in self._files:
            fh.close()
        self._files = []

    def __enter__(self) -> StemFiles:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close_files()
