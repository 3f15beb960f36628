"""Fixtures for the EzStems tests: a real emulator on loopback per test, short songs, fast policies."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemkit.hosted import PollPolicy, RetryPolicy
from stemkit_ezstems.client import default_retry_policy
from stemkit_ezstems.testing import RunningEmulator, running_emulator


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., RunningEmulator]]:
    """``make_emulator(*faults, processing_seconds=0.0, **options)``: emulators stopped after the test."""
    with contextlib.ExitStack() as stack:

        def make(*faults: str, **kwargs: object) -> RunningEmulator:
            return stack.enter_context(running_emulator(*faults, **kwargs))  # type: ignore[arg-type]

        yield make


@pytest.fixture(scope="session")
def _shared_emulator() -> Iterator[RunningEmulator]:
    with running_emulator(rate_limit=1_000_000) as emu:
        yield emu


@pytest.fixture
def emulator(_shared_emulator: RunningEmulator) -> Iterator[RunningEmulator]:
    """The session's emulator (starting one costs ~0.2 s), with no faults; tests that change keys, limits or
    the queue use ``make_emulator`` instead."""
    _shared_emulator.faults()
    yield _shared_emulator
    _shared_emulator.faults()


@pytest.fixture
def fast_retry() -> RetryPolicy:
    """EzStems' policy (403 retried) with millisecond backoff, so retry tests stay quick."""
    return dataclasses.replace(default_retry_policy(), backoff_initial=0.01, backoff_max=0.02, jitter=0.0)


@pytest.fixture
def fast_poll() -> PollPolicy:
    return PollPolicy(initial=0.01, multiplier=1.5, max_interval=0.05, min_interval=0.005)


def write_song(path: Path, seconds: float = 1.0, sample_rate: int = 22050) -> Path:
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tone = 0.2 * np.sin(2 * np.pi * 220 * t)[:, None] + 0.05 * rng.standard_normal((t.size, 2))
    sf.write(path, tone.astype(np.float32), sample_rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One second of stereo audio at 22.05 kHz."""
    return write_song(tmp_path_factory.mktemp("songs") / "song.wav")


@pytest.fixture(scope="session")
def big_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real WAV just over the Basic plan's 30 MiB."""
    path = tmp_path_factory.mktemp("big") / "big.wav"
    frames = (30 * 1024 * 1024) // 4 + 1000
    with sf.SoundFile(path, "w", samplerate=44100, channels=2, subtype="PCM_16") as out:
        block = np.zeros((1 << 20, 2), dtype=np.int16)
        left = frames
        while left > 0:
            out.write(block[: min(left, block.shape[0])])
            left -= block.shape[0]
    return path
