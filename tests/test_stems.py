"""Canonical stem names, aliases, and planning which combination to run and what to derive."""

from __future__ import annotations

import pytest

from stemkit.errors import ConfigError
from stemkit.stems import canonical_name, normalize_request, plan_stems

STEMSPLIT = (("vocals",), ("instrumental",), ("vocals", "instrumental"), ("vocals", "drums", "bass", "other"),
             ("vocals", "drums", "bass", "guitar", "piano", "other"))
SPLEETER = (("vocals", "instrumental"), ("vocals", "drums", "bass", "other"),
            ("vocals", "drums", "bass", "piano", "other"))


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [("accompaniment", "instrumental"), ("no_vocals", "instrumental"), ("Karaoke", "instrumental"),
     ("drum", "drums"), ("Vocals", "vocals"), ("no-vocals", "instrumental"), ("piano", "piano")],
)
def test_provider_aliases_map_to_canonical_names(alias: str, canonical: str) -> None:
    assert canonical_name(alias) == canonical


def test_unknown_names_have_no_canonical_match_unless_the_provider_maps_them() -> None:
    assert canonical_name("kazoo") is None
    assert canonical_name("kazoo", {"kazoo": "other"}) == "other"


def test_a_request_is_normalized_in_order_once_each() -> None:
    assert normalize_request("Vocals, accompaniment,vocals") == ("vocals", "instrumental")


def test_an_unknown_requested_stem_lists_the_canonical_ones() -> None:
    with pytest.raises(ConfigError, match="canonical stems are vocals, drums"):
        normalize_request(["vocals", "cowbell"])


def test_the_smallest_covering_combination_is_chosen() -> None:
    assert plan_stems(["vocals"], STEMSPLIT).combination == ("vocals",)
    assert plan_stems(["vocals", "instrumental"], STEMSPLIT).combination == ("vocals", "instrumental")
    assert plan_stems(["drums"], STEMSPLIT).combination == ("vocals", "drums", "bass", "other")
    assert plan_stems(["piano"], STEMSPLIT).combination[-3:] == ("guitar", "piano", "other")


def test_instrumental_is_derived_as_the_sum_of_the_non_vocal_stems() -> None:
    plan = plan_stems(["vocals", "instrumental"], [("vocals", "drums", "bass", "other")])
    instrumental = plan.outputs[1]
    assert instrumental.sources == ("drums", "bass", "other")
    assert not instrumental.direct
    assert not instrumental.uses_residual


def test_a_stem_missing_from_an_incomplete_combination_comes_from_the_residual() -> None:
    plan = plan_stems(["instrumental"], [("vocals",)])
    assert plan.outputs[0].uses_residual
    assert plan.needs_mixture


def test_four_stem_other_is_derived_from_a_finer_split() -> None:
    plan = plan_stems(["vocals", "drums", "bass", "other"], [SPLEETER[2]])
    other = plan.outputs[3]
    assert set(other.sources) == {"piano", "other"}
    assert other.complement_of == ("vocals", "drums", "bass")


def test_an_underivable_request_names_what_the_provider_offers() -> None:
    with pytest.raises(ConfigError, match=r"cannot produce or derive guitar; it offers \[vocals, instrumental"):
        plan_stems(["guitar"], SPLEETER, provider="ezstems")


def test_no_request_returns_the_default_combination_as_produced() -> None:
    plan = plan_stems(None, SPLEETER, default=1)
    assert plan.combination == ("vocals", "drums", "bass", "other")
    assert all(d.direct for d in plan.outputs)


def test_asking_for_exactly_a_claimed_combination_is_direct_whatever_other_means_there() -> None:
    plan = plan_stems(["other", "bass"], [("bass", "other")])
    assert all(d.direct for d in plan.outputs)
    assert [d.name for d in plan.outputs] == ["other", "bass"]
    assert plan.outputs[0].complement_of == ("bass",)


def test_a_partial_combinations_other_is_musdbs_other() -> None:
    specialists = [("vocals",), ("other",), ("drums", "bass", "other", "vocals")]
    partial = [("vocals",), ("other",)]
    alone = plan_stems(["other"], specialists, partial=partial)
    assert alone.combination == ("other",)
    assert alone.outputs[0].complement_of == ("vocals", "drums", "bass")
    # Its residual is vocals+drums+bass, so vocals cannot come from it; the vocals specialist serves that.
    assert plan_stems(["vocals"], specialists, partial=partial).combination == ("vocals",)
    # Without ``partial`` a lone "other" would partition the mix: it would be everything.
    assert plan_stems(["other"], [("other",)]).outputs[0].complement_of == ()


def test_a_custom_partitions_other_covers_what_its_siblings_do_not() -> None:
    plan = plan_stems(["vocals", "instrumental"], [("vocals", "drums", "other")])
    assert plan.outputs[1].sources == ("drums", "other")
    assert not plan.outputs[1].uses_residual
