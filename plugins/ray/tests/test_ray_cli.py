"""``stemkit separate INPUTS... --engine ray --ray-address ADDR`` in a subprocess, as a user runs it: a new
driver joins the session's running Ray, writes the stems and the manifest, and exits 1 for the bad file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")


def stemkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stemkit", *args], capture_output=True, text=True,
                          env=dict(os.environ), check=False, timeout=300)  # fmt: skip


@pytest.mark.usefixtures("ray_cluster")
def test_the_command_runs_on_a_ray_cluster_by_address(catalogue: Path, tmp_path: Path) -> None:
    address = ray.get_runtime_context().gcs_address
    run = stemkit("separate", str(catalogue), "--engine", "ray", "--ray-address", address, "-o", str(tmp_path),
                  "--stems", "vocals,instrumental")  # fmt: skip
    assert run.returncode == 1, run.stderr  # one input is not audio: a failed row, the rest written
    assert "broken.wav" in run.stderr
    assert "Traceback" not in run.stderr
    for name in ("song0", "song1", "song2", "song3"):
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["instrumental.wav", "vocals.wav"]
        assert f"{tmp_path / name}/" in run.stdout
    rows = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert sorted(row["status"] for row in rows) == ["failed", "ok", "ok", "ok", "ok"]


def test_ray_address_without_the_ray_engine_is_a_usage_error(catalogue: Path, tmp_path: Path) -> None:
    run = stemkit("separate", str(catalogue), "--ray-address", "auto", "-o", str(tmp_path))
    assert run.returncode == 2
    assert "--ray-address is for --engine ray" in run.stderr
    assert not any(tmp_path.iterdir())


def test_an_engine_that_is_not_installed_is_a_usage_error(catalogue: Path, tmp_path: Path) -> None:
    run = stemkit("separate", str(catalogue), "--engine", "spark", "-o", str(tmp_path))
    assert run.returncode == 2
    assert "engine 'spark' is not installed" in run.stderr
    assert "ray" in run.stderr
