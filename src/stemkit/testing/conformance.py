"""The checks behind :class:`stemkit.testing.ProviderConformance`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
import soundfile as sf

from stemkit.errors import ConfigError, InputError, ProviderLimitError, StemkitError
from stemkit.protocol import Capabilities, ProgressEvent, Separator
from stemkit.stems import CANONICAL_STEMS, vocabulary
from stemkit.stemset import StemSet

__all__ = ["STAGES", "ProviderConformance", "demo_clip"]

STAGES = frozenset({"prepare", "upload", "queued", "processing", "download", "separate", "write", "done"})
_DERIVABLE_PROBES = ("guitar", "piano", "drums", "bass", "other", "vocals", "instrumental")


def demo_clip(directory: Path, seconds: float = 2.0, sample_rate: int = 44_100, channels: int = 2) -> Path:
    """A short excerpt of the demo song as a 16-bit WAV (a format every provider accepts)."""
    from stemkit.demo import synthesize

    mixture = synthesize(seconds, sample_rate)["mixture"]
    if channels == 1:
        mixture = mixture.mean(axis=0, keepdims=True)
    path = directory / f"clip-{sample_rate}-{channels}ch.wav"
    sf.write(path, mixture.T, sample_rate, subtype="PCM_16")
    return path


def _assert_contract(result: StemSet, rate: int, channels: int, frames: int) -> None:
    assert (result.sample_rate, result.channels, result.frames) == (rate, channels, frames), (
        f"StemSet is {result.sample_rate} Hz x {result.channels} ch x {result.frames} frames; "
        f"the input was {rate} Hz x {channels} ch x {frames} frames"
    )
    known = vocabulary()
    for name, stem in result.items():
        assert known.is_known(name), f"stem name {name!r} is neither canonical nor registered (stemkit.stems)"
        assert stem.name == name
        audio = stem.audio
        assert audio.dtype == np.float32, f"{name}: dtype {audio.dtype}, not float32"
        assert audio.shape == (channels, frames), f"{name}: shape {audio.shape}, not {(channels, frames)}"
        assert np.isfinite(audio).all(), f"{name}: has NaN or infinite samples"


class ProviderConformance:
    """Subclass in a provider's tests and provide a ``separator`` fixture (and ``secret`` if it has one)."""

    @pytest.fixture
    def separator(self) -> Iterator[Separator]:  # pragma: no cover - always overridden
        raise NotImplementedError("provide a `separator` fixture returning the provider under test")

    @pytest.fixture
    def secret(self) -> str | None:
        """The API key (or other secret) the separator was configured with, if any."""
        return None

    @pytest.fixture
    def clip(self, tmp_path: Path) -> Path:
        return demo_clip(tmp_path)

    # -- the StemSet contract ---------------------------------------------------------------------------
    def test_default_stems_follow_the_stemset_contract(self, separator: Separator, clip: Path) -> None:
        info = sf.info(clip)
        result = separator.separate(clip)
        _assert_contract(result, info.samplerate, info.channels, info.frames)
        default = separator.capabilities.combinations[separator.capabilities.default_combination]
        assert set(result) == set(default), f"default stems {sorted(result)} != default combination {default}"

    def test_mono_input_at_another_rate_comes_back_mono_at_that_rate(
        self, separator: Separator, tmp_path: Path
    ) -> None:
        clip = demo_clip(tmp_path, seconds=1.5, sample_rate=22_050, channels=1)
        info = sf.info(clip)
        result = separator.separate(clip, stems=["vocals"] if "vocals" in _reachable(separator) else None)
        _assert_contract(result, 22_050, 1, info.frames)

    def test_requested_stems_are_derived_exactly_when_not_produced(self, separator: Separator, clip: Path) -> None:
        caps = separator.capabilities
        for stems in _requests(caps):
            plan = caps.plan(stems)
            result = separator.separate(clip, stems=stems)
            assert list(result) == list(stems), f"asked for {stems}, got {list(result)}"
            for derivation in plan.outputs:
                assert result[derivation.name].derived == (not derivation.direct), (
                    f"{derivation.name}: derived={result[derivation.name].derived}, but the plan "
                    f"{'derives' if not derivation.direct else 'produces'} it"
                )

    # -- capabilities honesty ---------------------------------------------------------------------------
    def test_every_combination_it_claims_is_produced_directly(self, separator: Separator, clip: Path) -> None:
        for combination in separator.capabilities.combinations:
            result = separator.separate(clip, stems=list(combination))
            assert set(result) == set(combination)
            assert not [n for n, s in result.items() if s.derived], f"{combination}: claimed but derived"

    def test_stems_it_cannot_produce_are_refused_before_any_work(self, separator: Separator, clip: Path) -> None:
        missing = [s for s in _names(separator) if s not in _reachable(separator)]
        if not missing:
            pytest.skip("this provider can produce or derive every canonical stem")
        with pytest.raises(ConfigError, match=missing[0]):
            separator.separate(clip, stems=[missing[0]])

    def test_inputs_past_its_limits_are_refused_with_a_provider_limit_error(
        self, separator: Separator, tmp_path: Path
    ) -> None:
        caps = separator.capabilities
        checked = False
        off = _fit_off(separator)
        if caps.min_duration_seconds:
            short = demo_clip(tmp_path, seconds=max(0.01, caps.min_duration_seconds / 2))
            with pytest.raises(ProviderLimitError):
                separator.separate(short, **off)
            checked = True
        if caps.max_file_bytes is not None and caps.max_file_bytes <= 400_000_000:
            big = tmp_path / "big.wav"
            frames = caps.max_file_bytes // 4 + 44_100
            with sf.SoundFile(big, "w", 44_100, 2, subtype="PCM_16") as out:
                block = np.zeros((1 << 20, 2), dtype=np.int16)
                for start in range(0, frames, block.shape[0]):
                    out.write(block[: min(block.shape[0], frames - start)])
            with pytest.raises(ProviderLimitError):
                separator.separate(big, **off)
            checked = True
        if not checked:
            pytest.skip("this provider states no size or duration limit small enough to test")

    def test_an_input_under_its_minimum_duration_is_padded_to_fit(self, separator: Separator, tmp_path: Path) -> None:
        caps = separator.capabilities
        if not caps.min_duration_seconds or not hasattr(separator, "fit_mode"):
            pytest.skip("this provider states no minimum duration, or does not fit inputs (no fit_mode)")
        short = demo_clip(tmp_path, seconds=max(0.01, caps.min_duration_seconds / 2))
        info = sf.info(short)
        result = separator.separate(short, fit="auto")
        _assert_contract(result, info.samplerate, info.channels, info.frames)
        assert result.provenance.extra["fit"]["padded_seconds"] > 0

    # -- bad input --------------------------------------------------------------------------------------
    def test_bad_input_is_an_input_error(self, separator: Separator, tmp_path: Path) -> None:
        fake = tmp_path / "text.wav"
        fake.write_text("not audio\n" * 50)
        with pytest.raises(InputError):
            separator.separate(fake)
        with pytest.raises(InputError):
            separator.separate(tmp_path / "missing.wav")
        nan = np.zeros((2, 4410), dtype=np.float32)
        nan[0, 7] = np.nan
        with pytest.raises(InputError):
            separator.separate(nan, sample_rate=44_100)

    # -- lifecycle --------------------------------------------------------------------------------------
    def test_close_is_idempotent_and_refuses_further_work(self, separator: Separator, clip: Path) -> None:
        with separator as entered:
            assert entered is separator
        separator.close()
        with pytest.raises(StemkitError):
            separator.separate(clip)

    def test_sync_and_async_agree(self, separator: Separator, clip: Path) -> None:
        stems = list(separator.capabilities.combinations[0])
        sync = separator.separate(clip, stems=stems)

        async def run() -> StemSet:
            return await separator.aseparate(clip, stems=stems)

        asynchronous = anyio.run(run)
        assert list(sync) == list(asynchronous)
        for name in sync:
            np.testing.assert_allclose(sync[name].audio, asynchronous[name].audio, atol=1e-5, err_msg=name)

    def test_progress_events_are_well_formed(self, separator: Separator, clip: Path) -> None:
        events: list[ProgressEvent] = []
        separator.separate(clip, progress=events.append)
        assert events, "no progress event was reported"
        for event in events:
            assert isinstance(event, ProgressEvent)
            assert event.stage in STAGES, f"unknown stage {event.stage!r}"
            assert event.fraction is None or 0.0 <= event.fraction <= 1.0, event
            assert event.provider, event
        assert events[-1].stage == "done"

    # -- secrets ----------------------------------------------------------------------------------------
    def test_secrets_never_appear_in_repr_logs_or_errors(
        self, separator: Separator, secret: str | None, clip: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        if not secret:
            pytest.skip("this provider is configured without a secret")
        texts = [repr(separator), str(separator.spec)]
        with caplog.at_level(logging.DEBUG):
            result = separator.separate(clip)
            texts += [repr(result), result.to_json()]
            fake = tmp_path / "text.wav"
            fake.write_text("not audio")
            try:
                separator.separate(fake)
            except StemkitError as exc:
                texts += [str(exc), repr(exc)]
        texts += [record.getMessage() for record in caplog.records]
        leaks = [text for text in texts if secret in text]
        assert not leaks, f"the secret appears in: {leaks[0][:200]}"


def _fit_off(separator: Separator) -> dict[str, Any]:
    """``fit="off"`` for a provider that fits inputs to its limits by default (every SeparatorBase)."""
    return {"fit": "off"} if hasattr(separator, "fit_mode") else {}


def _names(separator: Separator) -> list[str]:
    """Canonical stems, and the registered ones the provider names in its combinations."""
    produced = {s for combo in separator.capabilities.combinations for s in combo}
    return [*CANONICAL_STEMS, *(s for s in vocabulary().registered if s in produced)]


def _reachable(separator: Separator) -> set[str]:
    caps = separator.capabilities
    out = set()
    for stem in _names(separator):
        try:
            caps.plan([stem])
        except ConfigError:
            continue
        out.add(stem)
    return out


def _requests(caps: Capabilities) -> list[list[str]]:
    """A few requests mixing produced and derivable stems, e.g. vocals+instrumental."""
    out: list[list[str]] = []
    for probe in (["vocals", "instrumental"], ["drums", "other"], ["instrumental"], ["vocals"]):
        try:
            caps.plan(probe)
        except ConfigError:
            continue
        out.append(probe)
    return out
