"""Peak memory of separating a long stereo WAV to disk: stemkit's onnx provider vs demucs-onnx, same model.

    .venv/bin/python bench/onnx_memory.py [--long 1800] [--short 300] [--threads 1]

Each measurement runs in its own fresh process (peak RSS = ``ru_maxrss`` of that process):

* ``stemkit``: ``stemkit.separate(song, provider="onnx:htdemucs").save(out)`` — what ``stemkit separate
  song -o out`` does: input streamed, stems streamed to files, then streamed into the output folder;
* ``demucs-onnx``: ``demucs_onnx.separate(song, out, model="htdemucs")`` — whole input and outputs in memory;
* ``imports``: a process that only imports stemkit, the plugin and onnxruntime and loads the session (the
  floor every run starts from).

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


def child(kind: str, song: Path, out: Path, threads: int | None) -> None:
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

        spec = common.stemkit_spec() + (f"&threads={threads}" if threads else "")
        if kind == "imports":
            load_session(model, ["CPUExecutionProvider"], threads=threads, label="bench")
        else:
            with stemkit.separate(song, provider=spec) as stems:
                stems.save(out, format="wav")
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"peak_rss_mb": peak_kb / 1024, "seconds": time.perf_counter() - started}))


def measure(kind: str, song: Path, threads: int) -> dict[str, float]:
    out = common.work_dir() / f"out-{kind}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, __file__, "--child", kind, "--song", str(song), "--out", str(out), "--threads", str(threads)]
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
    args = parser.parse_args()
    if args.child:
        child(args.child, args.song, args.out, args.threads or None)
        return

    common.bench_model_path()
    long_song, short_song = common.song(args.long), common.song(args.short)
    rows = {
        "imports": measure("imports", short_song, args.threads),
        f"stemkit {args.short / 60:.0f} min": measure("stemkit", short_song, args.threads),
        f"stemkit {args.long / 60:.0f} min": measure("stemkit", long_song, args.threads),
        f"demucs-onnx {args.short / 60:.0f} min": measure("demucs-onnx", short_song, args.threads),
        f"demucs-onnx {args.long / 60:.0f} min": measure("demucs-onnx", long_song, args.threads),
    }
    print(f"peak RSS, separating a stereo 44.1 kHz WAV to disk (model {common.bench_model_path().name}):")
    for name, row in rows.items():
        print(f"  {name:18s} {row['peak_rss_mb']:8.0f} MB   ({row['seconds']:.1f} s)")
    ours_long = rows[f"stemkit {args.long / 60:.0f} min"]["peak_rss_mb"]
    ours_short = rows[f"stemkit {args.short / 60:.0f} min"]["peak_rss_mb"]
    theirs_long = rows[f"demucs-onnx {args.long / 60:.0f} min"]["peak_rss_mb"]
    print(f"stemkit / demucs-onnx at {args.long / 60:.0f} min = {ours_long / theirs_long:.3f}   (target <= 0.333)")
    print(
        f"stemkit {args.long / 60:.0f} min / {args.short / 60:.0f} min = {ours_long / ours_short:.3f}   (target <= 1.2)"
    )


if __name__ == "__main__":
    main()
