"""The driver's progress and manifest on their own (no Ray): a 50,000-song run is counters and a streamed
file, with throughput and time left from the recent songs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from stemkit.errors import ConfigError
from stemkit_ray.manifest import FIELDS, ROW_GROUP, ManifestWriter
from stemkit_ray.progress import ProgressBar, Tally


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_fifty_thousand_song_run_counts_every_outcome_with_throughput_and_time_left() -> None:
    clock = Clock()
    tally = Tally(50_000, clock=clock)
    assert tally.rate() is None
    assert tally.eta() is None
    for index in range(40_000):
        clock.now += 0.5  # two songs a second
        tally.add("failed" if index % 100 == 0 else "cached" if index % 10 == 0 else "ok")
    assert (tally.done, tally.cached, tally.failed, tally.finished) == (36_000, 3_600, 400, 40_000)
    assert tally.rate() == pytest.approx(2.0)
    assert tally.eta() == pytest.approx(5_000.0)  # 10,000 songs left at 2 a second
    assert len(tally._recent) <= 256  # constant memory, whatever the length of the run
    clock.now += 1.0
    for _ in range(300):  # the cluster scaled up: the rate follows the recent songs
        clock.now += 0.1
        tally.add("ok")
    assert tally.rate() == pytest.approx(10.0)
    assert tally.describe() == "40300/50000 songs: 36300 done, 3600 cached, 400 failed; 600.0 songs/min, 16:10 left"


def test_off_a_terminal_progress_is_a_log_line_now_and_then(caplog: pytest.LogCaptureFixture) -> None:
    tally = Tally(3)
    caplog.set_level(logging.INFO, logger="stemkit.ray")
    with ProgressBar(tally, show=False, log_every=3600.0) as bar:
        for status in ("ok", "cached", "failed"):
            tally.add(status)
            bar.update()
    lines = [r.getMessage() for r in caplog.records if r.name == "stemkit.ray"]
    assert len(lines) == 1  # the closing summary only: the interval did not pass
    assert lines[0].startswith("3/3 songs: 1 done, 1 cached, 1 failed; ")


def _row(index: int) -> dict[str, object]:
    return {"input": f"songs/{index}.wav", "name": str(index), "status": "ok", "provider": "dsp",
            "stems": {"vocals": f"out/{index}/vocals.wav"}, "cost": None, "cost_unit": None, "seconds": 1.5,
            "error_class": None, "error_message": None, "worker": "node:1", "sha256": "ab"}  # fmt: skip


def test_a_jsonl_manifest_appears_whole_when_the_run_commits(tmp_path: Path) -> None:
    writer = ManifestWriter(tmp_path / "manifest.jsonl")
    writer.add(_row(1))
    assert not (tmp_path / "manifest.jsonl").exists()  # only a hidden temporary file while the run goes on
    writer.add(_row(2))
    writer.commit()
    rows = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert [row["name"] for row in rows] == ["1", "2"]
    assert list(rows[0]) == list(FIELDS)
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.jsonl"]


def test_a_parquet_manifest_is_written_in_row_groups(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    writer = ManifestWriter(tmp_path / "manifest.parquet")
    for index in range(ROW_GROUP + 5):
        writer.add(_row(index))
    writer.commit()
    table = pq.read_table(tmp_path / "manifest.parquet")
    assert table.num_rows == ROW_GROUP + 5
    assert table.column_names == list(FIELDS)
    assert json.loads(table.column("stems")[3].as_py()) == {"vocals": "out/3/vocals.wav"}
    assert pq.ParquetFile(tmp_path / "manifest.parquet").num_row_groups == 2


def test_a_run_that_stops_leaves_no_manifest(tmp_path: Path) -> None:
    writer = ManifestWriter(tmp_path / "manifest.jsonl")
    writer.add(_row(1))
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_manifest_name_must_say_its_format(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\.jsonl or \.parquet"):
        ManifestWriter(tmp_path / "manifest.csv")
