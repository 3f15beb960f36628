"""``leadback``: the dsp baseline's vocals split into lead (the stereo centre) and backing (the sides).

A test provider for stemkit's open stem vocabulary: its combination names registered stems, so a request
for ``vocals`` is derived as lead + backing, and for ``drums`` is refused.
"""

from __future__ import annotations

import numpy as np

from stemkit.protocol import Capabilities
from stemkit.provider import RawResult, SeparationJob, SeparatorBase
from stemkit_dsp import separate_array

__all__ = ["LeadBackSeparator"]


class LeadBackSeparator(SeparatorBase):
    name = "leadback"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(combinations=(("lead_vocals", "backing_vocals", "instrumental"),), local=True)

    def _separate(self, job: SeparationJob) -> RawResult:
        audio = job.source.read()
        vocals = separate_array(audio, job.source.sample_rate)["vocals"]
        lead = np.repeat(vocals.mean(axis=0, keepdims=True), vocals.shape[0], axis=0)
        job.progress("separate", 1.0)
        return RawResult(
            # The provider's own names: "lead" is a registered alias of lead_vocals.
            {"lead": lead, "backing_vocals": vocals - lead, "accompaniment": audio - vocals},
            sample_rate=job.source.sample_rate,
            model="dsp-centre-sides",
        )
