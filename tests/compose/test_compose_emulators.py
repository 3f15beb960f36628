"""Ensembles and pipelines across the real hosted providers, against their emulators over real sockets on
loopback, mixed with the local dsp provider: hosted and local members combined, a hosted member failing,
and a two-stage pipeline with provenance per stage — sync and async."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
import soundfile as sf

import stemkit
from stemkit.compose.ensemble import Ensemble
from stemkit.compose.pipeline import Pipeline
from stemkit.errors import ProviderUnavailableError
from stemkit.hosted import PollPolicy, RetryPolicy
from stemkit.hosted.faults import FaultPlan
from stemkit.routing import reset_breakers
from stemkit_ezstems.testing import RunningEmulator, running_emulator
from stemkit_stemsplit.emulator import DEFAULT_API_KEY, EmulatorConfig, StemSplitEmulator

RETRY = RetryPolicy(max_attempts=2, backoff_initial=0.01, backoff_max=0.02, jitter=0.0)
POLL = PollPolicy(initial=0.01, multiplier=1.5, max_interval=0.05, min_interval=0.005)
FLAVOURS = pytest.mark.parametrize("flavour", ["sync", "async"])


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    reset_breakers()
    yield
    reset_breakers()


@pytest.fixture(scope="module")
def track(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stemkit.demo import make_demo

    return make_demo(tmp_path_factory.mktemp("track"), seconds=1.5)


@contextlib.contextmanager
def stemsplit(*faults: str) -> Iterator[tuple[StemSplitEmulator, str]]:
    emulator = StemSplitEmulator(
        EmulatorConfig(faults=FaultPlan.parse(faults), processing_seconds=0.02, queue_seconds=0.0)
    )
    with emulator.serve() as server:
        yield emulator, server.base_url


def kwargs(ez: RunningEmulator | None = None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"stemsplit": {"api_key": DEFAULT_API_KEY, "retry": RETRY, "poll": POLL}}
    if ez is not None:
        out["ezstems"] = {"api_key": ez.api_key, "retry": RETRY, "poll": POLL}
    return out


def jobs(emulator: StemSplitEmulator) -> int:
    return sum(1 for r in emulator.recorder.requests if r.method == "POST" and r.path.rstrip("/").endswith("/jobs"))


def run(sep: Any, audio: Any, flavour: str, **options: Any) -> stemkit.StemSet:
    if flavour == "sync":
        return sep.separate(audio, **options)  # type: ignore[no-any-return]

    async def main() -> stemkit.StemSet:
        return await sep.aseparate(audio, **options)  # type: ignore[no-any-return]

    return anyio.run(main)


@FLAVOURS
def test_a_hosted_and_a_local_member_are_combined(track: Path, flavour: str) -> None:
    with stemsplit() as (split, url):
        spec = f"stemsplit?base_url={url}&format=wav + dsp"
        with stemkit.load(spec, provider_kwargs=kwargs()) as sep:
            assert isinstance(sep, Ensemble)
            assert sep.capabilities.needs_network is False  # dsp alone can serve (on_failure=drop)
            result = run(sep, track, flavour, stems=["vocals", "instrumental"])
        assert jobs(split) == 1
        with stemkit.load(f"stemsplit?base_url={url}&format=wav", **kwargs()["stemsplit"]) as alone:
            hosted = alone.separate(track, stems=["vocals", "instrumental"])
    with stemkit.load("dsp") as dsp:
        local = dsp.separate(track, stems=["vocals", "instrumental"])
    members = result.provenance.extra["members"]
    assert [(m["provider"], m["outcome"]) for m in members] == [("stemsplit", "ok"), ("dsp", "ok")]
    assert members[0]["job_id"]
    assert result.provenance.cost is not None
    assert result.provenance.cost.unit == "seconds"
    assert [a.outcome for a in result.attempts] == ["ok", "ok"]
    assert (result.frames, result.sample_rate) == (sf.info(track).frames, 44_100)
    assert result.provenance.extra["stems"]["vocals"]["members"] == [0, 1]
    for name in ("vocals", "instrumental"):
        np.testing.assert_allclose(result[name].audio, (hosted[name].audio + local[name].audio) / 2, atol=1e-5)


def test_two_hosted_members_both_submit_their_jobs(track: Path) -> None:
    with stemsplit() as (split, url), running_emulator() as ez:
        spec = f"(stemsplit?base_url={url}&format=wav + ezstems?base_url={ez.base_url}&stems=2)?method=median"
        with stemkit.load(spec, provider_kwargs=kwargs(ez)) as sep:
            result = sep.separate(track, stems=["vocals", "instrumental"])
        assert jobs(split) == 1
        assert ez.count("POST", "upload") == 1
    assert [m["provider"] for m in result.provenance.extra["members"]] == ["stemsplit", "ezstems"]
    assert result.provenance.options["method"] == "median"


@FLAVOURS
def test_a_hosted_member_that_is_down_is_dropped_and_the_trail_says_so(track: Path, flavour: str) -> None:
    with stemsplit("5xx:status=503") as (_, url):
        with stemkit.load(f"stemsplit?base_url={url} + dsp", provider_kwargs=kwargs()) as sep:
            result = run(sep, track, flavour, stems=["vocals"])
        with (
            stemkit.load(f"(stemsplit?base_url={url} + dsp)?on_failure=fail", provider_kwargs=kwargs()) as strict,
            pytest.raises(ProviderUnavailableError),
        ):
            run(strict, track, flavour, stems=["vocals"])
    trail = [(a.provider.split("?")[0], a.outcome, a.error_class) for a in result.attempts]
    assert trail == [("stemsplit", "failed", "ProviderUnavailableError"), ("dsp", "ok", None)]
    assert result.provenance.extra["stems"]["vocals"]["members"] == [1]
    with stemkit.load("dsp") as dsp:
        np.testing.assert_allclose(result["vocals"].audio, dsp.separate(track, stems=["vocals"])["vocals"].audio,
                                   atol=1e-6)


@FLAVOURS
def test_a_two_stage_pipeline_from_the_hosted_provider_to_dsp(track: Path, flavour: str) -> None:
    with stemsplit() as (_, url):
        spec = f"stemsplit?base_url={url}&format=wav >[instrumental] dsp"
        with stemkit.load(spec, provider_kwargs=kwargs()) as sep:
            assert isinstance(sep, Pipeline)
            assert sep.stems == ("vocals", "drums", "bass", "other")
            result = run(sep, track, flavour)
            hosted_alone = stemkit.load(f"stemsplit?base_url={url}&format=wav", **kwargs()["stemsplit"])
            with hosted_alone:
                reference = hosted_alone.separate(track, stems=["vocals", "instrumental"])
    assert list(result) == ["vocals", "drums", "bass", "other"]
    stages = result.provenance.extra["stages"]
    assert [(s["provider"], s["feed"], s["parts"]) for s in stages] == [
        ("stemsplit", "input", ["vocals", "instrumental"]),
        ("dsp", "instrumental", ["drums", "bass"]),
    ]
    assert stages[0]["job_id"]
    assert stages[0]["cost"]["unit"] == "seconds"
    assert stages[1]["input"] == "array"
    assert result.provenance.cost is not None
    assert [a.outcome for a in result.attempts] == ["ok", "ok"]
    # The hosted vocals are kept as they are; the instrumental's parts sum back to the hosted instrumental.
    np.testing.assert_allclose(result["vocals"].audio, reference["vocals"].audio, atol=1e-6)
    parts = result["drums"].audio + result["bass"].audio + result["other"].audio
    np.testing.assert_allclose(parts, reference["instrumental"].audio, atol=1e-5)


def test_a_pipeline_whose_second_stage_is_hosted_uploads_the_stem_losslessly(track: Path) -> None:
    with stemsplit() as (split, url):
        spec = f"dsp[vocals,instrumental] >[instrumental] stemsplit?base_url={url}&format=wav[drums,bass,other]"
        with stemkit.load(spec, provider_kwargs=kwargs()) as sep:
            result = sep.separate(track, stems=["vocals", "drums", "instrumental"])
        assert jobs(split) == 1
    stage = result.provenance.extra["stages"][1]
    assert (stage["provider"], stage["input"], stage["feed"]) == ("stemsplit", "flac", "instrumental")
    with stemkit.load("dsp") as dsp:
        alone = dsp.separate(track, stems=["vocals", "instrumental"])
    np.testing.assert_allclose(result["instrumental"].audio, alone["instrumental"].audio, atol=1e-5)


def test_a_failing_pipeline_inside_a_chain_falls_back(track: Path) -> None:
    with stemsplit("5xx:status=503") as (_, url), stemkit.load(
        f"(stemsplit?base_url={url} >[instrumental] dsp) | dsp", provider_kwargs=kwargs()
    ) as chain:
        result = chain.separate(track, stems=["vocals", "drums"])
    assert result.provider == "dsp"
    assert [(a.outcome, a.error_class) for a in result.attempts] == [("failed", "ProviderUnavailableError"),
                                                                      ("ok", None)]
