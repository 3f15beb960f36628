"""Run an emulator as its own process (``stemkit emulate NAME ARGS``), as a real service would be elsewhere."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def emulator(name: str, *args: str) -> Iterator[str]:
    """Yields the emulator's base URL (the first line it prints); stops it with Ctrl-C on exit."""
    runner = "import sys; from stemkit.cli import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", runner, "emulate", name, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
