"""Fallback chains across the real hosted providers, against their emulators over real sockets (with faults):
the chain moves on, skips what capabilities rule out without a request, stops at once on bad audio, opens its
circuit breaker, records the trail, and adds no retries of its own."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import stemkit
from stemkit.errors import AllProvidersFailedError, InputError
from stemkit.hosted import PollPolicy, RetryPolicy
from stemkit.routing import BreakerSettings, reset_breakers
from stemkit_ezstems.testing import RunningEmulator, running_emulator
from stemkit_stemsplit.emulator import DEFAULT_API_KEY, EmulatorConfig, StemSplitEmulator

RETRY = RetryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.02, jitter=0.0)
POLL = PollPolicy(initial=0.01, multiplier=1.5, max_interval=0.05, min_interval=0.005)


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    reset_breakers()
    yield
    reset_breakers()


@contextlib.contextmanager
def stemsplit_emulator(*faults: str) -> Iterator[tuple[StemSplitEmulator, str]]:
    from stemkit.hosted.faults import FaultPlan

    emulator = StemSplitEmulator(EmulatorConfig(faults=FaultPlan.parse(faults), processing_seconds=0.02,
                                                queue_seconds=0.0))
    with emulator.serve() as server:
        yield emulator, server.base_url


def stemsplit_requests(emulator: StemSplitEmulator) -> int:
    return sum(1 for r in emulator.recorder.requests if "/api/" in r.path)


def chain(
    stemsplit_url: str, ezstems: RunningEmulator | None, *tail: str, fit: str | None = None, **settings: Any
) -> stemkit.Separator:
    links = [f"stemsplit?base_url={stemsplit_url}&format=wav" + (f"&fit={fit}" if fit else "")]
    if ezstems is not None:
        links.append(f"ezstems?base_url={ezstems.base_url}&stems=2")
    links.extend(tail)
    kwargs = {
        "stemsplit": {"api_key": DEFAULT_API_KEY, "retry": RETRY, "poll": POLL},
        "ezstems": {"api_key": ezstems.api_key if ezstems else None, "retry": RETRY, "poll": POLL},
    }
    return stemkit.load(" | ".join(links), provider_kwargs=kwargs, **settings)


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stemkit.demo import make_demo

    return make_demo(tmp_path_factory.mktemp("song"), seconds=1.0)


def test_stemsplit_down_falls_back_to_ezstems(song: Path) -> None:
    with stemsplit_emulator("5xx:status=503") as (split, url), running_emulator() as ez, chain(url, ez) as sep:
        result = sep.separate(song, stems=["vocals", "instrumental"])
    assert result.provider == "ezstems"
    trail = [(a.provider.split("?")[0], a.outcome, a.error_class) for a in result.attempts]
    assert trail == [("stemsplit", "failed", "ProviderUnavailableError"), ("ezstems", "ok", None)]
    # One retry layer: the transport's attempts, once — the chain adds none (3 = RETRY.max_attempts).
    assert stemsplit_requests(split) == RETRY.max_attempts
    assert (result.frames, result.sample_rate) == (sf.info(song).frames, 44_100)


def test_both_hosted_down_the_local_provider_serves(song: Path) -> None:
    with (
        stemsplit_emulator("5xx:status=503") as (split, url),
        running_emulator("5xx:status=500") as ez,
        chain(url, ez, "dsp") as sep,
    ):
        result = sep.separate(song, stems=["vocals", "instrumental"])
        ez_requests = ez.count("POST", "upload")
    assert result.provider == "dsp"
    assert [a.outcome for a in result.attempts] == ["failed", "failed", "ok"]
    assert stemsplit_requests(split) == RETRY.max_attempts
    assert ez_requests >= 1


def test_with_fitting_off_a_file_too_large_for_stemsplit_skips_it_without_a_request(tmp_path: Path) -> None:
    big = tmp_path / "big.wav"
    frames = (50 * 1024 * 1024) // 4 + 44_100
    with sf.SoundFile(big, "w", 44_100, 2, subtype="PCM_16") as out:
        block = np.zeros((1 << 20, 2), dtype=np.int16)
        for start in range(0, frames, block.shape[0]):
            out.write(block[: min(block.shape[0], frames - start)])
    with stemsplit_emulator() as (split, url), chain(url, None, "dsp", fit="off") as sep:
        result = sep.separate(big, stems=["vocals"])
    assert stemsplit_requests(split) == 0
    assert result.attempts[0].outcome == "skipped"
    assert "MB limit" in result.attempts[0].reason
    assert result.provider == "dsp"


def test_bad_audio_stops_the_chain_before_any_request(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_text("corrupt")
    with stemsplit_emulator() as (split, url), running_emulator() as ez, chain(url, ez, "dsp") as sep:
        with pytest.raises(InputError, match=r"bad\.wav"):
            sep.separate(bad)
        assert ez.count("POST", "upload") == 0
    assert stemsplit_requests(split) == 0


def test_the_breaker_stops_calling_a_failing_provider(song: Path) -> None:
    with stemsplit_emulator("5xx:status=503") as (split, url), chain(
        url, None, "dsp", breaker=BreakerSettings(failures=2, cooldown=3600)
    ) as sep:
        for _ in range(2):
            sep.separate(song, stems=["vocals"])
        assert stemsplit_requests(split) == 2 * RETRY.max_attempts
        result = sep.separate(song, stems=["vocals"])
        assert stemsplit_requests(split) == 2 * RETRY.max_attempts
    assert "circuit open" in result.attempts[0].reason


def test_every_provider_failing_reports_the_whole_trail(song: Path) -> None:
    with (
        stemsplit_emulator("fail-job:message=GPU on fire") as (_, url),
        running_emulator("fail-job:message=spleeter crashed") as ez,
        chain(url, ez) as sep,
        pytest.raises(AllProvidersFailedError) as info,
    ):
        sep.separate(song, stems=["vocals"])
    message = str(info.value)
    assert "GPU on fire" in message
    assert "spleeter crashed" in message
    assert [type(a.error).__name__ for a in info.value.attempts] == ["JobFailedError", "JobFailedError"]


def test_a_batch_through_a_chain_finishes_despite_a_corrupt_file(song: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(song, folder / f"{name}.wav")
    (folder / "corrupt.wav").write_text("nope")
    with stemsplit_emulator("5xx:status=503") as (_, url), running_emulator() as ez, chain(url, ez) as sep:
        outcomes = list(stemkit.separate_many([folder], sep, concurrency=4, output_dir=tmp_path / "out",
                                              stems="vocals"))
    assert sorted((o.name, o.ok) for o in outcomes) == [("a", True), ("b", True), ("c", True), ("corrupt", False)]
    assert all(o.provider == "ezstems" for o in outcomes if o.ok)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "b", "c"]


def test_separate_passes_an_api_key_to_a_hosted_provider_and_never_shows_it(song: Path) -> None:
    with running_emulator(api_key="ez_secret_123") as ez:
        result = stemkit.separate(song, provider=f"ezstems?base_url={ez.base_url}&stems=2", api_key=ez.api_key,
                                  stems=["vocals"])
        assert result.provider == "ezstems"
        assert "ez_secret_123" not in result.to_json()
        with pytest.raises(stemkit.AuthenticationError) as info:
            stemkit.separate(song, provider=f"ezstems?base_url={ez.base_url}&stems=2", api_key="wrong_key_456")
    assert "wrong_key_456" not in str(info.value)


def test_a_key_for_a_provider_that_takes_none_is_a_config_error(song: Path) -> None:
    with pytest.raises(stemkit.ConfigError, match="api_key"):
        stemkit.separate(song, provider="dsp", api_key="x")
