"""Provider spec strings, parsed, validated against a plugin's own pydantic model, and rendered with secrets
redacted.

One provider is ``name[:target][?key=value&key=value]``. Providers compose with three operators, loosest
first (parentheses group, as in arithmetic)::

    a | b                 fallback chain: a, and b if a fails or cannot take the request
    a >[stem] b           pipeline: b separates the ``stem`` of a's result further
    a + b                 ensemble: a and b both separate the input; their stems are combined
    (a + b)?method=median options of an ensemble, written like a provider's
    a[vocals,instrumental] a pipeline stage's stems: what that stage is asked for

so ``stemsplit + onnx:htdemucs | dsp`` is an ensemble with a fallback, ``(stemsplit | ezstems) + dsp`` an
ensemble one of whose members is a chain, and ``stemsplit >[instrumental] onnx:htdemucs`` a pipeline. The
characters ``| + > ( ) [ ]`` are operators: inside a provider's target or option values, percent-encode
them (``%2B`` for ``+``). :func:`parse_tree` gives the whole structure; :func:`parse_chain` the providers of a
plain chain.

Secrets never travel in a spec string (it ends up in logs, shell history and reports); they come from the
environment or a keyword argument.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar
from urllib.parse import quote, unquote

from pydantic import BaseModel, ValidationError

from stemkit.errors import ConfigError

__all__ = [
    "DEFAULT_PROVIDER",
    "ChainSpec",
    "EnsembleSpec",
    "PipelineSpec",
    "ProviderSpec",
    "SpecNode",
    "StageSpec",
    "default_chain",
    "is_spec",
    "parse_chain",
    "parse_spec",
    "parse_tree",
    "plain_chain",
    "redact",
    "render_chain",
    "render_tree",
    "validate_options",
]

DEFAULT_PROVIDER = "dsp"
ENV_PROVIDER = "STEMKIT_PROVIDER"
REDACTED = "***"

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
#: an ensemble's option keys may name a stem after a dot: ``weights.vocals=0.7,0.3``
_GROUP_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z_][A-Za-z0-9_\-]*)?$")
#: characters that end a provider spec inside a composed spec string
_OPERATORS = frozenset("|+>()[]")
_SECRET_WORDS = ("key", "secret", "token", "password", "passwd", "credential", "auth")

M = TypeVar("M", bound=BaseModel)


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def redact(options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``options`` with every secret-looking value replaced by ``***``."""
    return {k: (REDACTED if is_secret_key(k) and v is not None else v) for k, v in options.items()}


@dataclass(frozen=True)
class ProviderSpec:
    """One provider of a spec string: its entry-point name, optional target and raw string options."""

    name: str
    target: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    def render(self) -> str:
        """The canonical spec string, secrets redacted; parsing it gives back an equal spec."""
        text = self.name
        if self.target is not None:
            text += ":" + quote(self.target, safe="/._-~@,=")
        if self.options:
            text += "?" + _render_query(self.options)
        return text

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"ProviderSpec({self.render()!r})"

    def with_options(self, extra: Mapping[str, Any]) -> ProviderSpec:
        merged = dict(self.options)
        merged.update({k: v for k, v in extra.items()})
        return ProviderSpec(self.name, self.target, merged)


def parse_spec(text: str) -> ProviderSpec:
    """Parse one provider spec. A ``|`` here is an error: use :func:`parse_chain` for chains."""
    if not isinstance(text, str):
        raise ConfigError(f"provider: expected a spec string such as 'dsp', got {type(text).__name__}")
    raw = text.strip()
    if not raw:
        raise ConfigError("provider: the spec is empty; name a provider, e.g. 'dsp'")
    if "|" in raw:
        raise ConfigError(f"provider: {raw!r} is a chain; parse it with parse_chain")
    head, sep, query = raw.partition("?")
    name, colon, target = head.partition(":")
    name = name.strip()
    if not _NAME.match(name):
        raise ConfigError(
            f"provider: {name!r} in {raw!r} is not a provider name; "
            "a spec looks like name[:target][?key=value&key=value]"
        )
    parsed_target: str | None = None
    if colon:
        parsed_target = unquote(target.strip())
        if not parsed_target:
            raise ConfigError(f"provider: {raw!r} has ':' but no target after it; drop the ':' or add a target")
    options = _parse_query(query, raw, name, _KEY) if sep else {}
    return ProviderSpec(name, parsed_target, options)


def _parse_query(query: str, raw: str, owner: str, key_pattern: re.Pattern[str]) -> dict[str, str]:
    """``key=value&key=value`` (percent-decoded) of a provider or an ensemble; secrets refused unechoed."""
    if not query.strip():
        raise ConfigError(f"provider: {raw!r} has '?' but no options after it")
    options: dict[str, str] = {}
    for pair in query.split("&"):
        if not pair:
            raise ConfigError(f"provider: {raw!r} has an empty option (two '&' in a row?)")
        key, eq, value = pair.partition("=")
        key = unquote(key).strip()
        if not eq or not key_pattern.match(key):
            raise ConfigError(f"provider: option {pair!r} in {owner!r} is not key=value")
        if key in options:
            raise ConfigError(f"provider: option {key!r} is given twice in {owner!r}")
        if is_secret_key(key):
            raise ConfigError(
                f"provider: {owner!r} option {key!r} looks like a secret; secrets do not belong in spec "
                "strings — set the provider's environment variable or pass it as a keyword"
            )
        options[key] = unquote(value)
    return options


def _render_query(options: Mapping[str, Any]) -> str:
    """The inverse of :func:`_parse_query`, secrets redacted; operator characters are percent-encoded."""
    return "&".join(
        f"{quote(k, safe='_-.')}={quote(str(REDACTED if is_secret_key(k) else v), safe='/._-~,:@*')}"
        for k, v in options.items()
    )


# -- composed specs: chains, pipelines, ensembles ------------------------------------------------------------


@dataclass(frozen=True)
class ChainSpec:
    """``a | b | c``: a fallback chain of its links, in order."""

    links: tuple[SpecNode, ...]

    def __post_init__(self) -> None:
        if len(self.links) < 2:
            raise ConfigError("provider: a chain needs at least two links; a single provider is not a chain")

    def render(self) -> str:
        return " | ".join(_wrap(link, _PIPE) for link in self.links)

    def __str__(self) -> str:
        return self.render()


@dataclass(frozen=True)
class EnsembleSpec:
    """``a + b`` or ``(a + b)?method=median&weights=2,1``: members whose stems are combined.

    ``options`` are the ensemble's own (method, weights, on_failure, …), validated when it is built; an
    ensemble of one member must carry at least one option, or it would be that member.
    """

    members: tuple[SpecNode, ...]
    options: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.members:
            raise ConfigError("provider: an ensemble needs at least one member")
        if len(self.members) == 1 and not self.options:
            raise ConfigError(
                "provider: an ensemble of one member needs an option, e.g. '(dsp)?method=mean'; "
                "without one it is just that member"
            )
        if len(self.members) == 1 and _level(self.members[0]) == _ENSEMBLE:
            raise ConfigError("provider: give the options to the inner ensemble: '(a + b)?method=median'")

    def render(self) -> str:
        if len(self.members) == 1:
            inner = render_tree(self.members[0])  # the group's parentheses are enough
        else:
            inner = " + ".join(_wrap(member, _PRIMARY) for member in self.members)
        if not self.options:
            return inner
        return f"({inner})?{_render_query(self.options)}"

    def __str__(self) -> str:
        return self.render()


@dataclass(frozen=True)
class StageSpec:
    """One stage of a pipeline: what separates (``node``), which stem of the result so far it is fed
    (``feed``; ``None`` for the first stage, which is fed the input) and, optionally, which stems it is asked
    for (``into``)."""

    node: SpecNode
    feed: str | None = None
    into: tuple[str, ...] | None = None

    def render(self) -> str:
        text = _wrap(self.node, _ENSEMBLE if self.into is None else _PRIMARY)
        if self.into is not None:
            text += "[" + ",".join(self.into) + "]"
        return text if self.feed is None else f">[{self.feed}] {text}"


@dataclass(frozen=True)
class PipelineSpec:
    """``a >[instrumental] b``: a's result, with its ``instrumental`` separated further by b."""

    stages: tuple[StageSpec, ...]

    def __post_init__(self) -> None:
        if len(self.stages) < 2 or self.stages[0].feed is not None or any(s.feed is None for s in self.stages[1:]):
            raise ConfigError(
                "provider: a pipeline is a first stage fed the input, then one or more stages each fed a stem "
                "(a >[stem] b)"
            )

    def render(self) -> str:
        return " ".join(stage.render() for stage in self.stages)

    def __str__(self) -> str:
        return self.render()


SpecNode: TypeAlias = ProviderSpec | ChainSpec | EnsembleSpec | PipelineSpec
_NODE_TYPES = (ProviderSpec, ChainSpec, EnsembleSpec, PipelineSpec)

# Binding strength, loosest first: what a node needs around it to keep its meaning where it is written.
_CHAIN, _PIPE, _ENSEMBLE, _PRIMARY = range(4)


def _level(node: SpecNode) -> int:
    if isinstance(node, ChainSpec):
        return _CHAIN
    if isinstance(node, PipelineSpec):
        return _PIPE
    if isinstance(node, EnsembleSpec) and not node.options:
        return _ENSEMBLE
    return _PRIMARY


def _wrap(node: SpecNode, needed: int) -> str:
    text = render_tree(node)
    # A chain inside a chain keeps its own parentheses: it is one link (with its own trail), not flattened.
    if _level(node) < needed or (needed == _PIPE and isinstance(node, ChainSpec)):
        return f"({text})"
    return text


def render_tree(node: SpecNode) -> str:
    """The canonical spec string of a parsed tree, secrets redacted; :func:`parse_tree` gives it back."""
    return node.render()


def is_spec(value: object) -> bool:
    """Whether ``value`` names providers (a spec string, a parsed spec or a list of them) rather than being
    a loaded Separator."""
    return isinstance(value, (str, Sequence, *_NODE_TYPES))


def parse_tree(spec: str | SpecNode | Sequence[str | SpecNode]) -> SpecNode:
    """Parse a spec string (providers, chains, pipelines, ensembles; see the module docstring) into its tree.

    A list is a chain of its items. Errors are :class:`ConfigError` instances that quote the spec and point at
    the offending column.
    """
    if isinstance(spec, _NODE_TYPES):
        return spec
    if isinstance(spec, str):
        return _Parser(spec).parse()
    if isinstance(spec, Sequence):
        items = list(spec)
        if not items:
            raise ConfigError("provider: the chain is empty; name at least one provider")
        links: list[SpecNode] = []
        for item in items:
            if isinstance(item, str) and not item.strip():
                raise ConfigError(f"provider: {spec!r} has an empty link (a stray '|'?)")
            node = parse_tree(item)
            # ["a | b", "c"] is the chain a | b | c, as it always was.
            links.extend(node.links if isinstance(node, ChainSpec) and isinstance(item, str) else [node])
        return links[0] if len(links) == 1 else ChainSpec(tuple(links))
    raise ConfigError(f"provider: expected a spec string or a list of them, got {type(spec).__name__}")


def plain_chain(node: SpecNode) -> list[ProviderSpec] | None:
    """The providers of a plain chain (or of a single provider), in order; ``None`` when the tree holds a
    pipeline or an ensemble. Nested chains are flattened: ``a | (b | c)`` tries a, b, c."""
    if isinstance(node, ProviderSpec):
        return [node]
    if isinstance(node, ChainSpec):
        out: list[ProviderSpec] = []
        for link in node.links:
            inner = plain_chain(link)
            if inner is None:
                return None
            out.extend(inner)
        return out
    return None


def parse_chain(spec: str | ProviderSpec | Sequence[str | ProviderSpec]) -> list[ProviderSpec]:
    """Parse ``"a | b?x=1 | c:target"`` (or a list of specs) into its providers, in order.

    For a spec that composes providers otherwise (an ensemble, a pipeline) use :func:`parse_tree`, or give
    it to ``stemkit.load``.
    """
    tree = parse_tree(spec)
    providers = plain_chain(tree)
    if providers is None:
        raise ConfigError(
            f"provider: {render_tree(tree)!r} is an ensemble or a pipeline, not a plain chain; "
            "load it with stemkit.load"
        )
    return providers


def render_chain(specs: Sequence[ProviderSpec]) -> str:
    return " | ".join(s.render() for s in specs)


class _Parser:
    """Recursive descent over a composed spec string, one method per level of binding (loosest first)::

        chain    := pipe ("|" pipe)*
        pipe     := stage (">[" stem "]" stage)*
        stage    := ensemble            -- a stem selection after a stage's single primary: dsp[vocals]
        ensemble := primary ("+" primary)*
        primary  := SPEC ["[" stems "]"] | "(" chain ")" ["?" options] ["[" stems "]"]
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    # -- helpers --------------------------------------------------------------------------------------------
    def fail(self, message: str, at: int | None = None) -> ConfigError:
        where = min(self.pos if at is None else at, len(self.text))
        return ConfigError(f"provider: {message} (column {where + 1} of {self.text!r})")

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str, why: str) -> None:
        if self.peek() != char:
            found = repr(self.peek()) if self.peek() else "the end"
            raise self.fail(f"expected {char!r} {why}, found {found}")
        self.pos += 1

    def run(self) -> tuple[str, int]:
        """The text up to the next operator (or the end), and where it starts."""
        self.skip()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _OPERATORS:
            self.pos += 1
        return self.text[start : self.pos], start

    # -- grammar --------------------------------------------------------------------------------------------
    def parse(self) -> SpecNode:
        if not self.text.strip():
            raise ConfigError("provider: the spec is empty; name a provider, e.g. 'dsp'")
        node = self.chain()
        if self.peek():
            char = self.peek()
            hint = "')' that no '(' opens" if char == ")" else f"{char!r} here"
            raise self.fail(f"unexpected {hint}")
        return node

    def chain(self) -> SpecNode:
        links = [self.pipe()]
        while self.peek() == "|":
            self.pos += 1
            if self.peek() in ("", "|", ")"):
                raise self.fail("empty link after '|' (a stray '|'?)")
            links.append(self.pipe())
        return links[0] if len(links) == 1 else ChainSpec(tuple(links))

    def pipe(self) -> SpecNode:
        node, into, at = self.stage()
        stages = [StageSpec(node, None, into)]
        while self.peek() == ">":
            self.pos += 1
            if self.peek() != "[":
                raise self.fail("a pipeline arrow names the stem it feeds: '>[instrumental] next-provider'")
            self.pos += 1
            feed = self.stem_list(single=True)[0]
            if self.peek() in ("", "|", ")", ">"):
                raise self.fail(f"nothing after '>[{feed}]'; name the provider that separates the {feed}")
            node, into, _ = self.stage()
            stages.append(StageSpec(node, feed, into))
        if len(stages) == 1:
            if into is not None:
                raise self.fail(
                    "a stem selection [...] belongs to a pipeline stage ('a[vocals,instrumental] >[instrumental] b'); "
                    "to choose the stems of a separation, pass stems= (or --stems)",
                    at,
                )
            return node
        return PipelineSpec(tuple(stages))

    def stage(self) -> tuple[SpecNode, tuple[str, ...] | None, int]:
        self.skip()
        at = self.pos
        members = [self.primary()]
        while self.peek() == "+":
            self.pos += 1
            if self.peek() in ("", "|", ")", "+", ">"):
                raise self.fail("nothing after '+'; an ensemble joins two or more providers: 'a + b'")
            members.append(self.primary())
        if len(members) == 1:
            return members[0][0], members[0][1], at
        for _, into, where in members:
            if into is not None:
                raise self.fail(
                    "a stem selection [...] on an ensemble member; select a stage's stems after the whole "
                    "ensemble: '(a + b)[vocals,instrumental]'",
                    where,
                )
        return EnsembleSpec(tuple(node for node, _, _ in members)), None, at

    def primary(self) -> tuple[SpecNode, tuple[str, ...] | None, int]:
        self.skip()
        start = self.pos
        char = self.peek()
        if char == "(":
            self.pos += 1
            if self.peek() == ")":
                raise self.fail("empty parentheses; put a provider or a group of them inside")
            node = self.chain()
            if self.peek() != ")":
                raise self.fail(f"'(' at column {start + 1} is never closed; add ')'", len(self.text))
            self.pos += 1
            if self.pos < len(self.text) and self.text[self.pos] == "?":
                self.pos += 1
                query = self.run()[0].strip()
                options = _parse_query(query, self.text[start : self.pos], "ensemble", _GROUP_KEY)
                if isinstance(node, EnsembleSpec) and not node.options:
                    node = EnsembleSpec(node.members, options)
                else:
                    node = EnsembleSpec((node,), options)
        elif char in _OPERATORS or not char:
            what = "the end" if not char else repr(char)
            raise self.fail(f"expected a provider (e.g. 'dsp') or '(', found {what}")
        else:
            text, at = self.run()
            try:
                node = parse_spec(text)
            except ConfigError as exc:
                if text.strip() == self.text.strip():
                    raise
                raise ConfigError(f"{exc} (at column {at + 1} of {self.text!r})") from None
        into = None
        if self.peek() == "[":
            self.pos += 1
            into = self.stem_list(single=False)
        return node, into, start

    def stem_list(self, *, single: bool) -> tuple[str, ...]:
        """``name]`` or ``name,name,...]`` after a ``[``; names are checked against the vocabulary later."""
        start = self.pos
        end = self.text.find("]", start)
        if end < 0:
            raise self.fail("'[' is never closed; add ']'", start - 1)
        names = tuple(part.strip() for part in self.text[start:end].split(","))
        if not all(_STEM_NAME.match(n) for n in names):
            raise self.fail(
                f"[{self.text[start:end]}] is not a stem name or a comma-separated list of them (inside a provider's "
                "target or options, write '[' and ']' as %5B and %5D)",
                start,
            )
        if single and len(names) != 1:
            raise self.fail(f"a pipeline arrow feeds one stem, got [{self.text[start:end]}]", start)
        self.pos = end + 1
        return names


_STEM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")


def default_chain() -> str:
    """The provider used when none is named: ``$STEMKIT_PROVIDER`` or the embedded ``dsp`` baseline."""
    return os.environ.get(ENV_PROVIDER, "").strip() or DEFAULT_PROVIDER


def validate_options(model: type[M], options: Mapping[str, Any], *, provider: str) -> M:
    """Validate raw options with the plugin's pydantic model; every problem becomes one ConfigError line."""
    known = sorted(model.model_fields)
    unknown = [k for k in options if k not in model.model_fields]
    if unknown:
        listing = ", ".join(known) if known else "none"
        raise ConfigError(
            f"{provider}: unknown option(s) {', '.join(repr(k) for k in unknown)}; known options: {listing}"
        )
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "options"
            value = err.get("input")
            shown = REDACTED if is_secret_key(where) else repr(value)
            problems.append(f"{where}={shown}: {err['msg']}")
        raise ConfigError(f"{provider}: invalid option(s): " + "; ".join(problems)) from None
