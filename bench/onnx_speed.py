"""Speed of the onnx provider against demucs-onnx on the same model, and its overhead over bare session.run.

    .venv/bin/python bench/onnx_speed.py [--seconds 180] [--runs 5] [--threads 1] [--cases a,b] [--json]

One process, both sides warmed up (sessions created and cached), runs interleaved so machine noise
hits both alike; medians (and best runs) reported. Every side runs the same model file with the same
session options (``--threads`` intra-op threads; demucs-onnx gets a session built like stemkit's in its
own session pool, since it has no thread setting). Measured:

* ``stemkit`` — ``stemkit.separate(song, provider="onnx:htdemucs")`` with the default ``stream=auto``: input
  read in blocks; a 3-minute song's stems (254 MB) stay under the 256 MiB budget, so they are arrays, as
  demucs-onnx returns them;
* ``stemkit stream=on`` — the same with the stems written to float WAVs as segments finish (file-backed
  StemSet, what a long input gets), then every stem's ``.audio`` decoded;
* ``stemkit shifts=2`` — the default case with demucs' ``shifts=2`` (two passes over randomly shifted
  input, averaged; seeded): the cost of shifts, expected about 2x the model's time;
* ``demucs-onnx`` — ``demucs_onnx.separate(song, model="htdemucs")``, arrays in memory;
* ``bare run`` — only ``InferenceSession.run`` over the same zero-padded segments (input pre-sliced).

Targets (issue 5): stemkit / demucs-onnx <= 1.0; stemkit / bare run - 1 <= 5 %. Issue 16: the default
(``shifts=1``) must not regress against the code before shifts existed (``bench/onnx_regression.py`` runs
this script against both), and the cost of ``shifts=2`` is reported. ``--cases`` picks cases (comma-
separated names as printed); ``--json`` prints the medians as one JSON object instead of the text.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
import _onnx_common as common


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for every side (0: default)")
    parser.add_argument("--cases", default="", help="comma-separated cases to run (default: all)")
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    args = parser.parse_args()

    import demucs_onnx
    from demucs_onnx.inference import N_SAMPLES

    import stemkit
    from stemkit_onnx._sessions import load_session

    model = common.bench_model_path()
    common.serve_model(model)
    song = common.song(args.seconds)
    threads = args.threads or None
    spec = common.stemkit_spec() + (f"&threads={threads}" if threads else "")

    session, _ = load_session(model, ["CPUExecutionProvider"], threads=threads, label="bench")
    # demucs-onnx's pool is keyed by (path, "", providers): give it the same kind of session.
    demucs_onnx.session_pool()._sessions[(str(model), "", ("CPUExecutionProvider",))] = load_session(
        model, ["CPUExecutionProvider"], threads=threads, label="bench-demucs", fresh=True
    )[0]
    audio, _ = sf.read(song, dtype="float32", always_2d=True)
    mix = np.ascontiguousarray(audio.T)
    stride = N_SAMPLES - N_SAMPLES // 4
    chunks = []
    for start in range(0, max(1, mix.shape[1]), stride):
        x = np.zeros((1, 2, N_SAMPLES), dtype=np.float32)
        piece = mix[:, start : start + N_SAMPLES]
        x[0, :, : piece.shape[1]] = piece
        chunks.append(x)

    def bare() -> None:
        for x in chunks:
            session.run(["stems"], {"mix": x})

    results = []

    def ours() -> None:
        results.append(stemkit.separate(song, provider=spec))  # closed (temp files removed) outside the timing

    def ours_streamed() -> None:
        stems = stemkit.separate(song, provider=spec + "&stream=on")
        for stem in stems.values():
            _ = stem.audio
        results.append(stems)

    def ours_shifted() -> None:
        results.append(stemkit.separate(song, provider=spec + "&shifts=2&seed=0"))

    def theirs() -> None:
        demucs_onnx.separate(song, **common.demucs_kwargs())

    cases = {
        "bare run": bare,
        "stemkit": ours,
        "stemkit stream=on": ours_streamed,
        "stemkit shifts=2": ours_shifted,
        "demucs-onnx": theirs,
    }
    if args.cases:
        wanted = [c.strip() for c in args.cases.split(",")]
        unknown = [c for c in wanted if c not in cases]
        if unknown:
            parser.error(f"unknown case(s) {unknown}; cases: {', '.join(cases)}")
        cases = {name: fn for name, fn in cases.items() if name in wanted}
    for fn in cases.values():  # warm-up: sessions, page cache
        fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, fn in cases.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - cpu_started)
            while results:
                results.pop().close()

    med = {name: statistics.median(values) for name, values in times.items()}
    cmed = {name: statistics.median(values) for name, values in cpu.items()}
    if args.json:
        print(json.dumps({"segments": len(chunks), "runs": args.runs, "wall": times, "cpu": cpu,
                          "median_wall": med, "median_cpu": cmed}))
        return
    best = {name: min(values) for name, values in times.items()}
    per_segment = med["bare run"] / len(chunks) if "bare run" in med else float("nan")
    print(
        f"input: {args.seconds:.0f} s stereo 44.1 kHz, {len(chunks)} segments; model {model.name} "
        f"({per_segment * 1000:.0f} ms per segment), threads={threads or 'default'}; {args.runs} runs, median"
    )
    for name, values in times.items():
        print(f"  {name:17s} {med[name]:7.3f} s   (runs: {', '.join(f'{v:.3f}' for v in values)})")

    def ratio(a: str, b: str, table: dict[str, float]) -> str:
        return f"{table[a] / table[b]:.3f}" if a in table and b in table else "n/a"

    def over(a: str, table: dict[str, float]) -> str:
        return f"{100 * (table[a] / table['bare run'] - 1):+.1f} %" if a in table and "bare run" in table else "n/a"

    print(f"stemkit / demucs-onnx        = {ratio('stemkit', 'demucs-onnx', med)}   (target <= 1.0)")
    print(f"stream=on / demucs-onnx      = {ratio('stemkit stream=on', 'demucs-onnx', med)}")
    print(f"shifts=2 / shifts=1          = {ratio('stemkit shifts=2', 'stemkit', med)}   (two passes: about 2)")
    print(f"stemkit overhead over bare   = {over('stemkit', med)}   (target <= 5 %)")
    print(f"stream=on overhead           = {over('stemkit stream=on', med)}")
    print(f"demucs-onnx overhead         = {over('demucs-onnx', med)}")
    print("CPU time (all threads of this process; insensitive to other processes on a shared machine):")
    for name in cases:
        print(f"  {name:17s} {cmed[name]:7.3f} s")
    print(
        f"  stemkit / demucs-onnx = {ratio('stemkit', 'demucs-onnx', cmed)}; "
        f"shifts=2 / shifts=1 = {ratio('stemkit shifts=2', 'stemkit', cmed)}; "
        f"stemkit overhead over bare = {over('stemkit', cmed)}; demucs-onnx overhead = {over('demucs-onnx', cmed)}"
    )
    print(
        f"best runs: stemkit / demucs-onnx = {ratio('stemkit', 'demucs-onnx', best)}, "
        f"stemkit overhead = {over('stemkit', best)}"
    )


if __name__ == "__main__":
    main()
