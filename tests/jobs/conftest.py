"""Fixtures for the job ledger, resume, batch and cost tests: short real songs on disk, the StemSplit and
EzStems emulators on loopback, and a way to abandon a separation once its job is submitted (what a killed
process leaves behind, in-process and deterministic: it waits for the provider's acceptance, never a clock)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
import soundfile as sf

from stemkit.hosted import PollPolicy, RetryPolicy
from stemkit.protocol import ProgressEvent, Separator

POLL = PollPolicy(initial=0.01, multiplier=1.5, max_interval=0.05, min_interval=0.005)
RETRY = RetryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.02, jitter=0.0)


def write_song(path: Path, seconds: float, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    audio = (0.2 * rng.standard_normal((2, int(seconds * 44_100)))).astype(np.float32)
    sf.write(path, audio.T, 44_100, subtype="PCM_16")
    return path


@pytest.fixture
def song(tmp_path: Path) -> Path:
    """A 1.5-second stereo song (hosted providers take 1 s and more): StemSplit bills it 2 seconds."""
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    return write_song(folder / "song.wav", 1.5, seed=1)


@pytest.fixture
def songs(tmp_path: Path) -> list[Path]:
    """Four different 1.5-second songs in one folder."""
    folder = tmp_path / "songs"
    folder.mkdir()
    return [write_song(folder / f"song{i}.wav", 1.5, seed=10 + i) for i in range(4)]


@dataclass
class StemSplit:
    """A StemSplit emulator on loopback and what the tests read from it."""

    emulator: Any
    base_url: str
    api_key: str

    def requests(self, method: str | None = None, suffix: str = "") -> list[Any]:
        return [r for r in self.emulator.recorder.requests
                if (method is None or r.method == method) and r.path.endswith(suffix)]  # fmt: skip

    def submissions(self) -> int:
        """POST /jobs requests that reached the emulator (idempotent replays included)."""
        return len(self.requests("POST", "/jobs"))

    def uploads(self) -> int:
        return len(self.requests("PUT"))

    def jobs(self) -> int:
        """Jobs the emulator created (and billed)."""
        return len(self.emulator.state.jobs)

    @property
    def credits(self) -> int:
        return int(self.emulator.state.credits)

    def spec(self, extra: str = "") -> str:
        return f"stemsplit?base_url={self.base_url}&format=wav{extra}"

    def kwargs(self) -> dict[str, Any]:
        return {"api_key": self.api_key, "retry": RETRY, "poll": POLL}

    def load(self, extra: str = "", **kwargs: Any) -> Separator:
        import stemkit

        return stemkit.load(self.spec(extra), **self.kwargs(), **kwargs)


@contextlib.contextmanager
def stemsplit_emulator(**config: Any) -> Iterator[StemSplit]:
    from stemkit_stemsplit.emulator import DEFAULT_API_KEY, EmulatorConfig, StemSplitEmulator

    # No rate limit: these tests poll every few milliseconds, and a 429's Retry-After (up to a minute) would
    # only make them slow (the limit's own behaviour is tested with the transport and the Ray engine).
    settings = {"processing_seconds": 0.02, "queue_seconds": 0.0, "rate_limit": 1_000_000, **config}
    emulator = StemSplitEmulator(EmulatorConfig(**settings))
    with emulator.serve() as server:
        yield StemSplit(emulator, server.base_url, DEFAULT_API_KEY)


@pytest.fixture
def stemsplit() -> Iterator[StemSplit]:
    with stemsplit_emulator() as emulated:
        yield emulated


@pytest.fixture
def ezstems() -> Iterator[Any]:
    from stemkit_ezstems.testing import running_emulator

    with running_emulator(processing_seconds=0.02, rate_limit=1_000_000) as emu:
        yield emu


def abandon_after_submission(separator: Separator, audio: Any, **kwargs: Any) -> str:
    """Start separating ``audio`` and drop the work the moment the provider has accepted the job (its id is
    reported), as a process killed then would: the job id."""

    async def main() -> str:
        accepted = anyio.Event()
        seen: dict[str, str] = {}

        def progress(event: ProgressEvent) -> None:
            if event.job_id and event.stage in ("queued", "processing"):
                seen.setdefault("job", event.job_id)
                accepted.set()

        async with anyio.create_task_group() as group:

            async def run() -> None:
                await separator.aseparate(audio, progress=progress, **kwargs)

            group.start_soon(run)
            await accepted.wait()
            group.cancel_scope.cancel()
        return seen["job"]

    return anyio.run(main)
