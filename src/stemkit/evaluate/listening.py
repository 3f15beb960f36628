"""The listening part of a comparison: one excerpt of a track, every provider's stems (and the references) on
it, compressed so that an HTML report carrying them all stays small, each with its spectrogram.

Nothing here needs matplotlib: spectrograms are drawn into a PNG written with zlib, so the listening report
works wherever stemkit does. Audio is encoded with libsndfile (through soundfile): Ogg Opus at 48 kHz when
the installed libsndfile has it (1.0.29+), else MP3, Vorbis, or FLAC as the last resort.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stemkit.audio import resample
from stemkit.errors import ConfigError

__all__ = [
    "DEFAULT_EXCERPT_SECONDS",
    "Clip",
    "Listening",
    "choose_excerpt",
    "encode_clip",
    "parse_excerpt",
    "spectrogram_png",
]

#: Length of the automatically chosen excerpt.
DEFAULT_EXCERPT_SECONDS = 20.0
_OPUS_RATE = 48_000
# libsndfile's compression level 0.9 gives Opus about 64 kbit/s stereo: transparent enough to judge
# separation artefacts, 160 kB per 20 s clip.
_OPUS_LEVEL = 0.9
_SPECTROGRAM_SIZE = (640, 150)  # pixels (time, frequency)
_SPECTROGRAM_MAX_HZ = 16_000.0
_SPECTROGRAM_RANGE_DB = 80.0
# A perceptual dark-to-bright colour ramp (anchors of a magma-like map), interpolated to 256 entries.
_RAMP = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class Clip:
    """One player of the report: ``source`` (a provider label, ``reference`` or ``mixture``) playing ``stem``."""

    stem: str
    source: str
    kind: str  # "provider" | "baseline" | "reference" | "mixture"
    audio: bytes
    mime: str
    duration: float
    spectrogram: bytes  # PNG


@dataclass
class Listening:
    """The excerpt of one track that the HTML report plays: ``start``-``end`` seconds of ``track``."""

    track: str
    start: float
    end: float
    chosen: str  # "auto" | "given"
    clips: list[Clip] = field(default_factory=list)

    @property
    def stems(self) -> list[str]:
        seen: list[str] = []
        for clip in self.clips:
            if clip.stem not in seen:
                seen.append(clip.stem)
        return seen

    def for_stem(self, stem: str) -> list[Clip]:
        return [c for c in self.clips if c.stem == stem]

    @property
    def size_bytes(self) -> int:
        return sum(len(c.audio) + len(c.spectrogram) for c in self.clips)


def parse_excerpt(text: str | Sequence[float]) -> tuple[float, float]:
    """``"40:60"`` (seconds) or ``(40, 60)`` → (start, end), checked."""
    if isinstance(text, str):
        parts = text.split(":")
        try:
            if len(parts) != 2:
                raise ValueError
            start, end = float(parts[0]), float(parts[1])
        except ValueError:
            raise ConfigError(
                f"excerpt: {text!r} is not START:END in seconds; write e.g. --excerpt 40:60 for 0:40 to 1:00"
            ) from None
    else:
        values = list(text)
        if len(values) != 2:
            raise ConfigError(f"excerpt: {values!r} is not a (start, end) pair of seconds")
        start, end = float(values[0]), float(values[1])
    if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
        raise ConfigError(f"excerpt: {start:g}:{end:g} is not a range of seconds with 0 <= START < END")
    if end - start > 120:
        raise ConfigError(f"excerpt: {end - start:g} s is longer than 120 s; a listening excerpt is kept short")
    return start, end


def choose_excerpt(
    stems: Mapping[str, NDArray[Any]], sample_rate: int, seconds: float = DEFAULT_EXCERPT_SECONDS
) -> tuple[float, float]:
    """The busiest ``seconds`` of a track: the window where the most stems are active at once (per 1 s frame,
    a stem is active above -40 dB of its own loudest frame), ties broken by the mixture's energy."""
    arrays = [np.asarray(a, dtype=np.float32) for a in stems.values()]
    if not arrays:
        raise ConfigError("excerpt: no stems to choose an excerpt from")
    length = arrays[0].shape[-1]
    total = length / sample_rate
    if total <= seconds:
        return 0.0, total
    frame = sample_rate
    count = length // frame
    window = max(1, round(seconds))
    activity = np.zeros(count)
    mixture = np.zeros(count)
    for audio in arrays:
        blocks = audio[:, : count * frame].reshape(audio.shape[0], count, frame).astype(np.float64)
        power = np.mean(blocks * blocks, axis=(0, 2))
        mixture += power
        loudest = float(power.max())
        if loudest > 0:
            activity += power > loudest * 1e-4
    score = activity + mixture / max(float(mixture.max()), 1e-30) * 0.5  # energy only breaks ties
    sums = np.convolve(score, np.ones(window), mode="valid")
    start = int(np.argmax(sums))
    return float(start), float(min(total, start + seconds))


def encode_clip(audio: NDArray[Any], sample_rate: int) -> tuple[bytes, str]:
    """Compress ``(channels, samples)`` audio for a web page: (bytes, MIME type)."""
    import soundfile as sf

    data = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    available = sf.available_subtypes("OGG")
    buffer = io.BytesIO()
    if "OPUS" in available:
        at_48k = resample(np.ascontiguousarray(data), sample_rate, _OPUS_RATE)
        with sf.SoundFile(
            buffer,
            "w",
            samplerate=_OPUS_RATE,
            channels=data.shape[0],
            format="OGG",
            subtype="OPUS",
            compression_level=_OPUS_LEVEL,
        ) as fh:
            fh.write(at_48k.T)
        return buffer.getvalue(), "audio/ogg; codecs=opus"
    if "MPEG_LAYER_III" in sf.available_subtypes("MP3") and sample_rate <= 48_000:
        with sf.SoundFile(
            buffer, "w", samplerate=sample_rate, channels=data.shape[0], format="MP3", subtype="MPEG_LAYER_III"
        ) as fh:
            fh.write(data.T)
        return buffer.getvalue(), "audio/mpeg"
    if "VORBIS" in available:
        with sf.SoundFile(
            buffer, "w", samplerate=sample_rate, channels=data.shape[0], format="OGG", subtype="VORBIS"
        ) as fh:
            fh.write(data.T)
        return buffer.getvalue(), "audio/ogg; codecs=vorbis"
    sf.write(buffer, data.T, sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue(), "audio/flac"


def spectrogram_png(audio: NDArray[Any], sample_rate: int, *, size: tuple[int, int] = _SPECTROGRAM_SIZE) -> bytes:
    """A magnitude spectrogram (dB, 80 dB range, 0-16 kHz) of the channel mean as a PNG of ``size`` pixels."""
    width, height = size
    mono = np.asarray(audio, dtype=np.float64)
    mono = mono.mean(axis=0) if mono.ndim == 2 else mono
    n_fft = 2048
    hop = max(1, (mono.shape[-1] - n_fft) // max(1, width - 1)) if mono.shape[-1] > n_fft else n_fft
    padded = np.pad(mono, (0, max(0, n_fft + hop * (width - 1) - mono.shape[-1])))
    starts = np.arange(width) * hop
    window = np.hanning(n_fft)
    frames = padded[starts[:, None] + np.arange(n_fft)[None, :]] * window
    magnitude = np.abs(np.fft.rfft(frames, axis=-1))  # (width, bins)
    top = min(sample_rate / 2, _SPECTROGRAM_MAX_HZ)
    bins = magnitude.shape[1]
    rows = np.linspace(top, 0.0, height) / (sample_rate / 2) * (bins - 1)
    picked = magnitude[:, np.clip(np.round(rows).astype(int), 0, bins - 1)].T  # (height, width), top = high Hz
    with np.errstate(divide="ignore"):
        level = 20 * np.log10(picked + 1e-12)
    ceiling = max(float(level.max()), -100.0)
    scaled = np.clip((level - (ceiling - _SPECTROGRAM_RANGE_DB)) / _SPECTROGRAM_RANGE_DB, 0.0, 1.0)
    index = scaled * (len(_RAMP) - 1)
    low = np.floor(index).astype(int)
    high = np.minimum(low + 1, len(_RAMP) - 1)
    frac = (index - low)[..., None]
    rgb = (_RAMP[low] * (1 - frac) + _RAMP[high] * frac).round().astype(np.uint8)
    return _png(rgb)


def _png(rgb: NDArray[np.uint8]) -> bytes:
    """A minimal truecolour PNG (8-bit RGB, no interlace) of an (height, width, 3) array."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def make_clip(stem: str, source: str, kind: str, audio: NDArray[Any], sample_rate: int) -> Clip:
    encoded, mime = encode_clip(audio, sample_rate)
    return Clip(
        stem=stem,
        source=source,
        kind=kind,
        audio=encoded,
        mime=mime,
        duration=audio.shape[-1] / sample_rate,
        spectrogram=spectrogram_png(audio, sample_rate),
    )
