"""With default polling, a finished StemSplit job is noticed within 1 s (median) of the emulator finishing it.

The emulator runs in this process (so its completion instant and the client's are on one monotonic clock),
jobs take 2 s of processing plus a 0.2 s queue (its estimatedSeconds: 2), the client uses its default
PollPolicy. Latency = first "download" progress event (the poll loop has returned) minus the emulator's
completion time. Median of 7 runs.

    .venv/bin/python bench/stemsplit_completion_latency.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _stemsplit_common import KEY, demo_song

RUNS = 7


def main() -> None:
    from stemkit_stemsplit import StemSplitSeparator
    from stemkit_stemsplit.emulator import EmulatorConfig, StemSplitEmulator

    song = demo_song(5.0)
    emu = StemSplitEmulator(EmulatorConfig(processing_seconds=2.0, queue_seconds=0.2))
    latencies: list[float] = []
    with emu.serve() as server, StemSplitSeparator(options={"base_url": server.base_url}, api_key=KEY) as sep:
        for _ in range(RUNS):
            noticed: list[float] = []

            def progress(event: Any, noticed: list[float] = noticed) -> None:
                if event.stage == "download" and not noticed:
                    noticed.append(time.monotonic())

            result = sep.separate(song, stems=["vocals"], progress=progress)
            job = emu.state.jobs[result.provenance.job_id]
            assert job.completed_clock is not None
            latencies.append(noticed[0] - job.completed_clock)
    median = statistics.median(latencies)
    print(f"completion noticed after: median {median:.3f} s (runs: {', '.join(f'{x:.3f}' for x in latencies)}); "
          "goal <= 1 s")  # fmt: skip
    print("PASS" if median <= 1.0 else "FAIL")


if __name__ == "__main__":
    main()
