"""``ResultCache``: separations kept by content, so that the same work is never done (or paid for) twice.

An entry is written in three steps: the stems go to a private staging folder (hashed as they are written),
then under a data folder named by a fresh token inside the entry, and last the manifest, which names that
token, replaces ``entry.json`` atomically. The manifest is the commit: a reader that finds one finds every
file it names complete, and two processes storing the same entry at once each commit a whole entry (the last
one wins; the other's data folder is removed). A reader copies (hard-links, locally) the files into a folder
of its own and checks every digest before it trusts them; a damaged entry is removed, with a warning, and the
separation runs again.

A result held in memory (a local provider's arrays) can be stored by a background writer instead
(:meth:`ResultCache.put_later`, write-behind): one thread per process, at most two results waiting, joined
when the interpreter exits; a lookup of a key whose store is pending, by any ``ResultCache`` on the same
location in this process, waits for it.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from stemkit.audio import AudioSource
from stemkit.cache.backends import Backend, LocalBackend, open_backend, owner_alive
from stemkit.cache.entry import (
    CorruptEntry,
    Manifest,
    StoredStem,
    TooLargeToStore,
    file_digest,
    input_label,
    scrub,
    write_float_wav,
)
from stemkit.cache.eviction import MANIFEST, STALE_SECONDS, USED, EntryInfo, entry_dir, lru_victims, scan
from stemkit.cache.policy import default_location, default_max_size, parse_size
from stemkit.provenance import Attempt, CacheHit, Provenance
from stemkit.stemset import Stem, StemSet

__all__ = ["CacheInfo", "CacheWarning", "PruneResult", "ResultCache"]

_READER_MAX_AGE = 7 * 86400.0
#: stores waiting for the background writer at most (each holds a result in memory), process-wide
_BACKLOG = threading.BoundedSemaphore(2)
_WRITER: list[ThreadPoolExecutor] = []
_WRITER_LOCK = threading.Lock()
#: stores handed to the writer, by (cache location, key): any ResultCache object on the same location waits
#: for them before it reads that key, so a second identical call in this process always hits
_PENDING: dict[tuple[str, str], Future[None]] = {}
_PENDING_LOCK = threading.Lock()


def _writer() -> ThreadPoolExecutor:
    """One background writer per process. Its thread is joined when the interpreter exits, so a store
    handed to it is finished before a script or the CLI ends."""
    with _WRITER_LOCK:
        if not _WRITER:
            _WRITER.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="stemkit-cache-writer"))
        return _WRITER[0]


class CacheWarning(UserWarning):
    """The result cache could not be used for one result (damaged entry, unreadable or full storage); the
    separation itself went on."""


@dataclass(frozen=True)
class CacheInfo:
    """What ``stemkit cache info`` shows."""

    location: str
    entries: int
    size: int
    max_size: int | None
    incomplete: int
    oldest_use: float | None
    newest_use: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "entries": self.entries,
            "size": self.size,
            "max_size": self.max_size,
            "incomplete": self.incomplete,
            "oldest_use": self.oldest_use,
            "newest_use": self.newest_use,
        }


@dataclass(frozen=True)
class PruneResult:
    """What a prune or clear removed."""

    entries: int = 0
    bytes: int = 0
    leftovers: int = 0


class _Scratch:
    """A private folder that lives as long as any stem read from it (removed on close or collection)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._finalizer = weakref.finalize(self, shutil.rmtree, path, True)

    def remove(self) -> None:
        self._finalizer()


class ResultCache:
    """A content-addressed store of separations, in a folder or at an fsspec URL.

    ``ResultCache()`` opens the default location (``$STEMKIT_CACHE_DIR``, else the user cache folder);
    ``ResultCache("path/or/url", max_size="50GB")`` another. ``max_size`` caps the stored bytes: storing past
    it removes the least recently used entries (default ``$STEMKIT_CACHE_MAX_SIZE`` or 20 GB; ``"none"`` for
    no cap). :meth:`temporary` makes one that is removed on :meth:`close`.
    """

    def __init__(
        self,
        location: str | Path | None = None,
        *,
        max_size: int | str | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.backend: Backend = open_backend(default_location() if location is None else location, storage_options)
        self.max_size: int | None = default_max_size() if max_size is None else parse_size(max_size)
        self.hits = 0
        self.misses = 0
        self._finalizer: weakref.finalize[Any, Any] | None = None
        # The size last scanned plus what this object stored since: a full scan (every entry's files) on each
        # store would cost more than the store itself on a large cache.
        self._estimate: int | None = None
        self._stores_since_scan = 0

    @classmethod
    def temporary(cls, *, max_size: int | str | None = "none") -> ResultCache:
        """A cache in a fresh temporary folder, removed on :meth:`close` or when the object is collected."""
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="stemkit-cache-"))
        cache = cls(folder, max_size=max_size)
        cache._finalizer = weakref.finalize(cache, shutil.rmtree, folder, True)
        return cache

    @property
    def location(self) -> str:
        return self.backend.location

    @property
    def persistent(self) -> bool:
        return self._finalizer is None

    @property
    def directory(self) -> Path:
        """The cache's folder (a local cache only)."""
        if not isinstance(self.backend, LocalBackend):
            raise AttributeError(f"{self.location} is not a local folder")
        return self.backend.root

    def __repr__(self) -> str:
        kind = "persistent" if self.persistent else "temporary"
        return f"{type(self).__name__}({self.location!r}, {kind})"

    # -- reading ------------------------------------------------------------------------------------------
    def contains(self, key: str) -> bool:
        """Whether an entry is stored under ``key`` (its files are checked only by :meth:`get`)."""
        self.flush(key)
        try:
            return self.backend.read_bytes(f"{entry_dir(key)}/{MANIFEST}") is not None
        except OSError:
            return False

    def get(
        self,
        key: str,
        *,
        source: AudioSource | None = None,
        spec: str | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> StemSet | None:
        """The stored StemSet for ``key``, marked as a cache hit, or None (a miss).

        ``source`` is the input being separated now: its name goes into the provenance (a renamed file hits,
        and is named as it is now) and it supplies the mixture. A damaged entry is removed with a
        :class:`CacheWarning` and counts as a miss.
        """
        self.flush(key)  # a store of this key handed to the background writer: wait for it, then read
        started = time.perf_counter()
        try:
            found = self._read(key)
        except CorruptEntry as exc:
            self._drop(key, str(exc))
            found = None
        except Exception as exc:  # storage trouble (a full disk, an unreachable bucket) must not stop the work
            warnings.warn(f"stemkit cache: {self.location} could not be read ({type(exc).__name__}: {exc}); "
                          "separating without it", CacheWarning, stacklevel=3)  # fmt: skip
            found = None
        if found is None:
            self.misses += 1
            return None
        manifest, scratch = found
        with contextlib.suppress(OSError):
            self.backend.touch(f"{entry_dir(key)}/{USED}")
        self.hits += 1
        seconds = time.perf_counter() - started
        stored = Provenance.from_dict(manifest.provenance)
        made_by = spec or manifest.spec
        provenance = replace(
            stored,
            input_name=source.name if source is not None else stored.input_name,
            timings={"total": seconds},
            cost=None,
            attempts=(Attempt(made_by, "ok", seconds),),
            cache=CacheHit(
                key=key,
                created=manifest.created,
                spec=manifest.spec,
                seconds=stored.timings.get("total"),
                cost=stored.cost,
            ),
        )
        return self._stemset(manifest, scratch, provenance, source, on_close)

    def _read(self, key: str, *, retry: bool = True) -> tuple[Manifest, _Scratch] | None:
        base = entry_dir(key)
        raw = self.backend.read_bytes(f"{base}/{MANIFEST}")
        if raw is None:
            return None
        manifest = Manifest.decode(raw, key=key)
        scratch = _Scratch(self.backend.scratch("read"))
        try:
            for stored in manifest.files:
                local = scratch.path / stored.file
                try:
                    self.backend.fetch(f"{base}/{manifest.data}/{stored.file}", local)
                except FileNotFoundError:
                    # Another writer may have committed (and cleaned) in between: read its manifest once more.
                    again = self.backend.read_bytes(f"{base}/{MANIFEST}")
                    if retry and again is not None and again != raw:
                        scratch.remove()
                        return self._read(key, retry=False)
                    raise CorruptEntry(f"its file {stored.file} is missing") from None
                digest, size = file_digest(local)
                if size != stored.size or digest != stored.digest:
                    raise CorruptEntry(f"{stored.file} does not match its digest")
        except BaseException:
            scratch.remove()
            raise
        return manifest, scratch

    def _drop(self, key: str, reason: str) -> None:
        warnings.warn(
            f"stemkit cache: entry {key[:12]} in {self.location} is damaged ({reason}); it was removed and the "
            "result is computed again",
            CacheWarning,
            stacklevel=4,
        )
        with contextlib.suppress(OSError):
            self.backend.remove(entry_dir(key))

    def _stemset(
        self,
        manifest: Manifest,
        scratch: _Scratch,
        provenance: Provenance,
        source: AudioSource | None,
        on_close: Callable[[], None] | None,
    ) -> StemSet:
        rate, channels, frames = manifest.sample_rate, manifest.channels, manifest.frames

        def stem(stored: StoredStem) -> Stem:
            out = Stem.from_file(stored.name, scratch.path / stored.file, sample_rate=rate, channels=channels,
                                 frames=frames, provider_name=stored.provider_name,
                                 complement_of=stored.complement_of)  # fmt: skip
            out.derived = stored.derived
            out.keepalive = scratch
            return out

        stems = [stem(s) for s in manifest.stems]
        mixture: Stem | None = None
        if manifest.mixture is not None:
            mixture = stem(manifest.mixture)
        elif source is not None and not source.is_remote:
            mixture = Stem.derived_from("mixture", source.read, sample_rate=rate, channels=channels, frames=frames)
            mixture.keepalive = scratch

        def cleanup() -> None:
            scratch.remove()
            if on_close is not None:
                on_close()

        return StemSet(stems, provenance=provenance, mixture=mixture, cleanup=cleanup)

    # -- writing ------------------------------------------------------------------------------------------
    def put(
        self,
        key: str,
        result: StemSet,
        *,
        identity: Mapping[str, Any] | None = None,
        request: Iterable[str] | None = None,
        source: AudioSource | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> StemSet | None:
        """Store ``result`` under ``key``; returns the same result read back from its stored files (so a miss
        and a later hit give equal StemSets, and memory is released), or None with a :class:`CacheWarning`
        when it could not be stored (the caller keeps ``result``)."""
        stored = self._store(key, result, identity or {}, request)
        if stored is None:
            return None
        manifest, scratch = stored
        return self._stemset(manifest, scratch, result.provenance, source, on_close)

    def put_later(
        self,
        key: str,
        result: StemSet,
        *,
        identity: Mapping[str, Any] | None = None,
        request: Iterable[str] | None = None,
    ) -> None:
        """Store ``result`` in the background (write-behind): the caller goes on with ``result`` at once.

        For results held in memory (a local provider's arrays), whose stems no one can delete meanwhile.
        Blocks while two stores already wait, so a fast batch cannot pile results up in memory; a
        :meth:`get` of the same key (in this process) waits for the store; :meth:`flush` waits for all.
        """
        _BACKLOG.acquire()

        def work() -> None:
            try:
                stored = self._store(key, result, identity or {}, request)
                if stored is not None:
                    stored[1].remove()
            finally:
                _BACKLOG.release()

        try:
            future = _writer().submit(work)
        except BaseException:
            _BACKLOG.release()
            raise
        slot = (self.location, key)
        with _PENDING_LOCK:
            _PENDING[slot] = future
        future.add_done_callback(lambda done: _forget(slot, done))

    def flush(self, key: str | None = None) -> None:
        """Wait for stores to this location handed to the background writer (all, or the one of ``key``)."""
        with _PENDING_LOCK:
            waiting = [f for (where, k), f in _PENDING.items() if where == self.location and key in (None, k)]
        for future in waiting:
            future.result()

    def _store(
        self, key: str, result: StemSet, identity: Mapping[str, Any], request: Iterable[str] | None
    ) -> tuple[Manifest, _Scratch] | None:
        try:
            return self._put(key, result, identity, request)
        except TooLargeToStore as exc:
            reason = str(exc)
        except Exception as exc:  # storage trouble must not lose the result the caller already paid for
            reason = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"stemkit cache: the result could not be stored in {self.location} ({reason}); it is not "
                      "cached", CacheWarning, stacklevel=4)  # fmt: skip
        return None

    def _put(
        self, key: str, result: StemSet, identity: Mapping[str, Any], request: Iterable[str] | None
    ) -> tuple[Manifest, _Scratch]:
        from stemkit import __version__

        scratch = _Scratch(self.backend.scratch("stage"))
        try:
            files: list[StoredStem] = []
            used: set[str] = set()
            for name, stem in result.items():
                files.append(self._write_stem(scratch.path, name, stem, result, used))
            mixture: StoredStem | None = None
            if result.mixture is not None and not result.mixture.derived:
                mixture = self._write_stem(scratch.path, "mixture", result.mixture, result, used)
            token = f"data-{uuid.uuid4().hex}"
            provenance = result.provenance.to_dict()
            provenance["input_name"] = input_label(result.provenance.input_name)
            provenance["cache"] = None
            manifest = Manifest(
                key=key,
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                spec=result.provenance.spec or result.provider,
                data=token,
                sample_rate=result.sample_rate,
                channels=result.channels,
                frames=result.frames,
                stems=tuple(files),
                mixture=mixture,
                provenance=scrub(provenance),
                identity=scrub(dict(identity)),
                request=tuple(request) if request is not None else None,
                stemkit_version=__version__,
            )
            self._commit(manifest, scratch.path)
        except BaseException:
            scratch.remove()
            raise
        self._evict(manifest.size, keep=(key,))
        return manifest, scratch

    @staticmethod
    def _write_stem(folder: Path, name: str, stem: Stem, result: StemSet, used: set[str]) -> StoredStem:
        base = "".join(c if c.isalnum() or c in "_-" else "_" for c in name) or "stem"
        file, n = f"{base}.wav", 1
        while file in used:
            n += 1
            file = f"{base}-{n}.wav"
        used.add(file)
        digest, size = write_float_wav(folder / file, stem.iter_blocks(), sample_rate=result.sample_rate,
                                       channels=result.channels, frames=result.frames)  # fmt: skip
        complement = stem.complement_of
        return StoredStem(name, file, digest, size, stem.provider_name, stem.derived,
                          tuple(complement) if complement is not None else None)  # fmt: skip

    def _commit(self, manifest: Manifest, staged: Path) -> None:
        base = entry_dir(manifest.key)
        local = isinstance(self.backend, LocalBackend)
        for stored in manifest.files:
            target = f"{base}/{manifest.data}/{stored.file}"
            if local:
                # A hard link keeps the staged file as this caller's private copy; the entry gets its own name.
                assert isinstance(self.backend, LocalBackend)
                path = self.backend.root.joinpath(*target.split("/"))
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    path.hardlink_to(staged / stored.file)
                except OSError:
                    shutil.copyfile(staged / stored.file, path)
            else:
                self.backend.put_file(staged / stored.file, target)
        self.backend.write_bytes(f"{base}/{MANIFEST}", manifest.encode())
        # If another writer committed after us, its manifest names its data; ours is then unreferenced.
        current = self.backend.read_bytes(f"{base}/{MANIFEST}")
        if current is not None and current != manifest.encode():
            with contextlib.suppress(OSError):
                self.backend.remove(f"{base}/{manifest.data}")

    def _evict(self, added: int, *, keep: Iterable[str] = ()) -> int:
        """Keep the cache within its cap: a full scan when the estimate nears the cap (or every 64 stores, to
        notice what other processes stored), else only the estimate grows."""
        if self.max_size is None:
            return 0
        self._stores_since_scan += 1
        if self._estimate is not None and self._stores_since_scan < 64:
            self._estimate += added
            if self._estimate <= 0.9 * self.max_size:
                return 0
        try:
            found = scan(self.backend)
            victims = lru_victims(found, self.max_size, keep=keep)
            for victim in victims:
                self.backend.remove(entry_dir(victim.key))
            self._estimate = sum(e.size for e in found) - sum(v.size for v in victims)
            self._stores_since_scan = 0
        except OSError as exc:
            warnings.warn(f"stemkit cache: could not evict old entries from {self.location} ({exc})",
                          CacheWarning, stacklevel=4)  # fmt: skip
            return 0
        return len(victims)

    # -- housekeeping -------------------------------------------------------------------------------------
    def entries(self) -> list[EntryInfo]:
        """Every entry, least recently used first."""
        self.flush()
        return sorted(scan(self.backend), key=lambda e: e.last_used)

    def info(self) -> CacheInfo:
        self.flush()
        found = scan(self.backend)
        complete = [e for e in found if e.complete]
        return CacheInfo(
            location=self.location,
            entries=len(complete),
            size=sum(e.size for e in found),
            max_size=self.max_size,
            incomplete=len(found) - len(complete),
            oldest_use=min((e.last_used for e in complete), default=None),
            newest_use=max((e.last_used for e in complete), default=None),
        )

    def prune(self, *, max_size: int | str | None = None, older_than: float | None = None) -> PruneResult:
        """Remove entries unused for ``older_than`` seconds, then the least recently used ones until the total
        fits ``max_size`` (default: the cache's cap), and the leftovers of writers and readers that died."""
        self.flush()
        now = time.time()
        self._estimate = None
        cap = self.max_size if max_size is None else parse_size(max_size)
        removed = freed = leftovers = 0
        found = scan(self.backend)
        keep: list[EntryInfo] = []
        for entry in found:
            stale = not entry.complete and now - entry.last_used > STALE_SECONDS
            unused = entry.complete and older_than is not None and now - entry.last_used > older_than
            if stale or unused:
                self.backend.remove(entry_dir(entry.key))
                removed += int(entry.complete)
                leftovers += int(stale)
                freed += entry.size
            else:
                keep.append(entry)
        for entry in keep:
            leftovers += self._remove_orphans(entry, now)
        if cap is not None:
            for victim in lru_victims(scan(self.backend), cap):
                self.backend.remove(entry_dir(victim.key))
                removed += 1
                freed += victim.size
        leftovers += self._remove_dead_scratch(now)
        return PruneResult(removed, freed, leftovers)

    def _remove_orphans(self, entry: EntryInfo, now: float) -> int:
        """Data folders no manifest names (a writer that lost a race, or died before committing)."""
        if not entry.complete:
            return 0
        raw = self.backend.read_bytes(f"{entry_dir(entry.key)}/{MANIFEST}")
        try:
            manifest = Manifest.decode(raw or b"", key=entry.key)
        except CorruptEntry:
            self.backend.remove(entry_dir(entry.key))
            return 1
        tokens = {f.split("/", 1)[0] for f in entry.files if "/" in f}
        removed = 0
        for token in tokens - {manifest.data}:
            if now - entry.last_used > STALE_SECONDS:
                self.backend.remove(f"{entry_dir(entry.key)}/{token}")
                removed += 1
        return removed

    def _remove_dead_scratch(self, now: float) -> int:
        if not isinstance(self.backend, LocalBackend):
            return 0
        removed = 0
        for folder, mtime in self.backend.scratch_folders():
            alive = owner_alive(folder.name)
            age = now - mtime
            limit = _READER_MAX_AGE if folder.name.startswith("read-") else 86400.0
            if alive is False or (alive is None and age > limit):
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed

    def clear(self) -> PruneResult:
        """Remove every entry (the job ledger is kept: it records work a provider may still hold)."""
        self.flush()
        self._estimate = None
        found = scan(self.backend)
        for entry in found:
            self.backend.remove(entry_dir(entry.key))
        leftovers = self._remove_dead_scratch(time.time())
        return PruneResult(sum(e.complete for e in found), sum(e.size for e in found), leftovers)

    def close(self) -> None:
        """Finish pending background stores; remove a temporary cache's folder (a persistent one is kept)."""
        self.flush()
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> ResultCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _forget(slot: tuple[str, str], done: Future[None]) -> None:
    with _PENDING_LOCK:
        if _PENDING.get(slot) is done:
            del _PENDING[slot]


def stems_equal(a: StemSet, b: StemSet) -> bool:
    """Whether two StemSets hold the same stems, bit for bit, with the same names, flags and shape."""
    if list(a) != list(b) or (a.sample_rate, a.channels, a.frames) != (b.sample_rate, b.channels, b.frames):
        return False
    for name in a:
        x, y = a[name], b[name]
        if (x.derived, x.provider_name, x.complement_of) != (y.derived, y.provider_name, y.complement_of):
            return False
        if not np.array_equal(x.audio, y.audio, equal_nan=True):
            return False
    return True
