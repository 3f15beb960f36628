"""Ray engine, hosted at scale: a batch through the StemSplit emulator at its documented limit (60 API
requests a minute per key), with many jobs in flight on two actors, never receives a 429.

    .venv/bin/python bench/ray_hosted_ratelimit.py [--songs 24] [--actors 2] [--calls 8]

Each job takes at least three API requests (upload URL, job creation, status), so 24 songs need more than a
minute's allowance and the cluster-wide limiter must spread them. The emulator runs in this process (its
request log is read directly), 0.5 s of processing per job; the workers reach it over loopback. Reported: the
songs done, the API requests and the 429 answers the emulator gave, the busiest 60-second window the emulator
saw, the wall time, and the CPU time of every process of the run.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import stemkit
from stemkit_stemsplit.emulator import DEFAULT_API_KEY, EmulatorConfig, StemSplitEmulator

sys.path.insert(0, str(Path(__file__).parent))
from _ray_common import TreeCpu, songs, start_ray


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--songs", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--calls", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("STEMSPLIT_API_KEY", DEFAULT_API_KEY)  # workers inherit it from the process starting Ray
    paths = songs(args.songs, args.seconds)
    start_ray()
    emulator = StemSplitEmulator(EmulatorConfig(processing_seconds=0.5, queue_seconds=0.0, rate_limit=60))
    out = Path(tempfile.mkdtemp(prefix="stemkit-bench-ray-hosted-"))
    options = {"actors": args.actors, "calls_per_actor": args.calls, "task_cpus": 0.25, "progress_bar": False}
    with emulator.serve() as server, TreeCpu() as cpu:
        spec = f"stemsplit?base_url={server.base_url}&format=wav"
        start = time.perf_counter()
        done = sum(item.ok for item in stemkit.separate_many(
            paths, spec, stems=["vocals", "instrumental"], output_dir=out, cache=False,
            concurrency=args.actors * args.calls, engine="ray", engine_options=options,
        ))  # fmt: skip
        wall = time.perf_counter() - start
        api = sorted(r.at for r in emulator.recorder.requests if r.path.startswith("/api/v1"))
        refused = sum(1 for r in emulator.recorder.requests if r.status == 429)
    busiest = max(bisect.bisect_left(api, t + 60.0) - i for i, t in enumerate(api)) if api else 0
    report = {
        "songs": args.songs, "done": done, "actors": args.actors, "jobs_per_actor": args.calls,
        "api_requests": len(api), "answers_429": refused, "busiest_60s_window": busiest, "limit": 60,
        "wall_s": round(wall, 1), "cpu_s": round(cpu.seconds, 1),
        "requests_per_minute": round(len(api) / wall * 60, 1),
    }  # fmt: skip
    print(json.dumps(report, indent=2))
    return 0 if refused == 0 and done == args.songs else 1


if __name__ == "__main__":
    sys.exit(main())
