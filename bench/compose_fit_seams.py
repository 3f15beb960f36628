"""Seam quality of fitting by chunks: dsp on a 3-minute song, chunked vs whole (goal: SDR >= 30 dB).

Run: .venv/bin/python bench/compose_fit_seams.py [--seconds 180] [--chunk 60] [--overlap 10] [--runs 3]

The song is the synthesized demo song (44.1 kHz stereo). "whole" is one dsp separation; "chunked" is the same
provider through ``Fitted(dsp, chunk_seconds=..., overlap=...)`` — the path a too-long input takes to a
provider with a duration limit — and every stem is scored against the whole-file stem: SDR over the song,
and the worst SDR of a 2-second window centred on a seam (where stitching could hurt).

The variants isolate the two choices behind the figure, with the same pure functions Fitted uses
(``chunk_bounds``, ``stitch``) and dsp's ``separate_array`` per chunk:

- chunk starts on stemkit's 4096-frame grid, or anywhere (dsp masks an STFT with a 512-sample hop, which is
  not shift-invariant: a chunk framed off the grid separates differently everywhere, not only at seams);
- the amplitude-complementary crossfade stemkit uses, or an equal-power (cos/sin) one, which lifts the
  coherent overlap by up to 3 dB.

Wall and CPU time of the whole and chunked separations are reported too (median of --runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np

import stemkit
from stemkit.compose import Fitted
from stemkit.compose._stitch import Law, chunk_bounds, stitch
from stemkit.compose.fit import CHUNK_ALIGN
from stemkit.demo import synthesize
from stemkit.evaluate.metrics import sdr
from stemkit_dsp import separate_array

RATE = 44_100


def scores(whole: dict[str, np.ndarray], chunked: dict[str, np.ndarray], seams: list[int]) -> dict[str, Any]:
    """SDR of each chunked stem against the whole-file stem, overall and in the worst seam window."""
    half = RATE
    out: dict[str, Any] = {}
    for name, reference in whole.items():
        windows = [float(sdr(reference[:, s - half : s + half], chunked[name][:, s - half : s + half]))
                   for s in seams]  # fmt: skip
        out[name] = {"sdr_db": round(float(sdr(reference, chunked[name])), 1),
                     "worst_seam_window_sdr_db": round(min(windows), 1) if windows else None}  # fmt: skip
    return out


def variant(mixture: np.ndarray, chunk: float, overlap: float, align: int, law: Law) -> dict[str, np.ndarray]:
    bounds = chunk_bounds(mixture.shape[1], int(chunk * RATE), int(overlap * RATE), align)
    pieces = [separate_array(mixture[:, a:b], RATE) for a, b in bounds]
    return {name: stitch([p[name] for p in pieces], bounds, law) for name in pieces[0]}


def timed(fn: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--chunk", type=float, default=60.0, help="longest chunk, seconds")
    parser.add_argument("--overlap", type=float, default=10.0, help="seconds neighbouring chunks share")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    mixture = synthesize(args.seconds, RATE)["mixture"]

    def materialize(result: stemkit.StemSet) -> dict[str, np.ndarray]:
        return {name: np.array(stem.audio) for name, stem in result.items()}

    with stemkit.load("dsp") as dsp:
        fitted = Fitted(dsp, chunk_seconds=args.chunk, overlap=args.overlap)
        materialize(dsp.separate(mixture[:, : RATE * 5], sample_rate=RATE))  # warm-up
        runs_whole, runs_chunked = [], []
        for _ in range(args.runs):
            whole_set, wall, cpu = timed(lambda: materialize(dsp.separate(mixture, sample_rate=RATE, fit="off")))
            runs_whole.append((wall, cpu))
            result, wall, cpu = timed(lambda: fitted.separate(mixture, sample_rate=RATE))
            chunked_set = materialize(result)
            runs_chunked.append((wall, cpu))
    fit = result.provenance.extra["fit"]
    seams = [int(start * RATE) + int(fit["overlap_seconds"] * RATE) // 2 for start, _ in fit["pieces"][1:]]
    whole: dict[str, np.ndarray] = whole_set
    figures: dict[str, Any] = {
        "song_seconds": args.seconds,
        "chunks": fit["chunks"],
        "pieces_seconds": fit["pieces"],
        "overlap_seconds": fit["overlap_seconds"],
        "fitted (grid 4096, amplitude crossfade)": scores(whole, chunked_set, seams),
    }
    for label, align, law in (("grid 4096, equal-power crossfade", CHUNK_ALIGN, "power"),
                              ("no grid, amplitude crossfade", 1, "amplitude"),
                              ("no grid, equal-power crossfade", 1, "power")):  # fmt: skip
        bounds = chunk_bounds(mixture.shape[1], int(args.chunk * RATE), int(fit["overlap_seconds"] * RATE), align)
        mids = [a + (bounds[i][1] - a) // 2 for i, (a, _) in enumerate(bounds[1:])]
        figures[label] = scores(whole, variant(mixture, args.chunk, fit["overlap_seconds"], align, law), mids)
    figures["min_sdr_db_fitted"] = min(v["sdr_db"] for v in figures["fitted (grid 4096, amplitude crossfade)"].values())
    figures["goal_sdr_db"] = 30.0
    for name, runs in (("whole", runs_whole), ("chunked", runs_chunked)):
        figures[f"{name}_wall_seconds_median"] = round(statistics.median(w for w, _ in runs), 3)
        figures[f"{name}_cpu_seconds_median"] = round(statistics.median(c for _, c in runs), 3)
    figures["chunked_over_whole_wall"] = round(
        figures["chunked_wall_seconds_median"] / figures["whole_wall_seconds_median"], 2
    )
    figures["chunked_over_whole_cpu"] = round(
        figures["chunked_cpu_seconds_median"] / figures["whole_cpu_seconds_median"], 2
    )
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
