"""The functions behind ``stemkit.separate``, ``stemkit.aseparate`` and ``stemkit.load``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import anyio
import anyio.to_thread

from stemkit._boundary import error_boundary
from stemkit._portal import sync_function
from stemkit.config import ProviderSpec, default_chain, parse_tree, plain_chain
from stemkit.errors import ConfigError, ProviderError
from stemkit.protocol import ProgressCallback, Separator
from stemkit.registry import provider_class
from stemkit.stemset import StemSet

__all__ = ["aseparate", "load", "load_one", "separate"]

ProviderArg = str | ProviderSpec | Sequence[str | ProviderSpec] | Separator | None


def load_one(spec: ProviderSpec, *, cache: Any = None, **kwargs: Any) -> Separator:
    """Instantiate one provider from its spec; keyword arguments (API keys, clients) go to its constructor;
    ``cache`` puts the result cache in front of it as the policy says (see :func:`load`)."""
    factory = provider_class(spec.name)
    from_spec = getattr(factory, "from_spec", None)
    if from_spec is None:
        raise ConfigError(
            f"provider {spec.name!r} does not expose from_spec(spec, **kwargs); it is not a stemkit provider"
        )
    try:
        with error_boundary(spec.name):
            try:
                separator: Separator = from_spec(spec, **kwargs)
            except TypeError as exc:
                raise ConfigError(f"{spec.name}: {exc}") from None
    except ProviderError as exc:  # a plugin that cannot even be constructed is a setup problem
        raise ConfigError(f"{spec.name}: could not load the provider: {exc.message}") from exc
    from stemkit.cache import apply_cache

    return apply_cache(separator, cache)


def load(spec: ProviderArg = None, *, cache: Any = None, **kwargs: Any) -> Separator:
    """Load a provider (``"dsp"``, ``"stemsplit?quality=best"``), a fallback chain (``"a | b"`` or a list), an
    ensemble (``"a + b"``) or a pipeline (``"a >[instrumental] b"``), nested as the spec says.

    With no spec, ``$STEMKIT_PROVIDER`` or the embedded ``dsp`` baseline. The result is a Separator and a
    context manager; close it (or use ``with``) to release sessions and connections. ``cache``: the result
    cache (see :mod:`stemkit.cache.policy`): by default providers that cost money are cached; ``True`` caches
    every provider, ``False`` none, a folder or fsspec URL caches every provider there.
    """
    from stemkit.cache import apply_cache, resolve_cache

    if spec is not None and not isinstance(spec, str | ProviderSpec | Sequence):
        # Already a Separator: the caller's own, used as given unless a cache is asked for.
        return spec if cache is None else apply_cache(spec, cache, owned=False)
    policy = resolve_cache(cache)  # every provider in the spec gets the cache its policy says, as it is loaded
    with error_boundary():
        tree = parse_tree(default_chain() if spec is None else spec)
        specs = plain_chain(tree)
        if specs is None:  # an ensemble or a pipeline somewhere in it
            from stemkit.compose.build import build

            return build(tree, cache=policy, **kwargs)
        if len(specs) == 1:
            return load_one(specs[0], cache=policy, **kwargs)
        from stemkit.routing import Chain

        return Chain.from_specs(specs, cache=policy, **kwargs)


async def aseparate(
    audio: Any,
    provider: ProviderArg = None,
    *,
    stems: Iterable[str] | str | None = None,
    progress: ProgressCallback | None = None,
    api_key: str | None = None,
    cache: Any = None,
    max_cost: Any = None,
    ledger: Any = None,
    **options: Any,
) -> StemSet:
    """Separate ``audio`` into stems without blocking the event loop (the one implementation of both flavours:
    :func:`separate` runs it). Hosted providers use the async transport, local ones a worker thread.

    ``max_cost`` refuses work whose estimated cost exceeds it before anything is billed (see
    :mod:`stemkit.budget`; a :class:`~stemkit.errors.BudgetExceededError`); ``ledger`` is the job ledger hosted
    jobs are recorded in (``False``: none; see :func:`stemkit.ledger.resolve_ledger`). ``offset=``/``duration=``
    are cut here, so that any Separator (a caller's own too) takes them.
    """
    from stemkit.budget import Budget, spending_limit
    from stemkit.excerpt import separate_excerpt
    from stemkit.ledger import using_ledger

    with error_boundary():
        budget = Budget.parse(max_cost)
        theirs = provider is not None and not isinstance(provider, str | ProviderSpec | Sequence)
        # the caller's own Separator is used as given; a cache wrapper leaves it open
        separator = load(provider, cache=cache) if theirs else load(provider, cache=cache, **_key(api_key))
        try:
            with using_ledger(ledger), spending_limit(budget):
                if budget is not None:
                    from stemkit.cost import check_budget

                    await anyio.to_thread.run_sync(
                        lambda: check_budget(separator, [audio], stems, options, budget, ledger=ledger)
                    )
                return await separate_excerpt(separator, audio, stems=stems, progress=progress, **options)
        finally:
            if not theirs:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(separator.close)


separate = sync_function(
    aseparate,
    """Separate ``audio`` (a path, URL, bytes, file object, or an array with ``sample_rate=``) into stems.

    ``provider`` is a spec string, a chain, or a loaded Separator; ``api_key`` goes to a hosted provider
    (default: its environment variable); ``options`` are the provider's options (and ``sample_rate=`` for
    array input, ``timeout=`` for a deadline in seconds, ``offset=``/``duration=`` to separate part of the
    input: seconds or ``"1:30"``, cut at exact samples and recorded in ``provenance.excerpt``). ``cache``: the
    result cache (:mod:`stemkit.cache`); ``max_cost``: refuse work whose estimate exceeds it, before anything
    is billed (:mod:`stemkit.budget`); ``ledger``: the job ledger (``False`` turns it off). Only
    :class:`~stemkit.errors.StemkitError` errors are raised. This is :func:`aseparate`, run to completion from
    synchronous code.
    """,
)


def _key(api_key: str | None) -> dict[str, Any]:
    return {} if api_key is None else {"api_key": api_key}
