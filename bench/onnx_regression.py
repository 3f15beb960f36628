"""The onnx provider's speed now against a git revision of it, side by side: the default must not regress.

    .venv/bin/python bench/onnx_regression.py [--base 87f9142] [--rounds 3] [--runs 3] [--seconds 180]

The plugin's source at ``--base`` (default: the commit before shifts/overlap/MDX-Net were added to the
engine) is exported with ``git archive`` into a temporary folder; then ``bench/onnx_speed.py --json`` runs
alternately with that source first on ``PYTHONPATH`` (the old plugin; the same core and the same benchmark
script) and with the working tree's, ``--rounds`` times each, so that load on the machine hits both alike.
Each run measures the bare ``InferenceSession.run`` loop in the same process, so the comparison is of
``stemkit / bare run`` (and of the plain wall and CPU times), medians over every run of every round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = "bare run,stemkit,demucs-onnx"  # the cases both versions have (--cases adds 'stemkit stream=on')


def export(base: str, into: Path) -> Path:
    """The plugin's ``src`` folder at ``base``."""
    archive = into / "base.tar"
    with archive.open("wb") as fh:
        subprocess.run(["git", "-C", str(ROOT), "archive", base, "plugins/onnx/src"], stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "plugins" / "onnx" / "src"


def run(src: Path | None, args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    command = [sys.executable, str(ROOT / "bench" / "onnx_speed.py"), "--json", "--cases", args.cases,
               "--runs", str(args.runs), "--seconds", str(args.seconds)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    out: dict[str, dict[str, list[float]]] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="87f9142", help="git revision of the plugin to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--cases", default=CASES, help="cases of onnx_speed.py (must include 'bare run', 'stemkit')")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stemkit-bench-base-") as tmp:
        src = export(args.base, Path(tmp))
        check = subprocess.run(
            [sys.executable, "-c", "import stemkit_onnx._engine as e; print(e.__file__)"],
            env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True, text=True, check=True,
        )
        assert check.stdout.startswith(str(src)), f"the base plugin is not the one imported: {check.stdout}"
        sides: dict[str, list[dict[str, dict[str, list[float]]]]] = {"base": [], "now": []}
        for _ in range(args.rounds):
            sides["base"].append(run(src, args))
            sides["now"].append(run(None, args))

    def pooled(side: str, kind: str, case: str) -> list[float]:
        return [v for result in sides[side] for v in result[kind][case]]

    def over(side: str, kind: str) -> list[float]:
        return [s / b - 1 for result in sides[side] for s, b in
                zip(result[kind]["stemkit"], result[kind]["bare run"], strict=True)]

    print(f"base {args.base} vs working tree: {args.rounds} rounds x {args.runs} runs, {args.seconds:.0f} s song")
    for kind in ("wall", "cpu"):
        for case in args.cases.split(","):
            b, n = statistics.median(pooled("base", kind, case)), statistics.median(pooled("now", kind, case))
            print(f"  {kind:4s} {case:12s} base {b:7.3f} s   now {n:7.3f} s   now/base {n / b:.3f}")
        b, n = statistics.median(over("base", kind)), statistics.median(over("now", kind))
        print(f"  {kind:4s} stemkit over bare run: base {100 * b:+.1f} %   now {100 * n:+.1f} %")


if __name__ == "__main__":
    main()
