"""``stemkit separate --cache/--no-cache``, ``stemkit cache info|prune|clear`` and ``stemkit jobs list``, in a
subprocess: exit codes, what they print, what they leave on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from stemkit.ledger import JobLedger, JobRequest
from stemkit.provenance import Cost


def stemkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stemkit", *args], capture_output=True, text=True,
                          env=dict(os.environ), stdin=subprocess.DEVNULL, check=False)  # fmt: skip


def test_separate_with_a_cache_folder_answers_a_re_run_from_it(songs: list[Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    folder = songs[0].parent
    first = stemkit("separate", str(folder), "--stems", "vocals", "-o", str(tmp_path / "a"), "--cache", str(cache))
    assert first.returncode == 0, first.stderr
    assert "ok (cached)" not in first.stderr
    again = stemkit("separate", str(folder), "--stems", "vocals", "-o", str(tmp_path / "b"), "--cache", str(cache))
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("ok (cached)") == 3
    for song in songs:  # the same samples (the headers differ: libsndfile stamps the time in a PEAK chunk)
        a, _ = sf.read(tmp_path / "a" / song.stem / "vocals.wav", dtype="float32")
        b, _ = sf.read(tmp_path / "b" / song.stem / "vocals.wav", dtype="float32")
        assert np.array_equal(a, b)
    info = stemkit("cache", "info", "--dir", str(cache), "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["entries"] == 3


def test_no_cache_and_a_cache_folder_together_are_a_usage_error(song: Path, tmp_path: Path) -> None:
    run = stemkit("separate", str(song), "--cache", str(tmp_path / "c"), "--no-cache", "-o", str(tmp_path / "o"))
    assert run.returncode == 2
    assert "--no-cache" in run.stderr
    assert "Traceback" not in run.stderr


def test_cache_info_prune_and_clear(song: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for stems in ("vocals", "drums"):
        assert stemkit("separate", str(song), "--stems", stems, "-o", str(tmp_path / "o"), "--cache",
                       str(cache)).returncode == 0  # fmt: skip
    info = stemkit("cache", "info", "--dir", str(cache))
    assert info.returncode == 0
    assert "entries:   2" in info.stdout
    assert str(cache) in info.stdout
    prune = stemkit("cache", "prune", "--dir", str(cache), "--max-size", "1")
    assert prune.returncode == 0, prune.stderr
    assert "removed 2 result(s)" in prune.stdout
    assert stemkit("separate", str(song), "--stems", "bass", "-o", str(tmp_path / "o"), "--cache",
                   str(cache)).returncode == 0  # fmt: skip
    refused = stemkit("cache", "clear", "--dir", str(cache))
    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    cleared = stemkit("cache", "clear", "--dir", str(cache), "--yes")
    assert cleared.returncode == 0
    assert "removed 1 result(s)" in cleared.stderr
    bad = stemkit("cache", "prune", "--dir", str(cache), "--max-size", "lots")
    assert bad.returncode == 2
    assert "not a size" in bad.stderr


def test_jobs_list_shows_provider_input_age_status_and_cost(tmp_path: Path) -> None:
    ledger = JobLedger()
    done = ledger.begin(JobRequest("stemsplit", "stemsplit", "1" * 64, ("vocals",), input_name="/music/a.wav"))
    ledger.submitted(done.id, "job_done")
    ledger.finished(done.id, Cost(31.0, "seconds"))
    pending = ledger.begin(JobRequest("ezstems", "ezstems?stems=2", "2" * 64, None, input_name="b.mp3"))
    ledger.submitted(pending.id, "job_waiting")
    listed = stemkit("jobs", "list")
    assert listed.returncode == 0, listed.stderr
    for text in ("stemsplit", "a.wav", "31 seconds", "finished", "ezstems", "b.mp3", "submitted", "job_waiting"):
        assert text in listed.stdout
    only = json.loads(stemkit("jobs", "list", "--status", "pending", "--json").stdout)
    assert [(j["provider"], j["status"], j["job_id"]) for j in only] == [("ezstems", "submitted", "job_waiting")]
    bad = stemkit("jobs", "list", "--status", "lost")
    assert bad.returncode == 2
    assert "pending, finished, failed" in bad.stderr
    empty = tmp_path / "empty.sqlite3"
    assert "no jobs" in stemkit("jobs", "list", "--ledger", str(empty)).stdout
