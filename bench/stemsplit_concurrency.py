"""8 songs separated concurrently with StemSplit (async) take at most 2x the time of one.

The emulator runs as its own process with 3 s of processing per job (the hosted service runs jobs in
parallel; the emulator also does a real dsp separation per job on this machine's CPU) and a raised rate
limit (``--option rate_limit=600``: eight concurrent jobs at the documented 60 requests/minute would be
throttled by the service, which is the service's limit, not the client's). Median of 3 runs each.

    .venv/bin/python bench/stemsplit_concurrency.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _stemsplit_common import KEY, demo_song, emulator

RUNS = 3


async def batch(base_url: str, song: Path, n: int) -> float:
    from stemkit_stemsplit import StemSplitSeparator

    with StemSplitSeparator(options={"base_url": base_url}, api_key=KEY) as sep:
        started = time.perf_counter()
        results = await asyncio.gather(*(sep.aseparate(song, stems=["vocals", "drums"]) for _ in range(n)))
        for result in results:
            _ = result["vocals"].audio  # decoded and normalized, like a caller would use it
        return time.perf_counter() - started


def main() -> None:
    song = demo_song(5.0)
    with emulator("--processing-seconds", "3", "--option", "rate_limit=600") as base_url:
        one = statistics.median(asyncio.run(batch(base_url, song, 1)) for _ in range(RUNS))
        eight = statistics.median(asyncio.run(batch(base_url, song, 8)) for _ in range(RUNS))
    print(f"1 song: {one:.2f} s, 8 songs concurrently: {eight:.2f} s, ratio {eight / one:.2f} (goal <= 2.0)")
    print("PASS" if eight / one <= 2.0 else "FAIL")


if __name__ == "__main__":
    main()
