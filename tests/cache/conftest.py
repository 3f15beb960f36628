"""Fixtures for the result cache tests: short real songs on disk, a counting local provider, a StemSplit
emulator on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from stemkit.demo import make_demo
from stemkit.hosted import PollPolicy, RetryPolicy
from stemkit.protocol import Capabilities
from stemkit.provider import RawResult, SeparationJob, SeparatorBase

POLL = PollPolicy(initial=0.01, multiplier=1.5, max_interval=0.05, min_interval=0.005)
RETRY = RetryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.02, jitter=0.0)


@pytest.fixture(scope="session")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-second synthesized song (WAV, 44.1 kHz stereo)."""
    return make_demo(tmp_path_factory.mktemp("cache-song"), seconds=2.0)


@pytest.fixture
def songs(tmp_path: Path) -> list[Path]:
    """Three different 1.5-second songs in one folder (hosted providers take 1 s and more)."""
    folder = tmp_path / "songs"
    folder.mkdir()
    rng = np.random.default_rng(7)
    out = []
    for i in range(3):
        audio = (0.2 * rng.standard_normal((2, 66_150))).astype(np.float32)
        path = folder / f"song{i}.wav"
        sf.write(path, audio.T, 44_100, subtype="FLOAT")
        out.append(path)
    return out


class Loud(SeparatorBase):
    """A local provider whose stems go far past full scale and hold values only float32 keeps exactly."""

    name = "loud"

    def __init__(self, target: str | None = None, options: Any = None) -> None:
        super().__init__(target, options)
        self.calls = 0

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(combinations=(("vocals", "drums", "bass", "other"),), local=True)

    def _separate(self, job: SeparationJob) -> RawResult:
        self.calls += 1
        audio = job.source.read()
        vocals = audio * np.float32(3.75)  # up to ±3.75: an integer format would clip it
        drums = np.full_like(audio, np.float32(1e-38))  # subnormal-adjacent values survive only as float32
        drums[:, ::2] = np.float32(-0.0)
        bass = np.nextafter(audio, np.float32(2.0)).astype(np.float32)
        other = audio - vocals - drums - bass
        return RawResult({"vocals": vocals, "drums": drums, "bass": bass, "other": other},
                         sample_rate=job.source.sample_rate, model="loud-1")  # fmt: skip


@pytest.fixture
def loud() -> Loud:
    return Loud()


@dataclass
class Emulated:
    """A StemSplit emulator on loopback and what the tests read from it."""

    emulator: Any
    base_url: str
    api_key: str

    def submissions(self) -> int:
        """Job submissions (POST /jobs) the emulator received."""
        return sum(1 for r in self.emulator.recorder.requests if r.method == "POST" and r.path.endswith("/jobs"))

    def requests(self) -> int:
        return len(self.emulator.recorder.requests)

    def spec(self, extra: str = "") -> str:
        return f"stemsplit?base_url={self.base_url}&format=wav{extra}"

    def kwargs(self) -> dict[str, Any]:
        return {"api_key": self.api_key, "retry": RETRY, "poll": POLL}


@pytest.fixture
def stemsplit() -> Iterator[Emulated]:
    from stemkit_stemsplit.emulator import DEFAULT_API_KEY, EmulatorConfig, StemSplitEmulator

    emulator = StemSplitEmulator(EmulatorConfig(processing_seconds=0.02, queue_seconds=0.0))
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(emulator.serve())
        yield Emulated(emulator, server.base_url, DEFAULT_API_KEY)
