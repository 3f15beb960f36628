"""``compare``'s view of the result cache (:mod:`stemkit.cache`): one cache for separate, batches and compare.

A comparison runs each provider through the same result cache as :func:`stemkit.separate`, so adding a metric
or a provider never re-bills a hosted provider for a separation already made — by this comparison, an earlier
one, or an earlier ``stemkit separate``. By default a paid provider's results go to the shared default cache
and a local provider's to a temporary :class:`SeparationCache` that lives as long as the report
(``report.cache``; pass it to the next ``compare``); ``cache="folder/"`` keeps every provider's results there
across runs; ``cache=False`` keeps none.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from stemkit.audio import FloatArray
from stemkit.cache import ResultCache
from stemkit.stemset import StemSet

__all__ = ["CachedSeparation", "SeparationCache"]


class SeparationCache(ResultCache):
    """A :class:`~stemkit.cache.ResultCache` whose default is a temporary folder removed on :meth:`close` (or
    when the object is collected); ``SeparationCache(path)`` keeps entries in ``path``."""

    def __init__(self, directory: str | Path | None = None, *, max_size: int | str | None = None) -> None:
        if directory is None:
            folder = Path(tempfile.mkdtemp(prefix="stemkit-compare-"))
            super().__init__(folder, max_size="none")
            self._finalizer = weakref.finalize(self, shutil.rmtree, folder, True)
        else:
            super().__init__(directory, max_size=max_size)


class _StemAudio(Mapping[str, FloatArray]):
    """Stem name → audio, read from a file-backed stem's file on each access (so a long comparison does not
    keep every separation in memory); an in-memory stem's array as it is."""

    def __init__(self, result: StemSet) -> None:
        self._result = result  # keeps the stems' files alive

    def __getitem__(self, name: str) -> FloatArray:
        stem = self._result[name]
        if stem.path is None or stem.is_loaded:
            return stem.audio
        data, _ = sf.read(stem.path, dtype="float32", always_2d=True)
        return np.ascontiguousarray(data.T)

    def __iter__(self) -> Iterator[str]:
        return iter(self._result)

    def __len__(self) -> int:
        return len(self._result)


@dataclass(frozen=True)
class CachedSeparation:
    """One separation as a comparison scores it: stem → float32 (channels, frames), with what it cost when it
    was made (a cache hit reports the original run's time and cost)."""

    stems: Mapping[str, FloatArray]
    sample_rate: int
    seconds: float
    model: str | None = None
    cost_amount: float | None = None
    cost_unit: str | None = None
    cached: bool = False
    meta: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_stemset(cls, result: StemSet, *, seconds: float) -> CachedSeparation:
        """From a StemSet; ``seconds`` is the wall time of the call that produced it."""
        provenance = result.provenance
        hit = provenance.cache
        cost = hit.cost if hit is not None else provenance.cost
        # The provider's own total (as stored, to the microsecond), so a hit reports exactly what the miss did.
        own = provenance.timings.get("total")
        took = hit.seconds if hit is not None and hit.seconds is not None else round(own or seconds, 6)
        return cls(
            stems=_StemAudio(result),
            sample_rate=result.sample_rate,
            seconds=took,
            model=provenance.model,
            cost_amount=cost.amount if cost else None,
            cost_unit=cost.unit if cost else None,
            cached=hit is not None,
            meta={"job_id": provenance.job_id, "timings": dict(provenance.timings)},
        )
