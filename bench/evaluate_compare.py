"""``stemkit.compare`` of the 30 s demo song across dsp, mixture, oracle and the emulated hosted providers.

    .venv/bin/python bench/evaluate_compare.py [--runs 3] [--seconds 30]

Goal (issue 7): under a minute. Each run starts with an empty cache (a cold comparison, default metrics:
sdr, si-sdr and the indicators); a last run reuses the cache with BSSEval v4 (native) and the agreement
matrix added and writes the HTML listening report (issue 15), whose size is printed. Wall and CPU time are
reported (CPU: this process, the emulated servers' threads included), with the load average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import stemkit
from stemkit.demo import make_demo
from stemkit.evaluate import compare


@contextlib.contextmanager
def hosted() -> Iterator[list[Any]]:
    """Loaded separators for the hosted providers whose plugins (and emulators) are installed."""
    separators: list[Any] = []
    with contextlib.ExitStack() as stack:
        try:
            from stemkit_stemsplit.emulator import EmulatorConfig, StemSplitEmulator

            emulator = StemSplitEmulator(EmulatorConfig(processing_seconds=0.0))
            server = stack.enter_context(emulator.serve())
            separators.append(
                stemkit.load(f"stemsplit?base_url={server.base_url}", api_key=emulator.config.api_key, cache=False)
            )
        except ImportError as exc:
            print(f"stemsplit emulator not available: {exc}")
        try:
            from stemkit_ezstems.testing import running_emulator

            emu = stack.enter_context(running_emulator(processing_seconds=0.0))
            spec = f"ezstems?base_url={emu.base_url}&stems=4"
            separators.append(stemkit.load(spec, api_key=emu.api_key, cache=False))
        except ImportError as exc:
            print(f"ezstems emulator not available: {exc}")
        try:
            yield separators
        finally:
            for sep in separators:
                sep.close()


def _load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, hosted() as remote:
        demo = Path(tmp)
        make_demo(demo, seconds=args.seconds)
        providers: list[Any] = ["dsp", *remote]
        print(_load())
        times, cpus = [], []
        report = None
        for run in range(args.runs):
            started, cpu = time.perf_counter(), time.process_time()
            # An empty cache folder of its own per run (every provider, hosted ones too): a cold comparison.
            report = compare(demo / "mixture.wav", providers, references=demo, cache=demo / f"cache-{run}")
            times.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu)
        assert report is not None
        names = ", ".join(report.providers)
        print(f"demo song {args.seconds:g} s; providers: {names}")
        print(
            f"cold compare (sdr, si-sdr, consistency): median {statistics.median(times):.2f} s "
            f"[{min(times):.2f}-{max(times):.2f}] over {args.runs} runs, cpu {statistics.median(cpus):.2f} s   "
            "goal < 60 s"
        )
        started, cpu = time.perf_counter(), time.process_time()
        warm = compare(
            demo / "mixture.wav",
            providers,
            references=demo,
            metrics="sdr,si-sdr,bss,indicators,agreement",
            cache=report.cache,
            excerpt="auto",
        )
        scored = time.perf_counter() - started, time.process_time() - cpu
        page = warm.save(demo / "report.html")
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        cached = f"{sum(r.cached for r in warm.runs)}/{len(remote) + 1}"
        print(
            f"warm compare (+bss, +agreement, cached separations) with the HTML report: {seconds:.2f} s, "
            f"cpu {cpu_seconds:.2f} s (compare() with the excerpts {scored[0]:.2f} s, cpu {scored[1]:.2f} s; "
            "then the page)"
        )
        print(f"cached runs: {cached}; report {page.stat().st_size / 1e6:.2f} MB")
        print(_load())
        print(warm.table())


if __name__ == "__main__":
    main()
