"""Indicators that need no reference stems: what can be said about a separation of your own song.

None of these is a quality score. Each flags something a listener would want to check (a stem that carries
another's content, one that clips, one that is silent where it should not be, one provider that disagrees
with all the others); :func:`stemkit.compare` reports them apart from the reference-based scores.

Array convention: one stem is ``(channels, samples)`` at the song's rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from stemkit.errors import ConfigError, InputError
from stemkit.evaluate.metrics import sdr

__all__ = [
    "ACTIVITY_THRESHOLD_DB",
    "CLIP_LEVEL",
    "LOUDNESS_HINT",
    "activity",
    "clipped_samples",
    "consensus",
    "leakage",
    "loudness",
    "peak_dbfs",
]

#: A sample at or beyond full scale clips once written to any fixed-point format (WAV PCM, FLAC, MP3).
CLIP_LEVEL = 1.0
#: A 100 ms block is active when its RMS is above this level (dBFS): far below any music, above a
#: recording's noise floor and a codec's rounding.
ACTIVITY_THRESHOLD_DB = -60.0
LOUDNESS_HINT = 'pip install "stemkit[evaluate]" (or: pip install pyloudnorm)'
_ACTIVITY_BLOCK_SECONDS = 0.1
_LEAK_FRAME_SECONDS = 1.0

FloatArray = NDArray[np.float64]


def _stem(audio: ArrayLike, what: str) -> NDArray[Any]:
    arr = np.asarray(audio)
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    if arr.ndim != 2 or arr.shape[-1] == 0:
        raise InputError(f"{what}: expected (channels, samples) audio, got shape {arr.shape}")
    return arr


def peak_dbfs(audio: ArrayLike) -> float:
    """The sample peak in dBFS (0 dBFS is full scale; -inf for silence)."""
    peak = float(np.max(np.abs(_stem(audio, "peak"))))
    with np.errstate(divide="ignore"):
        return float(20 * np.log10(peak))


def clipped_samples(audio: ArrayLike, *, level: float = CLIP_LEVEL) -> int:
    """How many samples (counted per channel) reach or exceed ``level`` in magnitude: exactly what would
    clip when the stem is written at full scale."""
    return int(np.count_nonzero(np.abs(_stem(audio, "clipping")) >= level))


def activity(audio: ArrayLike, sample_rate: int, *, threshold_db: float = ACTIVITY_THRESHOLD_DB) -> float:
    """The share (0-100 %) of 100 ms blocks whose RMS (over channels) is above ``threshold_db`` dBFS.

    0 % is a stem that is silent throughout; a vocal stem active 100 % of an instrumental song has picked up
    something else.
    """
    arr = _stem(audio, "activity").astype(np.float64, copy=False)
    block = max(1, round(_ACTIVITY_BLOCK_SECONDS * sample_rate))
    count = arr.shape[-1] // block
    if count == 0:
        power = np.array([np.mean(arr * arr)])
    else:
        blocks = arr[:, : count * block].reshape(arr.shape[0], count, block)
        power = np.mean(blocks * blocks, axis=(0, 2))
    level = 10 ** (threshold_db / 10)
    return float(100.0 * np.mean(power > level))


def loudness(audio: ArrayLike, sample_rate: int) -> float:
    """Integrated loudness in LUFS (EBU R128 / ITU-R BS.1770-4, with its gating) through pyloudnorm.

    -inf for a stem too quiet to pass the absolute gate (-70 LUFS); a stem shorter than one 400 ms block
    is measured as one block.
    """
    try:
        import pyloudnorm
    except ModuleNotFoundError:
        raise ConfigError(
            f"metrics: 'loudness' needs the optional pyloudnorm package, which is not installed; {LOUDNESS_HINT}, "
            "or leave 'loudness' out of the metrics"
        ) from None
    arr = _stem(audio, "loudness").astype(np.float64, copy=False)
    minimum = int(np.ceil(0.4 * sample_rate))
    if arr.shape[-1] < minimum:
        arr = np.pad(arr, ((0, 0), (0, minimum - arr.shape[-1])))
    meter = pyloudnorm.Meter(sample_rate)
    import warnings

    with warnings.catch_warnings():
        # pyloudnorm warns about clipped input; clipping is reported by its own indicator.
        warnings.simplefilter("ignore")
        value = meter.integrated_loudness(np.ascontiguousarray(arr.T))
    return float(value)


def leakage(stems: Mapping[str, ArrayLike], sample_rate: int) -> dict[str, float]:
    """How much of each stem is content of the other stems of the same separation, in dB (lower is better).

    Per 1 s frame, the least-squares part of stem A explained by each other stem B (``⟨A, B⟩² / ‖B‖²``) is
    summed over B and frames, and divided by A's energy. A vocal estimate that is the vocals plus 0.3 × the
    drums scores about 10·log10(0.09 / 1.09) = -10.8 dB; independent stems score far below -30 dB. A leak
    that changes the sound (filtered, phase-shifted) is only partly seen: this measures shared waveform.
    """
    names = list(stems)
    arrays = {n: _stem(stems[n], "leakage").astype(np.float64, copy=False) for n in names}
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) > 1:
        raise InputError(f"leakage: stems have different shapes {sorted(shapes)}; align them first")
    out: dict[str, float] = {}
    if not names:
        return out
    frame = max(1, round(_LEAK_FRAME_SECONDS * sample_rate))
    length = next(iter(arrays.values())).shape[-1]
    count = max(1, -(-length // frame))

    def framed(a: FloatArray) -> FloatArray:
        padded = np.pad(a, ((0, 0), (0, count * frame - length)))
        return padded.reshape(a.shape[0], count, frame).transpose(1, 0, 2).reshape(count, -1)

    frames = {n: framed(arrays[n]) for n in names}
    energy = {n: np.einsum("ij,ij->i", f, f) for n, f in frames.items()}
    for a in names:
        total = float(energy[a].sum())
        leaked = 0.0
        for b in names:
            if b == a:
                continue
            cross = np.einsum("ij,ij->i", frames[a], frames[b])
            with np.errstate(divide="ignore", invalid="ignore"):
                part = np.where(energy[b] > 0, cross * cross / np.where(energy[b] > 0, energy[b], 1.0), 0.0)
            leaked += float(part.sum())
        if total <= 0:
            out[a] = float("nan")  # a silent stem: nothing in it to come from elsewhere
        else:
            with np.errstate(divide="ignore"):
                out[a] = float(10 * np.log10(leaked / total))
    return out


def consensus(estimates: Mapping[str, ArrayLike]) -> dict[str, float]:
    """For one stem: each provider's SDR against the others' consensus, the sample-wise median of the other
    providers' estimates (dB; with two providers, simply the other one).

    Needs at least two providers. A provider far below the rest made different choices from all of them,
    which on one's own music (no references) is the first thing to listen to; agreement is not correctness.
    """
    names = list(estimates)
    if len(names) < 2:
        raise InputError("consensus: needs the same stem from at least two providers")
    arrays = {n: _stem(estimates[n], "consensus") for n in names}
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) > 1:
        raise InputError(f"consensus: estimates have different shapes {sorted(shapes)}; align them first")
    out: dict[str, float] = {}
    for name in names:
        others = [arrays[o] for o in names if o != name]
        centre = others[0] if len(others) == 1 else np.median(np.stack(others), axis=0)
        out[name] = float(sdr(centre, arrays[name]))
    return out
