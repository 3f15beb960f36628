"""Separations kept by (input hash, provider spec with its options, requested stems).

Adding a metric or a provider to a comparison must never re-bill a hosted provider for a separation already
made. :func:`stemkit.compare` stores every separation here before scoring it: by default in a temporary
folder that lives as long as the cache object (``report.cache``; pass it to the next ``compare`` call), or in
a folder you name, which persists across runs (``cache="stemkit-cache/"``, ``--cache DIR``).

Stems are stored as float32 ``.npy`` (exact, and memory-mapped on reuse so a long catalogue does not sit in
RAM) next to a ``meta.json`` with the original wall time, cost and model. An entry is written to a
temporary name and renamed into place, so an interrupted run never leaves a half entry. The key does not
include the provider's version: clear the folder after upgrading a provider.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stemkit.audio import FloatArray
from stemkit.errors import ConfigError

__all__ = ["CachedSeparation", "SeparationCache", "cache_key"]

_FORMAT = 1


def cache_key(input_sha256: str, spec: str, stems: Sequence[str] | None) -> str:
    """The entry's name: a hash of the input's hash, the rendered spec (options included) and the stems."""
    payload = json.dumps(
        {"v": _FORMAT, "input": input_sha256, "provider": spec, "stems": sorted(stems) if stems else None},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class CachedSeparation:
    """One stored separation: stem → float32 (channels, frames), with what it cost when it was made."""

    stems: Mapping[str, FloatArray]
    sample_rate: int
    seconds: float
    model: str | None = None
    cost_amount: float | None = None
    cost_unit: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


class SeparationCache:
    """A folder of separations. ``SeparationCache()`` uses a temporary folder removed on :meth:`close`
    (or when the object is garbage collected); ``SeparationCache(path)`` keeps entries in ``path``."""

    def __init__(self, directory: str | Path | None = None) -> None:
        if directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="stemkit-compare-"))
            self._finalizer: weakref.finalize[Any, Any] | None = weakref.finalize(
                self, shutil.rmtree, self.directory, True
            )
        else:
            self.directory = Path(directory)
            if self.directory.exists() and not self.directory.is_dir():
                raise ConfigError(f"cache: {self.directory} exists and is not a folder; name a folder for the cache")
            self.directory.mkdir(parents=True, exist_ok=True)
            self._finalizer = None
        self.hits = 0
        self.misses = 0

    @property
    def persistent(self) -> bool:
        return self._finalizer is None

    def _entry(self, key: str) -> Path:
        return self.directory / key[:2] / key

    def get(self, key: str) -> CachedSeparation | None:
        entry = self._entry(key)
        meta_path = entry / "meta.json"
        if not meta_path.is_file():
            self.misses += 1
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            stems = {name: np.load(entry / f"{name}.npy", mmap_mode="r") for name in meta["stems"]}
        except (OSError, ValueError, KeyError):
            self.misses += 1  # a damaged entry is a miss; the fresh result replaces it
            return None
        self.hits += 1
        return CachedSeparation(
            stems=stems,
            sample_rate=int(meta["sample_rate"]),
            seconds=float(meta["seconds"]),
            model=meta.get("model"),
            cost_amount=meta.get("cost_amount"),
            cost_unit=meta.get("cost_unit"),
            meta=meta,
        )

    def put(
        self,
        key: str,
        stems: Mapping[str, FloatArray],
        *,
        sample_rate: int,
        seconds: float,
        model: str | None = None,
        cost_amount: float | None = None,
        cost_unit: str | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> CachedSeparation:
        entry = self._entry(key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = entry.parent / f".{key}.{uuid.uuid4().hex}.tmp"
        staging.mkdir()
        try:
            for name, audio in stems.items():
                np.save(staging / f"{name}.npy", np.ascontiguousarray(audio, dtype=np.float32))
            meta = {
                "format": _FORMAT,
                "stems": list(stems),
                "sample_rate": sample_rate,
                "seconds": seconds,
                "model": model,
                "cost_amount": cost_amount,
                "cost_unit": cost_unit,
                **dict(info or {}),
            }
            (staging / "meta.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
            if entry.exists():
                shutil.rmtree(entry, ignore_errors=True)
            os.replace(staging, entry)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        stored = self.get(key)
        self.hits -= 1  # reading back what was just written is not a hit
        assert stored is not None
        return stored

    def close(self) -> None:
        """Remove a temporary cache folder (a named folder is kept)."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> SeparationCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "persistent" if self.persistent else "temporary"
        return f"SeparationCache({str(self.directory)!r}, {kind})"
