"""Shared set-up for the StemSplit benchmarks: the emulator as a separate process (``stemkit emulate``)."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import _emulators as emulators

KEY = "sk_test_emulator"


@contextlib.contextmanager
def emulator(*args: str) -> Iterator[str]:
    """Run ``stemkit emulate stemsplit ARGS`` in its own process; yields the base URL."""
    with emulators.emulator("stemsplit", *args) as base_url:
        yield base_url


def work_dir() -> Path:
    root = Path(tempfile.gettempdir()) / "stemkit-bench-stemsplit"
    root.mkdir(exist_ok=True)
    return root


def demo_song(seconds: float) -> Path:
    from stemkit.demo import make_demo

    folder = work_dir() / f"demo{seconds:g}"
    mixture = folder / "mixture.wav"
    return mixture if mixture.exists() else make_demo(folder, seconds=seconds)
