"""What the output options cost when saving a 3-minute stereo 44.1 kHz set (issue 16).

Run: .venv/bin/python bench/output_save.py [--seconds 180] [--runs 5]

The set is the dsp baseline's separation of the synthesized demo song, asked for vocals, drums, bass, other and
instrumental (a derived stem, summed block by block when it is read), so a measuring pass costs what it costs
in practice: each stem read once more, the derived one summed once more. Each case is one ``StemSet.save``
into a fresh folder; the figures are medians of ``--runs`` runs, wall time and this process's CPU time, and
each case's ratio to the reference case ``flac, clip=none`` — the path saving took before the output options
(one pass, samples above full scale clipped by the encoder). ``flac`` (the new default, ``clip=auto``) adds
the peak pass that ``rescale`` needs; ``loudness`` adds a K-weighted pass over the mixture.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import stemkit
from stemkit.demo import make_demo

CASES: dict[str, dict[str, Any]] = {
    "flac, clip=none (reference: the old path)": {"format": "flac", "clip": "none"},
    "flac (default: clip=auto, a peak pass)": {"format": "flac"},
    "flac 16-bit": {"format": "flac", "bit_depth": 16},
    "flac, normalize=peak": {"format": "flac", "normalize": "peak"},
    "flac, normalize=loudness": {"format": "flac", "normalize": "loudness"},
    "flac, sample_rate=48000": {"format": "flac", "sample_rate": 48_000},
    "wav float (default: no pass)": {"format": "wav"},
    "mp3 320 kbps": {"format": "mp3"},
}


def measure(stems: stemkit.StemSet, options: dict[str, Any], runs: int, root: Path) -> tuple[float, float]:
    walls, cpus = [], []
    for run in range(runs):
        out = root / f"{len(list(root.iterdir()))}-{run}"
        wall, cpu = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # clip=none on flac warns that it clips: that is the point here
            stems.save(out, **options)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        mixture = make_demo(root / "song", seconds=args.seconds)
        stems = stemkit.separate(mixture, provider="dsp", stems=["vocals", "drums", "bass", "other", "instrumental"])
        outputs = root / "out"
        outputs.mkdir()
        stems.save(outputs / "warm-up", format="flac")  # imports and first-call costs are not the steady state
        figures = {name: measure(stems, options, args.runs, outputs) for name, options in CASES.items()}
    base_wall, base_cpu = next(iter(figures.values()))
    print(json.dumps({
        "song_seconds": args.seconds,
        "stems": 5,
        "runs": args.runs,
        "cases": {
            name: {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "wall_ratio": round(wall / base_wall, 2),
                   "cpu_ratio": round(cpu / base_cpu, 2)}
            for name, (wall, cpu) in figures.items()
        },
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
