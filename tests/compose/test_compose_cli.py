"""Composed specs on the command line: ``stemkit separate -p`` takes ensembles and pipelines, and a
malformed one is a one-line error with exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import soundfile as sf


def stemkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stemkit", *args], capture_output=True, text=True, check=False,
                          env={**os.environ, "COLUMNS": "160"})


def test_separate_takes_an_ensemble_and_a_pipeline(song: Path, tmp_path: Path) -> None:
    run = stemkit("separate", str(song), "-p", "(dsp + dsp?kernel=31)?method=median", "--stems", "vocals,instrumental",
                  "-o", str(tmp_path / "ens"))
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "ens" / "mixture").iterdir()) == ["instrumental.wav", "vocals.wav"]
    run = stemkit("separate", str(song), "-p", "dsp[vocals,instrumental] >[instrumental] dsp[drums]",
                  "-o", str(tmp_path / "pipe"))
    assert run.returncode == 0, run.stderr
    out = tmp_path / "pipe" / "mixture"
    assert sorted(p.name for p in out.iterdir()) == ["drums.wav", "other.wav", "vocals.wav"]
    assert sf.info(out / "drums.wav").frames == sf.info(song).frames


def test_a_malformed_composed_spec_is_one_line_and_exit_2(song: Path, tmp_path: Path) -> None:
    run = stemkit("separate", str(song), "-p", "dsp + (dsp | ", "-o", str(tmp_path))
    assert run.returncode == 2
    assert "empty link after '|'" in run.stderr
    assert "Traceback" not in run.stderr
