"""Encodings stemkit can make an input into, their sizes, and writing an input's pieces in one.

Everything is written by libsndfile (soundfile): WAV and FLAC losslessly, MP3 through LAME at constant bit
rate (libsndfile writes the LAME header, so decoders trim the encoder delay and a piece keeps its exact
length). Pieces are written while the input is read block by block, so an hour-long input never sits in
memory whole.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf

from stemkit.audio import AudioSource, FloatArray

__all__ = ["MP3_RATES", "Encoding", "lossless_subtype", "mp3_encoding", "write_pieces"]

Format = Literal["wav", "flac", "mp3"]

#: Sample rates MPEG audio defines (MPEG-1, -2 and 2.5 layer III).
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_BYTES = {"PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}
_LOSSLESS = {"PCM_16": "PCM_16", "PCM_24": "PCM_24", "PCM_32": "PCM_32", "FLOAT": "FLOAT", "DOUBLE": "DOUBLE",
             "PCM_S8": "PCM_16", "PCM_U8": "PCM_16"}  # fmt: skip
_HEADER_MARGIN = 8192  # container headers, LAME tag, a final partial frame: generous, never the difference
_BLOCK = 1 << 18  # frames read and encoded at a time: large writes keep LAME fast, a few MB of memory


@dataclass(frozen=True)
class Encoding:
    """How pieces of an input are written for a provider."""

    format: Format
    subtype: str
    sample_rate: int
    bitrate_kbps: int | None = None

    @property
    def lossless(self) -> bool:
        return self.format != "mp3"

    @property
    def suffix(self) -> str:
        return f".{self.format}"

    def bytes_per_second(self, channels: int) -> float:
        if self.format == "mp3":
            assert self.bitrate_kbps is not None
            return self.bitrate_kbps * 1000 / 8 * 1.01  # frame padding and the bit reservoir's rounding
        # FLAC is not smaller than PCM on noise-like audio; plan for PCM so the limit always holds.
        factor = 1.0 if self.format == "wav" else 1.01
        return self.sample_rate * channels * _BYTES[self.subtype] * factor

    def size_bound(self, seconds: float, channels: int) -> int:
        """Bytes a piece of ``seconds`` takes at most."""
        return math.ceil(seconds * self.bytes_per_second(channels)) + _HEADER_MARGIN

    def max_seconds(self, max_bytes: int, channels: int) -> float:
        """The longest piece that stays within ``max_bytes``."""
        return max(0.0, (max_bytes - _HEADER_MARGIN) / self.bytes_per_second(channels))

    def describe(self) -> str:
        if self.format == "mp3":
            return f"MP3 {self.bitrate_kbps} kbps, {self.sample_rate} Hz"
        return f"{self.format.upper()} {self.subtype}, {self.sample_rate} Hz"

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "subtype": self.subtype, "sample_rate": self.sample_rate,
                "bitrate_kbps": self.bitrate_kbps, "lossless": self.lossless}  # fmt: skip


def lossless_subtype(source: AudioSource) -> str:
    """The WAV sample format that keeps every bit of the input: its own PCM depth or float; 24-bit PCM for
    audio decoded from a compressed format (far below any codec's noise)."""
    if source.kind == "array":
        return "FLOAT"
    try:
        subtype = str(sf.info(source.path).subtype)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return "PCM_24"  # a container PyAV decodes (AAC, ALAC, Opus)
    return _LOSSLESS.get(subtype, "PCM_24")


def mp3_encoding(sample_rate: int) -> Encoding:
    """The highest constant bit rate MPEG layer III has at the rate nearest ``sample_rate`` it supports."""
    if sample_rate in MP3_RATES:
        rate = sample_rate
    elif sample_rate > MP3_RATES[-1]:
        rate = 44_100 if sample_rate % 44_100 == 0 else 48_000
    else:
        rate = min(r for r in MP3_RATES if r >= sample_rate)
    bitrate = 320 if rate >= 32_000 else 160 if rate >= 16_000 else 64
    return Encoding("mp3", "MPEG_LAYER_III", rate, bitrate)


class _PieceWriter:
    """One piece being written: resampled on the fly when the encoding's rate differs, padded at the end."""

    def __init__(self, path: Path, encoding: Encoding, source_rate: int, channels: int, pad: int) -> None:
        self.path = path
        self._part = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
        self._pad = pad
        self._channels = channels
        kwargs: dict[str, Any] = {}
        if encoding.format == "mp3":
            # compression_level 0 is LAME's highest bit rate for the sample rate (320/160/64 kbps).
            kwargs = {"compression_level": 0.0, "bitrate_mode": "CONSTANT"}
        self._file = sf.SoundFile(
            self._part, "w", samplerate=encoding.sample_rate, channels=channels,
            format=encoding.format.upper() if encoding.format != "mp3" else "MP3", subtype=encoding.subtype, **kwargs,
        )  # fmt: skip
        self._resampler: Any = None
        if encoding.sample_rate != source_rate:
            import soxr

            self._resampler = soxr.ResampleStream(source_rate, encoding.sample_rate, channels, dtype="float32",
                                                  quality="HQ")  # fmt: skip
        self._rate_ratio = encoding.sample_rate / source_rate

    def write(self, block: FloatArray) -> None:
        frames = np.ascontiguousarray(block.T, dtype=np.float32)
        if self._resampler is not None:
            frames = self._resampler.resample_chunk(frames, last=False)
        if len(frames):
            self._file.write(frames)

    def finish(self) -> Path:
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros((0, self._channels), dtype=np.float32), last=True)
            if len(tail):
                self._file.write(tail)
        if self._pad:
            self._file.write(np.zeros((math.ceil(self._pad * self._rate_ratio), self._channels), dtype=np.float32))
        self._file.close()
        os.replace(self._part, self.path)
        return self.path

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._part.unlink()


def write_pieces(
    source: AudioSource,
    bounds: Sequence[tuple[int, int]],
    encoding: Encoding,
    folder: Path,
    *,
    pad: int = 0,
) -> Iterator[Path]:
    """Write ``source[start:stop]`` for each of ``bounds`` (in order, overlaps allowed) into ``folder`` in
    ``encoding``, yielding each piece's path as soon as it is complete; ``pad`` silent frames (at the
    source's rate) are appended to the last piece. One pass over the input, a block at a time."""
    writers: dict[int, _PieceWriter] = {}
    position = 0
    upcoming = 0
    try:
        blocks = source.iter_blocks(_BLOCK)
        while upcoming < len(bounds) or writers:
            block = next(blocks, None)
            end = position + (block.shape[1] if block is not None else 0)
            while upcoming < len(bounds) and bounds[upcoming][0] < max(end, position + 1):
                path = folder / f"piece-{upcoming:03d}{encoding.suffix}"
                last = upcoming == len(bounds) - 1
                writers[upcoming] = _PieceWriter(path, encoding, source.sample_rate, source.channels,
                                                 pad if last else 0)  # fmt: skip
                upcoming += 1
            for index, writer in list(writers.items()):
                start, stop = bounds[index]
                if block is not None:
                    lo, hi = max(start, position), min(stop, end)
                    if hi > lo:
                        writer.write(block[:, lo - position : hi - position])
                if block is None or stop <= end:
                    del writers[index]
                    yield writer.finish()
            if block is None:
                break
            position = end
        for index in sorted(writers):  # the input ended early (a decoder's frame count was generous)
            yield writers.pop(index).finish()
    finally:
        for writer in writers.values():
            writer.abort()
