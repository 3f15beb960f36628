"""Job ledger, what it adds to a hosted job: the ledger's own work per job (begin, the upload note, submitted,
finished: four SQLite transactions on one file), and a whole StemSplit separation against the emulator on
loopback with the ledger against ``ledger=False``.

    .venv/bin/python bench/ledger_overhead.py [--runs 7] [--jobs 200] [--seconds 10]

The emulator answers at once (no queue, no processing time) and the client polls every 10 ms, so the ledger's
share is as large as it can be; a real job waits seconds to minutes at the provider. Separations alternate
(off, on) so drifting load hits both alike; wall and CPU time (``time.process_time``, all threads; the emulator
runs in this process, so its CPU counts too) are reported; ratios are of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

import stemkit
from stemkit.hosted import PollPolicy
from stemkit.ledger import JobLedger, JobRequest, ResumeInfo
from stemkit.provenance import Cost


def ledger_only(folder: Path, jobs: int) -> dict[str, float]:
    """Median wall and CPU milliseconds of one job's four ledger transactions, over ``jobs`` jobs."""
    ledger = JobLedger(folder / "ledger.sqlite3")
    info = ResumeInfo(options={"format": "wav"}, requested=("vocals",), sample_rate=44_100, channels=2,
                      frames=441_000, size_bytes=1_764_044, suffix=".wav", input_path="/music/song.wav")  # fmt: skip
    walls, cpus = [], []
    for index in range(jobs):
        request = JobRequest("stemsplit", "stemsplit", f"{index:064x}", ("vocals",),
                             identity={"provider": "stemsplit", "options": {"format": "wav"}},
                             input_name="song.wav", input_duration=10.0, resume=info)  # fmt: skip
        wall, cpu = time.perf_counter(), time.process_time()
        entry = ledger.begin(request)
        ledger.note(entry.id, upload_key=f"uploads/{index}/song.wav", file_name="song.wav")
        ledger.submitted(entry.id, f"job_{index}")
        ledger.finished(entry.id, Cost(10.0, "seconds"))
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"wall_ms": 1000 * statistics.median(walls), "cpu_ms": 1000 * statistics.median(cpus)}


def end_to_end(song: Path, runs: int) -> dict[str, float]:
    from stemkit_stemsplit.emulator import DEFAULT_API_KEY, EmulatorConfig, StemSplitEmulator

    poll = PollPolicy(initial=0.01, multiplier=1.0, max_interval=0.01, min_interval=0.005)
    emulator = StemSplitEmulator(EmulatorConfig(processing_seconds=0.0, queue_seconds=0.0, rate_limit=1_000_000))
    times: dict[bool, tuple[list[float], list[float]]] = {False: ([], []), True: ([], [])}
    with emulator.serve() as server:
        spec = f"stemsplit?base_url={server.base_url}&format=wav"
        with stemkit.load(spec, api_key=DEFAULT_API_KEY, poll=poll, cache=False) as sep:
            stemkit.separate(song, provider=sep, stems="vocals", ledger=False).close()  # warm up
            for _ in range(runs):
                for on in (False, True):
                    wall, cpu = time.perf_counter(), time.process_time()
                    stemkit.separate(song, provider=sep, stems="vocals", ledger=None if on else False).close()
                    times[on][0].append(time.perf_counter() - wall)
                    times[on][1].append(time.process_time() - cpu)
    off_w, off_c = (statistics.median(v) for v in times[False])
    on_w, on_c = (statistics.median(v) for v in times[True])
    return {"off_wall_s": off_w, "on_wall_s": on_w, "wall_ratio": on_w / off_w,
            "off_cpu_s": off_c, "on_cpu_s": on_c, "cpu_ratio": on_c / off_c}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["STEMKIT_CACHE_DIR"] = str(folder / "cache")  # a ledger of its own, not the user's
        rng = np.random.default_rng(0)
        song = folder / "song.wav"
        sf.write(song, (0.2 * rng.standard_normal((int(args.seconds * 44_100), 2))).astype(np.float32), 44_100)
        figures = {
            "ledger_per_job": ledger_only(folder, args.jobs),
            "stemsplit_separation": end_to_end(song, args.runs),
            "runs": args.runs,
            "jobs": args.jobs,
            "song_seconds": args.seconds,
        }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
