"""The StemSet contract: every stem at the input's rate, exact length and channel count, float32,
canonical names; atomic saving; mixing; lazily decoded file-backed stems."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stemkit
from stemkit.errors import ConfigError, OutputError
from stemkit.provenance import Provenance
from stemkit.stemset import Stem, StemSet

from .conftest import tone

RATES = st.sampled_from([8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 48_000, 88_200, 96_000])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(channels=st.integers(1, 2), rate=RATES, frames=st.integers(2, 30_000), seed=st.integers(0, 2**16))
def test_every_stem_matches_the_input_shape(channels: int, rate: int, frames: int, seed: int) -> None:
    audio = (np.random.default_rng(seed).standard_normal((channels, frames)) * 0.1).astype(np.float32)
    result = stemkit.separate(audio, sample_rate=rate, stems=["vocals", "instrumental", "drums"])
    assert list(result) == ["vocals", "instrumental", "drums"]
    assert (result.sample_rate, result.channels, result.frames) == (rate, channels, frames)
    for stem in result.values():
        assert stem.audio.dtype == np.float32
        assert stem.audio.shape == (channels, frames)
        assert stem.sample_rate == rate
    assert result["instrumental"].derived
    assert not result["vocals"].derived


@settings(max_examples=10, deadline=None)
@given(from_rate=RATES, to_rate=RATES, channels=st.integers(1, 2), to_channels=st.integers(1, 2),
       frames=st.integers(2, 20_000))
def test_file_backed_stems_are_normalized_on_first_access(
    tmp_path_factory: pytest.TempPathFactory, from_rate: int, to_rate: int, channels: int, to_channels: int,
    frames: int,
) -> None:
    path = tmp_path_factory.mktemp("stem") / "vocals.wav"
    n = max(2, round(frames * from_rate / to_rate))
    sf.write(path, np.zeros((n, channels), dtype=np.float32), from_rate, subtype="FLOAT")
    stem = Stem.from_file("vocals", path, sample_rate=to_rate, channels=to_channels, frames=frames)
    assert not stem.is_loaded
    assert stem.audio.shape == (to_channels, frames)
    assert stem.audio.dtype == np.float32


def test_stem_audio_is_read_only(demo_dir: Path) -> None:
    result = stemkit.separate(demo_dir / "mixture.wav")
    with pytest.raises(ValueError, match="read-only"):
        result["vocals"].audio[0, 0] = 1.0


def test_provenance_records_input_hash_duration_and_redacted_options(demo_dir: Path) -> None:
    import hashlib

    mixture = demo_dir / "mixture.wav"
    result = stemkit.separate(mixture)
    prov = result.provenance
    assert prov.provider == "dsp"
    assert prov.input_sha256 == hashlib.sha256(mixture.read_bytes()).hexdigest()
    assert prov.input_duration == pytest.approx(4.0)
    assert prov.timings["total"] > 0
    assert [a.outcome for a in prov.attempts] == ["ok"]
    assert result.to_dict()["provenance"]["provider"] == "dsp"


def test_save_writes_each_stem_and_returns_the_paths(demo_dir: Path, tmp_path: Path) -> None:
    result = stemkit.separate(demo_dir / "mixture.wav", stems="vocals,instrumental")
    for fmt in ("wav", "flac", "mp3"):
        written = result.save(tmp_path / fmt, format=fmt)
        assert set(written) == {"vocals", "instrumental"}
        for name, path in written.items():
            assert path.name == f"{name}.{fmt}"
            info = sf.info(path)
            assert (info.samplerate, info.channels) == (44_100, 2)
            assert abs(info.frames - result.frames) <= (0 if fmt != "mp3" else 1152)
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temporary files left


def test_wav_output_keeps_the_float_samples_exactly(demo_dir: Path, tmp_path: Path) -> None:
    result = stemkit.separate(demo_dir / "mixture.wav")
    path = result.save(tmp_path)["drums"]
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    np.testing.assert_array_equal(data.T, result["drums"].audio)


def test_a_folder_where_a_stem_goes_is_refused_before_anything_is_written(demo_dir: Path, tmp_path: Path) -> None:
    result = stemkit.separate(demo_dir / "mixture.wav", stems="vocals,drums")
    (tmp_path / "vocals.wav").mkdir()
    with pytest.raises(OutputError, match=r"vocals\.wav: is a folder") as caught:
        result.save(tmp_path)
    assert caught.value.path == str(tmp_path / "vocals.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocals.wav"]  # not even drums.wav
    assert not any((tmp_path / "vocals.wav").iterdir())


@pytest.mark.parametrize(
    ("fmt", "rate", "reason"),
    [("mp3", 96_000, "only supports sample rates of 8000"), ("mp3", 7_000, "only supports sample rates of 8000"),
     ("flac", 700_000, "flac does not support this sample rate")],
)
def test_a_rate_the_encoder_refuses_is_an_output_error_before_writing(
    tmp_path: Path, fmt: str, rate: int, reason: str
) -> None:
    result = stemkit.separate(tone(0.05, rate), sample_rate=rate, stems="vocals")
    with pytest.raises(OutputError, match=f"the {fmt} encoder refuses 2-channel audio at {rate} Hz .*{reason}"):
        result.save(tmp_path / "out", format=fmt)
    assert list(tmp_path.iterdir()) == []


def test_templates_are_checked(demo_dir: Path, tmp_path: Path) -> None:
    result = stemkit.separate(demo_dir / "mixture.wav", stems="vocals,drums")
    with pytest.raises(ConfigError, match="same file name"):
        result.save(tmp_path, template="x.{ext}")
    with pytest.raises(ConfigError, match="unknown field"):
        result.save(tmp_path, template="{artist}/{stem}.{ext}")
    with pytest.raises(ConfigError, match="outside"):
        result.save(tmp_path / "a", template="../{stem}.{ext}")
    written = result.save(tmp_path, template="{input}/{provider}-{stem}.{ext}")
    assert written["drums"] == tmp_path / "mixture" / "dsp-drums.wav"


def test_an_unknown_format_is_refused() -> None:
    result = stemkit.separate(tone(0.1), sample_rate=44_100, stems="vocals")
    with pytest.raises(ConfigError, match="'ogg' is not supported"):
        result.save(os.devnull, format="ogg")


def test_mix_sums_the_named_stems(demo_dir: Path) -> None:
    result = stemkit.separate(demo_dir / "mixture.wav")
    np.testing.assert_allclose(
        result.mix(["drums", "bass"]), result["drums"].audio + result["bass"].audio, atol=1e-7
    )
    with pytest.raises(KeyError, match="'piano' is not in this StemSet"):
        result.mix(["piano"])


def test_a_stemset_is_a_read_only_mapping(demo_dir: Path) -> None:
    result = stemkit.separate(demo_dir / "mixture.wav")
    assert len(result) == 4
    assert "vocals" in result
    with pytest.raises(TypeError):
        result["vocals"] = result["drums"]  # type: ignore[index]


def test_stems_that_disagree_in_shape_are_refused() -> None:
    a = Stem.from_array("vocals", np.zeros((2, 10), np.float32), 44_100)
    b = Stem.from_array("drums", np.zeros((2, 11), np.float32), 44_100)
    with pytest.raises(stemkit.ProtocolError, match="disagree"):
        StemSet([a, b], provenance=Provenance(provider="test"))
