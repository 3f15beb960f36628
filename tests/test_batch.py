"""separate_many: one outcome per input as each finishes, folders expanded, one bad file never stops a batch."""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import pytest

import stemkit
from stemkit.errors import ConfigError, InputError


@pytest.fixture
def songs(demo_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "songs"
    (folder / "nested").mkdir(parents=True)
    shutil.copy(demo_dir / "mixture.wav", folder / "one.wav")
    shutil.copy(demo_dir / "vocals.wav", folder / "nested" / "two.wav")
    (folder / "cover.jpg").write_bytes(b"\xff\xd8 not audio")  # not an audio suffix: ignored
    (folder / "broken.wav").write_text("not audio at all")
    return folder


def test_a_batch_with_a_corrupt_file_finishes_the_others(songs: Path, tmp_path: Path) -> None:
    outcomes = list(stemkit.separate_many([songs], concurrency=2, output_dir=tmp_path / "out", stems="vocals"))
    assert len(outcomes) == 3
    failed = [o for o in outcomes if not o.ok]
    assert [o.name for o in failed] == ["broken"]
    assert isinstance(failed[0].error, InputError)
    done = sorted(o.name for o in outcomes if o.ok)
    assert done == ["one", "two"]
    assert (tmp_path / "out" / "one" / "vocals.wav").exists()
    assert (tmp_path / "out" / "two" / "vocals.wav").exists()
    assert not (tmp_path / "out" / "broken").exists()


def test_without_an_output_dir_results_stay_in_memory(songs: Path) -> None:
    outcomes = [o for o in stemkit.separate_many([songs / "one.wav"]) if o.ok]
    assert outcomes[0].paths == {}
    assert outcomes[0].result is not None
    assert outcomes[0].provider == "dsp"


def test_a_folder_without_audio_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="holds no audio files"):
        list(stemkit.separate_many([tmp_path]))


def test_bad_batch_settings_fail_before_any_work(songs: Path) -> None:
    with pytest.raises(ConfigError, match="concurrency"):
        list(stemkit.separate_many([songs], concurrency=0))
    with pytest.raises(ConfigError, match="would overwrite"):
        list(stemkit.separate_many([songs], output_dir="x", template="{stem}.{ext}"))


def test_async_batch_yields_every_input(songs: Path) -> None:
    async def main() -> list[str]:
        return [o.name async for o in stemkit.aseparate_many([songs], concurrency=3, stems="drums")]

    assert sorted(anyio.run(main)) == ["broken", "one", "two"]


def test_progress_events_name_their_input(songs: Path) -> None:
    seen: set[str] = set()
    list(stemkit.separate_many([songs / "one.wav", songs / "nested" / "two.wav"], progress=lambda e: seen.add(
        Path(e.input_name or "").name)))
    assert seen == {"one.wav", "two.wav"}
