"""Fixtures for the compose tests: a provider test double built on the real SeparatorBase (so its output goes
through stemkit's normalization) that returns the reference stems stored next to the input, with its own
independent noise, a delay, a pause or a failure on demand."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from stemkit.errors import ProviderUnavailableError, SeparationTimeout
from stemkit.protocol import Capabilities
from stemkit.provider import RawResult, SeparationJob, SeparatorBase

STEMS = ("vocals", "drums", "bass", "other")


def reference_stems(folder: Path) -> dict[str, np.ndarray]:
    """The demo song's references as float32 (channels, frames), plus their instrumental."""
    out = {}
    for name in STEMS:
        audio, _ = sf.read(folder / f"{name}.wav", dtype="float32", always_2d=True)
        out[name] = np.ascontiguousarray(audio.T)
    out["instrumental"] = out["drums"] + out["bass"] + out["other"]
    return out


class NoisyCopy(SeparatorBase):
    """Returns the references found next to the input (``<folder>/<stem>.wav``) plus white noise of standard
    deviation ``noise`` (its own generator, seeded), delayed by ``delay`` samples."""

    name = "noisycopy"

    def __init__(
        self,
        *,
        seed: int = 0,
        noise: float = 0.0,
        delay: int = 0,
        fail: bool = False,
        combinations: tuple[tuple[str, ...], ...] = (STEMS,),
        local: bool = True,
        needs_key: bool = False,
        sleep: float = 0.0,
        barrier: threading.Barrier | None = None,
        gain: float = 1.0,
    ) -> None:
        super().__init__(None, {})
        self.seed, self.noise, self.delay, self.fail = seed, noise, delay, fail
        self.sleep, self.barrier, self.gain = sleep, barrier, gain
        self._caps = Capabilities(
            combinations=combinations, local=local, needs_network=not local, needs_api_key=needs_key,
            has_api_key=not needs_key, cost_unit=None if local else "seconds",
        )
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    @property
    def spec(self) -> str:
        return f"noisycopy?seed={self.seed}&noise={self.noise:g}&delay={self.delay}&fail={int(self.fail)}"

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    def _separate(self, job: SeparationJob) -> RawResult:
        with self._lock:
            self.calls += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.barrier is not None:
                self.barrier.wait()
            if self.sleep:
                left = job.remaining()
                time.sleep(self.sleep if left is None else max(0.0, min(self.sleep, left)))
                if left is not None and left < self.sleep:
                    raise SeparationTimeout(f"{self.spec}: the deadline passed", provider=self.name)
            if self.fail:
                raise ProviderUnavailableError("noisycopy: the test double is down; try later", provider=self.name)
            refs = reference_stems(Path(job.source.path).parent)
            rng = np.random.default_rng(self.seed)
            stems: dict[str, Any] = {}
            for name in job.combination:
                data = refs[name] * np.float32(self.gain)
                if self.noise:
                    data = data + rng.normal(0.0, self.noise, data.shape).astype(np.float32)
                if self.delay:
                    data = np.pad(data, ((0, 0), (self.delay, 0)))[:, : data.shape[1]]
                stems[name] = data
            cost = None if self._caps.local else __import__("stemkit.provenance").provenance.Cost(1.0, "seconds")
            return RawResult(stems=stems, sample_rate=job.source.sample_rate, model="copy", cost=cost)
        finally:
            with self._lock:
                self.active -= 1


@pytest.fixture
def noisy() -> Callable[..., NoisyCopy]:
    return NoisyCopy


@pytest.fixture
def refs(demo_dir: Path) -> dict[str, np.ndarray]:
    return reference_stems(demo_dir)


@pytest.fixture
def song(demo_dir: Path) -> Path:
    return demo_dir / "mixture.wav"
