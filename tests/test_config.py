"""Provider spec strings: parsing, rendering, round trips and the errors a user sees."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stemkit.config import ProviderSpec, parse_chain, parse_spec, redact
from stemkit.errors import ConfigError

names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
keys = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda k: not any(w in k for w in ("key", "secret", "token", "password", "passwd", "credential", "auth"))
)
values = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=0, max_size=12)
targets = st.none() | st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1,
                              max_size=20).filter(lambda t: t.strip() == t and t.strip())


@given(names, targets, st.dictionaries(keys, values, max_size=4))
def test_rendered_spec_parses_back_to_the_same_spec(name: str, target: str | None, options: dict[str, str]) -> None:
    spec = ProviderSpec(name, target, options)
    assert parse_spec(spec.render()) == spec


@given(st.lists(st.builds(ProviderSpec, names, st.none(), st.dictionaries(keys, values, max_size=2)),
                min_size=1, max_size=4))
def test_chain_rendering_round_trips(specs: list[ProviderSpec]) -> None:
    text = " | ".join(s.render() for s in specs)
    assert parse_chain(text) == specs


def test_spec_parts_are_percent_decoded() -> None:
    spec = parse_spec("onnx:/models/my%20model.onnx?sources=drums,bass&device=cpu")
    assert spec.name == "onnx"
    assert spec.target == "/models/my model.onnx"
    assert spec.options == {"sources": "drums,bass", "device": "cpu"}


def test_chain_accepts_a_list_and_a_pipe_string_alike() -> None:
    assert parse_chain(["stemsplit?quality=best", "dsp"]) == parse_chain("stemsplit?quality=best | dsp")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("dsp |", "empty link"),
        ("9lives", "not a provider name"),
        ("dsp:", "no target"),
        ("dsp?", "no options"),
        ("dsp?a=1&&b=2", "empty option"),
        ("dsp?novalue", "not key=value"),
        ("dsp?a=1&a=2", "twice"),
    ],
)
def test_malformed_specs_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_chain(text)


def test_a_secret_in_a_spec_string_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec("stemsplit?api_key=sk_live_supersecret")
    assert "sk_live_supersecret" not in str(info.value)
    assert "environment" in str(info.value)


def test_rendering_redacts_secret_options() -> None:
    spec = ProviderSpec("stemsplit", None, {"api_key": "sk_live_x", "quality": "best"})
    assert "sk_live_x" not in spec.render()
    assert "sk_live_x" not in repr(spec)
    assert redact({"token": "t", "n": 1}) == {"token": "***", "n": 1}
