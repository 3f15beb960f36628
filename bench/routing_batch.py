"""Fallback chain + batch: 16 demo songs across the StemSplit and EzStems emulators (2 s of processing per
job) with concurrency 8 — wall time against the ideal (16 / 8 x one job) — and the router's own overhead.

    .venv/bin/python bench/routing_batch.py [--runs 3]

Both emulators run as separate processes (`stemkit emulate`), as a real service would be elsewhere. The
StemSplit emulator refuses the first 8 job creations with 503 and the StemSplit transport is set to one
attempt, so 8 songs fall back to EzStems through the chain `stemsplit | ezstems` and 8 stay on StemSplit.
"One job" is the median single-song time through each provider alone; the ideal uses their mean.
The router overhead is the median extra time per call of a one-member chain over calling that member
directly, with a trivial local provider (so the provider's own work does not drown it).
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

import numpy as np

import stemkit
from stemkit.hosted import PollPolicy, RetryPolicy
from stemkit.protocol import Capabilities
from stemkit.provider import RawResult, SeparationJob, SeparatorBase
from stemkit.routing import BreakerSettings, Chain

sys.path.insert(0, str(Path(__file__).parent))
from _emulators import emulator

SONGS, CONCURRENCY, PROCESSING = 16, 8, 2.0


def kwargs(attempts: int) -> dict[str, dict[str, object]]:
    poll = PollPolicy()  # default polling: what a user gets
    return {
        "stemsplit": {"api_key": "sk_test_emulator", "retry": RetryPolicy(max_attempts=attempts), "poll": poll},
        "ezstems": {"api_key": "ezstems_test_emulator", "poll": poll},
    }


def one_job(spec: str, song: Path, runs: int) -> float:
    times = []
    # No result cache: the same song is separated again and again, and each time must reach the provider.
    with stemkit.load(spec, provider_kwargs=kwargs(4), cache=False) if "|" in spec else stemkit.load(
        spec, cache=False, **kwargs(4)[spec.split("?", maxsplit=1)[0]]
    ) as sep:
        for _ in range(runs):
            start = time.perf_counter()
            sep.separate(song, stems=["vocals"])
            times.append(time.perf_counter() - start)
    return statistics.median(times)


class Trivial(SeparatorBase):
    name = "trivial"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(combinations=(("vocals", "instrumental"),))

    def _separate(self, job: SeparationJob) -> RawResult:
        audio = job.source.read()
        return RawResult({"vocals": audio, "instrumental": audio}, sample_rate=job.source.sample_rate)


def router_overhead(calls: int = 300) -> float:
    audio = np.zeros((2, 4410), dtype=np.float32)
    member = Trivial()
    chain = Chain([member])
    direct, chained = [], []
    for _ in range(calls):
        start = time.perf_counter()
        member.separate(audio, sample_rate=44_100)
        direct.append(time.perf_counter() - start)
        start = time.perf_counter()
        chain.separate(audio, sample_rate=44_100)
        chained.append(time.perf_counter() - start)
    return statistics.median(chained) - statistics.median(direct)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stemkit-bench-routing-"))
    try:
        from stemkit.demo import make_demo

        song = make_demo(work / "demo", seconds=5.0)
        folder = work / "songs"
        folder.mkdir()
        for i in range(SONGS):
            shutil.copy(song, folder / f"song{i:02d}.wav")
        fault = f"5xx:status=503,count={SONGS // 2},path=/jobs,method=POST"
        common = ["--processing-seconds", str(PROCESSING)]
        walls, shares = [], []
        with (
            emulator("ezstems", *common, "--option", f"workers={CONCURRENCY}") as ez_url,
            emulator("stemsplit", *common, "--option", "rate_limit=100000") as clean_url,
        ):
            one_ss = one_job(f"stemsplit?base_url={clean_url}&format=wav", song, args.runs)
            one_ez = one_job(f"ezstems?base_url={ez_url}&stems=2", song, args.runs)
            for _ in range(args.runs):
                with emulator("stemsplit", *common, "--option", "rate_limit=100000", "--fault", fault) as ss_url:
                    # A breaker that never opens: this measures the batch, not the breaker (tested elsewhere).
                    chain = stemkit.load(
                        f"stemsplit?base_url={ss_url}&format=wav | ezstems?base_url={ez_url}&stems=2",
                        provider_kwargs=kwargs(1), breaker=BreakerSettings(failures=1_000_000), cache=False,
                    )
                    start = time.perf_counter()
                    outcomes = list(stemkit.separate_many([folder], chain, concurrency=CONCURRENCY, stems="vocals"))
                    walls.append(time.perf_counter() - start)
                    chain.close()
                assert all(o.ok for o in outcomes), [str(o.error) for o in outcomes if not o.ok]
                shares.append({p: sum(o.provider == p for o in outcomes) for p in ("stemsplit", "ezstems")})
        overhead = router_overhead()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    one = (one_ss + one_ez) / 2
    ideal = SONGS / CONCURRENCY * one
    wall = statistics.median(walls)
    print(json.dumps({
        "songs": SONGS, "concurrency": CONCURRENCY, "processing_seconds": PROCESSING, "runs": args.runs,
        "one_job_stemsplit_s": round(one_ss, 3), "one_job_ezstems_s": round(one_ez, 3),
        "ideal_s": round(ideal, 3), "batch_wall_median_s": round(wall, 3),
        "batch_walls_s": [round(w, 3) for w in walls],
        "ratio_to_ideal": round(wall / ideal, 3), "goal_ratio": 1.5, "served_by": shares,
        "router_overhead_ms_per_call": round(overhead * 1000, 3), "goal_overhead_ms": 5,
    }, indent=2))


if __name__ == "__main__":
    main()
