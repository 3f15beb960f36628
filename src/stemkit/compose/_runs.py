"""Running the separators a composite is made of, and keeping the record of each run.

One place for what ensembles and pipelines both do with a part: call it through the Separator protocol
(async), relabel its progress events, bound it by what is left of the caller's deadline, let local CPU-bound
parts take turns while hosted ones overlap, and turn its outcome into a :class:`Run` — ok, failed (with the
stemkit error) or skipped (with the reason) — that provenance and the attempt trail are built from.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.to_thread

from stemkit._boundary import error_boundary
from stemkit.audio import AudioSource
from stemkit.errors import ConfigError, InputError, SeparationTimeout, StemkitError
from stemkit.protocol import ProgressCallback, ProgressEvent, Separator
from stemkit.provenance import Attempt, Cost
from stemkit.routing import member_input
from stemkit.stemset import StemSet

__all__ = ["Run", "is_local", "prepare_source", "run_one", "sum_costs"]

Outcome = Literal["ok", "failed", "skipped"]


@dataclass
class Run:
    """One part of a composite, for one call: what it was asked, and what came of it."""

    index: int
    separator: Separator
    request: tuple[str, ...] | None = None
    outcome: Outcome = "skipped"
    result: StemSet | None = None
    error: StemkitError | None = None
    reason: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.separator.spec

    def attempts(self) -> tuple[Attempt, ...]:
        """This part's trail: its own (a chain's skips and failures included) when it succeeded."""
        if self.outcome == "ok" and self.result is not None:
            trail = tuple(self.result.provenance.attempts)
            if len(trail) > 1:  # a chain's own trail, its skips and failures included
                return trail
            return (Attempt(self.label, "ok", self.seconds),)
        return (Attempt(self.label, self.outcome, self.seconds, self.error, self.reason),)

    def record(self) -> dict[str, Any]:
        """A JSON-ready account of the run for provenance ``extra``."""
        out: dict[str, Any] = {
            "index": self.index,
            "spec": self.label,
            "outcome": self.outcome,
            "seconds": round(self.seconds, 6),
            "stems": list(self.request) if self.request else [],
        }
        if self.result is not None:
            prov = self.result.provenance
            out.update(
                provider=prov.provider,
                model=prov.model,
                job_id=prov.job_id,
                timings={k: round(v, 6) for k, v in prov.timings.items()},
                cost={"amount": prov.cost.amount, "unit": prov.cost.unit} if prov.cost else None,
            )
        if self.error is not None:
            out["error_class"] = type(self.error).__name__
        if self.reason or self.error is not None:
            out["message"] = self.reason or str(self.error)
        if self.notes:
            out["notes"] = list(self.notes)
        out.update(self.extra)
        return out

    def close(self) -> None:
        if self.result is not None:
            self.result.close()


def is_local(separator: Separator) -> bool:
    """Whether a part computes on this machine (and so takes a turn on the CPU) rather than waiting on a
    service."""
    caps = separator.capabilities
    return caps.local and not caps.needs_network


async def prepare_source(source: AudioSource, separators: Iterable[Separator]) -> None:
    """Do once, off the event loop, what parts running side by side would otherwise race to do: hash the
    input, and write an in-memory input to its temporary file when some part uploads files."""
    if source.is_remote:
        return
    uploads = any(not is_local(s) for s in separators)

    def work() -> None:
        _ = source.sha256
        if uploads:
            _ = source.path

    await anyio.to_thread.run_sync(work)


async def run_one(
    run: Run,
    audio: Any,
    *,
    sample_rate: int | None = None,
    progress: ProgressCallback | None,
    deadline: float | None,
    limiter: anyio.CapacityLimiter | None,
) -> None:
    """Run one part and record its outcome in ``run``; bad input and bad requests are raised, not recorded.

    ``deadline`` is a :func:`time.monotonic` instant; the part gets what is left of it as its ``timeout=``.
    A part that raises something other than a stemkit error has a bug: it is recorded as a ProviderError so
    that the composite's own policy (drop, fail, fall back) still applies.
    """
    assert run.request is not None
    label = run.label

    def forward(event: ProgressEvent) -> None:
        if progress is not None:
            progress(dataclasses.replace(event, provider=label))

    if isinstance(audio, AudioSource):
        audio, kwargs = member_input(run.separator, audio)
    else:
        kwargs = {} if sample_rate is None else {"sample_rate": sample_rate}
    kwargs.update(stems=run.request, progress=forward)
    started = time.perf_counter()
    try:
        with error_boundary(label):  # a part's bug is a ProviderError, so the composite's policy still applies
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SeparationTimeout(f"{label}: the deadline passed before it could start", provider=label)
                kwargs["timeout"] = left
            if limiter is not None and is_local(run.separator):
                async with limiter:
                    run.result = await run.separator.aseparate(audio, **kwargs)
            else:
                run.result = await run.separator.aseparate(audio, **kwargs)
        run.outcome = "ok"
    except (InputError, ConfigError):
        raise
    except StemkitError as exc:
        run.outcome, run.error = "failed", exc
    finally:
        run.seconds = time.perf_counter() - started


def sum_costs(costs: Sequence[Cost | None]) -> tuple[Cost | None, dict[str, float]]:
    """The total cost when every known cost is in one unit (else None), and the totals per unit."""
    by_unit: dict[str, float] = {}
    for cost in costs:
        if cost is not None and math.isfinite(cost.amount):
            by_unit[cost.unit] = by_unit.get(cost.unit, 0.0) + cost.amount
    if len(by_unit) == 1:
        unit, amount = next(iter(by_unit.items()))
        return Cost(amount, unit), by_unit
    return None, by_unit
