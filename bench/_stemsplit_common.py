"""Shared set-up for the StemSplit benchmarks: the emulator as a separate process (``stemkit emulate``)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

KEY = "sk_test_emulator"


@contextlib.contextmanager
def emulator(*args: str) -> Iterator[str]:
    """Run ``stemkit emulate stemsplit ARGS`` in its own process; yields the base URL."""
    runner = "import sys; from stemkit.cli import main; sys.exit(main())"
    command = [sys.executable, "-c", runner, "emulate", "stemsplit", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)


def work_dir() -> Path:
    root = Path(tempfile.gettempdir()) / "stemkit-bench-stemsplit"
    root.mkdir(exist_ok=True)
    return root


def demo_song(seconds: float) -> Path:
    from stemkit.demo import make_demo

    folder = work_dir() / f"demo{seconds:g}"
    mixture = folder / "mixture.wav"
    return mixture if mixture.exists() else make_demo(folder, seconds=seconds)
