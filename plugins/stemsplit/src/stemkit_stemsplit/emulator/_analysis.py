"""The emulator's ``audioMetadata``: a tempo and a key estimated from the audio itself (numpy only).

Deliberately simple (energy-onset autocorrelation; chroma against Krumhansl-Kessler profiles): enough for
the values to be real and to follow the input, not a reference implementation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def estimate_bpm(mono: npt.NDArray[np.float32], rate: int, hop: int = 512) -> float | None:
    frames = len(mono) // hop
    if frames < 16:
        return None
    energy = np.log1p(np.square(mono[: frames * hop].reshape(frames, hop)).sum(axis=1))
    onset = np.maximum(np.diff(energy), 0.0)
    onset -= onset.mean()
    fps = rate / hop
    lo, hi = int(fps * 60 / 200), int(fps * 60 / 60)
    if hi >= len(onset) or lo < 1:
        return None
    corr = np.correlate(onset, onset, mode="full")[len(onset) - 1 :]
    lag = lo + int(np.argmax(corr[lo : hi + 1]))
    return round(60.0 * fps / lag, 1)


def estimate_key(mono: npt.NDArray[np.float32], rate: int, size: int = 8192) -> str | None:
    if len(mono) < size:
        return None
    starts = np.linspace(0, len(mono) - size, num=min(64, len(mono) // size), dtype=int)
    window = np.hanning(size)
    spectrum = np.zeros(size // 2 + 1)
    for start in starts:
        spectrum += np.abs(np.fft.rfft(mono[start : start + size] * window))
    freqs = np.fft.rfftfreq(size, 1.0 / rate)
    band = (freqs > 55.0) & (freqs < 2000.0)
    pitch = np.round(12 * np.log2(freqs[band] / 440.0)).astype(int) + 9  # 0 = C
    chroma = np.bincount(pitch % 12, weights=spectrum[band], minlength=12)
    if not chroma.any():
        return None
    best: tuple[float, str] | None = None
    for tonic in range(12):
        for profile, suffix in ((_MAJOR, ""), (_MINOR, "m")):
            score = float(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1])
            if best is None or score > best[0]:
                best = (score, _NAMES[tonic] + suffix)
    return best[1] if best else None


def analyse(audio: npt.NDArray[np.float32], rate: int) -> dict[str, Any]:
    """``{"bpm": float | None, "key": str | None}`` for (channels, frames) audio."""
    mono = audio.mean(axis=0).astype(np.float32) if audio.ndim == 2 else audio.astype(np.float32)
    return {"bpm": estimate_bpm(mono, rate), "key": estimate_key(mono, rate)}
