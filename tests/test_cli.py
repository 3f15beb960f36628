"""The ``stemkit`` command end to end, in a subprocess: exit codes, one-line errors, files on disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import soundfile as sf


def stemkit(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stemkit", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, check=False)


def test_demo_then_separate_writes_stems_and_says_where(tmp_path: Path) -> None:
    made = stemkit("demo", str(tmp_path / "song"), "--seconds", "2")
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in (tmp_path / "song").iterdir()) == [
        "bass.wav", "drums.wav", "mixture.wav", "other.wav", "vocals.wav"]
    run = stemkit("separate", str(tmp_path / "song" / "mixture.wav"), "-o", str(tmp_path / "out"), "--format", "flac")
    assert run.returncode == 0, run.stderr
    out = tmp_path / "out" / "mixture"
    assert sorted(p.name for p in out.iterdir()) == ["bass.flac", "drums.flac", "other.flac", "vocals.flac"]
    assert str(out) in run.stdout
    assert sf.info(out / "vocals.flac").frames == 2 * 44_100


def test_stems_option_and_template(demo_dir: Path, tmp_path: Path) -> None:
    run = stemkit("separate", str(demo_dir / "mixture.wav"), "--stems", "vocals,accompaniment", "-o", str(tmp_path),
                  "--template", "{stem}-{input}.{ext}")
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instrumental-mixture.wav", "vocals-mixture.wav"]


def test_inputs_with_the_same_name_never_overwrite_each_other(demo_dir: Path, tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "song.wav").write_bytes((demo_dir / "mixture.wav").read_bytes())
    run = stemkit("separate", str(tmp_path / "a"), str(tmp_path / "b" / "song.wav"), "-o", str(tmp_path / "out"),
                  "--stems", "vocals")
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["song", "song-2"]


def test_a_bad_file_in_a_batch_fails_that_file_only(demo_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    run = stemkit("separate", str(bad), str(demo_dir / "mixture.wav"), "-o", str(tmp_path / "out"))
    assert run.returncode == 1
    assert (tmp_path / "out" / "mixture" / "vocals.wav").exists()
    assert not (tmp_path / "out" / "bad").exists()
    assert "bad.wav: not a readable audio file" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_missing_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    run = stemkit("separate", str(tmp_path / "missing.mp3"), "-o", str(tmp_path / "out"))
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[0] == f"error: {tmp_path / 'missing.mp3'}: no such file; check the path"
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()


def test_config_errors_exit_2_without_traceback(demo_dir: Path) -> None:
    for args in (["-p", "dsp?nope=1"], ["-p", "unknown_provider"], ["--stems", "cowbell"], ["--format", "ogg"],
                 ["-p", "dsp |"]):
        run = stemkit("separate", str(demo_dir / "mixture.wav"), *args)
        assert run.returncode == 2, (args, run.stderr)
        assert run.stderr.startswith("error: "), (args, run.stderr)
        assert "Traceback" not in run.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    run = stemkit("--debug", "separate", str(tmp_path / "missing.wav"))
    assert run.returncode == 1
    assert "Traceback" in run.stderr


def test_usage_errors_exit_2() -> None:
    run = stemkit("separate")
    assert run.returncode == 2
    assert "Missing argument" in run.stderr


def test_stemkit_provider_sets_the_default(demo_dir: Path, tmp_path: Path) -> None:
    run = stemkit("separate", str(demo_dir / "mixture.wav"), "-o", str(tmp_path), env={"STEMKIT_PROVIDER": "nosuch"})
    assert run.returncode == 2
    assert "'nosuch' is not installed" in run.stderr


def test_file_names_with_brackets_print_as_they_are(demo_dir: Path, tmp_path: Path) -> None:
    song = tmp_path / "Song [Live] [2024].wav"
    song.write_bytes((demo_dir / "mixture.wav").read_bytes())
    run = stemkit("separate", str(song), "-o", str(tmp_path / "out"), "--stems", "vocals")
    assert run.returncode == 0, run.stderr
    assert "Song [Live] [2024]" in run.stdout
    assert (tmp_path / "out" / "Song [Live] [2024]" / "vocals.wav").exists()
    bad = tmp_path / "Broken [Demo].wav"
    bad.write_text("not audio")
    run = stemkit("separate", str(bad), "-o", str(tmp_path / "out"))
    assert "Broken [Demo].wav: not a readable audio file" in run.stderr
