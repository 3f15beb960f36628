"""EzStems memory goals: uploading a 200 MB file, and extracting a 200 MB stems ZIP, each grow the client's
peak RSS by at most 64 MB.

The emulator runs in its own process (``stemkit emulate ezstems --option plan=custom``) so that only the
client is measured. RSS is sampled every 5 ms from /proc/self/statm while the operation runs; the figure is
the peak minus the RSS just before. Several runs, median.

    .venv/bin/python bench/ezstems_memory.py [--mb 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from stemkit_ezstems import EzStemsClient, ZipLimits, extract_stems

sys.path.insert(0, str(Path(__file__).parent))
from _emulators import emulator

MB = 1_000_000
_PAGE = os.sysconf("SC_PAGE_SIZE")
BUDGET_MB = 64.0


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * _PAGE


def peak_growth(action: Callable[[], object]) -> tuple[float, float]:
    """(peak RSS growth in MB, seconds) while ``action`` runs."""
    base = rss()
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        action()
    finally:
        elapsed = time.perf_counter() - start
        done.set()
        sampler.join()
    return (max(peak, rss()) - base) / MB, elapsed


def make_upload(path: Path, size: int) -> None:
    """A file of ``size`` bytes named .mp3 (the emulator stores it; its processing fails fast, which is fine)."""
    rng = np.random.default_rng(0)
    with path.open("wb") as fh:
        for _ in range(size // (8 * MB)):
            fh.write(rng.bytes(8 * MB))
        fh.write(rng.bytes(size % (8 * MB)))


def wav_header(frames: int, rate: int = 44100, channels: int = 2) -> bytes:
    data = frames * channels * 2
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16)
        + b"data"
        + struct.pack("<I", data)
    )


def make_zip(path: Path, size: int) -> float:
    """Four incompressible 16-bit WAV stems in a folder, ``size`` bytes in all; returns their duration (s)."""
    frames = (size // 4 - 44) // 4
    rng = np.random.default_rng(1)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in ("vocals", "drums", "bass", "other"):
            with archive.open(f"song/{name}.wav", "w", force_zip64=True) as member:
                member.write(wav_header(frames))
                left = frames * 4
                while left > 0:
                    chunk = rng.bytes(min(left, 8 * MB))
                    member.write(chunk)
                    left -= len(chunk)
    return frames / 44100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = args.mb * MB
    work = Path(tempfile.mkdtemp(prefix="ezstems-bench-"))
    upload_file, archive = work / "big.mp3", work / "stems.zip"
    make_upload(upload_file, size)
    seconds = make_zip(archive, size)

    uploads, extracts = [], []
    options = ("--processing-seconds", "0", "--option", "plan=custom", "--option", "workers=1")
    with emulator("ezstems", *options) as base_url, EzStemsClient("ezstems_test_emulator", base_url=base_url) as client:
        client.list_keys()  # connection and imports warm
        for _ in range(args.runs):
            uploads.append(peak_growth(lambda: client.upload(upload_file, 4)))
    limits = ZipLimits.for_duration(seconds, 4)
    for run in range(args.runs):
        dest = work / f"out{run}"
        extracts.append(
            peak_growth(
                lambda dest=dest: extract_stems(archive, dest, ("vocals", "drums", "bass", "other"), limits=limits)
            )
        )

    zip_mb = archive.stat().st_size / MB
    shutil.rmtree(work, ignore_errors=True)
    control, _ = peak_growth(lambda: np.ones(100 * MB // 8).sum())  # the sampler sees a 100 MB allocation
    print(f"{'control (100 MB array)':>28}: peak RSS +{control:.1f} MB")
    for label, runs in (("upload", uploads), (f"extract ({zip_mb:.0f} MB zip)", extracts)):
        growth = statistics.median(g for g, _ in runs)
        secs = statistics.median(s for _, s in runs)
        verdict = "ok" if growth <= BUDGET_MB else "OVER BUDGET"
        print(
            f"{label:>28}: peak RSS +{growth:.1f} MB (budget {BUDGET_MB:.0f} MB, {verdict}); "
            f"{secs:.2f} s, {args.mb / secs:.0f} MB/s  [runs: {', '.join(f'{g:.1f}' for g, _ in runs)}]"
        )


if __name__ == "__main__":
    main()
