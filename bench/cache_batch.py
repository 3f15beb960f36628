"""Result cache, batch re-run: 16 songs through the StemSplit emulator (its own process, 2 s of processing per
job), ``separate_many(concurrency=4)`` cold (empty cache) and again warm (same cache).

    .venv/bin/python bench/cache_batch.py [--runs 3] [--songs 16] [--seconds 30]

Goals (issue 12): the warm re-run takes at most 5 % of the cold run's wall time and makes 0 provider
requests (asserted at the emulator: no new job, no credit used). Each run starts from an empty cache folder.
Also reported: the warm re-run when it writes every stem to an output folder again (``stemkit separate -o``),
and the client process's CPU time (``time.process_time``) beside wall time.
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

import httpx

import stemkit
from stemkit.demo import make_demo
from stemkit.hosted import PollPolicy

sys.path.insert(0, str(Path(__file__).parent))
from _emulators import emulator

KEY = "sk_test_emulator"
CONCURRENCY, PROCESSING = 4, 2.0


def provider_state(base_url: str) -> tuple[int, int]:
    """(jobs the emulator holds, credits left): what a request to the provider would change."""
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
        jobs = client.get("/jobs", params={"limit": 1}).json()["pagination"]["total"]
        credits = client.get("/balance").json()["balanceSeconds"]
    return int(jobs), int(credits)


def batch(folder: Path, base_url: str, cache: Path, output: Path | None) -> tuple[float, float, list[Any]]:
    with stemkit.load(f"stemsplit?base_url={base_url}&format=wav", api_key=KEY, poll=PollPolicy(),
                      cache=cache) as sep:  # fmt: skip
        wall, cpu = time.perf_counter(), time.process_time()
        items = list(stemkit.separate_many([folder], sep, concurrency=CONCURRENCY, output_dir=output))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert all(item.ok for item in items), [str(item.error) for item in items if not item.ok]
    return wall, cpu, items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--songs", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stemkit-bench-cache-"))
    rows: list[dict[str, float]] = []
    try:
        folder = work / "songs"
        folder.mkdir()
        for i in range(args.songs):  # different songs: a different seed each
            shutil.move(make_demo(work / f"demo{i}", seconds=args.seconds, seed=i), folder / f"song{i:02d}.wav")
        with emulator("stemsplit", "--processing-seconds", str(PROCESSING), "--option", "rate_limit=100000",
                      "--option", "credits=1000000") as base_url:  # fmt: skip
            for run in range(args.runs):
                cache = work / f"cache-{run}"
                cold_wall, cold_cpu, _ = batch(folder, base_url, cache, None)
                before = provider_state(base_url)
                warm_wall, warm_cpu, items = batch(folder, base_url, cache, None)
                assert all(item.result is not None and item.result.provenance.cache for item in items)
                out_wall, out_cpu, _ = batch(folder, base_url, cache, work / f"out-{run}")
                after = provider_state(base_url)
                rows.append({
                    "cold_wall": cold_wall, "cold_cpu": cold_cpu, "warm_wall": warm_wall, "warm_cpu": warm_cpu,
                    "warm_out_wall": out_wall, "warm_out_cpu": out_cpu,
                    "new_jobs": after[0] - before[0], "credits_used": before[1] - after[1],
                })  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def median(name: str) -> float:
        return statistics.median(row[name] for row in rows)

    print(json.dumps({
        "songs": args.songs, "song_seconds": args.seconds, "concurrency": CONCURRENCY,
        "processing_seconds": PROCESSING, "runs": args.runs,
        "cold_wall_s": round(median("cold_wall"), 3), "cold_cpu_s": round(median("cold_cpu"), 3),
        "warm_wall_s": round(median("warm_wall"), 3), "warm_cpu_s": round(median("warm_cpu"), 3),
        "warm_ratio": round(statistics.median(r["warm_wall"] / r["cold_wall"] for r in rows), 4),
        "warm_with_outputs_wall_s": round(median("warm_out_wall"), 3),
        "warm_with_outputs_cpu_s": round(median("warm_out_cpu"), 3),
        "warm_with_outputs_ratio": round(statistics.median(r["warm_out_wall"] / r["cold_wall"] for r in rows), 4),
        "provider_jobs_on_warm_runs": max(int(r["new_jobs"]) for r in rows),
        "credits_used_on_warm_runs": max(int(r["credits_used"]) for r in rows),
        "goal_ratio": 0.05, "goal_requests": 0,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
