"""EzStems timing goals: completion noticed within 1 s (median) of the emulator finishing, and 8 concurrent
songs within 2x the time of one.

1. Notice lag: the emulator runs in this process, so its ``finished_at`` and the client's "download" progress
   event share one monotonic clock. Jobs of varied length (so polls fall at every phase) with the plugin's
   default poll policy; the figure is the median lag.
2. Concurrency: the emulator runs in its own process (``--option workers=8``); one ``aseparate`` against eight
   at once (``asyncio.gather``), each processing for the same emulated time; the figure is the ratio of wall
   times, median of the runs.

    .venv/bin/python bench/ezstems_latency.py [--runs 3] [--processing 3.0] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from stemkit.demo import make_demo
from stemkit.protocol import ProgressEvent
from stemkit_ezstems import EzStemsSeparator
from stemkit_ezstems.testing import running_emulator

sys.path.insert(0, str(Path(__file__).parent))
from _emulators import emulator

KEY = "ezstems_test_emulator"


def notice_lags(song: Path, lengths: list[float]) -> list[float]:
    lags = []
    for seconds in lengths:
        with running_emulator(processing_seconds=seconds) as emu:
            noticed: list[float] = []

            def on_progress(event: ProgressEvent, noticed: list[float] = noticed) -> None:
                if event.stage == "download" and not noticed:
                    noticed.append(time.monotonic())

            with EzStemsSeparator(options={"base_url": emu.base_url}, api_key=KEY) as sep:
                stems = sep.separate(song, stems=["vocals"], progress=on_progress)
            finished = emu.state.jobs[stems.provenance.job_id or ""].finished_at
            assert finished is not None
            lags.append(noticed[0] - finished)
    return lags


def concurrency(song: Path, processing: float, runs: int) -> list[tuple[float, float]]:
    results = []
    args = ("--processing-seconds", str(processing), "--option", "workers=8", "--option", "plan=custom")
    with emulator("ezstems", *args) as base_url:
        sep = EzStemsSeparator(options={"base_url": base_url}, api_key=KEY)

        async def batch(n: int) -> float:
            start = time.perf_counter()
            await asyncio.gather(*(sep.aseparate(song, stems=["vocals", "drums", "bass", "other"]) for _ in range(n)))
            return time.perf_counter() - start

        asyncio.run(batch(1))  # warm: imports, first connection, the emulator's first separation
        for _ in range(runs):
            results.append((asyncio.run(batch(1)), asyncio.run(batch(8))))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processing", type=float, default=3.0, help="emulated processing seconds per job")
    parser.add_argument("--seconds", type=float, default=10.0, help="song length")
    args = parser.parse_args()
    song = make_demo(Path(tempfile.mkdtemp(prefix="ezstems-bench-")), seconds=args.seconds)

    lengths = [1.0 + 0.37 * i for i in range(max(args.runs, 3) * 3)]
    lags = notice_lags(song, lengths)
    print(
        f"completion noticed after: median {statistics.median(lags):.2f} s, max {max(lags):.2f} s "
        f"over {len(lags)} jobs (goal: median <= 1 s)"
    )
    pairs = concurrency(song, args.processing, args.runs)
    ratios = [eight / one for one, eight in pairs]
    print(
        f"8 concurrent songs vs 1: median {statistics.median(ratios):.2f}x "
        f"(1 song {statistics.median(o for o, _ in pairs):.2f} s, "
        f"8 songs {statistics.median(e for _, e in pairs):.2f} s; goal <= 2x) "
        f"[runs: {', '.join(f'{r:.2f}' for r in ratios)}]"
    )


if __name__ == "__main__":
    main()
