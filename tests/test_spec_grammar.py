"""The composed spec grammar: chains, pipelines and ensembles nest in one another, render canonically and
parse back; what binds tighter than what; errors that point at the offending part; secrets refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stemkit
from stemkit.config import (
    ChainSpec,
    EnsembleSpec,
    PipelineSpec,
    ProviderSpec,
    SpecNode,
    StageSpec,
    parse_chain,
    parse_tree,
    render_tree,
)
from stemkit.errors import ConfigError

names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
keys = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda k: not any(w in k for w in ("key", "secret", "token", "password", "passwd", "credential", "auth"))
)
group_keys = keys | keys.map(lambda k: f"weights.{k}")
# Any text, operators and percent signs included: rendering must encode what would otherwise be syntax.
values = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=10)
targets = st.none() | st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1,
                              max_size=12).filter(lambda t: t.strip() == t and t.strip())
stems = st.sampled_from(["vocals", "instrumental", "drums", "other", "lead_vocals"])
providers = st.builds(ProviderSpec, names, targets, st.dictionaries(keys, values, max_size=2))


def _bare_ensemble(node: SpecNode) -> bool:
    return isinstance(node, EnsembleSpec) and not node.options


def _composed(children: st.SearchStrategy[SpecNode]) -> st.SearchStrategy[SpecNode]:
    chains = st.lists(children, min_size=2, max_size=3).map(lambda links: ChainSpec(tuple(links)))
    ensembles = st.builds(
        lambda members, options: EnsembleSpec(tuple(members), options),
        st.lists(children, min_size=2, max_size=3), st.dictionaries(group_keys, values, max_size=2),
    )
    singles = st.builds(
        lambda member, options: EnsembleSpec((member,), options),
        children.filter(lambda n: not _bare_ensemble(n)), st.dictionaries(group_keys, values, min_size=1, max_size=2),
    )
    selections = st.none() | st.lists(stems, min_size=1, max_size=3).map(tuple)
    stages = st.builds(StageSpec, children, stems, selections)
    pipelines = st.builds(
        lambda first, into, rest: PipelineSpec((StageSpec(first, None, into), *rest)),
        children, selections, st.lists(stages, min_size=1, max_size=2),
    )
    return chains | ensembles | singles | pipelines


trees = st.recursive(providers, _composed, max_leaves=6)


@given(trees)
@settings(max_examples=300, deadline=None)
def test_every_tree_renders_to_a_string_that_parses_back_to_it(tree: SpecNode) -> None:
    assert parse_tree(render_tree(tree)) == tree


@given(st.text(alphabet="ab|+>()[]?=&:,. x", max_size=24))
@settings(max_examples=500, deadline=None)
def test_any_string_parses_or_raises_a_config_error(text: str) -> None:
    try:
        tree = parse_tree(text)
    except ConfigError:
        return
    assert parse_tree(render_tree(tree)) == tree


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a + b | c", ChainSpec((EnsembleSpec((ProviderSpec("a"), ProviderSpec("b"))), ProviderSpec("c")))),
        ("a | b + c", ChainSpec((ProviderSpec("a"), EnsembleSpec((ProviderSpec("b"), ProviderSpec("c")))))),
        (
            "a >[x] b + c",
            PipelineSpec((StageSpec(ProviderSpec("a")),
                          StageSpec(EnsembleSpec((ProviderSpec("b"), ProviderSpec("c"))), "x"))),
        ),
        (
            "a >[x] b | c",
            ChainSpec((PipelineSpec((StageSpec(ProviderSpec("a")), StageSpec(ProviderSpec("b"), "x"))),
                       ProviderSpec("c"))),
        ),
        ("(a | b) + c", EnsembleSpec((ChainSpec((ProviderSpec("a"), ProviderSpec("b"))), ProviderSpec("c")))),
        ("(a + b)?method=median", EnsembleSpec((ProviderSpec("a"), ProviderSpec("b")), {"method": "median"})),
        ("(a)?method=mean", EnsembleSpec((ProviderSpec("a"),), {"method": "mean"})),
        ("(a)", ProviderSpec("a")),
        (
            "a[vocals,instrumental] >[instrumental] b[drums]",
            PipelineSpec((StageSpec(ProviderSpec("a"), None, ("vocals", "instrumental")),
                          StageSpec(ProviderSpec("b"), "instrumental", ("drums",)))),
        ),
    ],
)
def test_what_binds_tighter_ensemble_then_pipeline_then_fallback(text: str, expected: SpecNode) -> None:
    assert parse_tree(text) == expected


def test_options_values_keep_their_commas_colons_and_slashes() -> None:
    tree = parse_tree("onnx:/models/m.onnx?sources=vocals,other + stemsplit?base_url=http://127.0.0.1:8080/api")
    assert isinstance(tree, EnsembleSpec)
    assert tree.members[0] == ProviderSpec("onnx", "/models/m.onnx", {"sources": "vocals,other"})
    assert tree.members[1] == ProviderSpec("stemsplit", None, {"base_url": "http://127.0.0.1:8080/api"})


def test_an_operator_character_in_a_value_is_percent_encoded_when_rendered() -> None:
    spec = ProviderSpec("onnx", "/m/a+b (1).onnx", {"note": "x|y>z[0]"})
    text = spec.render()
    assert not set("|+>()[]") & set(text)
    assert parse_tree(text) == spec


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a +", "nothing after '+'; an ensemble joins two or more providers: 'a + b' (column 4 of 'a +')"),
        ("a + b)", "unexpected ')' that no '(' opens (column 6"),
        ("(a + b", "'(' at column 1 is never closed"),
        ("a > b", "a pipeline arrow names the stem it feeds"),
        ("a >[x]", "nothing after '>[x]'"),
        ("a >[x,y] b", "feeds one stem, got [x,y]"),
        ("a[vocals]", "a stem selection [...] belongs to a pipeline stage"),
        ("a[vocals] + b >[x] c", "on an ensemble member"),
        ("a >[x b", "'[' is never closed"),
        ("a + 9lives", "'9lives' in '9lives' is not a provider name; a spec looks like name[:target]"),
        ("a + 9lives", "(at column 5 of 'a + 9lives')"),
        ("()", "empty parentheses"),
        ("a | | b", "empty link after '|'"),
        ("stemsplit?base_url=http://[::1]:80", "write '[' and ']' as %5B and %5D"),
    ],
)
def test_a_malformed_spec_says_what_and_where(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_tree(text)
    assert fragment in str(info.value)


def test_a_secret_in_an_ensembles_options_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        parse_tree("(a + b)?api_key=sk_live_123")
    assert "sk_live_123" not in str(info.value)
    assert "secret" in str(info.value)


def test_parse_chain_keeps_its_contract_and_points_composites_to_load() -> None:
    assert parse_chain("a | (b | c)") == [ProviderSpec("a"), ProviderSpec("b"), ProviderSpec("c")]
    with pytest.raises(ConfigError, match=r"not a plain chain; load it with stemkit\.load"):
        parse_chain("a + b")


@pytest.mark.parametrize(
    "spec",
    [
        "dsp + dsp?kernel=31",
        "(dsp + dsp?kernel=31)?method=median&on_failure=fail | dsp",
        "(dsp | dsp?kernel=9) + dsp?kernel=31",
        "dsp[vocals,instrumental] >[instrumental] dsp?kernel=9",
        "dsp[vocals,instrumental] >[instrumental] dsp + dsp?kernel=9 | dsp",
        "(dsp)?method=median",
    ],
)
def test_loaded_composites_give_their_spec_back(spec: str) -> None:
    with stemkit.load(spec) as sep:
        assert sep.spec == spec
        assert parse_tree(sep.spec) == parse_tree(spec)


def test_keywords_for_a_composite_go_per_provider() -> None:
    with pytest.raises(ConfigError, match="ambiguous"):
        stemkit.load("dsp + dsp?kernel=9", api_key="x")
