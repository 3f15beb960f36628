"""stemkit's native BSSEval v4 against museval, side by side in one run: 4 stereo stems × 3 minutes at 44.1 kHz.

    .venv/bin/python bench/evaluate_bsseval.py [--seconds 180] [--runs 3] [--museval-runs 1]

Goal (issue 15): ≥ 20× museval's speed, every frame's SDR/SIR/ISR/SAR within 0.01 dB of museval's. The
stems are the synthesized demo song's (genuinely stereo, a noise floor like a recording), the estimates
each reference plus a 0.1 leak of the next stem and a little noise. Wall and CPU time are both reported;
museval needs ffmpeg on PATH to import (without it, its row says why it was skipped).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from stemkit.demo import DEMO_STEMS, synthesize
from stemkit.errors import ConfigError
from stemkit.evaluate.bsseval import BSS_METRICS, BssReferences, bss_eval_frames, load_museval


def _timed(fn):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--museval-runs", type=int, default=1)
    args = parser.parse_args()
    rate = 44_100
    song = synthesize(args.seconds, rate)
    refs = {n: song[n].astype(np.float64) for n in DEMO_STEMS}
    rng = np.random.default_rng(0)
    ests = {
        n: refs[n] + 0.1 * refs[DEMO_STEMS[(i + 1) % 4]] + 0.002 * rng.standard_normal(refs[n].shape)
        for i, n in enumerate(DEMO_STEMS)
    }
    print(f"4 stereo stems x {args.seconds:g} s at {rate} Hz; native: {args.runs} runs, museval: {args.museval_runs}")
    walls, cpus = [], []
    frames = None
    for _ in range(args.runs):
        frames, wall, cpu = _timed(lambda: bss_eval_frames(refs, ests, rate))
        walls.append(wall)
        cpus.append(cpu)
    native_wall, native_cpu = statistics.median(walls), statistics.median(cpus)
    spread = f"[{min(walls):.2f}-{max(walls):.2f}]"
    print(f"native BSSEval v4          wall {native_wall:7.2f} s {spread}  cpu {native_cpu:7.2f} s")
    prepared = BssReferences(refs, rate)
    _, ref_wall, _ = _timed(lambda: prepared.projector(tuple(DEMO_STEMS)))
    _, est_wall, est_cpu = _timed(lambda: prepared.evaluate(ests))
    print(f"  of which reference-only  wall {ref_wall:7.2f} s")
    print(f"  each further provider    wall {est_wall:7.2f} s, cpu {est_cpu:.2f} s")
    try:
        load_museval()
    except ConfigError as exc:
        print(f"museval                    skipped: {exc}")
        return
    mwalls, mcpus = [], []
    theirs = None
    for _ in range(args.museval_runs):
        theirs, wall, cpu = _timed(lambda: bss_eval_frames(refs, ests, rate, backend="museval"))
        mwalls.append(wall)
        mcpus.append(cpu)
    museval_wall, museval_cpu = statistics.median(mwalls), statistics.median(mcpus)
    print(f"museval 0.4.1 (mode v4)    wall {museval_wall:7.2f} s                 cpu {museval_cpu:7.2f} s")
    assert frames is not None
    assert theirs is not None
    deviation = 0.0
    for stem in DEMO_STEMS:
        for metric in BSS_METRICS:
            a, b = frames.values[stem][metric], theirs.values[stem][metric]
            finite = np.isfinite(a) & np.isfinite(b)
            deviation = max(deviation, float(np.max(np.abs(a[finite] - b[finite]), initial=0.0)))
    print(f"speed-up: wall {museval_wall / native_wall:.1f}x, cpu {museval_cpu / native_cpu:.1f}x   goal >= 20x")
    print(f"max deviation over every frame and metric: {deviation:.2e} dB   goal <= 0.01 dB")


if __name__ == "__main__":
    main()
