"""``offset=`` / ``duration=``: part of an input, cut in the core at exact sample boundaries before any provider
runs, for every kind of input and separator, and recorded in provenance."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

import stemkit
from stemkit.audio import open_source
from stemkit.cli import main
from stemkit.errors import ConfigError, InputError
from stemkit.excerpt import excerpt_range, parse_time
from stemkit.protocol import Capabilities
from stemkit.provenance import Excerpt, Provenance
from stemkit.stemset import Stem, StemSet

from .conftest import tone

RATE = 44_100


def song(tmp_path: Path, fmt: str = "WAV", subtype: str = "FLOAT", seconds: float = 3.0, rate: int = RATE) -> Path:
    rng = np.random.default_rng(7)
    audio = (tone(seconds, rate) + 0.05 * rng.standard_normal((2, int(seconds * rate)))).astype(np.float32)
    path = tmp_path / f"song.{fmt.lower()}"
    sf.write(path, audio.T, rate, format=fmt, subtype=subtype)
    return path


def decoded(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float32", always_2d=True)[0].T


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "FLOAT"), ("FLAC", "PCM_24"), ("MP3", "MPEG_LAYER_III"),
                                              ("OGG", "VORBIS")])  # fmt: skip
def test_an_excerpt_is_exactly_those_samples_of_the_decoded_input(tmp_path: Path, fmt: str, subtype: str) -> None:
    path = song(tmp_path, fmt, subtype)
    whole = decoded(path)
    stems = stemkit.separate(path, provider="dsp", offset=0.75, duration=1.5)
    start, frames = round(0.75 * RATE), round(1.5 * RATE)
    assert stems.frames == frames
    assert stems.provenance.excerpt == Excerpt(start, frames, RATE)
    np.testing.assert_array_equal(stems.mixture.audio, whole[:, start : start + frames])
    total = sum(stems[name].audio for name in stems)  # dsp's stems partition what it was given: the excerpt
    np.testing.assert_allclose(total, whole[:, start : start + frames], atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(offset=st.floats(0, 2.9), duration=st.one_of(st.none(), st.floats(0.01, 5.0)), rate=st.sampled_from([8_000,
       22_050, 44_100]))  # fmt: skip
def test_boundaries_are_rounded_to_samples_and_end_at_the_input(offset: float, duration: float | None,
                                                                rate: int) -> None:  # fmt: skip
    audio = np.zeros((1, 3 * rate), np.float32)
    source = open_source(audio, sample_rate=rate)
    chosen = excerpt_range(source, offset, duration)
    assert chosen.start == round(offset * rate)
    end = source.frames if duration is None else min(source.frames, chosen.start + round(duration * rate))
    assert chosen.end == end
    part = source.excerpt(chosen.start, chosen.frames)
    assert part.frames == chosen.frames
    np.testing.assert_array_equal(part.read(), audio[:, chosen.start : chosen.end])


def test_provenance_keeps_the_whole_inputs_hash_and_the_range(tmp_path: Path) -> None:
    path = song(tmp_path)
    stems = stemkit.separate(path, provider="dsp", offset="0:01", duration=1)
    assert stems.provenance.input_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert stems.provenance.input_duration == pytest.approx(3.0)
    assert stems.provenance.input_name == str(path)
    excerpt = stems.provenance.excerpt
    assert excerpt is not None
    assert (excerpt.offset, excerpt.duration) == (1.0, 1.0)
    again = Provenance.from_dict(stems.provenance.to_dict())
    assert again.excerpt == excerpt


def test_array_input_takes_an_excerpt_too() -> None:
    audio = tone(2.0, RATE)
    stems = stemkit.separate(audio, sample_rate=RATE, offset=0.5, duration=0.25, stems=["vocals", "instrumental"])
    assert stems.frames == round(0.25 * RATE)
    np.testing.assert_array_equal(stems.mixture.audio, audio[:, round(0.5 * RATE) : round(0.75 * RATE)])


def test_a_loaded_chain_and_the_cache_take_the_options(tmp_path: Path) -> None:
    path = song(tmp_path)
    with stemkit.load("stemsplit | dsp", cache=tmp_path / "cache") as sep:
        first = sep.separate(path, offset=1, duration=0.5)
        again = sep.separate(path, offset=1, duration=0.5)
        other = sep.separate(path, offset=1.5, duration=0.5)
    assert first.frames == again.frames == other.frames == RATE // 2
    assert again.provenance.cache is not None  # the same excerpt is answered from the cache...
    assert other.provenance.cache is None  # ...another one is not
    assert [a.outcome for a in first.provenance.attempts] == ["skipped", "ok"]
    assert again.provenance.excerpt == first.provenance.excerpt == Excerpt(RATE, RATE // 2, RATE)


class _Recorder:
    """A Separator written to the protocol alone (no SeparatorBase): what input does it get?"""

    name = "recorder"
    capabilities = Capabilities(combinations=(("vocals", "instrumental"),))

    def __init__(self) -> None:
        self.frames: list[int] = []

    async def aseparate(self, audio: Any, /, *, stems: Any = None, progress: Any = None, **options: Any) -> StemSet:
        assert not {"offset", "duration"} & set(options), "the core should have cut the input"
        data, rate = sf.read(audio, dtype="float32", always_2d=True)
        self.frames.append(len(data))
        half = np.ascontiguousarray(data.T / 2)
        return StemSet([Stem.from_array("vocals", half, rate), Stem.from_array("instrumental", half, rate)],
                       provenance=Provenance(provider="recorder"))  # fmt: skip

    def close(self) -> None:
        return None


def test_any_separator_gets_only_the_excerpt(tmp_path: Path) -> None:
    recorder = _Recorder()
    stems = stemkit.separate(song(tmp_path), provider=recorder, offset=2.5)
    assert recorder.frames == [round(0.5 * RATE)]
    assert stems.provenance.excerpt == Excerpt(round(2.5 * RATE), round(0.5 * RATE), RATE)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"offset": -1}, ConfigError, r"offset: -1 s is before the start; give 0 or more seconds"),
        ({"duration": 0}, ConfigError, r"duration: 0 s is not a length"),
        ({"offset": "1:xx"}, ConfigError, r"offset: '1:xx' is not a time; give seconds \(90\) or minutes:seconds"),
        ({"offset": 3.0}, InputError, r"song.wav: offset 3 s is at or past the end of the audio \(3.00 s long\)"),
        ({"offset": 2.99998}, InputError, r"from 2.99998 s holds 1 sample\(s\); give a duration of at least 2 samples"),
    ],
)
def test_bad_offsets_say_what_is_wrong(tmp_path: Path, options: dict[str, Any], error: type[Exception],
                                       message: str) -> None:  # fmt: skip
    with pytest.raises(error, match=message):
        stemkit.separate(song(tmp_path), provider="dsp", **options)


def test_a_url_input_cannot_be_cut() -> None:
    source = open_source("https://example.com/song.mp3")
    with pytest.raises(InputError, match="download the file first"):
        excerpt_range(source, 1.0, None)


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("1:30", 90.0), ("01:02:03.5", 3723.5),
                                               ("12.5s", 12.5), (7, 7.0)])  # fmt: skip
def test_times_are_seconds_or_clock_times(text: Any, seconds: float) -> None:
    assert parse_time(text, "offset") == seconds


def test_the_excerpts_temporary_file_goes_with_the_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = song(tmp_path)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    stems = stemkit.separate(path, provider="dsp", offset=0.5, stems=["vocals", "instrumental"])
    assert [p.name.startswith("stemkit-excerpt-") for p in scratch.iterdir()].count(True) == 1
    assert stems["instrumental"].audio.shape[1] == stems.frames  # derived from the excerpt, still there
    stems.close()
    assert not [p for p in scratch.iterdir() if p.name.startswith("stemkit-excerpt-")]


def test_separate_many_and_the_cli_cut_every_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = song(tmp_path)
    items = list(stemkit.separate_many([path], "dsp", offset=1, duration=0.5, output_dir=tmp_path / "many"))
    assert items[0].ok
    assert sf.info(items[0].paths["vocals"]).frames == RATE // 2
    assert main(["separate", str(path), "-o", str(tmp_path / "cli"), "--offset", "0:02", "--duration", "0.25"]) == 0
    assert sf.info(tmp_path / "cli" / "song" / "drums.wav").frames == RATE // 4
