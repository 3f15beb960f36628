"""Import cost of ``import stemkit`` next to ``import numpy``, each in a fresh interpreter.

Run: .venv/bin/python bench/core_import.py [--runs 15]
Reports the median cumulative import time CPython itself measures (`-X importtime`, microseconds spent
importing the package and everything it pulls in) over several fresh interpreters, and checks which heavy
modules the import pulled in (the goal: none of the plugins, onnxruntime, httpx, scipy).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

HEAVY = ["stemkit_dsp", "stemkit_stemsplit", "stemkit_ezstems", "stemkit_onnx", "onnxruntime", "httpx", "scipy"]


def timed(module: str, runs: int) -> float:
    """Median seconds of `import module`, as the interpreter's own import profiler reports it."""
    samples = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                              capture_output=True, text=True, check=True)
        for line in proc.stderr.splitlines():
            parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
            if len(parts) == 3 and parts[2] == module:
                samples.append(int(parts[1]) / 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    numpy = timed("numpy", args.runs)
    stemkit = timed("stemkit", args.runs)
    probe = f"import sys, json, stemkit; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True, text=True, check=True,
    ).stdout
    print(json.dumps({
        "runs": args.runs,
        "import_numpy_ms": round(numpy * 1000, 1),
        "import_stemkit_ms": round(stemkit * 1000, 1),
        "ratio_stemkit_to_numpy": round(stemkit / numpy, 2),
        "heavy_modules_loaded": json.loads(loaded),
    }, indent=2))


if __name__ == "__main__":
    main()
