"""From a composite's produced stems to the StemSet it returns: the requested stems derived with the core's
plan (sums of produced stems, the residual of the mixture), and provenance that names every part."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from stemkit.audio import AudioSource, FloatArray
from stemkit.errors import ProviderError
from stemkit.provenance import Attempt, Cost, Provenance
from stemkit.stems import Plan
from stemkit.stemset import Stem, StemSet

__all__ = ["build_stemset"]


def _derive(
    plan: Plan, produced: Mapping[str, FloatArray], mixture: FloatArray | None, who: str, rate: int
) -> list[Stem]:
    """Every requested stem, from the produced ones as the plan says (the same rules as a single provider:
    a direct stem, a sum of produced stems, or the mixture minus everything produced)."""
    first = next(iter(produced.values()))
    channels, frames = first.shape
    out: list[Stem] = []
    for derivation in plan.outputs:
        if derivation.direct:
            audio = produced[derivation.name]
            out.append(Stem.from_array(derivation.name, audio, rate, complement_of=derivation.complement_of))
            continue
        if derivation.uses_residual and mixture is None:
            raise ProviderError(
                f"{who}: {derivation.name} needs the mixture to derive, and a URL input has none; "
                "download the audio first",
                provider=who,
            )
        total = np.zeros((channels, frames), dtype=np.float32)
        for name in derivation.sources:
            total += produced[name]
        if derivation.uses_residual:
            assert mixture is not None
            total += mixture
            for audio in produced.values():
                total -= audio
        names = [*derivation.sources, *(["residual"] if derivation.uses_residual else [])]
        out.append(
            Stem.from_array(
                derivation.name, total, rate, provider_name="+".join(names), derived=True,
                complement_of=derivation.complement_of,
            )
        )
    return out


def build_stemset(
    *,
    who: str,
    spec: str,
    plan: Plan,
    produced: Mapping[str, FloatArray],
    sample_rate: int,
    source: AudioSource,
    mixture: FloatArray | None,
    started: float,
    timings: Mapping[str, float],
    cost: Cost | None,
    attempts: Sequence[Attempt],
    options: Mapping[str, Any],
    extra: Mapping[str, Any],
    cleanup: Callable[[], None] | None,
) -> StemSet:
    """The composite's normalized StemSet (arrays at the input's rate, length and channels)."""
    stems = _derive(plan, produced, mixture, who, sample_rate)
    mixture_stem = None
    if mixture is not None:
        channels, frames = mixture.shape
        # Read again on use rather than kept: the caller's array input must not be frozen by a StemSet.
        mixture_stem = Stem.derived_from(
            "mixture", (lambda: mixture) if source.is_remote else source.read,
            sample_rate=sample_rate, channels=channels, frames=frames,
        )
    all_timings = dict(timings)
    all_timings["total"] = time.perf_counter() - started
    provenance = Provenance(
        provider=who,
        spec=spec,
        model=None,
        options=dict(options),
        timings=all_timings,
        cost=cost,
        input_sha256=source.sha256,
        input_duration=None if source.is_remote else source.duration,
        input_name=source.name,
        attempts=tuple(attempts),
        extra=dict(extra),
    )
    return StemSet(stems, provenance=provenance, mixture=mixture_stem, cleanup=cleanup)
