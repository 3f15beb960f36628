"""The functions behind ``stemkit.separate``, ``stemkit.aseparate`` and ``stemkit.load``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from stemkit.config import ProviderSpec, default_chain, parse_chain
from stemkit.errors import ConfigError
from stemkit.protocol import ProgressCallback, Separator
from stemkit.registry import provider_class
from stemkit.stemset import StemSet

__all__ = ["aseparate", "load", "load_one", "separate"]

ProviderArg = str | ProviderSpec | Sequence[str | ProviderSpec] | Separator | None


def load_one(spec: ProviderSpec, **kwargs: Any) -> Separator:
    """Instantiate one provider from its spec; keyword arguments (API keys, clients) go to its constructor."""
    factory = provider_class(spec.name)
    from_spec = getattr(factory, "from_spec", None)
    if from_spec is None:
        raise ConfigError(
            f"provider {spec.name!r} does not expose from_spec(spec, **kwargs); it is not a stemkit provider"
        )
    try:
        separator: Separator = from_spec(spec, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"{spec.name}: {exc}") from None
    return separator


def load(spec: ProviderArg = None, *, cache: Any = None, **kwargs: Any) -> Separator:
    """Load a provider (``"dsp"``, ``"stemsplit?quality=best"``) or a fallback chain (``"a | b"`` or a list).

    With no spec, ``$STEMKIT_PROVIDER`` or the embedded ``dsp`` baseline. The result is a Separator and a
    context manager; close it (or use ``with``) to release sessions and connections. ``cache``: the result
    cache (see :mod:`stemkit.cache.policy`): by default providers that cost money are cached; ``True`` caches
    every provider, ``False`` none, a folder or fsspec URL caches every provider there.
    """
    from stemkit.cache import apply_cache

    if spec is not None and not isinstance(spec, str | ProviderSpec | Sequence):
        # Already a Separator: the caller's own, used as given unless a cache is asked for.
        return spec if cache is None else apply_cache(spec, cache, owned=False)
    specs = parse_chain(default_chain() if spec is None else spec)
    if len(specs) == 1:
        return apply_cache(load_one(specs[0], **kwargs), cache)
    from stemkit.routing import Chain

    return apply_cache(Chain.from_specs(specs, **kwargs), cache)


def separate(
    audio: Any,
    provider: ProviderArg = None,
    *,
    stems: Iterable[str] | str | None = None,
    progress: ProgressCallback | None = None,
    api_key: str | None = None,
    cache: Any = None,
    **options: Any,
) -> StemSet:
    """Separate ``audio`` (a path, URL, bytes, file object, or an array with ``sample_rate=``) into stems.

    ``provider`` is a spec string, a chain, or a loaded Separator; ``api_key`` goes to a hosted provider
    (default: its environment variable); ``cache`` selects the result cache as for :func:`load`;
    ``options`` are the provider's options (and ``sample_rate=`` for array input, ``timeout=`` for a
    deadline in seconds).
    """
    if provider is not None and not isinstance(provider, str | ProviderSpec | Sequence):
        return load(provider, cache=cache).separate(audio, stems=stems, progress=progress, **options)
    with load(provider, cache=cache, **_key(api_key)) as separator:
        return separator.separate(audio, stems=stems, progress=progress, **options)


async def aseparate(
    audio: Any,
    provider: ProviderArg = None,
    *,
    stems: Iterable[str] | str | None = None,
    progress: ProgressCallback | None = None,
    api_key: str | None = None,
    cache: Any = None,
    **options: Any,
) -> StemSet:
    """Async :func:`separate`: hosted providers use the async transport, local ones a worker thread."""
    if provider is not None and not isinstance(provider, str | ProviderSpec | Sequence):
        return await load(provider, cache=cache).aseparate(audio, stems=stems, progress=progress, **options)
    with load(provider, cache=cache, **_key(api_key)) as separator:
        return await separator.aseparate(audio, stems=stems, progress=progress, **options)


def _key(api_key: str | None) -> dict[str, Any]:
    return {} if api_key is None else {"api_key": api_key}
