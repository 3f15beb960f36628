"""Atomic stem files: a writer killed outright leaves a hidden ``.part`` file that the next save into the folder
removes — never one of a writer still running, of another host, or not named by stemkit — and a block of
non-finite audio abandons the write, leaving nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from stemkit._atomic import part_path, remove_stale_parts, write_blocks_atomic
from stemkit.errors import ProviderError
from stemkit.provenance import Provenance
from stemkit.stemset import Stem, StemSet

from .conftest import tone

RATE = 8_000

# Writes the first block, says so, then waits for a line on stdin before writing the rest: a writer caught
# in the middle of a file, for as long as the test wants.
_WRITER = """
import sys
from pathlib import Path
import numpy as np
from stemkit._atomic import write_blocks_atomic

def blocks():
    yield np.zeros((2, 4000), np.float32)
    print("writing", flush=True)
    sys.stdin.readline()
    yield np.zeros((2, 4000), np.float32)

write_blocks_atomic(Path(sys.argv[1]), blocks(), 8000, 2, "wav")
print("done", flush=True)
"""


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A real process in the middle of writing ``tmp_path/slow.wav``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path / "slow.wav")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "writing"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


def parts(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def one_stem(name: str = "vocals") -> StemSet:
    return StemSet([Stem.from_array(name, tone(0.05, RATE), RATE)], provenance=Provenance(provider="test"))


def test_the_temporary_name_is_hidden_beside_the_target_and_names_its_writer(tmp_path: Path) -> None:
    tmp = part_path(tmp_path / "vocals.wav")
    assert tmp.parent == tmp_path
    assert tmp.name.startswith(".vocals.wav.stemkit-")
    assert f"-{os.getpid()}-" in tmp.name
    assert tmp.name.endswith(".part")


def test_a_killed_writers_part_file_is_removed_by_the_next_save(
    tmp_path: Path, writer: subprocess.Popen[str]
) -> None:
    (left,) = parts(tmp_path)
    assert left.startswith(".slow.wav.stemkit-")
    writer.kill()  # kill -9: no chance to clean up
    writer.wait(timeout=30)
    assert parts(tmp_path) == [left]
    written = one_stem().save(tmp_path)
    assert parts(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocals.wav"]
    assert written["vocals"].exists()


def test_a_live_writers_part_file_is_kept_and_its_write_completes(
    tmp_path: Path, writer: subprocess.Popen[str]
) -> None:
    (live,) = parts(tmp_path)
    one_stem().save(tmp_path)  # another save into the same folder, while the first writer is mid-file
    assert parts(tmp_path) == [live]
    assert writer.stdin is not None
    assert writer.stdout is not None
    writer.stdin.write("go on\n")
    writer.stdin.flush()
    assert writer.stdout.readline().strip() == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slow.wav", "vocals.wav"]


def test_part_files_of_another_host_or_not_named_by_stemkit_are_kept(tmp_path: Path) -> None:
    foreign = [
        ".vocals.wav.stemkit-1-00000000-abcdef01.part",  # another host (or PID namespace): cannot tell
        ".vocals.wav.1234abcd.part",  # an older naming: whose it is cannot be told
        "notes.part",  # not ours at all
    ]
    for name in foreign:
        (tmp_path / name).write_bytes(b"x")
    assert remove_stale_parts(tmp_path) == []
    one_stem().save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*foreign, "vocals.wav"])


def test_a_dead_writer_on_this_host_is_recognised_by_its_pid(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead_pid = int(done.stdout)
    ours = part_path(tmp_path / "drums.wav")
    stale = ours.with_name(ours.name.replace(f"-{os.getpid()}-", f"-{dead_pid}-"))
    stale.write_bytes(b"half a file")
    ours.write_bytes(b"this process is alive")
    assert remove_stale_parts(tmp_path) == [stale]
    assert parts(tmp_path) == [ours.name]


def test_a_block_of_non_finite_audio_abandons_the_write_leaving_nothing(tmp_path: Path) -> None:
    good = tone(0.5, RATE)
    bad = good.copy()
    bad[1, -10:] = np.nan  # in the last block: the first blocks were already written to the .part file
    stems = StemSet(
        [Stem.from_array("vocals", good, RATE), Stem.from_array("drums", bad, RATE)],
        provenance=Provenance(provider="flaky"),
    )
    with pytest.raises(ProviderError, match=r"flaky: stem 'drums' has 10 NaN or infinite sample\(s\)") as caught:
        stems.save(tmp_path / "out")
    assert "was not written" in str(caught.value)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["vocals.wav"]


def test_a_derived_stem_that_overflows_to_infinity_is_never_saved(tmp_path: Path) -> None:
    loud = np.full((2, 1000), 3e38, dtype=np.float32)  # finite, but the sum of two is not
    stems = StemSet(
        [Stem.from_array("drums", loud, RATE), Stem.from_array("bass", loud, RATE)],
        provenance=Provenance(provider="loud"),
    )
    summed = Stem.sum_of("rhythm", [stems["drums"], stems["bass"]], sample_rate=RATE, channels=2, frames=1000)
    derived = StemSet([summed], provenance=Provenance(provider="loud"))
    with pytest.raises(ProviderError, match="'rhythm' has 2000 NaN or infinite"):
        derived.save(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_write_blocks_atomic_writes_every_block(tmp_path: Path) -> None:
    import soundfile as sf

    audio = tone(1.0, RATE)
    blocks = (audio[:, start : start + 1000] for start in range(0, audio.shape[1], 1000))
    path = write_blocks_atomic(tmp_path / "deep" / "x.wav", blocks, RATE, 2, "wav")
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == RATE
    np.testing.assert_array_equal(data.T, audio)
    assert parts(path.parent) == []
