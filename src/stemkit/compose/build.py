"""From a parsed spec tree to a Separator: providers loaded through their entry points, chains, pipelines and
ensembles built around them, nested as the spec string nests them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stemkit.config import ChainSpec, EnsembleSpec, PipelineSpec, ProviderSpec, SpecNode, render_tree
from stemkit.errors import ConfigError
from stemkit.protocol import Separator

__all__ = ["build"]


def build(
    node: SpecNode,
    *,
    provider_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    cache: Any = None,
    **kwargs: Any,
) -> Separator:
    """Load every provider of ``node`` and compose them. ``provider_kwargs`` maps a provider name to the keyword
    arguments for its constructor (API key, client, retry policy); other keywords are only accepted for a
    single provider, because in a composite it would be ambiguous which provider they are meant for."""
    if isinstance(node, ProviderSpec):
        from stemkit.api import load_one

        merged = {**dict((provider_kwargs or {}).get(node.name, {})), **kwargs}
        return load_one(node, cache=cache, **merged)
    if kwargs:
        raise ConfigError(
            f"load: keyword(s) {', '.join(sorted(kwargs))} are ambiguous for {render_tree(node)!r}; pass them "
            "per provider as provider_kwargs={'name': {...}}"
        )
    loaded: list[Separator] = []
    try:
        if isinstance(node, ChainSpec):
            from stemkit.routing import Chain

            for link in node.links:
                loaded.append(build(link, provider_kwargs=provider_kwargs, cache=cache))
            return Chain(loaded)
        if isinstance(node, EnsembleSpec):
            from stemkit.compose.ensemble import Ensemble

            for member in node.members:
                loaded.append(build(member, provider_kwargs=provider_kwargs, cache=cache))
            return Ensemble.from_spec(node, loaded, owned=loaded)
        if isinstance(node, PipelineSpec):
            from stemkit.compose.pipeline import Pipeline, Stage

            stages = []
            for stage in node.stages:
                separator = build(stage.node, provider_kwargs=provider_kwargs, cache=cache)
                loaded.append(separator)
                stages.append(Stage(separator, feed=stage.feed, into=stage.into))
            return Pipeline(stages, owned=loaded)
    except BaseException:
        for separator in loaded:
            separator.close()
        raise
    raise ConfigError(f"provider: cannot build {node!r}")  # pragma: no cover - the tree types are closed
