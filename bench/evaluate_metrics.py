"""SDR + SI-SDR of 4 stereo stems of a 3-minute 44.1 kHz song; museval's BSSEval v4 of the same stems beside it.

    .venv/bin/python bench/evaluate_metrics.py [--runs 7] [--seconds 180] [--museval-runs 1]

Goal (issue 7): SDR + SI-SDR under 0.5 s. museval needs ffmpeg/ffprobe on PATH to import; without them its
row says why it was skipped.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from stemkit.errors import ConfigError
from stemkit.evaluate.bsseval import load_museval
from stemkit.evaluate.metrics import sdr, sdr_and_si_sdr, si_sdr


def _median_time(fn, runs: int) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--museval-runs", type=int, default=1)
    args = parser.parse_args()
    rate = 44_100
    frames = int(args.seconds * rate)
    rng = np.random.default_rng(0)
    refs = rng.standard_normal((4, 2, frames), dtype=np.float32) * np.float32(0.1)
    ests = refs + rng.standard_normal((4, 2, frames), dtype=np.float32) * np.float32(0.03)
    print(f"4 stereo stems x {args.seconds:g} s at {rate} Hz (float32), {args.runs} runs, median [min-max]")

    def separately() -> None:
        sdr(refs, ests)
        si_sdr(refs, ests)

    med, lo, hi = _median_time(separately, args.runs)
    print(f"stemkit sdr() + si_sdr()        {med:7.3f} s  [{lo:.3f}-{hi:.3f}]   goal < 0.5 s")
    med_one, lo, hi = _median_time(lambda: sdr_and_si_sdr(refs, ests), args.runs)
    print(f"stemkit sdr_and_si_sdr() (1 pass){med_one:7.3f} s  [{lo:.3f}-{hi:.3f}]")
    try:
        museval = load_museval()
    except ConfigError as exc:
        print(f"museval BSSEval v4               skipped: {exc}")
        return
    ref_t = np.ascontiguousarray(refs.transpose(0, 2, 1), dtype=np.float64)
    est_t = np.ascontiguousarray(ests.transpose(0, 2, 1), dtype=np.float64)

    def bss() -> None:
        museval.evaluate(ref_t, est_t, win=rate, hop=rate, mode="v4")

    med_m, lo, hi = _median_time(bss, args.museval_runs)
    print(f"museval BSSEval v4 (same stems)  {med_m:7.3f} s  [{lo:.3f}-{hi:.3f}]  ({args.museval_runs} run(s))")
    print(f"ratio museval / stemkit sdr+si-sdr: {med_m / med:.0f}x")


if __name__ == "__main__":
    main()
