"""The functions behind ``stemkit.separate``, ``stemkit.aseparate`` and ``stemkit.load``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from stemkit.config import ProviderSpec, default_chain, parse_tree, plain_chain
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


def load(spec: ProviderArg = None, **kwargs: Any) -> Separator:
    """Load a provider (``"dsp"``, ``"stemsplit?quality=best"``), a fallback chain (``"a | b"`` or a list), an
    ensemble (``"a + b"``) or a pipeline (``"a >[instrumental] b"``), nested as the spec says.

    With no spec, ``$STEMKIT_PROVIDER`` or the embedded ``dsp`` baseline. The result is a Separator and a
    context manager; close it (or use ``with``) to release sessions and connections.
    """
    if spec is not None and not isinstance(spec, str | ProviderSpec | Sequence):
        return spec  # already a Separator
    tree = parse_tree(default_chain() if spec is None else spec)
    specs = plain_chain(tree)
    if specs is None:  # an ensemble or a pipeline somewhere in it
        from stemkit.compose.build import build

        return build(tree, **kwargs)
    if len(specs) == 1:
        return load_one(specs[0], **kwargs)
    from stemkit.routing import Chain

    return Chain.from_specs(specs, **kwargs)


def separate(
    audio: Any,
    provider: ProviderArg = None,
    *,
    stems: Iterable[str] | str | None = None,
    progress: ProgressCallback | None = None,
    api_key: str | None = None,
    **options: Any,
) -> StemSet:
    """Separate ``audio`` (a path, URL, bytes, file object, or an array with ``sample_rate=``) into stems.

    ``provider`` is a spec string, a chain, or a loaded Separator; ``api_key`` goes to a hosted provider
    (default: its environment variable); ``options`` are the provider's options (and ``sample_rate=`` for
    array input, ``timeout=`` for a deadline in seconds).
    """
    if provider is not None and not isinstance(provider, str | ProviderSpec | Sequence):
        return provider.separate(audio, stems=stems, progress=progress, **options)
    with load(provider, **_key(api_key)) as separator:
        return separator.separate(audio, stems=stems, progress=progress, **options)


async def aseparate(
    audio: Any,
    provider: ProviderArg = None,
    *,
    stems: Iterable[str] | str | None = None,
    progress: ProgressCallback | None = None,
    api_key: str | None = None,
    **options: Any,
) -> StemSet:
    """Async :func:`separate`: hosted providers use the async transport, local ones a worker thread."""
    if provider is not None and not isinstance(provider, str | ProviderSpec | Sequence):
        return await provider.aseparate(audio, stems=stems, progress=progress, **options)
    with load(provider, **_key(api_key)) as separator:
        return await separator.aseparate(audio, stems=stems, progress=progress, **options)


def _key(api_key: str | None) -> dict[str, Any]:
    return {} if api_key is None else {"api_key": api_key}
