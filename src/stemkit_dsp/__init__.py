"""stemkit-dsp: the embedded default provider and the baseline every other provider is compared with.

A baseline, honestly: classic time-frequency masking, no learned model. ``drums`` is the percussive part
(harmonic/percussive separation), ``bass`` the harmonic part below ``bass_hz``, ``vocals`` the harmonic,
stereo-centred part of the vocal band, and ``other`` the exact remainder, so the four stems sum to the
mixture. Deterministic; no weights, no network.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from stemkit.errors import ConfigError
from stemkit.protocol import Capabilities
from stemkit.provider import RawResult, SeparationJob, SeparatorBase
from stemkit_dsp.masks import centre_mask, istft, lowpass, percussive_mask, stft

__all__ = ["DspOptions", "DspSeparator", "separate_array"]

__version__ = "0.1.0"

_STEMS = ("vocals", "drums", "bass", "other")
_VOCAL_BAND = (180.0, 7000.0)


class DspOptions(BaseModel):
    """Options of the ``dsp`` provider (all optional)."""

    model_config = ConfigDict(extra="forbid")

    n_fft: int | None = Field(None, ge=256, le=16384, description="FFT size; default scales 2048 @ 44.1 kHz")
    kernel: int = Field(17, ge=3, le=101, description="smoothing length in frames and bins")
    center: float = Field(4.0, ge=0.5, le=32.0, description="sharpness of the stereo-centre mask")
    bass_hz: float = Field(180.0, ge=40.0, le=600.0, description="bass cutoff in Hz")


def _auto_fft(sample_rate: int) -> int:
    """2048 at 44.1 kHz, scaled to keep ~46 ms frames at other rates (a power of two)."""
    return int(2 ** max(8, round(math.log2(2048 * sample_rate / 44_100))))


def separate_array(
    audio: np.ndarray, sample_rate: int, options: DspOptions | None = None, progress: object = None
) -> dict[str, np.ndarray]:
    """Separate float32 (channels, frames) audio into vocals, drums, bass and other (their sum = input)."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 1.0:
        # Power spectra of a loud input overflow float32 (a peak of ~1e18 gives inf, then NaN masks). The
        # masks do not depend on level, so separate a copy scaled to full scale and scale the stems back; a
        # power of two scales exactly, so the stems still sum to the input.
        exponent = math.ceil(math.log2(peak))
        scaled = np.ldexp(np.asarray(audio, dtype=np.float32), -exponent).astype(np.float32, copy=False)
        stems = separate_array(scaled, sample_rate, options)
        return {name: np.ldexp(stem, exponent).astype(np.float32, copy=False) for name, stem in stems.items()}
    opts = options or DspOptions()
    n_fft = opts.n_fft or _auto_fft(sample_rate)
    channels, frames = audio.shape
    spectra = [stft(np.ascontiguousarray(audio[c], dtype=np.float32), n_fft) for c in range(channels)]
    power = np.zeros(spectra[0].shape, dtype=np.float32)
    for spectrum in spectra:
        power += spectrum.real**2 + spectrum.imag**2
    perc = percussive_mask(power, opts.kernel)
    harm = 1.0 - perc
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate).astype(np.float64)
    low = lowpass(freqs, opts.bass_hz)
    band = (1.0 - lowpass(freqs, _VOCAL_BAND[0])) * lowpass(freqs, _VOCAL_BAND[1], order=4)
    centre = centre_mask(spectra[0], spectra[1], opts.center) if channels == 2 else np.float32(1.0)
    masks = {"drums": perc, "bass": harm * low, "vocals": harm * band * centre}
    out: dict[str, np.ndarray] = {}
    for name in ("vocals", "drums", "bass"):
        out[name] = np.stack([istft(spectra[c] * masks[name], n_fft, frames) for c in range(channels)])
    # ``other`` is what the masks left, taken in the time domain so the stems sum to the mixture exactly.
    out["other"] = audio - out["vocals"] - out["drums"] - out["bass"]
    return {name: np.ascontiguousarray(out[name], dtype=np.float32) for name in _STEMS}


class DspSeparator(SeparatorBase):
    """``dsp``: the no-weights, no-network baseline separator."""

    name = "dsp"
    Options = DspOptions

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            combinations=(_STEMS,),
            complete=True,
            output_formats=frozenset({"wav", "flac", "mp3"}),
            local=True,
            needs_network=False,
            needs_api_key=False,
            cost_unit=None,
            # Seconds of compute per second of audio, for cost estimates (stemkit.estimate): measured by
            # bench/dsp_realtime.py (36.7x faster than real time, docs/benchmarks.md), rounded up.
            extra={"realtime_factor": 0.03},
        )

    def __init__(self, target: str | None = None, options: Mapping[str, Any] | BaseModel | None = None) -> None:
        if target is not None:
            raise ConfigError(f"dsp: takes no target (got 'dsp:{target}'); use plain 'dsp'")
        super().__init__(target, options)

    def _separate(self, job: SeparationJob) -> RawResult:
        audio = job.source.read()
        job.progress("separate", 0.0, "masking")
        stems = separate_array(audio, job.source.sample_rate, job.options)
        job.progress("separate", 1.0)
        return RawResult(stems=stems, sample_rate=job.source.sample_rate, model="dsp-hpss-centre")
