"""A caller's array is the caller's: stemkit never writes to it, never makes it read-only, and later changes to
it do not reach a result (stemkit keeps its own copy: stems are computed lazily, so a view would see them)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import stemkit
from stemkit.audio import open_source
from stemkit.stemset import Stem

from .conftest import tone

RATE = 16_000

LAYOUTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "float32 (channels, frames)": lambda a: a.copy(),
    "float32 mono 1-D": lambda a: a[0].copy(),
    "float64": lambda a: a.astype(np.float64),
    "int16": lambda a: (a * 32767).astype(np.int16),
    "Fortran order": np.asfortranarray,
    "strided view": lambda a: np.repeat(a, 2, axis=1)[:, ::2],
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_the_callers_array_stays_writeable_and_unchanged(layout: str) -> None:
    audio = LAYOUTS[layout](tone(0.3, RATE))
    before = audio.copy()
    result = stemkit.separate(audio, sample_rate=RATE, stems="vocals,instrumental")
    for stem in result.values():
        _ = stem.audio
    assert result.mixture is not None
    _ = result.mixture.audio
    assert audio.flags.writeable
    np.testing.assert_array_equal(audio, before)
    audio[..., :10] = 0  # the caller may still write to it


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_later_writes_to_the_callers_array_do_not_change_the_result(layout: str) -> None:
    audio = LAYOUTS[layout](tone(0.3, RATE))
    result = stemkit.separate(audio, sample_rate=RATE, stems="vocals,instrumental")
    source_hash = result.provenance.input_sha256
    audio[...] = 0  # before any stem has been read: derived stems and the mixture are computed lazily
    assert result.mixture is not None
    mixture = result.mixture.audio
    assert np.abs(mixture).max() > 0.1
    np.testing.assert_allclose(result["vocals"].audio + result["instrumental"].audio, mixture, atol=1e-6)
    assert open_source(LAYOUTS[layout](tone(0.3, RATE)), sample_rate=RATE).sha256 == source_hash


def test_a_float32_array_is_copied_once_and_the_copy_is_read_only() -> None:
    audio = tone(0.1, RATE)
    source = open_source(audio, sample_rate=RATE)
    inside = source.read()
    assert not np.may_share_memory(inside, audio)
    assert not inside.flags.writeable
    assert audio.flags.writeable


def test_a_stem_from_an_array_is_read_only_without_freezing_the_array() -> None:
    audio = tone(0.1, RATE)
    stem = Stem.from_array("vocals", audio, RATE)
    assert not stem.audio.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        stem.audio[0, 0] = 1.0
    assert audio.flags.writeable
    audio[0, 0] = 0.5  # the provider's array stays its own
