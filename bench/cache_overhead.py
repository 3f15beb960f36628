"""Result cache, cost of a miss: a dsp separation of a 3-minute stereo 44.1 kHz song with an empty cache
(separate, then store the stems) against the same separation without a cache.

    .venv/bin/python bench/cache_overhead.py [--runs 5] [--seconds 180]

Goal (issue 12): a miss costs at most 3 % more than no cache. Runs alternate (no cache, miss) so drifting load
hits both alike; every miss gets a fresh, empty cache folder. A local provider's in-memory result is stored
by a background writer (write-behind), so three figures: ``call`` — until ``separate`` returns (what the
caller waits for); ``call_until_stored`` — until the entry is on disk too (the whole cost, as a batch on a
busy machine pays it); ``store_only`` — ``ResultCache.put`` of an uncached result, timed by itself (the
cache's own work). Wall and CPU time (``time.process_time``, all threads) are reported; ratios are of
medians.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import stemkit
from stemkit.demo import make_demo


def timed(song: Path, cache: Path | None, until_stored: bool) -> tuple[float, float]:
    from stemkit.cache import ResultCache

    wall, cpu = time.perf_counter(), time.process_time()
    result = stemkit.separate(song, provider="dsp", cache=False if cache is None else cache)
    if until_stored and cache is not None:
        ResultCache(cache).flush()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if cache is not None:
        ResultCache(cache).flush()  # never let a store run into the next measurement
    result.close()
    return wall, cpu


def store_only(song: Path, work: Path, runs: int) -> dict[str, float]:
    from stemkit.cache import ResultCache

    plain_w, plain_c, put_w, put_c = [], [], [], []
    for run in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = stemkit.separate(song, provider="dsp", cache=False)
        plain_w.append(time.perf_counter() - wall)
        plain_c.append(time.process_time() - cpu)
        cache = ResultCache(work / f"store-{run}")
        wall, cpu = time.perf_counter(), time.process_time()
        stored = cache.put(f"{run:064x}", result)
        put_w.append(time.perf_counter() - wall)
        put_c.append(time.process_time() - cpu)
        assert stored is not None
        stored.close()
        result.close()
        shutil.rmtree(work / f"store-{run}", ignore_errors=True)
    pw, pc, sw, sc = (statistics.median(x) for x in (plain_w, plain_c, put_w, put_c))
    return {
        "separation_wall_s": round(pw, 3), "store_wall_s": round(sw, 3), "overhead_wall": round(sw / pw, 4),
        "separation_cpu_s": round(pc, 3), "store_cpu_s": round(sc, 3), "overhead_cpu": round(sc / pc, 4),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=180.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stemkit-bench-overhead-"))
    figures: dict[str, dict[str, list[float]]] = {}
    try:
        song = make_demo(work / "demo", seconds=args.seconds)
        stemkit.separate(song, provider="dsp", cache=work / "warm-up")  # imports and first-call costs
        for until_stored in (False, True):
            plain_w, plain_c, miss_w, miss_c = [], [], [], []
            for run in range(args.runs):
                w, c = timed(song, None, until_stored)
                plain_w.append(w)
                plain_c.append(c)
                cache = work / f"cache-{until_stored}-{run}"
                w, c = timed(song, cache, until_stored)
                miss_w.append(w)
                miss_c.append(c)
                shutil.rmtree(cache, ignore_errors=True)
            figures["call_until_stored" if until_stored else "call"] = {
                "plain_wall": plain_w, "plain_cpu": plain_c, "miss_wall": miss_w, "miss_cpu": miss_c,
            }  # fmt: skip
        stored = store_only(song, work, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out: dict[str, object] = {"song_seconds": args.seconds, "runs": args.runs, "goal_overhead": 0.03}
    for name, f in figures.items():
        pw, pc = statistics.median(f["plain_wall"]), statistics.median(f["plain_cpu"])
        mw, mc = statistics.median(f["miss_wall"]), statistics.median(f["miss_cpu"])
        out[name] = {
            "no_cache_wall_s": round(pw, 3), "miss_wall_s": round(mw, 3), "overhead_wall": round(mw / pw - 1, 4),
            "no_cache_cpu_s": round(pc, 3), "miss_cpu_s": round(mc, 3), "overhead_cpu": round(mc / pc - 1, 4),
        }  # fmt: skip
    out["store_only"] = stored
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
