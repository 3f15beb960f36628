"""The dsp baseline: a real partition of the mixture, deterministic, and better than doing nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

import stemkit
from stemkit.demo import make_demo
from stemkit_dsp import DspOptions, separate_array


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    make_demo(root, seconds=4.0)
    return root


@settings(max_examples=20, deadline=None)
@given(channels=st.integers(1, 2), frames=st.integers(2, 40_000), rate=st.sampled_from([8_000, 44_100, 96_000]),
       seed=st.integers(0, 1000))
def test_the_four_stems_sum_to_the_mixture(channels: int, frames: int, rate: int, seed: int) -> None:
    audio = (np.random.default_rng(seed).standard_normal((channels, frames)) * 0.2).astype(np.float32)
    stems = separate_array(audio, rate)
    assert set(stems) == {"vocals", "drums", "bass", "other"}
    total = sum(stems.values())
    np.testing.assert_allclose(total, audio, atol=1e-5)


def test_separation_is_deterministic(demo_dir: Path) -> None:
    first = stemkit.separate(demo_dir / "mixture.wav")
    second = stemkit.separate(demo_dir / "mixture.wav")
    for name in first:
        np.testing.assert_array_equal(first[name].audio, second[name].audio)


def _sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - estimate) ** 2)))


def test_each_stem_beats_the_mixture_as_an_estimate(demo_dir: Path) -> None:
    """The floor every separator must clear: each stem is closer to its reference than the mixture is."""
    result = stemkit.separate(demo_dir / "mixture.wav")
    mixture, _ = sf.read(demo_dir / "mixture.wav", dtype="float32", always_2d=True)
    for name in ("vocals", "drums", "bass", "other"):
        reference, _ = sf.read(demo_dir / f"{name}.wav", dtype="float32", always_2d=True)
        assert _sdr(reference.T, result[name].audio) > _sdr(reference.T, mixture.T), name


def test_percussive_energy_goes_to_drums() -> None:
    rate = 22_050
    clicks = np.zeros((1, rate), dtype=np.float32)
    clicks[0, :: rate // 8] = 1.0
    stems = separate_array(clicks, rate)
    energy = {name: float(np.sum(audio**2)) for name, audio in stems.items()}
    assert max(energy, key=energy.__getitem__) == "drums"


def test_a_low_steady_tone_goes_to_bass() -> None:
    rate = 22_050
    t = np.arange(rate) / rate
    low = (0.5 * np.sin(2 * np.pi * 60 * t)).astype(np.float32)[None, :]
    stems = separate_array(low, rate, DspOptions())
    energy = {name: float(np.sum(audio**2)) for name, audio in stems.items()}
    assert max(energy, key=energy.__getitem__) == "bass"


def test_dsp_refuses_a_target() -> None:
    with pytest.raises(stemkit.ConfigError, match="takes no target"):
        stemkit.load("dsp:something")


@settings(max_examples=15, deadline=None)
@given(exponent=st.integers(0, 38), channels=st.integers(1, 2), seed=st.integers(0, 1000))
def test_a_loud_finite_input_gives_finite_stems_that_still_sum_to_it(exponent: int, channels: int, seed: int) -> None:
    """Up to float32's largest values: power spectra of a peak of ~1e18 used to overflow into NaN stems."""
    noise = np.random.default_rng(seed).standard_normal((channels, 8_000))
    peak = min(10.0**exponent, 3.0e38)
    audio = (noise / np.abs(noise).max() * peak).astype(np.float32)
    stems = separate_array(audio, 16_000)
    for name, stem in stems.items():
        assert np.isfinite(stem).all(), name
    np.testing.assert_allclose(sum(stem / peak for stem in stems.values()), audio / peak, atol=1e-5)


def test_dsp_separates_a_1e18_peak_input_through_the_public_api() -> None:
    audio = (np.random.default_rng(0).standard_normal((2, 4_000)) * 1e18).astype(np.float32)
    result = stemkit.separate(audio, sample_rate=8_000, stems="vocals,instrumental")
    for stem in result.values():
        assert np.isfinite(stem.audio).all()
    np.testing.assert_allclose((result["vocals"].audio + result["instrumental"].audio) / 1e18, audio / 1e18, atol=1e-5)
