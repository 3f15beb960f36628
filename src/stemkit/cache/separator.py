"""``CachedSeparator``: any Separator, answered from a ResultCache when the same work was done before.

It is a composite like a fallback chain: ``aseparate`` is the one implementation (open the input once, key
it, answer from the cache or run the inner separator and store its result) and ``separate`` runs it through
the blocking portal. A hit makes no request to any provider; a miss returns the result as stored, so a
later hit gives back an equal StemSet. The cache never fails a separation: a damaged entry is recomputed and
a store that fails (a full disk) leaves the result uncached, each with a :class:`~stemkit.cache.CacheWarning`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Self

import anyio.to_thread
import numpy as np

from stemkit._portal import sync_method
from stemkit.audio import AudioSource, open_source
from stemkit.cache.key import cache_key, separator_identity
from stemkit.cache.store import ResultCache
from stemkit.excerpt import takes_excerpt
from stemkit.protocol import Capabilities, ProgressCallback, ProgressEvent, Separator
from stemkit.stems import normalize_request
from stemkit.stemset import StemSet

__all__ = ["CachedSeparator"]


class CachedSeparator:
    """``inner`` with a result cache in front. Attributes it does not have are the inner separator's.

    ``close_inner=False`` leaves the inner separator open when this one is closed (it is the caller's).
    ``write_behind`` (default) stores a result held in memory in the background and returns it at once;
    ``False`` stores every result before returning it, read back from its stored files (what a long
    comparison wants: stems on disk, not in memory).
    """

    def __init__(
        self, inner: Separator, cache: ResultCache, *, close_inner: bool = True, write_behind: bool = True
    ) -> None:
        self.inner = inner
        self.cache = cache
        self.close_inner = close_inner
        self.write_behind = write_behind

    # -- what it is: the inner separator's identity -------------------------------------------------------
    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def spec(self) -> str:
        return self.inner.spec

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def cache_identity(self, options: dict[str, Any] | None = None) -> dict[str, Any]:
        return separator_identity(self.inner, options)

    def __getattr__(self, name: str) -> Any:
        if name in ("inner", "cache", "close_inner", "write_behind") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"<CachedSeparator {self.spec!r} in {self.cache.location!r}>"

    # -- keys -----------------------------------------------------------------------------------------------
    def key(self, source: AudioSource, stems: Iterable[str] | str | None = None, **options: Any) -> str:
        """The cache key of separating ``source`` into ``stems`` with ``options`` (hashes the input once)."""
        return cache_key(source.sha256, separator_identity(self.inner, options), stems)

    # -- separation -----------------------------------------------------------------------------------------
    @takes_excerpt
    async def aseparate(
        self,
        audio: Any,
        /,
        *,
        stems: Iterable[str] | str | None = None,
        progress: ProgressCallback | None = None,
        sample_rate: int | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> StemSet:
        """The stored result for this input, provider, options and stems, or the inner separator's (stored)."""
        started = time.monotonic()
        source, owned = await anyio.to_thread.run_sync(self._open, audio, sample_rate)
        on_close = source.close if owned else None
        try:
            requested = normalize_request(stems)
            key, hit = await self._stored(source, requested, options, on_close)
            if hit is not None:
                if progress is not None:
                    progress(ProgressEvent(self.name, "done", 1.0, "cached", input_name=source.name))
                return hit
            remaining = None if timeout is None else max(timeout - (time.monotonic() - started), 1e-3)
            given, extra = self._inner_input(audio, source, sample_rate)
            if remaining is not None:
                extra["timeout"] = remaining
            result = await self.inner.aseparate(given, stems=requested, progress=progress, **extra, **options)
            identity = separator_identity(self.inner, options)
            if self.write_behind and _in_memory(result):
                # The store (a few hundred MB of writes for a long song) overlaps with what the caller does next.
                await anyio.to_thread.run_sync(
                    lambda: self.cache.put_later(key, result, identity=identity, request=requested)
                )
                return _closing(result, on_close)

            def store() -> StemSet | None:
                return self.cache.put(key, result, identity=identity, request=requested, source=source,
                                      on_close=on_close)  # fmt: skip

            stored = await anyio.to_thread.run_sync(store)
        except BaseException:
            if owned:
                source.close()
            raise
        if stored is None:
            return _closing(result, on_close)
        result.close()  # the stored copy replaces it; its temporary files go now
        return stored

    separate = sync_method(
        aseparate,
        """Blocking :meth:`aseparate` (its one implementation, run to completion from synchronous code).""",
    )

    async def alookup(
        self, audio: Any, /, *, stems: Iterable[str] | str | None = None, sample_rate: int | None = None,
        **options: Any,
    ) -> StemSet | None:  # fmt: skip
        """The stored result, or None — never a provider request (what a dry run or a planner asks)."""
        source, owned = await anyio.to_thread.run_sync(self._open, audio, sample_rate)
        on_close = source.close if owned else None
        try:
            _, found = await self._stored(source, normalize_request(stems), options, on_close)
        except BaseException:
            if owned:
                source.close()
            raise
        if found is None and owned:
            source.close()
        return found

    lookup = sync_method(alookup, """Blocking :meth:`alookup`.""")

    async def _stored(
        self, source: AudioSource, requested: tuple[str, ...] | None, options: dict[str, Any],
        on_close: Callable[[], None] | None,
    ) -> tuple[str, StemSet | None]:  # fmt: skip
        """The cache key of this request, and the stored result under it (None: not stored)."""
        key = await anyio.to_thread.run_sync(lambda: self.key(source, requested, **options))
        found = await anyio.to_thread.run_sync(
            lambda: self.cache.get(key, source=source, spec=self.spec, on_close=on_close)
        )
        return key, found

    async def aresume(self, job_id: str, /, *, audio: Any = None, progress: ProgressCallback | None = None,
                      timeout: float | None = None, ledger: Any = None) -> StemSet:  # fmt: skip
        """Finish the inner hosted provider's job ``job_id`` (see :func:`stemkit.resume`), its result stored in
        this cache under the original request's key."""
        from stemkit.resuming import aresume

        return await aresume(job_id, provider=self, audio=audio, progress=progress, timeout=timeout, ledger=ledger)

    resume = sync_method(aresume, """Blocking :meth:`aresume`.""")

    @staticmethod
    def _open(audio: Any, sample_rate: int | None) -> tuple[AudioSource, bool]:
        source = open_source(audio, sample_rate=sample_rate)
        return source, source is not audio

    def _inner_input(self, audio: Any, source: AudioSource, sample_rate: int | None) -> tuple[Any, dict[str, Any]]:
        """What the inner separator gets: the opened source when it is stemkit's own (no second decode or
        hash), else what the caller gave when that can be read again, else the source's local file."""
        from stemkit.provider import SeparatorBase

        if isinstance(self.inner, SeparatorBase | CachedSeparator) or hasattr(self.inner, "members"):
            return source, {}
        if isinstance(audio, np.ndarray):
            return audio, {"sample_rate": sample_rate}
        if isinstance(audio, str | bytes | os.PathLike | AudioSource):
            return audio, {}
        return source.path, {}

    def close(self) -> None:
        if self.close_inner:
            self.inner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _in_memory(result: StemSet) -> bool:
    """No stem (nor a provider's mixture) is backed by a file that the result's owner could delete."""
    stems = [*result.values(), *([result.mixture] if result.mixture is not None else [])]
    return all(stem.path is None for stem in stems)


def _closing(result: StemSet, on_close: Any) -> StemSet:
    """``result`` that also closes the input this wrapper opened when it is closed."""
    if on_close is None:
        return result

    def cleanup() -> None:
        result.close()
        on_close()

    return StemSet(result.values(), provenance=result.provenance, mixture=result.mixture, cleanup=cleanup)
