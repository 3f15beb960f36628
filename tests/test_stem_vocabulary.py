"""An open stem vocabulary: stems registered by plugins (entry-point group ``stemkit.stems``) with their relation
to the canonical ones, derived and refused by the planner, accepted by requests, ``--stems``, templates, the
conformance suite and ``compare``.

The plugin is ``tests/plugins/stemkit-leadback``, a real distribution installed for each test that uses it
(registering ``lead_vocals``/``backing_vocals`` as a partition of ``vocals``, and a ``leadback`` provider)."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import stemkit
from stemkit.errors import ConfigError
from stemkit.protocol import Separator
from stemkit.stems import (
    MIXTURE,
    StemGroup,
    Vocabulary,
    canonical_name,
    normalize_request,
    order_stems,
    plan_stems,
    vocabulary,
)
from stemkit.testing import ProviderConformance

from .conftest import installed

PLUGINS = Path(__file__).parent / "plugins"
LEADBACK = PLUGINS / "stemkit-leadback"
FOUR = ("vocals", "drums", "bass", "other")


@pytest.fixture
def leadback(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with installed(LEADBACK, tmp_path_factory.mktemp("site")) as groups:
        assert set(groups) == {"stemkit.stems", "stemkit.separators"}
        yield


# -- the vocabulary itself (no plugin) -----------------------------------------------------------------------
VOCALS = StemGroup("vocals", ("lead_vocals", "backing_vocals"))
PARTS_OF_OTHER = StemGroup("other", ("strings", "winds", "keys", "synth"), exhaustive=False)
FILM = StemGroup(MIXTURE, ("dialogue", "music", "effects"), family="film")
VOCAB = Vocabulary([VOCALS, PARTS_OF_OTHER, FILM])


def test_registered_groups_extend_the_canonical_names_in_order() -> None:
    assert VOCAB.names[:7] == ("vocals", "drums", "bass", "other", "piano", "guitar", "instrumental")
    assert VOCAB.registered == ("lead_vocals", "backing_vocals", "strings", "winds", "keys", "synth", "dialogue",
                                "music", "effects")  # fmt: skip
    assert [VOCAB.parent(n) for n in ("lead_vocals", "keys", "dialogue", "vocals")] == [
        "vocals", "other", MIXTURE, None]  # fmt: skip
    assert VOCAB.family("effects") == "film"
    assert VOCAB.family("strings") == "music"
    assert VOCAB.problems == []


def test_a_partition_of_vocals_derives_vocals_as_the_sum_of_its_parts() -> None:
    plan = plan_stems(["vocals", "instrumental"], [("lead_vocals", "backing_vocals", "drums", "bass", "other")],
                      vocabulary=VOCAB)  # fmt: skip
    vocals, instrumental = plan.outputs
    assert (vocals.sources, vocals.direct, vocals.uses_residual) == (("lead_vocals", "backing_vocals"), False, False)
    assert instrumental.sources == ("drums", "bass", "other")


def test_a_part_is_never_derived_from_its_whole_and_the_refusal_says_why() -> None:
    with pytest.raises(ConfigError, match=r"lead_vocals \(with backing_vocals, makes up vocals\)"):
        plan_stems(["lead_vocals"], [FOUR], vocabulary=VOCAB, provider="dsp")


def test_parts_of_other_leave_a_remainder_that_other_keeps() -> None:
    combo = ("vocals", "drums", "bass", "strings", "keys", "other")
    plan = plan_stems(["other"], [combo], vocabulary=VOCAB)
    assert set(plan.outputs[0].sources) == {"strings", "keys", "other"}
    assert plan.outputs[0].complement_of == ("vocals", "drums", "bass")
    # Asking for strings beside other: other without the strings, and the record says so.
    split = plan_stems(["strings", "other"], [combo], vocabulary=VOCAB)
    assert split.outputs[1].sources == ("keys", "other")
    assert split.outputs[1].complement_of == ("vocals", "drums", "bass", "strings")
    # A part alone cannot come from a 4-stem set's other (other holds more than strings).
    with pytest.raises(ConfigError, match=r"strings \(a part of other\)"):
        plan_stems(["strings"], [FOUR], vocabulary=VOCAB)


def test_a_film_mix_is_its_own_family_with_its_own_residual() -> None:
    assert plan_stems(["music"], [("dialogue", "effects")], vocabulary=VOCAB).outputs[0].uses_residual
    with pytest.raises(ConfigError, match="vocals is a stem of a music mix and this provider splits a film mix"):
        plan_stems(["vocals"], [("dialogue", "music", "effects")], vocabulary=VOCAB)
    with pytest.raises(ConfigError, match="dialogue is a stem of a film mix"):
        plan_stems(["dialogue"], [FOUR], vocabulary=VOCAB)


def test_a_registered_name_wins_over_a_built_in_alias_of_the_same_spelling() -> None:
    assert Vocabulary().lookup("Music") == "instrumental"
    assert VOCAB.lookup("Music") == "music"


def test_conflicting_or_orphan_groups_are_left_out_and_recorded() -> None:
    vocab = Vocabulary([
        ("plugin-a", VOCALS),
        ("plugin-a", VOCALS),  # the same split twice: agreed, not a conflict
        ("plugin-b", StemGroup("vocals", ("male_vocals", "female_vocals"))),
        ("plugin-c", StemGroup("choir", ("sopranos", "altos"))),
        ("plugin-d", StemGroup("backing_vocals", ("choir", "doubles"))),  # parent registered by plugin-a
    ])  # fmt: skip
    assert vocab.registered == ("lead_vocals", "backing_vocals", "choir", "doubles", "sopranos", "altos")
    assert len(vocab.problems) == 1
    assert "plugin-b: male_vocals + female_vocals = vocals is ignored: vocals is already split" in vocab.problems[0]
    assert plan_stems(["backing_vocals"], [("lead_vocals", "sopranos", "altos", "doubles", "instrumental")],
                      vocabulary=vocab).outputs[0].sources == ("sopranos", "altos", "doubles")  # fmt: skip
    orphan = Vocabulary([("plugin-e", StemGroup("kazoos", ("left_kazoo", "right_kazoo")))])
    assert orphan.problems == [
        "plugin-e: left_kazoo + right_kazoo = kazoos is ignored: its parent 'kazoos' is not a known stem"]


@pytest.mark.parametrize(
    ("group", "message"),
    [
        (lambda: StemGroup("vocals", ("lead",)), "at least two parts"),
        (lambda: StemGroup("vocals", ("Lead Vocals", "b")), "not a stem name"),
        (lambda: StemGroup("vocals", ("drums", "x")), "already a canonical stem"),
        (lambda: StemGroup("instrumental", ("a", "b")), "instrumental is a sum"),
        (lambda: StemGroup(MIXTURE, ("a", "b")), "needs family="),
        (lambda: StemGroup("vocals", ("a", "b"), aliases={"x": "c"}), "not one of the parts"),
    ],
)
def test_a_malformed_group_is_a_config_error_naming_it(group: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        group()  # type: ignore[operator]


# -- the installed plugin ------------------------------------------------------------------------------------
@pytest.mark.usefixtures("leadback")
def test_installed_stems_are_known_by_name_and_alias() -> None:
    known = vocabulary()
    assert known.registered == ("lead_vocals", "backing_vocals")
    assert known.groups[0][0] == "stemkit-leadback (stemkit.stems entry point 'vocal-parts')"
    assert normalize_request("Lead Vocals, backing-vocals, vocals") == ("lead_vocals", "backing_vocals", "vocals")
    assert canonical_name("BGV") == "backing_vocals"
    assert order_stems(["backing_vocals", "bass", "lead_vocals"]) == ["bass", "lead_vocals", "backing_vocals"]
    with pytest.raises(ConfigError, match=r"unknown stem 'cowbell'; canonical stems are .*; registered by plugins: "
                                          r"lead_vocals, backing_vocals"):  # fmt: skip
        normalize_request(["cowbell"])


def test_a_plugin_installed_later_is_seen_and_one_removed_is_forgotten(tmp_path: Path) -> None:
    assert "lead_vocals" not in vocabulary().registered
    with installed(LEADBACK, tmp_path / "site"):
        assert "lead_vocals" in vocabulary().registered
    assert "lead_vocals" not in vocabulary().registered


def test_a_broken_stems_entry_point_is_named_not_fatal(tmp_path: Path) -> None:
    project = tmp_path / "broken"
    (project / "src" / "stemkit_broken").mkdir(parents=True)
    (project / "src" / "stemkit_broken" / "__init__.py").write_text("raise ImportError('missing dependency')\n")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "stemkit-broken"\nversion = "1.0"\ndescription = "x"\n'
        '[project.entry-points."stemkit.stems"]\nparts = "stemkit_broken:GROUPS"\n'
    )
    with installed(project, tmp_path / "site"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert canonical_name("accompaniment") == "instrumental"  # everything else keeps working
        with pytest.raises(ConfigError, match=r"stemkit-broken .* could not be loaded \(ImportError: missing"):
            normalize_request(["lead_vocals"])
    assert any("stemkit-broken" in str(w.message) for w in caught)


@pytest.mark.usefixtures("leadback")
def test_the_planner_derives_vocals_from_a_provider_of_lead_and_backing(demo_dir: Path) -> None:
    with stemkit.load("leadback") as sep:
        plan = sep.plan(["vocals", "instrumental"])
        result = sep.separate(demo_dir / "mixture.wav", stems=["vocals", "instrumental", "lead_vocals"])
    assert plan.outputs[0].sources == ("lead_vocals", "backing_vocals")
    assert list(result) == ["vocals", "instrumental", "lead_vocals"]
    assert result["vocals"].derived
    assert not result["lead_vocals"].derived
    assert result["vocals"].provider_name == "lead+backing_vocals"
    with stemkit.load("dsp") as dsp:
        reference = dsp.separate(demo_dir / "mixture.wav", stems=["vocals"])["vocals"].audio
    np.testing.assert_allclose(result["vocals"].audio, reference, atol=1e-5)


@pytest.mark.usefixtures("leadback")
def test_a_provider_without_the_parts_refuses_them_before_any_work(demo_dir: Path) -> None:
    with stemkit.load("dsp") as dsp, pytest.raises(ConfigError, match=r"dsp: cannot produce or derive lead_vocals"):
        dsp.separate(demo_dir / "mixture.wav", stems=["lead_vocals"])
    with stemkit.load("leadback") as sep, pytest.raises(ConfigError, match="cannot produce or derive drums"):
        sep.separate(demo_dir / "mixture.wav", stems=["drums"])


@pytest.mark.usefixtures("leadback")
def test_the_command_line_takes_registered_stems_and_names_files_after_them(demo_dir: Path, tmp_path: Path) -> None:
    from stemkit.cli import main

    out = tmp_path / "out"
    status = main(["separate", str(demo_dir / "mixture.wav"), "-p", "leadback", "--stems", "lead_vocals,bgv",
                   "-o", str(out), "--template", "{provider}-{stem}.{ext}"])  # fmt: skip
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["leadback-backing_vocals.wav", "leadback-lead_vocals.wav"]


@pytest.mark.usefixtures("leadback")
def test_compare_scores_registered_stems_against_references(demo_dir: Path, tmp_path: Path) -> None:
    _mixture, rate = sf.read(demo_dir / "mixture.wav", dtype="float32", always_2d=True)
    with stemkit.load("leadback") as sep:
        truth = sep.separate(demo_dir / "mixture.wav")
    refs = tmp_path / "refs"
    refs.mkdir()
    shutil.copy(demo_dir / "mixture.wav", refs / "mixture.wav")
    for name in ("lead_vocals", "backing_vocals", "instrumental"):
        sf.write(refs / f"{name}.wav", truth[name].audio.T, rate, subtype="FLOAT")
    report = stemkit.compare(refs / "mixture.wav", providers=["leadback", "dsp"], references=refs,
                             stems=["backing_vocals", "instrumental", "lead_vocals"], baselines=False)  # fmt: skip
    assert report.stems == ["instrumental", "lead_vocals", "backing_vocals"]  # vocabulary order
    assert report.value("mixture", "leadback", "lead_vocals", "sdr") > 60  # it is its own reference
    with pytest.raises(KeyError):  # dsp cannot give lead_vocals: it is scored on what it can produce
        report.value("mixture", "dsp", "lead_vocals", "sdr")
    assert report.value("mixture", "dsp", "instrumental", "sdr") > 0
    assert "lead_vocals" in report.table()


@pytest.mark.usefixtures("leadback")
class TestLeadBackConformance(ProviderConformance):
    """The conformance suite accepts registered stem names (and runs the whole contract on them)."""

    @pytest.fixture
    def separator(self) -> Iterator[Separator]:
        with stemkit.load("leadback") as sep:
            yield sep
