"""Derived stems (instrumental, a residual, mixes, the mixture itself) are computed block by block from their
sources, so saving them from file-backed stems never loads any stem whole, and memory stays bounded whatever
is requested."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from stemkit.errors import ProtocolError
from stemkit.protocol import Capabilities
from stemkit.provenance import Provenance
from stemkit.provider import RawResult, SeparationJob, SeparatorBase
from stemkit.stemset import DEFAULT_BLOCKSIZE, Stem, StemSet

RATE = 44_100
GAINS = {"vocals": 0.4, "drums": 0.3, "bass": 0.2, "other": 0.1}


class FileStems(SeparatorBase):
    """A local provider that streams its stems to files in the input's shape (as the onnx provider does with
    ``stream=on``): each stem a fixed share of the mixture, written block by block."""

    name = "filestems"

    def __init__(self, combination: tuple[str, ...]) -> None:
        super().__init__()
        self.combination = combination

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(combinations=(self.combination,))

    def _separate(self, job: SeparationJob) -> RawResult:
        paths = {name: job.workdir / f"{name}.wav" for name in job.combination}
        handles = {
            name: sf.SoundFile(path, "w", samplerate=job.source.sample_rate, channels=job.source.channels,
                               subtype="FLOAT")
            for name, path in paths.items()
        }  # fmt: skip
        try:
            for block in job.source.iter_blocks(30_000):
                for name, handle in handles.items():
                    handle.write((block * np.float32(GAINS[name])).T)
        finally:
            for handle in handles.values():
                handle.close()
        return RawResult(stems=paths)


@pytest.fixture(scope="module")
def long_song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 s of stereo noise at 44.1 kHz (21 MB as float32), written in blocks."""
    path = tmp_path_factory.mktemp("song") / "song.wav"
    rng = np.random.default_rng(1)
    with sf.SoundFile(path, "w", samplerate=RATE, channels=2, subtype="FLOAT") as out:
        for _ in range(60):
            out.write((rng.standard_normal((RATE, 2)) * 0.1).astype(np.float32))
    return path


def read(path: Path) -> np.ndarray:
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T)


def test_instrumental_from_file_backed_stems_is_saved_in_bounded_memory(long_song: Path, tmp_path: Path) -> None:
    provider = FileStems(("vocals", "drums", "bass", "other"))
    with provider.separate(long_song, stems="vocals,instrumental") as result:
        assert result["instrumental"].derived
        tracemalloc.start()
        try:
            written = result.save(tmp_path / "out")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        # A few blocks per stem read at once (64 Ki frames: 512 KiB each), whatever the length; loading even one
        # source whole would take 21 MB.
        block = DEFAULT_BLOCKSIZE * 2 * 4
        assert peak < 16 * block, f"saving took {peak / 1e6:.1f} MB of numpy/Python memory"
        assert not any(stem.is_loaded for stem in result.values())
        files = {name: read(path) for name, path in written.items()}
    expected = np.zeros_like(files["vocals"])
    mixture = read(long_song)
    for name in ("drums", "bass", "other"):  # the same sum, in the same order, over the whole arrays
        expected += mixture * np.float32(GAINS[name])
    np.testing.assert_array_equal(files["instrumental"], expected)
    np.testing.assert_array_equal(files["vocals"], mixture * np.float32(GAINS["vocals"]))


def test_a_residual_reads_the_mixture_in_blocks_too(long_song: Path, tmp_path: Path) -> None:
    provider = FileStems(("vocals",))
    with provider.separate(long_song, stems="vocals,instrumental") as result:
        assert result["instrumental"].provider_name == "residual"
        written = result.save(tmp_path / "out")
        assert result.mixture is not None
        assert not result.mixture.is_loaded
        assert not any(stem.is_loaded for stem in result.values())
        mixture = read(long_song)
        expected = mixture - mixture * np.float32(GAINS["vocals"])
        np.testing.assert_array_equal(read(written["instrumental"]), expected)
        # reading the whole derived stem gives the same samples as saving it
        np.testing.assert_array_equal(result["instrumental"].audio, expected)


@settings(max_examples=30, deadline=None)
@given(
    frames=st.integers(2, 5_000),
    blocksize=st.integers(1, 6_000),
    residual=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_derived_blocks_equal_the_whole_array_sum_whatever_the_block_size(
    frames: int, blocksize: int, residual: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    arrays = {name: rng.standard_normal((2, frames)).astype(np.float32) for name in ("mix", "a", "b", "c")}
    stems = {name: Stem.from_array(name, array, RATE) for name, array in arrays.items()}
    sources = [stems["a"], stems["b"]]
    derived = Stem.sum_of(
        "sum", sources, residual=(stems["mix"], [stems["a"], stems["b"], stems["c"]]) if residual else None,
        sample_rate=RATE, channels=2, frames=frames,
    )  # fmt: skip
    expected = np.zeros((2, frames), dtype=np.float32)
    expected += arrays["a"]
    expected += arrays["b"]
    if residual:
        rest = arrays["mix"].copy()
        rest -= arrays["a"]
        rest -= arrays["b"]
        rest -= arrays["c"]
        expected += rest
    blocks = list(derived.iter_blocks(blocksize))
    assert all(block.shape[1] == blocksize for block in blocks[:-1])
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), expected)
    np.testing.assert_array_equal(derived.audio, expected)


def test_mix_sums_file_backed_stems_without_loading_them(long_song: Path) -> None:
    with FileStems(("vocals", "drums", "bass", "other")).separate(long_song) as result:
        rhythm = result.mix(["drums", "bass"])
        assert not any(stem.is_loaded for stem in result.values())
        mixture = read(long_song)
        expected = np.zeros_like(mixture)
        expected += mixture * np.float32(GAINS["drums"])
        expected += mixture * np.float32(GAINS["bass"])
        np.testing.assert_array_equal(rhythm, expected)


def test_stems_of_different_lengths_cannot_be_summed(tmp_path: Path) -> None:
    short = Stem.from_array("a", np.zeros((2, 10), np.float32), RATE)
    long = Stem.from_array("b", np.zeros((2, 12), np.float32), RATE)
    derived = Stem.sum_of("sum", [short, long], sample_rate=RATE, channels=2, frames=12)

    with pytest.raises(ProtocolError, match="disagree in length"):
        list(derived.iter_blocks(4))
    with pytest.raises(ProtocolError):
        StemSet([derived], provenance=Provenance(provider="test")).save(tmp_path)
    assert list(tmp_path.iterdir()) == []
