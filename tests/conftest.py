"""Shared fixtures: a short demo song on disk and helpers to write real audio files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemkit.demo import make_demo


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-second demo song in MUSDB layout (the full 30 s one is for the README and benchmarks)."""
    root = tmp_path_factory.mktemp("demo")
    make_demo(root, seconds=4.0)
    return root


@pytest.fixture
def write_wav(tmp_path: Path) -> Callable[..., Path]:
    def write(audio: np.ndarray, rate: int = 44_100, name: str = "input.wav", subtype: str = "FLOAT") -> Path:
        path = tmp_path / name
        sf.write(path, np.asarray(audio).T, rate, subtype=subtype)
        return path

    return write


def tone(seconds: float = 0.5, rate: int = 44_100, channels: int = 2, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([mono * (1 - 0.2 * c) for c in range(channels)])
