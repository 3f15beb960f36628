"""Short labels for the providers of a comparison, so that tables and plots stay readable.

A spec string is the exact identity of a provider (``ezstems?base_url=http://127.0.0.1:52311&stems=4``), and
the report's JSON keeps it; a column needs a name. The label is the provider's name (and target), plus only
the options that tell two listed providers apart; connection details (``base_url``) and secrets never
appear. ``compare(providers={"fast": "dsp"})`` or ``--label fast=dsp`` choose one by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath

from stemkit.config import ProviderSpec, is_secret_key, parse_chain
from stemkit.errors import ConfigError

__all__ = ["MAX_LABEL", "short_labels"]

MAX_LABEL = 32
_HIDDEN_OPTIONS = frozenset({"base_url", "url", "endpoint", "timeout", "poll_interval"})


def _member(spec: ProviderSpec, options: Sequence[str]) -> str:
    text = spec.name
    if spec.target is not None:
        target = spec.target
        text += ":" + (PurePosixPath(target).name if "/" in target else target)
    shown = [f"{k}={spec.options[k]}" for k in options if k in spec.options]
    if shown:
        text += f"({','.join(shown)})"
    return text


def _visible(spec: ProviderSpec) -> list[str]:
    return [k for k in spec.options if k not in _HIDDEN_OPTIONS and not is_secret_key(k)]


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def short_labels(specs: Sequence[str]) -> list[str]:
    """One short, unique label per spec string, in order."""
    chains: list[list[ProviderSpec]] = []
    for spec in specs:
        try:
            chains.append(parse_chain(spec))
        except ConfigError:
            chains.append([ProviderSpec(name=spec)])  # a Separator's spec that does not parse: keep its name
    bare = ["|".join(_member(m, ()) for m in chain) for chain in chains]
    labels: list[str] = []
    for index, chain in enumerate(chains):
        if bare.count(bare[index]) == 1:
            labels.append(_shorten(bare[index]))
            continue
        # Show the options in which this chain differs from another with the same bare name.
        rivals = [chains[j] for j in range(len(chains)) if j != index and bare[j] == bare[index]]
        parts = []
        for position, member in enumerate(chain):
            differing = [
                k
                for k in _visible(member)
                if any(position >= len(r) or r[position].options.get(k) != member.options.get(k) for r in rivals)
            ]
            differing += [
                k
                for r in rivals
                if position < len(r)
                for k in _visible(r[position])
                if k not in member.options and k not in differing
            ]
            parts.append(_member(member, [k for k in differing if k in member.options]))
        labels.append(_shorten("|".join(parts)))
    # Whatever still collides (identical visible parts, or truncation) is numbered.
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        count = seen.get(label, 0) + 1
        seen[label] = count
        out.append(label if count == 1 else f"{label}#{count}")
    return out
