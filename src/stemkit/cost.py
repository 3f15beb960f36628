"""Cost before spending: what a request would do and cost, worked out without running it.

    >>> plan = stemkit.estimate(["albums/"], provider="stemsplit", stems="vocals")     # doctest: +SKIP
    >>> plan.totals()                                                                   # doctest: +SKIP
    {'seconds': 4211.0}

For each input, :func:`estimate` says which provider would run (a fallback chain's first provider that can
take it), which stems it returns directly and which stemkit derives, whether the result cache already holds
the answer, whether the provider already holds the job (a job the ledger can resume), how the input would be
fitted to the provider's limits (:func:`stemkit.compose.fit.estimate_sent`: what is sent is what is billed)
and what that would cost. It reads the input (to hash and probe it), the result cache and the job ledger;
it makes **no request to any provider**.

What a provider charges comes from its :meth:`~stemkit.provider.SeparatorBase.estimate_cost` hook, by default
:func:`cost_from_capabilities`: a per-second ``cost_unit`` bills each job's seconds rounded up (StemSplit's
rule); a subscription (EzStems) bills nothing per job but counts it against the plan (``plan_usage``); a local
provider costs compute time, from the ``realtime_factor`` its capabilities state (seconds of compute per
second of audio, measured; dsp's is in ``docs/benchmarks.md``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import anyio.to_thread

from stemkit._boundary import error_boundary
from stemkit.audio import AudioSource, open_source
from stemkit.errors import ConfigError, StemkitError
from stemkit.protocol import Capabilities, Separator
from stemkit.provenance import Cost
from stemkit.stems import normalize_request

if TYPE_CHECKING:
    from stemkit.api import ProviderArg
    from stemkit.budget import Budget
    from stemkit.compose.fit import SentAudio

__all__ = [
    "CostEstimate",
    "Estimate",
    "Estimates",
    "aestimate",
    "check_budget",
    "cost_from_capabilities",
    "estimate",
    "estimate_with",
]

#: Cost units billed per second of audio sent, each job rounded up to a whole second.
_PER_SECOND = frozenset({"seconds", "second", "credits"})
#: Cost units billed per job.
_PER_JOB = frozenset({"jobs", "job"})

Action = Literal["cached", "resume", "submit", "run", "cannot"]


@dataclass(frozen=True)
class CostEstimate:
    """What one provider would charge for a request, by its own estimate.

    ``cost``: what it bills (StemSplit: seconds of credits); None when it bills nothing per use.
    ``plan_usage``: what counts against a subscription's limits (EzStems: one job per job).
    ``compute_seconds``: for a local provider, the CPU/GPU time it would take, when its speed is known.
    ``known`` is False when the provider cannot say (a URL's length is unknown until it is fetched): ``unit``
    then names what it bills in, so a budget in that unit refuses the work rather than guess.
    """

    cost: Cost | None = None
    plan_usage: Cost | None = None
    compute_seconds: float | None = None
    known: bool = True
    unit: str | None = None
    note: str = ""


def cost_from_capabilities(caps: Capabilities, sent: SentAudio) -> CostEstimate:
    """The default estimate, read from a provider's capabilities (see the module docstring)."""
    compute = None
    factor = caps.extra.get("realtime_factor") if caps.local else None
    if isinstance(factor, int | float) and factor > 0:
        compute = float(factor) * sent.seconds
    unit = caps.cost_unit
    if unit is None:
        return CostEstimate(compute_seconds=compute)
    if unit in _PER_SECOND:
        billed = float(sum(math.ceil(s - 1e-9) for s in sent.job_seconds))  # each job rounded up to a second
        return CostEstimate(Cost(billed, unit), compute_seconds=compute)
    if unit in _PER_JOB:
        return CostEstimate(Cost(float(sent.jobs), unit), compute_seconds=compute)
    return CostEstimate(compute_seconds=compute, known=False, unit=unit,
                        note=f"bills in {unit!r}, which stemkit cannot estimate from its capabilities")  # fmt: skip


@dataclass(frozen=True)
class Estimate:
    """The plan for one input: what would run, what it returns, and what it would cost now.

    ``action``: ``cached`` (the result cache holds the answer: nothing runs), ``resume`` (the provider already
    holds the job: it is polled and downloaded, nothing new is billed), ``submit`` (a hosted job is
    submitted), ``run`` (a local provider computes it) or ``cannot`` (``error`` says why). ``cost`` and
    ``plan_usage`` are what *this* run would add (zero for a cached or resumed result); ``unconfirmed`` marks
    a submission an earlier run began and never saw confirmed: it is sent again under the same idempotency
    key, and counted, because the provider may or may not hold it.
    """

    input: str
    provider: str | None
    action: Action
    stems: tuple[str, ...] = ()
    direct: tuple[str, ...] = ()
    derived: tuple[str, ...] = ()
    combination: tuple[str, ...] = ()
    job_id: str | None = None
    unconfirmed: bool = False
    jobs: int = 0
    seconds: float = 0.0
    fit: str | None = None
    cost: Cost | None = None
    plan_usage: Cost | None = None
    compute_seconds: float | None = None
    known: bool = True
    unit: str | None = None
    skipped: tuple[tuple[str, str], ...] = ()
    members: tuple[Estimate, ...] = ()
    note: str = ""
    error: str | None = None

    @property
    def cached(self) -> bool:
        return self.action == "cached"

    @property
    def resumable(self) -> bool:
        return self.action == "resume"

    def spend(self) -> CostEstimate:
        """This estimate as what a budget counts."""
        return CostEstimate(self.cost, self.plan_usage, self.compute_seconds, self.known, self.unit, self.note)

    def describe_cost(self) -> str:
        parts = [str(c) for c in (self.cost, self.plan_usage) if c is not None]
        if not self.known:
            parts.append(f"unknown ({self.unit})" if self.unit else "unknown")
        if self.compute_seconds is not None:
            parts.append(f"~{self.compute_seconds:.3g} s compute")
        return ", ".join(parts) or "-"

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "provider": self.provider,
            "action": self.action,
            "stems": list(self.stems),
            "direct": list(self.direct),
            "derived": list(self.derived),
            "combination": list(self.combination),
            "job_id": self.job_id,
            "unconfirmed": self.unconfirmed,
            "jobs": self.jobs,
            "seconds": round(self.seconds, 3),
            "fit": self.fit,
            "cost": self.cost.to_dict() if self.cost else None,
            "plan_usage": self.plan_usage.to_dict() if self.plan_usage else None,
            "compute_seconds": self.compute_seconds,
            "known": self.known,
            "skipped": [{"provider": p, "reason": r} for p, r in self.skipped],
            "members": [m.to_dict() for m in self.members],
            "note": self.note,
            "error": self.error,
        }


class Estimates(Sequence[Estimate]):
    """The estimates of a call or a batch, one per input, with their totals."""

    def __init__(self, items: Iterable[Estimate]) -> None:
        self._items = list(items)

    @overload
    def __getitem__(self, index: int) -> Estimate: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Estimate]: ...
    def __getitem__(self, index: int | slice) -> Estimate | Sequence[Estimate]:
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Estimate]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"Estimates({len(self)} inputs, {self.totals()})"

    def totals(self, *, plan: bool = True) -> dict[str, float]:
        """What the whole run would add, summed per unit (``plan``: subscription usage included)."""
        out: dict[str, float] = {}
        for item in self._items:
            for cost in (item.cost, item.plan_usage if plan else None):
                if cost is not None:
                    out[cost.unit] = out.get(cost.unit, 0.0) + cost.amount
        return out

    @property
    def compute_seconds(self) -> float:
        return sum(item.compute_seconds or 0.0 for item in self._items)

    def tally(self) -> dict[str, int]:
        """How many inputs would be answered each way: ``cached``, ``resume``, ``submit``, ``run``, ``cannot``."""
        out: dict[str, int] = {}
        for item in self._items:
            out[item.action] = out.get(item.action, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": [item.to_dict() for item in self._items], "totals": self.totals(),
                "compute_seconds": self.compute_seconds}  # fmt: skip


# -- the public functions -----------------------------------------------------------------------------------------
def estimate(
    inputs: Iterable[str | Path] | str | Path | Any,
    provider: ProviderArg = None,
    *,
    stems: Iterable[str] | str | None = None,
    cache: Any = None,
    ledger: Any = None,
    sample_rate: int | None = None,
    **options: Any,
) -> Estimates:
    """The plan and estimated cost of separating ``inputs`` (files, folders, URLs; or one array/bytes input)
    with ``provider`` (a spec, a chain, or a loaded Separator), as :func:`stemkit.separate_many` would run it
    with the same ``cache=`` and ``ledger=``. Makes no request to any provider.

    A problem with the request as a whole (a bad spec, an unknown stem) is raised; an input that cannot be
    separated (unreadable, outside every provider's limits) is an estimate whose ``action`` is ``cannot``.
    """
    from stemkit.api import load
    from stemkit.inputs import expand_inputs
    from stemkit.ledger import resolve_ledger

    with error_boundary():
        requested = normalize_request(stems)
        if isinstance(inputs, str | Path) or (isinstance(inputs, Iterable) and not _is_audio_object(inputs)):
            items: list[Any] = expand_inputs([inputs] if isinstance(inputs, str | Path) else list(inputs))
        else:
            items = [inputs]
        separator = load(provider, cache=cache)
        owned = separator is not provider
        try:
            journal = resolve_ledger(ledger)
            out = [_estimate_input(separator, item, requested, options, sample_rate, journal) for item in items]
        finally:
            if owned:
                separator.close()
    return Estimates(out)


async def aestimate(
    inputs: Iterable[str | Path] | str | Path | Any,
    provider: ProviderArg = None,
    *,
    stems: Iterable[str] | str | None = None,
    cache: Any = None,
    ledger: Any = None,
    sample_rate: int | None = None,
    **options: Any,
) -> Estimates:
    """:func:`estimate` without blocking the event loop (hashing and probing run in a worker thread)."""

    def run() -> Estimates:
        return estimate(inputs, provider, stems=stems, cache=cache, ledger=ledger, sample_rate=sample_rate, **options)

    return await anyio.to_thread.run_sync(run)


def check_budget(
    separator: Separator,
    inputs: Sequence[Any],
    stems: Iterable[str] | str | None,
    options: Mapping[str, Any],
    budget: Budget,
    *,
    ledger: Any = None,
    sample_rate: int | None = None,
) -> Estimates:
    """Estimate ``inputs`` through ``separator`` and refuse (``BudgetExceededError``) work that would exceed
    ``budget``, before any of it starts: what ``max_cost=`` does first. Blocking (it reads every input)."""
    from stemkit.ledger import resolve_ledger

    requested = normalize_request(stems)
    # offset=/duration= cut the input before any provider sees it: the estimate is then for the whole input,
    # an upper bound (the excerpt is not made just to be measured)
    call = {k: v for k, v in options.items() if k not in ("timeout", "sample_rate", "offset", "duration")}
    rate = sample_rate if sample_rate is not None else options.get("sample_rate")
    journal = resolve_ledger(ledger)
    found = Estimates(_estimate_input(separator, item, requested, call, rate, journal) for item in inputs)
    what = f"separating {found[0].input}" if len(found) == 1 else f"separating these {len(found)} inputs"
    budget.check(found, what=f"{what} with {separator.spec}")
    return found


def _is_audio_object(value: Any) -> bool:
    import numpy as np

    return isinstance(value, np.ndarray | bytes | bytearray | memoryview) or hasattr(value, "read")


def _estimate_input(
    separator: Separator,
    audio: Any,
    requested: tuple[str, ...] | None,
    options: Mapping[str, Any],
    sample_rate: int | None,
    journal: Any,
) -> Estimate:
    name = str(audio) if isinstance(audio, str | Path) else f"<{type(audio).__name__}>"
    try:
        source = open_source(audio, sample_rate=sample_rate)
    except StemkitError as exc:
        return Estimate(name, None, "cannot", error=str(exc))
    try:
        return estimate_with(separator, source, requested, options, journal)
    except ConfigError:
        raise
    except StemkitError as exc:
        return Estimate(source.name, separator.spec, "cannot", error=str(exc))
    finally:
        if source is not audio:
            source.close()


# -- walking a separator: what would run ---------------------------------------------------------------------------
def estimate_with(
    separator: Separator,
    source: AudioSource,
    requested: tuple[str, ...] | None,
    options: Mapping[str, Any],
    journal: Any = None,
) -> Estimate:
    """The estimate for ``source`` through ``separator``, whatever it is built of: a cache in front of a
    provider, a fallback chain (its first provider that can take the input), an ensemble or a pipeline (each
    member), a fitted provider, or a plain one."""
    from stemkit.cache.separator import CachedSeparator
    from stemkit.compose.ensemble import Ensemble
    from stemkit.compose.fit import Fitted
    from stemkit.compose.pipeline import Pipeline
    from stemkit.provider import SeparatorBase
    from stemkit.routing import Chain, skip_reason

    if isinstance(separator, CachedSeparator):
        key = separator.key(source, requested, **options)
        if separator.cache.contains(key):
            inner = _plan_only(separator.inner, requested)
            return replace(inner, input=source.name, provider=separator.spec, action="cached")
        return estimate_with(separator.inner, source, requested, options, journal)
    if isinstance(separator, Chain):
        skipped: list[tuple[str, str]] = []
        for member in separator.members:
            reason = skip_reason(member, source, requested)
            if reason is None:
                found = estimate_with(member, source, requested, options, journal)
                return replace(found, skipped=(*skipped, *found.skipped))
            skipped.append((member.spec, reason))
        why = "; ".join(f"{p}: {r}" for p, r in skipped)
        return Estimate(source.name, None, "cannot", skipped=tuple(skipped),
                        error=f"every provider would be skipped ({why})")  # fmt: skip
    node: Any = separator  # Fitted is a Separator in behaviour, if not in the letter of the protocol
    if isinstance(node, Fitted):
        return estimate_with(node.inner, source, requested, {**options, "fit": node.mode}, journal)
    if isinstance(separator, Ensemble | Pipeline):
        members = separator.members if isinstance(separator, Ensemble) else separator.separators
        parts = tuple(estimate_with(m, source, None, {}, journal) for m in members)
        return _combined(separator, source, requested, parts)
    if isinstance(separator, SeparatorBase):
        return _provider_estimate(separator, source, requested, options, journal)
    return _opaque(separator, source, requested)


def _plan_only(separator: Separator, requested: tuple[str, ...] | None) -> Estimate:
    """Which stems come direct and which derived, for a separator that may not plan (a composite)."""
    try:
        plan = separator.capabilities.plan(requested, provider=separator.name)
    except (ConfigError, AttributeError):
        return Estimate("", separator.spec, "run", stems=requested or ())
    return Estimate(
        "", separator.spec, "run",
        stems=tuple(d.name for d in plan.outputs),
        direct=tuple(d.name for d in plan.outputs if d.direct),
        derived=tuple(d.name for d in plan.outputs if not d.direct),
        combination=plan.combination,
    )  # fmt: skip


def _provider_estimate(
    separator: Any, source: AudioSource, requested: tuple[str, ...] | None, options: Mapping[str, Any], journal: Any
) -> Estimate:
    from stemkit.compose.fit import FIT_OPTION, estimate_sent

    base = replace(_plan_only(separator, requested), input=source.name)
    caps: Capabilities = separator.capabilities
    hosted = not caps.local
    if source.is_remote:
        separator._check_source(source)  # a URL to a provider that takes none is refused here, as it would be
    mode = options.get(FIT_OPTION, getattr(separator, "fit_mode", "auto"))
    try:
        sent = estimate_sent(separator, source, mode=mode)
    except ConfigError as exc:  # a URL: its length is unknown until the provider fetches it
        spend = separator.estimate_cost(_one_job(0.0))
        return replace(base, action="submit" if hosted else "run", jobs=1, known=False,
                       unit=spend.cost.unit if spend.cost else spend.unit, note=str(exc))  # fmt: skip
    fit = sent.plan.describe() if sent.plan is not None else None
    spend = separator.estimate_cost(sent)
    # A fitted input's pieces are other files (their hashes unknown until written): only a whole input is looked up.
    whole = hosted and sent.plan is None
    found = _ledger_entry(separator, source, base.combination, options, journal) if whole else None
    if found is not None and found.resumable:
        zero = _zero(spend)
        return replace(base, action="resume", job_id=found.job_id, seconds=sent.seconds, fit=fit, cost=zero.cost,
                       plan_usage=zero.plan_usage,
                       note=f"the provider holds job {found.job_id}: polled, not billed again")  # fmt: skip
    note = spend.note
    if sent.plan is not None and sent.plan.chunked and hosted:
        note = (note + "; " if note else "") + "pieces an earlier run submitted are resumed, not billed again"
    if found is not None:
        note = "an earlier submission was never confirmed: sent again with its idempotency key"
    return replace(
        base, action="submit" if hosted else "run", unconfirmed=found is not None, jobs=sent.jobs,
        seconds=sent.seconds, fit=fit, cost=spend.cost, plan_usage=spend.plan_usage,
        compute_seconds=spend.compute_seconds, known=spend.known, unit=spend.unit, note=note,
    )  # fmt: skip


def _one_job(seconds: float) -> SentAudio:
    from stemkit.compose.fit import SentAudio

    return SentAudio(1, seconds, 0, (seconds,))


def _zero(spend: CostEstimate) -> CostEstimate:
    return CostEstimate(
        Cost(0.0, spend.cost.unit) if spend.cost else None,
        Cost(0.0, spend.plan_usage.unit) if spend.plan_usage else None,
    )


def _ledger_entry(
    separator: Any, source: AudioSource, combination: tuple[str, ...], options: Mapping[str, Any], journal: Any
) -> Any:
    from stemkit.compose.fit import FIT_OPTION
    from stemkit.ledger import JobRequest

    if journal is None:
        return None
    call = {k: v for k, v in options.items() if k != FIT_OPTION}
    request = JobRequest.for_separator(separator, input_sha256=source.sha256, stems=combination, options=call)
    try:
        return journal.lookup(request)
    except Exception:  # a damaged ledger answers nothing here; the separation warns about it
        return None


def _combined(
    separator: Separator, source: AudioSource, requested: tuple[str, ...] | None, parts: tuple[Estimate, ...]
) -> Estimate:
    """An ensemble or pipeline: every member runs (a pipeline's later stages on a stem as long as the input)."""
    base = replace(_plan_only(separator, requested), input=source.name)
    failed = [p for p in parts if p.action == "cannot"]
    if failed:
        why = "; ".join(f"{p.provider}: {p.error}" for p in failed)
        return replace(base, action="cannot", members=parts, error=why)
    if all(p.action == "cached" for p in parts):
        action: Action = "cached"
    else:
        action = "submit" if any(p.action in ("submit", "resume") for p in parts) else "run"
    totals = Estimates(parts)
    costs = totals.totals(plan=False)
    plans = {u: a for u, a in totals.totals().items() if u not in costs}
    return replace(
        base, action=action, members=parts, jobs=sum(p.jobs for p in parts),
        seconds=max((p.seconds for p in parts), default=0.0),
        cost=_single(costs), plan_usage=_single(plans),
        compute_seconds=sum(p.compute_seconds or 0.0 for p in parts) or None,
        known=all(p.known for p in parts),
        note="" if len(costs) <= 1 else "members bill in several units: " + _listed(costs),
    )  # fmt: skip


def _listed(totals: Mapping[str, float]) -> str:
    return ", ".join(f"{amount:g} {unit}" for unit, amount in totals.items())


def _single(totals: Mapping[str, float]) -> Cost | None:
    if len(totals) != 1:
        return None
    unit, amount = next(iter(totals.items()))
    return Cost(amount, unit)


def _opaque(separator: Separator, source: AudioSource, requested: tuple[str, ...] | None) -> Estimate:
    """A Separator written to the protocol alone: what its capabilities say, at one job for the whole input."""
    caps = separator.capabilities
    base = replace(_plan_only(separator, requested), input=source.name)
    own = getattr(separator, "estimate_cost", None)
    seconds = 0.0 if source.is_remote else source.duration
    sent = _one_job(seconds)
    spend = own(sent) if callable(own) else cost_from_capabilities(caps, sent)
    return replace(base, action="run" if caps.local else "submit", jobs=1, seconds=seconds, cost=spend.cost,
                   plan_usage=spend.plan_usage, compute_seconds=spend.compute_seconds,
                   known=spend.known and not source.is_remote, unit=spend.unit, note=spend.note)  # fmt: skip

