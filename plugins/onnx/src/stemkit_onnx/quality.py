"""Published separation quality of the registry's models: SDR per stem, and where each figure comes from.

Figures are copied, not measured here: each one names its source (document, version, what it
averages), so ``stemkit models list`` can show a number a user can check. Comparable figures need
the same test tracks and the same metric, so one source is used for every model that it covers:
python-audio-separator's ``models-scores.json``, which scores HT-Demucs and UVR's MDX-Net models
alike (median BSSEval SDR per stem over the first tracks of MUSDB18-HQ, in dB). A stem without a
figure there (HT-Demucs' ``other``) has none here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SOURCES", "Score", "Source", "score"]


@dataclass(frozen=True)
class Source:
    """Where published figures come from."""

    key: str
    title: str
    url: str
    metric: str

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "url": self.url, "metric": self.metric}


AUDIO_SEPARATOR = Source(
    key="audio-separator",
    title="python-audio-separator, audio_separator/models-scores.json (commit af25ca8)",
    url=(
        "https://github.com/nomadkaraoke/python-audio-separator/blob/"
        "af25ca81cd10b02972ce6533b637f1857941c313/audio_separator/models-scores.json"
    ),
    metric="median SDR in dB per stem (BSSEval) over MUSDB18-HQ tracks; `tracks` says how many",
)

SOURCES: Mapping[str, Source] = {AUDIO_SEPARATOR.key: AUDIO_SEPARATOR}


@dataclass(frozen=True)
class Score:
    """A model's published SDR per canonical stem (dB), its source, and how many tracks it averages."""

    sdr: Mapping[str, float]
    source: Source
    tracks: int
    #: the model the figure was published for, when it is not this very file (e.g. the PyTorch original)
    measured_as: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sdr": dict(self.sdr),
            "source": self.source.to_dict(),
            "tracks": self.tracks,
            "measured_as": self.measured_as,
        }


# HT-Demucs: published for the PyTorch models (audio-separator's `htdemucs*.yaml`); demucs-onnx's exports
# compute the same networks. In htdemucs_ft each stem comes from its own specialist, so a specialist's
# figure is the bag's figure for that stem.
_HTDEMUCS_FT = {"vocals": 10.793, "drums": 10.024, "bass": 12.02}
_SCORES: Mapping[str, Score] = {
    "htdemucs": Score({"vocals": 9.867, "drums": 9.446, "bass": 11.644}, AUDIO_SEPARATOR, 13, "htdemucs.yaml"),
    "htdemucs_ft": Score(_HTDEMUCS_FT, AUDIO_SEPARATOR, 13, "htdemucs_ft.yaml"),
    "htdemucs_ft_vocals": Score({"vocals": _HTDEMUCS_FT["vocals"]}, AUDIO_SEPARATOR, 13, "htdemucs_ft.yaml"),
    "htdemucs_ft_drums": Score({"drums": _HTDEMUCS_FT["drums"]}, AUDIO_SEPARATOR, 13, "htdemucs_ft.yaml"),
    "htdemucs_ft_bass": Score({"bass": _HTDEMUCS_FT["bass"]}, AUDIO_SEPARATOR, 13, "htdemucs_ft.yaml"),
    "htdemucs_6s": Score({"vocals": 9.571, "drums": 8.472, "bass": 10.098}, AUDIO_SEPARATOR, 12, "htdemucs_6s.yaml"),
    # UVR's MDX-Net models: these very files.
    "UVR-MDX-NET-Inst_HQ_3": Score({"instrumental": 15.421, "vocals": 8.809}, AUDIO_SEPARATOR, 41),
    "UVR-MDX-NET-Inst_HQ_4": Score({"instrumental": 15.512, "vocals": 8.832}, AUDIO_SEPARATOR, 41),
    "UVR-MDX-NET-Inst_HQ_5": Score({"instrumental": 15.296, "vocals": 8.695}, AUDIO_SEPARATOR, 41),
    "UVR-MDX-NET-Voc_FT": Score({"vocals": 10.155, "instrumental": 15.434}, AUDIO_SEPARATOR, 40),
    "Kim_Vocal_2": Score({"vocals": 10.179, "instrumental": 15.36}, AUDIO_SEPARATOR, 40),
    "Kim_Inst": Score({"instrumental": 15.456, "vocals": 9.143}, AUDIO_SEPARATOR, 40),
    # Karaoke models: scored against MUSDB's vocals/accompaniment, while they keep backing vocals in the
    # instrumental on purpose — low vocal figures are expected.
    "UVR_MDXNET_KARA": Score({"vocals": 5.585, "instrumental": 14.078}, AUDIO_SEPARATOR, 40),
    "UVR_MDXNET_KARA_2": Score({"instrumental": 14.77, "vocals": 5.433}, AUDIO_SEPARATOR, 40),
}


def score(model: str) -> Score | None:
    """The published score of a registry model (by its canonical name), or None when none is published."""
    return _SCORES.get(model)
