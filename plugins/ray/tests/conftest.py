"""Fixtures for the Ray engine's tests: one real local Ray for the whole session (2 CPUs, a small object
store), songs on disk, a StemSplit emulator on loopback, and helpers to compare outputs and kill a worker."""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from stemkit.demo import make_demo

ray = pytest.importorskip("ray")

#: the emulator's test key; Ray's workers inherit the environment of the process that starts Ray, which is
#: how keys reach workers in production too (stemkit never ships a key to them)
from stemkit_stemsplit.emulator import DEFAULT_API_KEY  # noqa: E402

SEPARATION_ACTOR = "SeparateSongs"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """A real local Ray, started once: 2 CPUs, 256 MB of object store, no dashboard. Its workers get the
    emulator's key from the environment Ray starts with; this process's environment is put back at once, so
    no other test sees the key."""
    before = os.environ.get("STEMSPLIT_API_KEY")
    os.environ["STEMSPLIT_API_KEY"] = DEFAULT_API_KEY
    try:
        if not ray.is_initialized():
            ray.init(
                num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024**2, log_to_driver=False,
                configure_logging=False,
            )  # fmt: skip
    finally:
        if before is None:
            del os.environ["STEMSPLIT_API_KEY"]
        else:
            os.environ["STEMSPLIT_API_KEY"] = before
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of four short songs (different lengths) and one file that is not audio."""
    root = tmp_path_factory.mktemp("catalogue")
    for index, seconds in enumerate((2.0, 2.5, 3.0, 1.5)):
        demo = make_demo(tmp_path_factory.mktemp(f"demo{index}"), seconds=seconds)
        (root / f"song{index}.wav").write_bytes(demo.read_bytes())
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    return root


@pytest.fixture(scope="session")
def short_songs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Eight distinct songs of 1.5 to 3 seconds (each at its own level: no two share a cache entry)."""
    root = tmp_path_factory.mktemp("short")
    songs = []
    for index in range(8):
        demo = make_demo(tmp_path_factory.mktemp(f"short{index}"), seconds=1.5 + 0.5 * (index % 4))
        audio, rate = sf.read(demo, dtype="float32")
        songs.append(root / f"short{index}.wav")
        sf.write(songs[-1], audio * (1.0 - index / 20), rate, subtype="PCM_16")
    return songs


def mask_peak_timestamp(data: bytes) -> bytes:
    """A WAV file's bytes with libsndfile's PEAK chunk timestamp zeroed: it records when the file was
    written, so two runs of the same separation differ there and nowhere else."""
    out = bytearray(data)
    offset = 12
    while offset + 8 <= len(out):
        chunk, size = out[offset : offset + 4], struct.unpack("<I", out[offset + 4 : offset + 8])[0]
        if chunk == b"PEAK":
            out[offset + 12 : offset + 16] = b"\0\0\0\0"  # version (4 bytes), then the timestamp
        offset += 8 + size + (size & 1)
    return bytes(out)


def same_files(a: Path, b: Path) -> bool:
    return mask_peak_timestamp(a.read_bytes()) == mask_peak_timestamp(b.read_bytes())


def audio_of(path: Path) -> bytes:
    """A float WAV's samples as stemkit holds them: float32 (channels, frames), C order."""
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T).tobytes()


@dataclass
class Emulated:
    emulator: Any
    base_url: str

    def spec(self, extra: str = "") -> str:
        return f"stemsplit?base_url={self.base_url}&format=wav{extra}"

    @property
    def requests(self) -> list[Any]:
        return list(self.emulator.recorder.requests)

    def job_posts(self) -> list[Any]:
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/jobs")]

    def uploads(self) -> list[Any]:
        return [r for r in self.requests if r.method == "PUT"]

    def jobs_by_file(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job in list(self.emulator.state.jobs.values()):
            name = getattr(job, "file_name", None) or "?"
            counts[name] = counts.get(name, 0) + 1
        return counts


@pytest.fixture
def stemsplit_emulator() -> Callable[..., Emulated]:
    """``stemsplit_emulator(rate_limit=60, processing_seconds=0.05)``: a StemSplit emulator on loopback."""
    from stemkit_stemsplit.emulator import EmulatorConfig, StemSplitEmulator

    with contextlib.ExitStack() as stack:

        def start(**config: Any) -> Emulated:
            config.setdefault("processing_seconds", 0.05)
            config.setdefault("queue_seconds", 0.0)
            emulator = StemSplitEmulator(EmulatorConfig(**config))
            server = stack.enter_context(emulator.serve())
            return Emulated(emulator, server.base_url)

        yield start  # type: ignore[misc]


def _descendants() -> set[int]:
    """This process's descendants: the Ray it started (raylet, workers, actors), and nothing else on the
    machine — a test kills only processes it started."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    mine = {os.getpid()}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                grew = True
    mine.discard(os.getpid())
    return mine


def separation_workers(*, busy: bool = False) -> list[int]:
    """PIDs of this session's separation actor processes (Ray titles them by actor class, and by the method
    while one runs: ``ray::MapWorker(MapBatches(SeparateSongs)).submit``); ``busy``: only those separating now."""
    found = []
    for pid in sorted(_descendants()):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith("ray::") and SEPARATION_ACTOR in title and (not busy or ".submit" in title):
            found.append(pid)
    return found


class Killer:
    """Kills one separation worker while it separates a song (SIGKILL, as the OOM killer or a lost node
    would), once ``ready()`` holds."""

    def __init__(self, ready: Callable[[], bool], *, deadline: float = 120.0) -> None:
        self.ready = ready
        self.deadline = deadline
        self.killed: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        end = time.monotonic() + self.deadline
        # Polling is the only way to see another process's state; bounded in count and time.
        while not self._stop.is_set() and time.monotonic() < end:
            if self.ready():
                workers = separation_workers(busy=True)
                if workers:
                    self.killed = workers[0]
                    os.kill(workers[0], signal.SIGKILL)
                    return
            self._stop.wait(0.02)
