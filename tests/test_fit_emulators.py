"""Fitting inputs to the hosted providers' real limits, against their emulators over real sockets: a 70 MB WAV
to EzStems' Basic plan (30 MB), a FLAC file to EzStems (MP3/WAV/M4A only), a 61-minute input to StemSplit
(60 min, 50 MB), and a chain that fits a provider instead of skipping it."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import stemkit
from stemkit.compose import estimate_sent
from stemkit.demo import synthesize
from stemkit.evaluate.metrics import sdr
from stemkit.hosted import PollPolicy, RetryPolicy
from stemkit.routing import reset_breakers
from stemkit_ezstems import EzStemsSeparator
from stemkit_ezstems._service import PLAN_LIMITS
from stemkit_ezstems.testing import RunningEmulator, running_emulator
from stemkit_stemsplit import StemSplitSeparator
from stemkit_stemsplit.emulator import DEFAULT_API_KEY, EmulatorConfig, StemSplitEmulator

RETRY = RetryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.05, jitter=0.0)
POLL = PollPolicy(initial=0.05, multiplier=1.5, max_interval=0.25, min_interval=0.01)


def tiled(path: Path, seconds: float, rate: int, channels: int, subtype: str) -> Path:
    """A long input made quickly: 20 s of the demo song, tiled (real music, not silence)."""
    pattern = synthesize(20.0, rate)["mixture"]
    if channels == 1:
        pattern = pattern.mean(axis=0, keepdims=True)
    frames = int(seconds * rate)
    with sf.SoundFile(path, "w", rate, channels, subtype=subtype) as out:
        for start in range(0, frames, pattern.shape[1]):
            out.write(pattern[:, : min(pattern.shape[1], frames - start)].T)
    return path


@pytest.fixture(scope="module")
def ezstems() -> Iterator[RunningEmulator]:
    with running_emulator(rate_limit=1_000_000, workers=3) as emu:
        yield emu


def ezstems_separator(emu: RunningEmulator, **options: object) -> EzStemsSeparator:
    return EzStemsSeparator(options={"base_url": emu.base_url, "plan": "basic", **options}, api_key=emu.api_key,
                            retry=RETRY, poll=POLL)  # fmt: skip


@pytest.fixture(scope="module")
def wav_70mb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """70 MB of 32-bit float 96 kHz stereo WAV (a studio bounce, 91 s): more than twice the Basic plan's 30 MB."""
    path = tiled(tmp_path_factory.mktemp("big") / "bounce.wav", 70e6 / 8 / 96_000, 96_000, 2, "FLOAT")
    assert path.stat().st_size > 70e6 > 2 * PLAN_LIMITS["basic"]
    return path


def test_a_70_mb_wav_goes_to_ezstems_basic_as_one_320_kbps_mp3_at_48_khz(ezstems: RunningEmulator,
                                                                           wav_70mb: Path) -> None:  # fmt: skip
    before = ezstems.count("POST", "upload")
    with ezstems_separator(ezstems) as sep:
        result = sep.separate(wav_70mb, stems=["vocals", "instrumental"])
    info = sf.info(wav_70mb)
    assert (result.frames, result.sample_rate, result.channels) == (info.frames, 96_000, 2)
    fit = result.provenance.extra["fit"]
    assert (fit["format"], fit["bitrate_kbps"], fit["sample_rate"], fit["chunks"]) == ("mp3", 320, 48_000, 1)
    assert "over the 31 MB limit" in fit["reasons"][0]
    assert result.provenance.job_id is not None
    assert result.provenance.model == "spleeter:2stems"
    assert ezstems.count("POST", "upload") == before + 1
    vocals = result["vocals"].audio
    assert vocals.shape == (2, info.frames)
    assert np.isfinite(vocals).all()
    assert np.abs(vocals).max() > 0.01


def test_a_70_mb_wav_goes_to_ezstems_basic_losslessly_in_overlapping_wav_chunks(
    ezstems: RunningEmulator, wav_70mb: Path
) -> None:
    before = ezstems.count("POST", "upload")
    with ezstems_separator(ezstems, fit="lossless") as sep:
        assert sep.spec.endswith("fit=lossless")
        result = sep.separate(wav_70mb, stems=["vocals", "instrumental"])
    info = sf.info(wav_70mb)
    assert (result.frames, result.sample_rate, result.channels) == (info.frames, 96_000, 2)
    fit = result.provenance.extra["fit"]
    assert (fit["format"], fit["subtype"], fit["chunks"], fit["lossless"]) == ("wav", "FLOAT", 3, True)
    assert len({job["job_id"] for job in fit["jobs"]}) == 3
    assert ezstems.count("POST", "upload") == before + 3
    assert result.provenance.job_id is None  # three jobs: each is in the fit record
    mixture = result.mixture
    assert mixture is not None
    # Spleeter-by-dsp's two stems sum to what it was sent; chunks in lossless WAV keep that across seams.
    total = result["vocals"].audio + result["instrumental"].audio
    assert float(sdr(mixture.audio, total)) > 40.0


def test_a_flac_input_goes_to_ezstems_as_lossless_wav(ezstems: RunningEmulator, tmp_path: Path) -> None:
    flac = tiled(tmp_path / "take.flac", 12.0, 44_100, 2, "PCM_16")
    with ezstems_separator(ezstems) as sep:
        result = sep.separate(flac, stems=["vocals", "instrumental"])
    assert result.frames == sf.info(flac).frames
    fit = result.provenance.extra["fit"]
    assert (fit["format"], fit["subtype"], fit["chunks"], fit["lossless"]) == ("wav", "PCM_16", 1, True)
    assert fit["reasons"] == [".flac input is not accepted (takes m4a, mp3, wav)"]
    with stemkit.load("dsp") as dsp:  # the emulator separates with dsp: same audio in, same stems out
        local = dsp.separate(flac, stems=["vocals"])
    np.testing.assert_allclose(result["vocals"].audio, local["vocals"].audio, atol=2e-4)


def test_a_chain_fits_ezstems_instead_of_skipping_it(ezstems: RunningEmulator, tmp_path: Path) -> None:
    reset_breakers()
    flac = tiled(tmp_path / "take.flac", 6.0, 44_100, 2, "PCM_16")
    spec = f"ezstems?base_url={ezstems.base_url}&stems=2 | dsp"
    with stemkit.load(spec, provider_kwargs={"ezstems": {"api_key": ezstems.api_key, "poll": POLL}}) as chain:
        result = chain.separate(flac, stems=["vocals"])
    assert result.provider == "ezstems"
    assert [a.outcome for a in result.attempts] == ["ok"]
    assert result.provenance.extra["fit"]["format"] == "wav"


def test_a_61_minute_input_goes_to_stemsplit_in_two_chunks_billed_as_estimated(tmp_path: Path) -> None:
    long = tiled(tmp_path / "set.wav", 61 * 60.0, 8_000, 1, "PCM_16")  # 58.6 MB: over 60 min and 50 MB
    config = EmulatorConfig(processing_seconds=0.05, queue_seconds=0.0, credits_seconds=10_000, rate_limit=1_000_000)
    emulator = StemSplitEmulator(config)
    with emulator.serve() as server:
        sep = StemSplitSeparator(options={"base_url": server.base_url}, api_key=DEFAULT_API_KEY, retry=RETRY,
                                 poll=POLL)  # fmt: skip
        with sep:
            estimate = estimate_sent(sep, long)
            result = sep.separate(long, stems=["vocals"])
    info = sf.info(long)
    assert (result.frames, result.sample_rate, result.channels) == (info.frames, 8_000, 1)
    fit = result.provenance.extra["fit"]
    assert (fit["chunks"], fit["format"], fit["lossless"]) == (2, "wav", True)
    assert any("61.0 min is over the 60 min limit" in r for r in fit["reasons"])
    assert all(end - start <= 3600 for start, end in fit["pieces"])
    # StemSplit bills each job's seconds rounded up; the estimate said what would be sent.
    assert estimate.jobs == 2
    assert result.provenance.cost is not None
    assert result.provenance.cost.amount == sum(math.ceil(s) for s in estimate.job_seconds)
    assert [job["cost"]["amount"] for job in fit["jobs"]] == [math.ceil(s) for s in estimate.job_seconds]
    vocals = result["vocals"].audio
    assert np.isfinite(vocals).all()
    assert np.abs(vocals).max() > 0.01
