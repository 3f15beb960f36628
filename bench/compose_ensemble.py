"""A two-member hosted ensemble (StemSplit + EzStems) takes at most 1.2x the time of its slower member; and
what combining costs, per method, on a 3-minute song.

Both emulators run as their own processes (``stemkit emulate``), each with the same emulated processing time
per job (the services run jobs on their own machines; the emulators also run a real dsp separation per job
on this one). Per run, side by side: StemSplit alone, EzStems alone, and the mean ensemble of both, all
four stems, through the async API (what ``separate`` runs too). The figure is the median over runs of
``ensemble / max(stemsplit, ezstems)``: members that run concurrently cost the slower one plus the
combination. Wall time and this process's CPU time (upload, download, decoding, alignment, combining) are
both reported.

The combination cost (no goal; figures for the docs): two members' estimates of one stereo stem of a
3-minute song (44.1 kHz), combined with each method, median of ``--runs`` (wall and CPU).

    .venv/bin/python bench/compose_ensemble.py [--runs 5] [--processing 3.0] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _emulators import emulator
from _stemsplit_common import demo_song

import stemkit

STEMSPLIT_KEY = "sk_test_emulator"
EZSTEMS_KEY = "ezstems_test_emulator"
STEMS = ["vocals", "drums", "bass", "other"]


def load(spec: str, kwargs: dict[str, dict[str, Any]]) -> stemkit.Separator:
    """A provider gets its keywords directly; an ensemble per provider."""
    if len(kwargs) == 1:
        return stemkit.load(spec, **next(iter(kwargs.values())))
    return stemkit.load(spec, provider_kwargs=kwargs)


async def timed(spec: str, song: Path, kwargs: dict[str, dict[str, Any]]) -> tuple[float, float]:
    """(wall, CPU) seconds of one separation with every stem decoded, as a caller would use them."""
    with load(spec, kwargs) as sep:
        wall, cpu = time.perf_counter(), time.process_time()
        result = await sep.aseparate(song, stems=STEMS)
        for name in result:
            _ = result[name].audio
        return time.perf_counter() - wall, time.process_time() - cpu


def combination_cost(runs: int) -> dict[str, dict[str, float]]:
    import numpy as np
    import scipy.signal  # noqa: F401  (imported once, outside the timings)

    from stemkit.compose.combine import METHODS, Aligned, combine

    frames = 180 * 44_100
    rng = np.random.default_rng(0)
    members = [Aligned((rng.standard_normal((2, frames)) * 0.1).astype(np.float32)) for _ in range(2)]
    out = {}
    for method in METHODS:
        walls, cpus = [], []
        for _ in range(runs):
            wall, cpu = time.perf_counter(), time.process_time()
            combine(members, [1.0, 1.0], method, frames=frames, sample_rate=44_100)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        out[method] = {"wall_s": round(statistics.median(walls), 3), "cpu_s": round(statistics.median(cpus), 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--processing", type=float, default=3.0, help="emulated processing seconds per job")
    parser.add_argument("--seconds", type=float, default=10.0, help="song length")
    args = parser.parse_args()
    song = demo_song(args.seconds)
    processing = ("--processing-seconds", str(args.processing))
    with (
        emulator("stemsplit", *processing, "--option", "rate_limit=600") as split_url,
        emulator("ezstems", *processing, "--option", "workers=4", "--option", "plan=custom") as ez_url,
    ):
        split = f"stemsplit?base_url={split_url}&format=wav"
        ez = f"ezstems?base_url={ez_url}&stems=4"
        both = f"{split} + {ez}"
        kwargs = {"stemsplit": {"api_key": STEMSPLIT_KEY}, "ezstems": {"api_key": EZSTEMS_KEY}}
        asyncio.run(timed(both, song, kwargs))  # warm: imports, connections, the emulators' first separations
        rows = []
        for _ in range(args.runs):
            a = asyncio.run(timed(split, song, {"stemsplit": kwargs["stemsplit"]}))
            b = asyncio.run(timed(ez, song, {"ezstems": kwargs["ezstems"]}))
            e = asyncio.run(timed(both, song, kwargs))
            rows.append({"stemsplit": a, "ezstems": b, "ensemble": e, "ratio": e[0] / max(a[0], b[0])})
    figures = {
        "song_seconds": args.seconds,
        "processing_seconds": args.processing,
        "runs": args.runs,
        **{
            f"{name}_wall_s": round(statistics.median(r[name][0] for r in rows), 3)
            for name in ("stemsplit", "ezstems", "ensemble")
        },
        **{
            f"{name}_cpu_s": round(statistics.median(r[name][1] for r in rows), 3)
            for name in ("stemsplit", "ezstems", "ensemble")
        },
        "ratio_to_slower_member_median": round(statistics.median(r["ratio"] for r in rows), 3),
        "ratio_max": round(max(r["ratio"] for r in rows), 3),
        "combine_one_stem_two_members_3min": combination_cost(max(1, args.runs // 2)),
    }
    print(json.dumps(figures, indent=2))
    ratio = figures["ratio_to_slower_member_median"]
    print(f"ensemble / slower member: {ratio:.2f} (goal <= 1.2) — {'PASS' if ratio <= 1.2 else 'FAIL'}")


if __name__ == "__main__":
    main()
