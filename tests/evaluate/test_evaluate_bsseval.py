"""BSSEval v4 through museval: its own numbers where it can run, a clear error where it cannot."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stemkit.errors import ConfigError
from stemkit.evaluate.bsseval import BSS_METRICS, bss_eval, load_museval

RATE = 8000
HAVE_MUSEVAL_PACKAGE = importlib.util.find_spec("museval") is not None


def _museval_imports() -> bool:
    try:
        load_museval()
    except ConfigError:
        return False
    return True


def _run_isolated(code: str, path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@pytest.mark.skipif(not HAVE_MUSEVAL_PACKAGE, reason="museval is not installed (the evaluate extra)")
def test_without_ffmpeg_on_path_bss_is_a_config_error_saying_what_to_install(tmp_path: Path) -> None:
    # A PATH with no ffmpeg/ffprobe: museval's real import (musdb -> stempeg) fails, as on a bare machine.
    empty = tmp_path / "bin"
    empty.mkdir()
    code = (
        "from stemkit.errors import ConfigError\n"
        "from stemkit.evaluate.bsseval import load_museval\n"
        "try:\n    load_museval()\nexcept ConfigError as exc:\n    print(exc)\nelse:\n    print('IMPORTED')\n"
    )
    proc = _run_isolated(code, str(empty))
    assert proc.returncode == 0, proc.stderr
    message = proc.stdout.strip()
    assert "ffmpeg and ffprobe" in message
    assert "apt-get install ffmpeg" in message
    assert "leave 'bss' out" in message
    assert "Traceback" not in message


def test_without_museval_bss_is_a_config_error_naming_the_extra() -> None:
    code = (
        "import sys\nsys.modules['museval'] = None\n"
        "from stemkit.errors import ConfigError\n"
        "from stemkit.evaluate.bsseval import load_museval\n"
        "try:\n    load_museval()\nexcept ConfigError as exc:\n    print(exc)\n"
    )
    proc = _run_isolated(code, os.environ.get("PATH", ""))
    assert proc.returncode == 0, proc.stderr
    assert 'pip install "stemkit[evaluate]"' in proc.stdout
    assert "museval" in proc.stdout


def _song(seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    refs = {n: rng.standard_normal((2, 2 * RATE)) for n in ("vocals", "drums")}
    ests = {
        "vocals": refs["vocals"] + 0.3 * refs["drums"] + 0.1 * rng.standard_normal((2, 2 * RATE)),
        "drums": refs["drums"] + 0.2 * rng.standard_normal((2, 2 * RATE)),
    }
    return refs, ests


@pytest.mark.skipif(not _museval_imports(), reason="museval cannot be imported here (not installed, or no ffmpeg)")
def test_bss_numbers_are_musevals_own_frame_medians() -> None:
    import museval

    refs, ests = _song(1)
    got = bss_eval(refs, ests, RATE)
    sdr, isr, sir, sar = museval.evaluate(
        np.stack([refs[n].T for n in refs]), np.stack([ests[n].T for n in refs]), win=RATE, hop=RATE
    )
    for i, name in enumerate(refs):
        for metric, frames in zip(BSS_METRICS, (sdr, sir, isr, sar), strict=True):
            assert got[name][metric] == pytest.approx(float(np.nanmedian(frames[i])), abs=1e-9)
    assert got["vocals"]["bss-sir"] < got["drums"]["bss-sir"]  # the drum leak shows up as interference


@pytest.mark.skipif(not _museval_imports(), reason="museval cannot be imported here (not installed, or no ffmpeg)")
def test_a_silent_stem_gets_nan_and_the_others_are_still_scored() -> None:
    refs, ests = _song(2)
    refs["bass"] = np.zeros((2, 2 * RATE))
    ests["bass"] = np.zeros((2, 2 * RATE))
    got = bss_eval(refs, ests, RATE)
    assert all(np.isnan(got["bass"][m]) for m in BSS_METRICS)
    assert np.isfinite(got["vocals"]["bss-sdr"])


@pytest.mark.skipif(not _museval_imports(), reason="museval cannot be imported here (not installed, or no ffmpeg)")
def test_compare_reports_bss_metrics_per_stem(tmp_path: Path) -> None:
    from stemkit.demo import make_demo
    from stemkit.evaluate import compare

    make_demo(tmp_path, seconds=1.5, sample_rate=RATE)
    report = compare(tmp_path / "mixture.wav", [], references=tmp_path, metrics="bss", stems="vocals,bass")
    assert report.metrics == list(BSS_METRICS)
    assert report.stems == ["vocals", "bass"]
    mixture_sir = report.value("mixture", "mixture", "vocals", "bss-sir")
    oracle_sir = report.value("mixture", "oracle", "vocals", "bss-sir")
    assert oracle_sir > mixture_sir
