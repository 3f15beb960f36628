"""Ray engine, scaling: a 16-song dsp batch with 2 separation actors against 1, on this 2-core machine.

    .venv/bin/python bench/ray_scaling.py [--runs 3] [--songs 16] [--seconds 30]

Goal (issue 13): throughput with 2 actors ≥ 1.7× that with 1. Both sides run through the same engine on the
same local Ray (started once, 2 CPUs), alternately, each run writing every stem to a fresh folder, no cache.
Reported per side: wall time of the whole batch (actor start-up included), the steady throughput (songs
finished after the first, over the time between the first and the last), and the CPU time of every process
of the run (driver, raylet, tasks, actors). The ratio is of medians.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import stemkit

sys.path.insert(0, str(Path(__file__).parent))
from _ray_common import TreeCpu, songs, start_ray, wait_idle


def run(paths: list[Path], actors: int) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(prefix="stemkit-bench-ray-out-"))
    options = {"actors": actors, "num_cpus": 0.75, "task_cpus": 0.25, "progress_bar": False, "manifest": None}
    finished = []
    wait_idle()
    with TreeCpu() as cpu:
        start = time.perf_counter()
        for item in stemkit.separate_many(paths, "dsp", output_dir=out, cache=False, engine="ray",
                                          engine_options=options):  # fmt: skip
            assert item.ok, item.error
            finished.append(time.perf_counter())
        wall = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    steady = (len(finished) - 1) / (finished[-1] - finished[0])
    return {"wall_s": wall, "cpu_s": cpu.seconds, "first_song_s": finished[0] - start,
            "songs_per_s_steady": steady, "songs_per_s": len(paths) / wall}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--songs", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    paths = songs(args.songs, args.seconds)
    start_ray()
    for actors in (1, 2):  # warm-up: worker processes started and imported once
        run(paths[:2], actors)
    results: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    for _ in range(args.runs):
        for actors in (1, 2):
            results[actors].append(run(paths, actors))

    def median(actors: int, key: str) -> float:
        return statistics.median(r[key] for r in results[actors])

    report: dict[str, Any] = {
        "songs": args.songs, "song_seconds": args.seconds, "runs": args.runs,
        **{f"{n}_actor{'s' if n > 1 else ''}": {k: round(median(n, k), 3) for k in results[n][0]} for n in (1, 2)},
        "throughput_ratio_wall": round(median(2, "songs_per_s") / median(1, "songs_per_s"), 3),
        "throughput_ratio_steady": round(median(2, "songs_per_s_steady") / median(1, "songs_per_s_steady"), 3),
        "goal": ">= 1.7",
    }  # fmt: skip
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
