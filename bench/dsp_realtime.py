"""Real-time factor of the dsp baseline on a 3-minute stereo 44.1 kHz song (goal: at least 20x real time).

Run: .venv/bin/python bench/dsp_realtime.py [--seconds 180] [--runs 5]
The song is the synthesized demo song (synthesis is not timed); each run is a full stemkit.separate() call
on the WAV file: decode, separate, normalize. Reports the median over runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import stemkit
from stemkit.demo import make_demo


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        mixture = make_demo(Path(tmp), seconds=args.seconds)
        stemkit.separate(mixture)  # warm-up: imports and first-call costs are not the steady state
        samples = []
        for _ in range(args.runs):
            start = time.perf_counter()
            result = stemkit.separate(mixture)
            for stem in result.values():
                _ = stem.audio
            samples.append(time.perf_counter() - start)
    median = statistics.median(samples)
    print(json.dumps({
        "song_seconds": args.seconds,
        "runs": args.runs,
        "median_seconds": round(median, 3),
        "min_seconds": round(min(samples), 3),
        "realtime_factor": round(args.seconds / median, 1),
        "goal_realtime_factor": 20,
    }, indent=2))


if __name__ == "__main__":
    main()
