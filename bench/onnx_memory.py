"""Peak memory of separating a long stereo WAV to disk: stemkit's onnx provider vs demucs-onnx, same model.

    .venv/bin/python bench/onnx_memory.py [--long 1800] [--short 300] [--threads 1] [--cases all|derived|...]
        [--shifts 2] [--no-demucs]

Each measurement runs in its own fresh process (peak RSS = ``ru_maxrss`` of that process):

* ``stemkit``: ``stemkit.separate(song, provider="onnx:htdemucs").save(out)`` — what ``stemkit separate
  song -o out`` does: input streamed, stems streamed to files, then streamed into the output folder;
* ``demucs-onnx``: ``demucs_onnx.separate(song, out, model="htdemucs")`` — whole input and outputs in memory;
* ``imports``: a process that only imports stemkit, the plugin and onnxruntime and loads the session (the
  floor every run starts from);
* ``derived`` (issue 11): the long input with ``stream=on``, once for the model's direct stems and once for
  ``stems=vocals,instrumental`` (instrumental is derived: the sum of drums, bass and other), both saved.
* with ``--shifts N``: ``stemkit`` again with ``shifts=N`` (N passes in step over one read of the input): memory
  should not grow with N nor with the length. ``--no-demucs`` leaves demucs-onnx out (its 30 min run is long).

Targets: stemkit(30 min) <= demucs-onnx(30 min) / 3 and stemkit(30 min) <= 1.2 x stemkit(5 min) (issue 5);
vocals,instrumental(30 min) <= 1.2 x direct stems(30 min) (issue 11: derived stems are summed block by
block from the streamed files, never loaded whole).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import _onnx_common as common

CASES = ("imports", "stemkit", "demucs-onnx", "derived")


def child(kind: str, song: Path, out: Path, threads: int | None, extra: str = "") -> None:
    model = common.bench_model_path()
    common.serve_model(model)
    started = time.perf_counter()
    if kind == "demucs-onnx":
        import demucs_onnx

        if threads:
            from stemkit_onnx._sessions import load_session

            demucs_onnx.session_pool()._sessions[(str(model), "", ("CPUExecutionProvider",))] = load_session(
                model, ["CPUExecutionProvider"], threads=threads, label="bench", fresh=True
            )[0]
        demucs_onnx.separate(song, out, **common.demucs_kwargs())
    else:
        import stemkit
        from stemkit_onnx._sessions import load_session

        spec = common.stemkit_spec() + (f"&threads={threads}" if threads else "") + extra
        if kind == "imports":
            load_session(model, ["CPUExecutionProvider"], threads=threads, label="bench")
        else:
            request = {"stemkit-derived": "vocals,instrumental"}.get(kind)  # None: the model's own stems
            if kind in ("stemkit-direct", "stemkit-derived"):
                spec += "&stream=on"
            with stemkit.separate(song, provider=spec, stems=request) as stems:
                stems.save(out, format="wav")
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"peak_rss_mb": peak_kb / 1024, "seconds": time.perf_counter() - started}))


def measure(kind: str, song: Path, threads: int, extra: str = "") -> dict[str, float]:
    out = common.work_dir() / f"out-{kind}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, __file__, "--child", kind, "--song", str(song), "--out", str(out), "--threads", str(threads),
           "--extra", extra]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    shutil.rmtree(out, ignore_errors=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--long", type=float, default=1800.0)
    parser.add_argument("--short", type=float, default=300.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cases", default="all", help=f"comma-separated: {', '.join(CASES)} (default all)")
    parser.add_argument("--child")
    parser.add_argument("--song", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--extra", default="", help=argparse.SUPPRESS)
    parser.add_argument("--shifts", type=int, default=0, help="also measure stemkit with shifts=N")
    parser.add_argument("--no-demucs", action="store_true", help="leave demucs-onnx out")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.song, args.out, args.threads or None, args.extra)
        return
    cases = set(CASES) if args.cases == "all" else {c.strip() for c in args.cases.split(",")}
    unknown = cases - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}; choose from {', '.join(CASES)}")

    common.bench_model_path()
    long_min, short_min = f"{args.long / 60:.0f} min", f"{args.short / 60:.0f} min"
    if args.no_demucs:
        cases.discard("demucs-onnx")
    long_song = common.song(args.long)
    short_song = common.song(args.short) if cases & {"imports", "stemkit", "demucs-onnx"} else None
    rows: dict[str, dict[str, float]] = {}
    if "imports" in cases and short_song is not None:
        rows["imports"] = measure("imports", short_song, args.threads)
    if "stemkit" in cases and short_song is not None:
        rows[f"stemkit {short_min}"] = measure("stemkit", short_song, args.threads)
        rows[f"stemkit {long_min}"] = measure("stemkit", long_song, args.threads)
        if args.shifts:
            shifted = f"&shifts={args.shifts}&seed=0"
            rows[f"shifts={args.shifts} {short_min}"] = measure("stemkit", short_song, args.threads, shifted)
            rows[f"shifts={args.shifts} {long_min}"] = measure("stemkit", long_song, args.threads, shifted)
    if "demucs-onnx" in cases and short_song is not None:
        rows[f"demucs-onnx {short_min}"] = measure("demucs-onnx", short_song, args.threads)
        rows[f"demucs-onnx {long_min}"] = measure("demucs-onnx", long_song, args.threads)
    if "derived" in cases:
        rows[f"direct stems {long_min}"] = measure("stemkit-direct", long_song, args.threads)
        rows[f"vocals,instr. {long_min}"] = measure("stemkit-derived", long_song, args.threads)
    print(f"peak RSS, separating a stereo 44.1 kHz WAV to disk (model {common.bench_model_path().name}):")
    for name, row in rows.items():
        print(f"  {name:22s} {row['peak_rss_mb']:8.0f} MB   ({row['seconds']:.1f} s)")

    def ratio(top: str, bottom: str, what: str) -> None:
        if top in rows and bottom in rows:
            value = rows[top]["peak_rss_mb"] / rows[bottom]["peak_rss_mb"]
            print(f"{what} = {value:.3f}")

    ratio(f"stemkit {long_min}", f"demucs-onnx {long_min}", f"stemkit / demucs-onnx at {long_min}   (target <= 0.333)")
    ratio(f"stemkit {long_min}", f"stemkit {short_min}", f"stemkit {long_min} / {short_min}   (target <= 1.2)")
    ratio(f"shifts={args.shifts} {long_min}", f"stemkit {long_min}", f"shifts={args.shifts} / shifts=1 at {long_min}")
    ratio(
        f"vocals,instr. {long_min}", f"direct stems {long_min}",
        f"vocals,instrumental / direct stems at {long_min}, stream=on   (target <= 1.2)",
    )  # fmt: skip


if __name__ == "__main__":
    main()
