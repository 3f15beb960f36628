"""Fixtures for the evaluate tests: a provider test double that returns the references themselves (shifted,
scaled or failing on demand), built on the real SeparatorBase so it goes through stemkit's normalization."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from stemkit.errors import ProviderUnavailableError
from stemkit.protocol import Capabilities
from stemkit.provider import RawResult, SeparationJob, SeparatorBase

STEMS = ("vocals", "drums", "bass", "other")


class ReferenceCopy(SeparatorBase):
    """Returns the reference stems found next to the input (``<input folder>/<stem>.wav``)."""

    name = "refcopy"

    def __init__(
        self,
        *,
        delay: int = 0,
        gain: float = 1.0,
        fail: bool = False,
        max_concurrency: int | None = None,
        local: bool = True,
        barrier: threading.Barrier | None = None,
        label: str | None = None,
    ) -> None:
        super().__init__(None, {})
        self.delay = delay
        self.gain = gain
        self.fail = fail
        self.barrier = barrier
        self._caps = Capabilities(combinations=(STEMS,), max_concurrency=max_concurrency, local=local)
        self._label_override = label
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    @property
    def spec(self) -> str:
        return self._label_override or f"refcopy?delay={self.delay}&gain={self.gain}"

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
            if self.fail:
                raise ProviderUnavailableError("refcopy: the test double is down; try later", provider="refcopy")
            folder = Path(job.source.path).parent
            stems: dict[str, Any] = {}
            for name in job.combination:
                audio, _ = sf.read(folder / f"{name}.wav", dtype="float32", always_2d=True)
                data = audio.T * np.float32(self.gain)
                if self.delay:
                    data = np.pad(data, ((0, 0), (self.delay, 0)))[:, : data.shape[1]]
                stems[name] = data
            return RawResult(stems=stems, sample_rate=job.source.sample_rate, model="copy")
        finally:
            with self._lock:
                self.active -= 1


@pytest.fixture
def refcopy() -> Callable[..., ReferenceCopy]:
    return ReferenceCopy


@pytest.fixture
def musdb_root(tmp_path: Path, demo_dir: Path) -> Path:
    """A MUSDB18-HQ-like root with two tracks under test/: the demo song and a quieter copy of it."""
    root = tmp_path / "musdb"
    for track, gain in (("Alpha - One", 1.0), ("Beta - Two", 0.5)):
        folder = root / "test" / track
        folder.mkdir(parents=True)
        for name in ("mixture", *STEMS):
            audio, rate = sf.read(demo_dir / f"{name}.wav", dtype="float32", always_2d=True)
            sf.write(folder / f"{name}.wav", audio * gain, rate, subtype="FLOAT")
    return root


class TwoStemCopy(SeparatorBase):
    """A vocals/instrumental provider: the reference vocals, and the mixture minus them as the instrumental."""

    name = "twostem"

    @property
    def spec(self) -> str:
        return "twostem"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(combinations=(("vocals", "instrumental"),), local=True)

    def _separate(self, job: SeparationJob) -> RawResult:
        folder = Path(job.source.path).parent
        vocals, _ = sf.read(folder / "vocals.wav", dtype="float32", always_2d=True)
        mixture, _ = sf.read(folder / "mixture.wav", dtype="float32", always_2d=True)
        stems = {"vocals": vocals.T, "instrumental": (mixture - vocals).T}
        return RawResult(stems={n: stems[n] for n in job.combination}, sample_rate=job.source.sample_rate)


@pytest.fixture
def twostem() -> Callable[..., TwoStemCopy]:
    def make() -> TwoStemCopy:
        return TwoStemCopy(None, {})

    return make
