"""Ray engine, per-song overhead: the extra cost of each song through the engine against local
``separate_many`` at the same concurrency (dsp, stems written to disk, no cache).

    .venv/bin/python bench/ray_overhead.py [--runs 3] [--concurrency 2] [--small 4] [--large 16] [--seconds 30]

Goal (issue 13): per-song overhead ≤ 10 %. A batch's time is a fixed part (for Ray: starting the actors and the
pipeline; locally: loading the provider) plus a part per song; the per-song part is the slope between a small
and a large batch, ``(T(large) - T(small)) / (large - small)``, measured for both engines, alternately, median of
``--runs``. The fixed part is reported beside it, and the CPU time of every process of the run (driver, Ray's
raylet, tasks and actors) as well as wall time.
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


def batch(paths: list[Path], engine: str, concurrency: int) -> tuple[float, float]:
    out = Path(tempfile.mkdtemp(prefix="stemkit-bench-ray-out-"))
    options = None
    if engine == "ray":
        options = {"num_cpus": 0.75, "task_cpus": 0.25, "progress_bar": False, "manifest": None}
        wait_idle()
    with TreeCpu() as cpu:
        start = time.perf_counter()
        for item in stemkit.separate_many(paths, "dsp", output_dir=out, cache=False, concurrency=concurrency,
                                          engine=engine, engine_options=options):  # fmt: skip
            assert item.ok, item.error
        wall = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    return wall, cpu.seconds


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--small", type=int, default=4)
    parser.add_argument("--large", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    paths = songs(args.large, args.seconds)
    start_ray()
    for engine in ("local", "ray"):  # warm-up: imports, worker processes
        batch(paths[:2], engine, args.concurrency)
    times: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(args.runs):
        for engine in ("local", "ray"):
            for size in (args.small, args.large):
                times.setdefault((engine, size), []).append(batch(paths[:size], engine, args.concurrency))

    def med(engine: str, size: int, which: int) -> float:
        return statistics.median(t[which] for t in times[(engine, size)])

    report: dict[str, Any] = {"concurrency": args.concurrency, "song_seconds": args.seconds, "runs": args.runs}
    per_song: dict[str, dict[str, float]] = {}
    for engine in ("local", "ray"):
        slope = [(med(engine, args.large, w) - med(engine, args.small, w)) / (args.large - args.small) for w in (0, 1)]
        fixed = med(engine, args.small, 0) - args.small * slope[0]
        per_song[engine] = {"wall_s": slope[0], "cpu_s": slope[1]}
        report[engine] = {
            f"batch_{args.small}_wall_s": round(med(engine, args.small, 0), 3),
            f"batch_{args.large}_wall_s": round(med(engine, args.large, 0), 3),
            "per_song_wall_s": round(slope[0], 3),
            "per_song_cpu_s": round(slope[1], 3),
            "fixed_wall_s": round(fixed, 3),
        }
    report["per_song_overhead_wall"] = f"{(per_song['ray']['wall_s'] / per_song['local']['wall_s'] - 1) * 100:+.1f} %"
    report["per_song_overhead_cpu"] = f"{(per_song['ray']['cpu_s'] / per_song['local']['cpu_s'] - 1) * 100:+.1f} %"
    report["goal"] = "<= +10 %"
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
