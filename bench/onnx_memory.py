"""Peak memory of separating a long stereo WAV to disk: stemkit's onnx provider vs demucs-onnx, same model.

    .venv/bin/python bench/onnx_memory.py [--long 1800] [--short 300] [--threads 1] [--shifts 2] [--no-demucs]

Each measurement runs in its own fresh process (peak RSS = ``ru_maxrss`` of that process):

* ``stemkit``: ``stemkit.separate(song, provider="onnx:htdemucs").save(out)`` — what ``stemkit separate
  song -o out`` does: input streamed, stems streamed to files, then streamed into the output folder;
* ``demucs-onnx``: ``demucs_onnx.separate(song, out, model="htdemucs")`` — whole input and outputs in memory;
* ``imports``: a process that only imports stemkit, the plugin and onnxruntime and loads the session (the
  floor every run starts from);
* with ``--shifts N``: ``stemkit`` again with ``shifts=N`` (N passes in step over one read of the input): memory
  should not grow with N nor with the length. ``--no-demucs`` leaves demucs-onnx out (its 30 min run is long).

Targets (issue 5): stemkit(30 min) <= demucs-onnx(30 min) / 3 and stemkit(30 min) <= 1.2 x stemkit(5 min).
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
            with stemkit.separate(song, provider=spec) as stems:
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

    common.bench_model_path()
    long_song, short_song = common.song(args.long), common.song(args.short)
    short, long = f"{args.short / 60:.0f} min", f"{args.long / 60:.0f} min"
    rows = {
        "imports": measure("imports", short_song, args.threads),
        f"stemkit {short}": measure("stemkit", short_song, args.threads),
        f"stemkit {long}": measure("stemkit", long_song, args.threads),
    }
    if args.shifts:
        shifted = f"&shifts={args.shifts}&seed=0"
        rows[f"shifts={args.shifts} {short}"] = measure("stemkit", short_song, args.threads, shifted)
        rows[f"shifts={args.shifts} {long}"] = measure("stemkit", long_song, args.threads, shifted)
    if not args.no_demucs:
        rows[f"demucs-onnx {short}"] = measure("demucs-onnx", short_song, args.threads)
        rows[f"demucs-onnx {long}"] = measure("demucs-onnx", long_song, args.threads)
    print(f"peak RSS, separating a stereo 44.1 kHz WAV to disk (model {common.bench_model_path().name}):")
    for name, row in rows.items():
        print(f"  {name:18s} {row['peak_rss_mb']:8.0f} MB   ({row['seconds']:.1f} s)")
    ours_long, ours_short = rows[f"stemkit {long}"]["peak_rss_mb"], rows[f"stemkit {short}"]["peak_rss_mb"]
    if not args.no_demucs:
        theirs_long = rows[f"demucs-onnx {long}"]["peak_rss_mb"]
        print(f"stemkit / demucs-onnx at {long} = {ours_long / theirs_long:.3f}   (target <= 0.333)")
    print(f"stemkit {long} / {short} = {ours_long / ours_short:.3f}   (target <= 1.2)")
    if args.shifts:
        shifted_long = rows[f"shifts={args.shifts} {long}"]["peak_rss_mb"]
        print(f"shifts={args.shifts} / shifts=1 at {long} = {shifted_long / ours_long:.3f}")


if __name__ == "__main__":
    main()
