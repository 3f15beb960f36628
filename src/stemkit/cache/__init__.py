"""The result cache: every separation kept by content, so the same work is never done — or paid for — twice.

    >>> import stemkit
    >>> stems = stemkit.separate("song.wav", provider="stemsplit")      # doctest: +SKIP
    >>> again = stemkit.separate("renamed.wav", provider="stemsplit")   # doctest: +SKIP
    >>> again.provenance.cache.created                                  # doctest: +SKIP
    '2025-01-01T12:00:00+00:00'

The key (:mod:`stemkit.cache.key`) is the input's content hash, the provider's identity (validated options,
plugin version; never a secret) and the requested stems; the value (:mod:`stemkit.cache.entry`) float WAV
stems and the provenance, verified by hash on every read; entries live in a folder or at an fsspec URL
(:mod:`stemkit.cache.backends`), capped in size with least-recently-used eviction
(:mod:`stemkit.cache.eviction`); which providers are cached is the policy (:mod:`stemkit.cache.policy`).
"""

from __future__ import annotations

from stemkit.cache.key import cache_key, separator_identity
from stemkit.cache.policy import CachePolicy, apply_cache, costs_money, default_location, parse_size, resolve_cache
from stemkit.cache.separator import CachedSeparator
from stemkit.cache.store import CacheInfo, CacheWarning, PruneResult, ResultCache, stems_equal

__all__ = [
    "CacheInfo",
    "CachePolicy",
    "CacheWarning",
    "CachedSeparator",
    "PruneResult",
    "ResultCache",
    "apply_cache",
    "cache_key",
    "costs_money",
    "default_location",
    "parse_size",
    "resolve_cache",
    "separator_identity",
    "stems_equal",
]
