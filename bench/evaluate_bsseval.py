"""stemkit's native BSSEval v4 against museval, side by side in one run: 4 stereo stems × 3 minutes at 44.1 kHz.

    .venv/bin/python bench/evaluate_bsseval.py [--seconds 180] [--runs 5] [--museval-runs 1] [--no-museval]

Goal (issue 15): ≥ 20× museval's speed, every frame's SDR/SIR/ISR/SAR within 0.01 dB of museval's. The
stems are the synthesized demo song's (genuinely stereo, a noise floor like a recording), the estimates
each reference plus a 0.1 leak of the next stem and a little noise.

Both sides are timed from the same in-memory float64 stems to the per-frame metrics (museval's side is
stemkit's museval backend: museval.evaluate plus building the frames). Wall and CPU time (process time:
every thread, user and system) are both reported; under load, CPU time is the steadier figure. Native
runs are preceded by a short warm-up (imports, FFT plans); each native run prepares the references afresh
and scores one estimate set (what `bss_eval` costs for one provider), then "each further provider" scores
a second estimate set against the prepared references (what each extra provider of a comparison costs),
so the reference-only part is the difference. museval needs ffmpeg on PATH to import (without it, its row
says why it was skipped). The load average is printed before and after: the machine's other work inflates
wall times far more than CPU times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import numpy as np

from stemkit.demo import DEMO_STEMS, synthesize
from stemkit.errors import ConfigError
from stemkit.evaluate.bsseval import BSS_METRICS, BssFrames, BssReferences, bss_eval_frames, load_museval

T = TypeVar("T")


def _timed(fn: Callable[[], T]) -> tuple[T, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} s [{min(values):.2f}-{max(values):.2f}]"


def _deviation(ours: BssFrames, theirs: BssFrames) -> tuple[float, int]:
    """Largest |difference| over the frames where both are finite, and frames where one is NaN and not the other."""
    deviation, mismatched = 0.0, 0
    for stem in ours.stems:
        for metric in BSS_METRICS:
            a, b = ours.values[stem][metric], theirs.values[stem][metric]
            mismatched += int(np.sum(np.isnan(a) != np.isnan(b)))
            finite = np.isfinite(a) & np.isfinite(b)
            deviation = max(deviation, float(np.max(np.abs(a[finite] - b[finite]), initial=0.0)))
    return deviation, mismatched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--museval-runs", type=int, default=1)
    parser.add_argument("--no-museval", action="store_true", help="time the native implementation only")
    args = parser.parse_args()
    rate = 44_100
    song = synthesize(args.seconds, rate)
    refs = {n: song[n].astype(np.float64) for n in DEMO_STEMS}
    rng = np.random.default_rng(0)
    ests = {
        n: refs[n] + 0.1 * refs[DEMO_STEMS[(i + 1) % 4]] + 0.002 * rng.standard_normal(refs[n].shape)
        for i, n in enumerate(DEMO_STEMS)
    }
    others = {n: 0.9 * refs[n] + 0.05 * refs[DEMO_STEMS[(i + 2) % 4]] for i, n in enumerate(DEMO_STEMS)}
    print(f"4 stereo stems x {args.seconds:g} s at {rate} Hz, float64; native: {args.runs} runs (median)")
    print(_load())
    warm = slice(0, min(refs["vocals"].shape[-1], 10 * rate))
    bss_eval_frames({n: r[:, warm] for n, r in refs.items()}, {n: e[:, warm] for n, e in ests.items()}, rate)

    def prepare_and_score() -> tuple[BssReferences, BssFrames]:
        prepared = BssReferences(refs, rate)
        return prepared, prepared.evaluate(ests)

    walls, cpus, further_walls, further_cpus = [], [], [], []
    frames: BssFrames | None = None
    for _ in range(args.runs):
        (prepared, frames), wall, cpu = _timed(prepare_and_score)
        walls.append(wall)
        cpus.append(cpu)
        _, wall, cpu = _timed(partial(prepared.evaluate, others))
        further_walls.append(wall)
        further_cpus.append(cpu)
        del prepared
    assert frames is not None
    native_wall, native_cpu = statistics.median(walls), statistics.median(cpus)
    further_wall, further_cpu = statistics.median(further_walls), statistics.median(further_cpus)
    print(f"native BSSEval v4 (references + 1 provider)  wall {_median(walls)}  cpu {_median(cpus)}")
    print(f"  each further provider                      wall {_median(further_walls)}  cpu {_median(further_cpus)}")
    print(
        f"  reference-only part (difference)           wall {native_wall - further_wall:7.2f} s"
        f"{'':16}cpu {native_cpu - further_cpu:7.2f} s"
    )
    if args.no_museval:
        print(_load())
        return
    try:
        load_museval()
    except ConfigError as exc:
        print(f"museval                    skipped: {exc}")
        return
    mwalls, mcpus = [], []
    theirs: BssFrames | None = None
    for _ in range(args.museval_runs):
        theirs, wall, cpu = _timed(lambda: bss_eval_frames(refs, ests, rate, backend="museval"))
        mwalls.append(wall)
        mcpus.append(cpu)
    assert theirs is not None
    museval_wall, museval_cpu = statistics.median(mwalls), statistics.median(mcpus)
    runs = f"{args.museval_runs} run(s)"
    print(f"museval 0.4.1 (mode v4), {runs:<20} wall {_median(mwalls)}  cpu {_median(mcpus)}")
    print(f"speed-up: wall {museval_wall / native_wall:.1f}x, cpu {museval_cpu / native_cpu:.1f}x   goal >= 20x")
    print(
        f"  a further provider: wall {museval_wall / further_wall:.1f}x, cpu {museval_cpu / further_cpu:.1f}x "
        "faster than museval scoring it"
    )
    deviation, mismatched = _deviation(frames, theirs)
    print(f"max deviation over every frame and metric: {deviation:.2e} dB   goal <= 0.01 dB")
    print(f"frames defined in one and not the other: {mismatched}")
    print(_load())


if __name__ == "__main__":
    main()
