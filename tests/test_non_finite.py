"""NaN and infinite stems are never accepted or saved: a provider's result holding them is a ProviderError
(local) or a ProtocolError (hosted), found block by block, so a fallback chain moves on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemkit.audio import check_finite_stem
from stemkit.errors import ProtocolError, ProviderError
from stemkit.protocol import Capabilities
from stemkit.provider import RawResult, SeparationJob, SeparatorBase

from .conftest import tone

RATE = 8_000


class Broken(SeparatorBase):
    """Returns stems with a NaN, as arrays (``as_file=False``) or float WAV files, locally or as if hosted."""

    name = "broken"

    def __init__(self, *, hosted: bool, as_file: bool, value: float = np.nan) -> None:
        super().__init__()
        self.hosted, self.as_file, self.value = hosted, as_file, value

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(combinations=(("vocals", "instrumental"),), local=not self.hosted)

    def _separate(self, job: SeparationJob) -> RawResult:
        audio = job.source.read()
        vocals = audio * 0.5
        vocals[0, -1] = self.value
        stems: dict[str, np.ndarray | Path] = {"vocals": vocals, "instrumental": audio * 0.5}
        if self.as_file:
            for name, array in list(stems.items()):
                path = job.workdir / f"{name}.wav"
                sf.write(path, np.asarray(array).T, job.source.sample_rate, subtype="FLOAT")
                stems[name] = path
        return RawResult(stems=stems, sample_rate=job.source.sample_rate)


@pytest.mark.parametrize("as_file", [False, True], ids=["array", "file"])
@pytest.mark.parametrize(("hosted", "error"), [(False, ProviderError), (True, ProtocolError)], ids=["local", "hosted"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_non_finite_stem_from_a_provider_is_refused(
    as_file: bool, hosted: bool, error: type[ProviderError], value: float
) -> None:
    with pytest.raises(error, match=r"broken: stem 'vocals'.* has 1 NaN or infinite sample\(s\)") as caught:
        Broken(hosted=hosted, as_file=as_file, value=value).separate(tone(0.2, RATE), sample_rate=RATE)
    assert type(caught.value) is error  # hosted: the answer is bad; local: the provider is
    assert caught.value.provider == "broken"


def test_check_finite_stem_scans_files_in_blocks_and_skips_integer_encodings(tmp_path: Path) -> None:
    audio = tone(1.0, RATE)
    audio[1, 7_000] = np.inf
    float_file = tmp_path / "float.wav"
    sf.write(float_file, audio.T, RATE, subtype="FLOAT")
    with pytest.raises(ProtocolError, match=r"stem 'x' \(float.wav\) has 1 NaN"):
        check_finite_stem(float_file, stem="x", provider="p", error=ProtocolError, blocksize=1000)
    pcm_file = tmp_path / "pcm.wav"
    sf.write(pcm_file, tone(1.0, RATE).T, RATE, subtype="PCM_16")
    check_finite_stem(pcm_file, stem="x", provider="p")  # cannot hold NaN: not read at all
    (tmp_path / "junk.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(ProviderError, match="could not be decoded"):
        check_finite_stem(tmp_path / "junk.wav", stem="x", provider="p")


def test_check_finite_stem_counts_every_bad_sample_of_an_array() -> None:
    audio = tone(0.5, RATE)
    audio[:, ::1000] = np.nan
    with pytest.raises(ProviderError, match="has 8 NaN"):
        check_finite_stem(audio, stem="x", provider="p", blocksize=333)
    check_finite_stem(tone(0.5, RATE), stem="x", provider="p")
    check_finite_stem(np.zeros(10, dtype=np.int16), stem="x", provider="p")  # integers are always finite
