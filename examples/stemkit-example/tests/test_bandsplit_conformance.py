"""The example provider against stemkit's conformance suite, plus the behaviour that is its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import stemkit
from stemkit.errors import ConfigError
from stemkit.protocol import Separator
from stemkit.testing import ProviderConformance, demo_clip


# --8<-- [start:conformance]
class TestBandSplitConformance(ProviderConformance):
    @pytest.fixture
    def separator(self) -> Iterator[Separator]:
        with stemkit.load("bandsplit?low_hz=150&high_hz=5000") as sep:
            yield sep


# --8<-- [end:conformance]


def test_vocals_and_instrumental_add_up_to_the_input(tmp_path: Path) -> None:
    clip = demo_clip(tmp_path, seconds=1.0)
    stems = stemkit.separate(clip, provider="bandsplit")
    assert stems.mixture is not None
    np.testing.assert_allclose(stems["vocals"].audio + stems["instrumental"].audio, stems.mixture.audio, atol=1e-5)


def test_a_band_above_nyquist_is_a_config_error(tmp_path: Path) -> None:
    clip = demo_clip(tmp_path, seconds=0.5, sample_rate=8_000)
    with pytest.raises(ConfigError, match="Nyquist"):
        stemkit.separate(clip, provider="bandsplit?high_hz=5000")


def test_a_band_narrower_than_its_transitions_is_refused() -> None:
    with pytest.raises(ConfigError, match="high_hz"):
        stemkit.load("bandsplit?low_hz=1000&high_hz=1020")
