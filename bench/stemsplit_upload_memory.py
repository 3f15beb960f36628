"""Uploading a 200 MB file to StemSplit (presigned PUT) grows peak RSS by at most 64 MB.

Each run is a fresh child process (peak RSS is a high-water mark): it warms the client up with a small
upload, records ru_maxrss, uploads the 200 MB file to the emulator (a separate process), and reports the
growth of ru_maxrss. Median of 3 runs.

    .venv/bin/python bench/stemsplit_upload_memory.py
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _stemsplit_common import KEY, emulator, work_dir

SIZE = 200 * 1024 * 1024
LIMIT_MB = 64.0


def big_file() -> Path:
    path = work_dir() / "upload-200MB.wav"
    if not path.exists() or path.stat().st_size != SIZE:
        block = os.urandom(1024 * 1024)
        with path.open("wb") as fh:
            for _ in range(SIZE // len(block)):
                fh.write(block)
    return path


def child(base_url: str, path: str) -> None:
    from stemkit_stemsplit import StemSplitClient

    small = work_dir() / "warmup.wav"
    small.write_bytes(b"\0" * 4 * 1024 * 1024)
    with StemSplitClient(KEY, base_url=base_url) as client:
        client.upload_file(small)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        client.upload_file(path)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"growth_mb": after - before, "peak_mb": after, "seconds": seconds}))


def main() -> None:
    path = big_file()
    runs = []
    with emulator() as base_url:
        for _ in range(3):
            out = subprocess.run(
                [sys.executable, __file__, "--child", base_url, str(path)], capture_output=True, text=True, check=True
            )
            runs.append(json.loads(out.stdout))
    growth = statistics.median(r["growth_mb"] for r in runs)
    speed = statistics.median(SIZE / 1e6 / r["seconds"] for r in runs)
    each = ", ".join(f"{r['growth_mb']:.1f}" for r in runs)
    print(f"200 MB upload: peak RSS growth median {growth:.1f} MB (runs: {each}), limit {LIMIT_MB:.0f} MB; ")
    print(f"{speed:.0f} MB/s to the loopback emulator")
    print("PASS" if growth <= LIMIT_MB else "FAIL")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
