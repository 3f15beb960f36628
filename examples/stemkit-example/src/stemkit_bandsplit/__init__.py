"""stemkit-bandsplit: the example provider of stemkit's "Writing a provider plugin" tutorial.

``bandsplit`` splits audio at a crossover frequency: below it is ``bass``, above it is ``other``. The two
masks add up to one at every frequency, so the stems add back up to the input exactly.
"""

from __future__ import annotations

# --8<-- [start:imports]
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from stemkit.errors import ConfigError
from stemkit.protocol import Capabilities
from stemkit.provider import RawResult, SeparationJob, SeparatorBase

# --8<-- [end:imports]

__all__ = ["BandSplitOptions", "BandSplitSeparator", "split"]

__version__ = "0.1.0"


# --8<-- [start:options]
class BandSplitOptions(BaseModel):
    """Options of a ``bandsplit`` spec, e.g. ``bandsplit?crossover_hz=200&width_hz=40``."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # unknown options are refused, with the known ones

    crossover_hz: float = Field(150.0, gt=20.0, le=2000.0, description="where bass ends and other begins")
    width_hz: float = Field(40.0, ge=0.0, le=500.0, description="width of the raised-cosine transition")


# --8<-- [end:options]


# --8<-- [start:split]
def split(
    audio: npt.NDArray[np.float32], sample_rate: int, options: BandSplitOptions
) -> dict[str, npt.NDArray[np.float32]]:
    """Split (channels, frames) float32 audio into ``low`` and ``high``; ``low + high == audio``."""
    frames = audio.shape[1]
    freqs = np.fft.rfftfreq(frames, 1.0 / sample_rate)
    lo = options.crossover_hz - options.width_hz / 2
    hi = options.crossover_hz + options.width_hz / 2
    if hi > lo:
        ramp = np.clip((freqs - lo) / (hi - lo), 0.0, 1.0)
        mask = 0.5 + 0.5 * np.cos(np.pi * ramp)  # 1 below the transition, 0 above it
    else:
        mask = (freqs < options.crossover_hz).astype(np.float64)
    low = np.fft.irfft(np.fft.rfft(audio, axis=1) * mask, n=frames, axis=1).astype(np.float32)
    # The high band is what the low band leaves, taken in the time domain: the stems sum to the input.
    return {"low": low, "high": audio - low}


# --8<-- [end:split]


# --8<-- [start:separator]
class BandSplitSeparator(SeparatorBase):
    """``bandsplit``: a crossover filter as a stemkit provider."""

    name = "bandsplit"
    Options = BandSplitOptions
    #: our own stem names -> canonical ones (names in stemkit's alias table need no entry)
    stem_aliases = {"low": "bass", "high": "other"}

    def __init__(self, target: str | None = None, options: Mapping[str, Any] | BaseModel | None = None) -> None:
        if target is not None:
            raise ConfigError(f"bandsplit: takes no target (got 'bandsplit:{target}'); use bandsplit?crossover_hz=150")
        super().__init__(target, options)  # validates the options with BandSplitOptions

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            combinations=(("bass", "other"),),  # one run produces both; "other" = everything but the bass
            complete=True,  # bass + other == mixture
            output_formats=frozenset({"wav", "flac", "mp3"}),
            min_duration_seconds=0.05,  # shorter than a period of the crossover: nothing to split
            local=True,
            needs_network=False,
            needs_api_key=False,
        )

    def _separate(self, job: SeparationJob) -> RawResult:
        options: BandSplitOptions = job.options
        if options.crossover_hz + options.width_hz / 2 >= job.source.sample_rate / 2:
            raise ConfigError(
                f"bandsplit: crossover_hz={options.crossover_hz:g} (+ width_hz/2) is above the Nyquist frequency "
                f"of {job.source.name} ({job.source.sample_rate / 2:g} Hz); lower it"
            )
        audio = job.source.read()  # float32 (channels, frames) at the input's own rate
        job.progress("separate", 0.0, f"crossover at {options.crossover_hz:g} Hz")
        stems = split(audio, job.source.sample_rate, options)
        job.progress("separate", 1.0)
        return RawResult(stems=stems, sample_rate=job.source.sample_rate, model=f"crossover@{options.crossover_hz:g}Hz")


# --8<-- [end:separator]
