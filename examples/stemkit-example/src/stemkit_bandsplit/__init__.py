"""stemkit-bandsplit: the example provider of stemkit's "Writing a provider plugin" tutorial.

``bandsplit`` is the oldest karaoke trick in the frequency domain: the band where a voice's fundamentals
and formants live (``low_hz`` to ``high_hz``) is ``vocals``, everything outside it is ``instrumental``. The
two masks add up to one at every frequency, so the stems add back up to the input exactly.
"""

from __future__ import annotations

# --8<-- [start:imports]
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from stemkit.errors import ConfigError
from stemkit.protocol import Capabilities
from stemkit.provider import RawResult, SeparationJob, SeparatorBase

# --8<-- [end:imports]

__all__ = ["BandSplitOptions", "BandSplitSeparator", "split"]

__version__ = "0.1.0"


# --8<-- [start:options]
class BandSplitOptions(BaseModel):
    """Options of a ``bandsplit`` spec, e.g. ``bandsplit?low_hz=150&high_hz=5000``."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # unknown options are refused, with the known ones

    low_hz: float = Field(200.0, gt=20.0, le=2000.0, description="where the vocal band starts")
    high_hz: float = Field(4000.0, gt=100.0, le=20000.0, description="where the vocal band ends")
    width_hz: float = Field(40.0, ge=0.0, le=500.0, description="width of each raised-cosine transition")

    @model_validator(mode="after")
    def _ordered(self) -> BandSplitOptions:
        if self.high_hz - self.low_hz <= self.width_hz:
            raise ValueError(f"high_hz ({self.high_hz:g}) must exceed low_hz ({self.low_hz:g}) by more than width_hz")
        return self


# --8<-- [end:options]


# --8<-- [start:split]
def _lowpass(freqs: npt.NDArray[np.float64], cutoff: float, width: float) -> npt.NDArray[np.float64]:
    """1 below ``cutoff - width/2``, 0 above ``cutoff + width/2``, a raised cosine in between."""
    if width <= 0:
        return (freqs < cutoff).astype(np.float64)
    ramp = np.clip((freqs - cutoff + width / 2) / width, 0.0, 1.0)
    return np.asarray(0.5 + 0.5 * np.cos(np.pi * ramp), dtype=np.float64)


def split(
    audio: npt.NDArray[np.float32], sample_rate: int, options: BandSplitOptions
) -> dict[str, npt.NDArray[np.float32]]:
    """Split (channels, frames) float32 audio into ``inside`` and ``outside`` the band; they sum to ``audio``."""
    frames = audio.shape[1]
    freqs = np.fft.rfftfreq(frames, 1.0 / sample_rate).astype(np.float64)
    band = _lowpass(freqs, options.high_hz, options.width_hz) - _lowpass(freqs, options.low_hz, options.width_hz)
    inside = np.fft.irfft(np.fft.rfft(audio, axis=1) * band, n=frames, axis=1).astype(np.float32)
    # ``outside`` is what the band leaves, taken in the time domain: the stems sum to the input exactly.
    return {"inside": inside, "outside": audio - inside}


# --8<-- [end:split]


# --8<-- [start:separator]
class BandSplitSeparator(SeparatorBase):
    """``bandsplit``: a band-pass filter as a stemkit provider."""

    name = "bandsplit"
    Options = BandSplitOptions
    #: our own stem names -> canonical ones (names in stemkit's alias table need no entry)
    stem_aliases: ClassVar[Mapping[str, str]] = {"inside": "vocals", "outside": "instrumental"}

    def __init__(self, target: str | None = None, options: Mapping[str, Any] | BaseModel | None = None) -> None:
        if target is not None:
            raise ConfigError(f"bandsplit: takes no target (got 'bandsplit:{target}'); use bandsplit?low_hz=200")
        super().__init__(target, options)  # validates the options with BandSplitOptions

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            combinations=(("vocals", "instrumental"),),  # one run produces both
            complete=True,  # vocals + instrumental == mixture
            output_formats=frozenset({"wav", "flac", "mp3"}),
            min_duration_seconds=0.05,  # shorter than a period at low_hz: nothing to split
            local=True,
            needs_network=False,
            needs_api_key=False,
        )

    def _separate(self, job: SeparationJob) -> RawResult:
        options: BandSplitOptions = job.options
        nyquist = job.source.sample_rate / 2
        if options.high_hz + options.width_hz / 2 >= nyquist:
            raise ConfigError(
                f"bandsplit: high_hz={options.high_hz:g} (+ width_hz/2) is above the Nyquist frequency of "
                f"{job.source.name} ({nyquist:g} Hz); lower it"
            )
        audio = job.source.read()  # float32 (channels, frames) at the input's own rate
        job.progress("separate", 0.0, f"band {options.low_hz:g}-{options.high_hz:g} Hz")
        stems = split(audio, job.source.sample_rate, options)
        job.progress("separate", 1.0)
        model = f"band@{options.low_hz:g}-{options.high_hz:g}Hz"
        return RawResult(stems=stems, sample_rate=job.source.sample_rate, model=model)


# --8<-- [end:separator]
