"""Shared by the Ray engine benchmarks: a local Ray like the tests' (2 CPUs here), distinct demo songs, and the
CPU time of this process and every process it started (Ray's raylet, workers and actors are descendants)."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import soundfile as sf

from stemkit.demo import make_demo

_TICKS = os.sysconf("SC_CLK_TCK")


def start_ray(num_cpus: int = 2) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=num_cpus, include_dashboard=False, object_store_memory=512 * 1024**2,
                 log_to_driver=False, configure_logging=False)  # fmt: skip


def wait_idle(timeout: float = 120.0) -> None:
    """Wait until the previous run's actors have released their CPUs (Ray tears a pool down after the
    run's last row), so a run is not charged for the one before it."""
    import time

    import ray

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ray.available_resources().get("CPU", 0.0) >= ray.cluster_resources().get("CPU", 0.0) - 1e-6:
            return
        time.sleep(0.2)


def songs(count: int, seconds: float) -> list[Path]:
    """``count`` distinct songs (the demo song at different levels: no two share a cache entry)."""
    root = Path(tempfile.mkdtemp(prefix="stemkit-bench-ray-"))
    demo = make_demo(root / "demo", seconds=seconds)
    audio, rate = sf.read(demo, dtype="float32")
    out = []
    for index in range(count):
        path = root / f"song{index:03d}.wav"
        sf.write(path, audio * (1.0 - index / (4 * count)), rate, subtype="PCM_16")
        out.append(path)
    return out


def _cpu_ticks() -> dict[int, int]:
    """pid → user + system ticks, for every process whose ancestry reaches this one."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    mine = {os.getpid()}
    changed = True
    while changed:
        changed = False
        for pid, (parent, _) in stats.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                changed = True
    return {pid: stats[pid][1] for pid in mine if pid in stats}


class TreeCpu:
    """CPU seconds used by this process and its descendants (Ray's raylet, workers and actors) while the
    block runs: sampled every ``interval`` seconds, so a process that starts and ends between two samples
    is missed, and one that ends loses at most its last interval."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TreeCpu:
        self._first = _cpu_ticks()
        self._last = dict(self._first)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._last.update(_cpu_ticks())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._last.update(_cpu_ticks())
        self.seconds = sum(t - self._first.get(pid, 0) for pid, t in self._last.items()) / _TICKS
