"""Pipelines with the local dsp provider: how later stages replace and refine stems, what ``other`` means,
which stages a request runs, the Python API and the checks made before anything runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import stemkit
from stemkit import Stage
from stemkit.compose.pipeline import Pipeline
from stemkit.errors import ConfigError


def test_a_later_stage_replaces_the_stem_it_is_fed_by_its_parts(song: Path) -> None:
    with stemkit.load("dsp[vocals,instrumental] >[instrumental] dsp?kernel=9") as sep, stemkit.load("dsp") as dsp:
        result = sep.separate(song)
        first = dsp.separate(song, stems=["vocals", "instrumental"])
        second = stemkit.load("dsp?kernel=9").separate(first["instrumental"].audio, sample_rate=44_100)
    assert list(result) == ["vocals", "drums", "bass", "other"]
    np.testing.assert_allclose(result["vocals"].audio, first["vocals"].audio, atol=1e-6)
    np.testing.assert_allclose(result["drums"].audio, second["drums"].audio, atol=1e-6)
    # "other" is what the named parts leave of the instrumental: the second stage's own vocals (bleed)
    # included, so the stems still sum to the mixture.
    leftover = first["instrumental"].audio - second["drums"].audio - second["bass"].audio
    np.testing.assert_allclose(result["other"].audio, leftover, atol=1e-5)
    total = sum(result[name].audio for name in result)
    np.testing.assert_allclose(total, result.mixture.audio, atol=1e-5)  # type: ignore[union-attr]


def test_other_collects_what_a_stages_parts_leave_out(song: Path) -> None:
    """Only drums asked of the instrumental: the rest of the instrumental becomes other."""
    with stemkit.load("dsp[vocals,instrumental] >[instrumental] dsp[drums]") as sep:
        assert sep.stems == ("vocals", "drums", "other")
        result = sep.separate(song)
    total = result["vocals"].audio + result["drums"].audio + result["other"].audio
    np.testing.assert_allclose(total, result.mixture.audio, atol=1e-5)  # type: ignore[union-attr]
    assert result["other"].complement_of == ("vocals", "drums")


def test_requested_stems_are_derived_from_the_final_stems(song: Path) -> None:
    with stemkit.load("dsp[vocals,instrumental] >[instrumental] dsp?kernel=9") as sep, stemkit.load("dsp") as dsp:
        result = sep.separate(song, stems=["drums", "instrumental"])
        first = dsp.separate(song, stems=["instrumental"])
    assert result["instrumental"].derived  # drums + bass + other, the instrumental's parts
    assert result["instrumental"].provider_name == "drums+bass+other"
    np.testing.assert_allclose(result["instrumental"].audio, first["instrumental"].audio, atol=1e-5)
    with stemkit.load("dsp[vocals,instrumental] >[instrumental] dsp") as sep:
        rhythm = sep.separate(song, stems=["vocals", "drums", "bass"])
    assert list(rhythm) == ["vocals", "drums", "bass"]


def test_stages_a_request_does_not_need_are_not_run(song: Path) -> None:
    with stemkit.load("dsp[vocals,instrumental] >[instrumental] dsp?kernel=9") as sep:
        result = sep.separate(song, stems=["vocals", "instrumental"])
    stages = result.provenance.extra["stages"]
    assert [s["outcome"] for s in stages] == ["ok", "skipped"]
    assert stages[1]["message"] == "not needed for the requested stems"
    assert [a.outcome for a in result.attempts] == ["ok"]


def test_the_python_api_and_the_spec_string_build_the_same_pipeline(song: Path) -> None:
    with (
        stemkit.pipeline(Stage("dsp", into="vocals,instrumental"), ("instrumental", "dsp?kernel=9")) as python,
        stemkit.load("dsp[vocals,instrumental] >[instrumental] dsp?kernel=9") as spec,
    ):
        assert isinstance(python, Pipeline)
        assert python.spec == spec.spec == "dsp[vocals,instrumental] >[instrumental] dsp?kernel=9"
        np.testing.assert_array_equal(python.separate(song)["bass"].audio, spec.separate(song)["bass"].audio)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("dsp >[instrumental] dsp", "is fed 'instrumental', which the stages before it do not leave"),
        ("dsp[vocals,instrumental] >[instrumental] dsp[vocals]", "vocals is not part of instrumental"),
        ("dsp[vocals,instrumental] >[vocals] dsp", "produces no part of vocals"),
        ("dsp[vocals,instrumental,drums] >[vocals] dsp", "overlap"),
        (
            "dsp[vocals,instrumental] >[instrumental] dsp[drums,instrumental]",
            "instrumental is not part of instrumental",
        ),
        ("dsp[vocals,instrumental] >[instrumental] dsp[piano]", "cannot produce or derive piano"),
        ("dsp[vocals,instrumental] >[instrumental] dsp[keyboard]", "unknown stem 'keyboard'"),
    ],
)
def test_a_pipeline_that_cannot_work_is_refused_before_anything_runs(spec: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        stemkit.load(spec)
