"""Output problems are typed and early: an OutputError naming the path and what to do, raised before any stem is
written (and, through ``check_output``, before any separation starts), for a folder that is a file or cannot be
written, a full disk, an encoder that refuses the rate, and templates that are malformed, unknown, unusable or
too long."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import stemkit
from stemkit.cli import main
from stemkit.errors import ConfigError, OutputError
from stemkit.output import PART_NAME_RESERVE, check_output, output_targets
from stemkit.provenance import Provenance
from stemkit.stemset import Stem, StemSet

from .conftest import tone

RATE = 8_000


def small_set(*names: str, provider: str = "test") -> StemSet:
    audio = tone(0.05, RATE)
    stems = [Stem.from_array(name, audio * (i + 1) / 10, RATE) for i, name in enumerate(names or ("vocals",))]
    return StemSet(stems, provenance=Provenance(provider=provider, input_name="song.wav"))


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# -- the output folder ---------------------------------------------------------------------------------------


def test_an_output_folder_that_is_a_file_is_an_output_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match=r"out: is a file, not a folder \(the output folder\)") as caught:
        small_set().save(blocker)
    assert caught.value.path == str(blocker)
    assert isinstance(caught.value, ConfigError)
    with pytest.raises(OutputError, match=r"is a file, not a folder \(part of the output folder"):
        check_output(blocker / "deeper" / "still")
    assert blocker.read_text() == "not a folder"


def test_a_template_folder_that_exists_as_a_file_is_refused_before_writing(tmp_path: Path) -> None:
    (tmp_path / "song").write_text("a file where the template wants a folder")
    stems = small_set("vocals", "drums")
    with pytest.raises(OutputError, match=r"song: is a file, not a folder"):
        stems.save(tmp_path, template="{input}/{stem}.{ext}")
    assert files_in(tmp_path) == ["song"]


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder no one may write to (root aside, see ``_run_unprivileged``)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        yield folder
    finally:
        folder.chmod(0o755)


def _drop_file_capabilities() -> None:
    """In the child, before exec: drop root's power to ignore file permissions (CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH) from the bounding set, so the exec'd process is a root that permissions apply to."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for capability in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _run_unprivileged(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a Python child that file permissions apply to (as root, without the capabilities that
    let root write everywhere; otherwise as the user the tests run as)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, check=False,
        preexec_fn=_drop_file_capabilities if os.geteuid() == 0 else None,
    )  # fmt: skip


def test_a_folder_that_cannot_be_written_is_an_output_error_before_writing(read_only_folder: Path) -> None:
    done = _run_unprivileged(
        f"""
        import numpy as np
        from stemkit.errors import OutputError
        from stemkit.output import check_output
        from stemkit.provenance import Provenance
        from stemkit.stemset import Stem, StemSet

        target = {str(read_only_folder / "new")!r}
        for attempt in ("check", "save"):
            try:
                if attempt == "check":
                    check_output(target)
                else:
                    stems = StemSet([Stem.from_array("vocals", np.zeros((2, 100), np.float32), 8000)],
                                    provenance=Provenance(provider="test"))
                    stems.save(target)
            except OutputError as exc:
                print(attempt, "OutputError", exc.path, exc)
        """
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(" ", 2)[:2] for line in lines] == [["check", "OutputError"], ["save", "OutputError"]]
    for line in lines:
        assert f"{read_only_folder}: permission denied" in line
        assert "choose a folder you can write to" in line
    assert list(read_only_folder.iterdir()) == []


# -- a full disk ---------------------------------------------------------------------------------------------

_FILL_SCRIPT = """
import signal, sys, resource
import numpy as np
from stemkit.errors import OutputError
from stemkit.provenance import Provenance
from stemkit.stemset import Stem, StemSet

if sys.argv[2] == "fsize":
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # let write() fail with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
noise = (np.random.default_rng(0).standard_normal((2, 400_000)) * 0.1).astype(np.float32)
stems = StemSet([Stem.from_array("vocals", noise, 44_100)], provenance=Provenance(provider="test"))
try:
    stems.save(sys.argv[1], format=sys.argv[3])
except OutputError as exc:
    print("OutputError", exc.path)
    print(exc)
"""


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_a_file_size_limit_during_the_write_is_an_output_error_leaving_no_file(tmp_path: Path, fmt: str) -> None:
    """A real limit of the operating system (RLIMIT_FSIZE: write() fails with EFBIG part-way through)."""
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-c", _FILL_SCRIPT, str(out), "fsize", fmt], capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first, message = done.stdout.splitlines()[:2]
    assert first == f"OutputError {out / f'vocals.{fmt}'}"
    assert "larger than this file system or a size limit allows" in message
    assert files_in(out) == []  # no stem, no hidden .part file


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True, check=False
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare and user namespaces to mount a small tmpfs")
def test_a_full_disk_is_an_output_error_leaving_no_file(tmp_path: Path) -> None:
    """A real full file system: a 256 KiB tmpfs, mounted in a private mount namespace (no root needed)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    script = tmp_path / "fill.py"
    script.write_text(_FILL_SCRIPT)
    command = (
        f"mount -t tmpfs -o size=256k tmpfs {mount} && {sys.executable} {script} {mount / 'out'} none wav && "
        f"find {mount} -mindepth 1 -printf 'left:%P\\n'"
    )
    done = subprocess.run(["unshare", "-rm", "sh", "-c", command], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"OutputError {mount / 'out' / 'vocals.wav'}"
    assert "the disk is full (no space left on device); free some space or write to another folder" in lines[1]
    assert [line for line in lines if line.startswith("left:")] == ["left:out"]  # the folder, nothing in it


# -- templates -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{artist}/{stem}.{ext}", r"unknown field \{artist\}"),
        ("{stem.{ext}", "is malformed"),
        ("{}.{ext}", "positional field"),
        ("{stem!r}.{ext}", "without a format spec or conversion"),
        ("{stem}\0.{ext}", r"characters a file name cannot have \('\\x00'\)"),
        ("{stem}\n.{ext}", r"characters a file name cannot have \('\\n'\)"),
        ("x" * 300 + "-{stem}.{ext}", "this file system allows 255"),
        ("x" * (256 - PART_NAME_RESERVE) + "{stem}.{ext}", "needs 48 of them for the temporary name"),
        ("/".join(["y" * 200] * 25) + "/{stem}.{ext}", "too long for this file system"),
        ("/tmp/elsewhere/{stem}.{ext}", "absolute path"),
        ("../{stem}.{ext}", "outside"),
        ("{stem}/", "a folder and no file name"),
        ("x.{ext}", "same file name; include {stem}"),
        ("", "is empty"),
    ],
)
def test_an_unusable_template_is_an_output_error_before_writing(tmp_path: Path, template: str, message: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(OutputError, match=message):
        small_set("vocals", "drums").save(out, template=template)
    with pytest.raises(OutputError, match=message):
        check_output(out, "wav", template, stems=["vocals", "drums"])
    assert not out.exists()


def test_stem_provider_and_input_names_cannot_add_folders_or_leave_the_output(tmp_path: Path) -> None:
    audio = tone(0.05, RATE)
    stems = StemSet(
        [Stem.from_array("../../escape", audio, RATE), Stem.from_array("a/b\\c", audio, RATE),
         Stem.from_array("..", audio, RATE)],
        provenance=Provenance(provider="../evil", input_name="/music/we\nird.wav"),
    )  # fmt: skip
    written = stems.save(tmp_path, template="{provider}-{input}-{stem}.{ext}")
    assert {path.parent for path in written.values()} == {tmp_path}
    assert sorted(path.name for path in written.values()) == [
        ".._evil-we_ird-.._.._escape.wav", ".._evil-we_ird-_.wav", ".._evil-we_ird-a_b_c.wav"
    ]
    assert files_in(tmp_path) == sorted(path.name for path in written.values())


def test_output_targets_follow_the_template(tmp_path: Path) -> None:
    targets = output_targets(
        tmp_path, "flac", "{provider}/{input}/{stem}.{ext}", stems=["vocals", "drums"], provider="dsp",
        input_name="song", sample_rate=44_100, channels=2,
    )  # fmt: skip
    assert targets == {"vocals": tmp_path / "dsp/song/vocals.flac", "drums": tmp_path / "dsp/song/drums.flac"}
    assert files_in(tmp_path) == []  # checking writes nothing


def test_check_output_knows_several_inputs_need_the_input_field(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"has no \{input\}, so 2 inputs would overwrite"):
        check_output(tmp_path, "wav", "{stem}.{ext}", inputs=["a", "b"])
    check_output(tmp_path, "wav", "{input}/{stem}.{ext}", inputs=["a", "b"], sample_rate=44_100, channels=2)
    with pytest.raises(OutputError, match="mp3 encoder refuses"):
        check_output(tmp_path, "mp3", sample_rate=96_000)
    with pytest.raises(OutputError, match="'ogg' is not supported; use one of wav, flac, mp3"):
        check_output(tmp_path, "ogg")


# -- the CLI checks before it separates ----------------------------------------------------------------------


def test_the_cli_refuses_a_bad_template_with_exit_2_before_any_separation(
    demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    # a provider that cannot run at all: reaching it would print a different error
    spec = "stemsplit?base_url=http://127.0.0.1:9/api/v1"
    code = main(["separate", str(demo_dir / "mixture.wav"), "-p", spec, "-o", str(out), "--template", "{artst}/{stem}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown field {artst}" in err
    assert "stemsplit" not in err
    assert not out.exists()


def test_the_cli_refuses_an_output_folder_that_is_a_file_with_exit_2(
    demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.write_text("")
    assert main(["separate", str(demo_dir / "mixture.wav"), "-o", str(out)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_saved_audio_is_what_the_stem_holds(tmp_path: Path) -> None:
    stems = stemkit.separate(tone(0.2, RATE), sample_rate=RATE, stems="vocals,instrumental")
    written = stems.save(tmp_path / "out")
    import soundfile as sf

    for name, path in written.items():
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        assert rate == RATE
        np.testing.assert_array_equal(data.T, stems[name].audio)
