"""Spending limits: ``max_cost=`` on ``separate``/``separate_many`` (``--max-cost`` on the command line).

A budget is checked twice, both times before anything is billed:

* **before the call or the batch starts**, against the estimates of every input (:mod:`stemkit.cost`):
  work that would exceed it is refused as a whole, with a :class:`~stemkit.errors.BudgetExceededError`;
* **before each hosted job is submitted**, in the hosted lifecycle (every hosted provider passes through it):
  the job's estimate is reserved against what the call has committed so far, and a job that would go over is
  not submitted. This catches what no estimate foresees — a fallback to another paid provider, a retry.

Units: ``max_cost=600`` is 600 of whatever the providers that would run bill in (StemSplit: seconds of audio,
its credits); ``"600 seconds"``, ``"10 jobs"`` or ``{"seconds": 600, "jobs": 10}`` name the unit — ``jobs``
counts jobs against a subscription plan (EzStems), which a bare number does not. A result from the cache and a
job the provider already holds (resumed through the job ledger) cost nothing more and count nothing. Compute
time of local providers is never billed and never counted.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stemkit.errors import BudgetExceededError, ConfigError
from stemkit.provenance import Cost

if TYPE_CHECKING:
    from stemkit.audio import AudioSource
    from stemkit.cost import CostEstimate, Estimate

__all__ = ["Budget", "current_budget", "job_spend", "spending_limit"]

_UNITS = {
    "s": "seconds", "sec": "seconds", "secs": "seconds", "second": "seconds", "seconds": "seconds",
    "credit": "seconds", "credits": "seconds", "job": "jobs", "jobs": "jobs",
}  # fmt: skip
_PART = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z_-]*)\s*$")


@dataclass(frozen=True)
class _Charge:
    unit: str
    amount: float
    counted: bool  # False: a plan's usage under a bare-number budget (not counted)


class Budget:
    """The most a call or a batch may spend, per unit, and what it has committed so far (thread-safe)."""

    def __init__(self, limits: Mapping[str, float] | None = None, *, default: float | None = None) -> None:
        self.limits = dict(limits or {})
        self.default = default
        self.committed: dict[str, float] = {}
        self._bound: str | None = None  # the unit a bare number turned out to mean
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Budget({self.describe()})"

    def describe(self) -> str:
        parts = [f"{amount:g} {unit}" for unit, amount in self.limits.items()]
        if self.default is not None:
            parts.append(f"{self.default:g}" + (f" {self._bound}" if self._bound else ""))
        return ", ".join(parts) or "none"

    @classmethod
    def parse(cls, value: Any) -> Budget | None:
        """A budget from ``max_cost=``: None, a number, ``"600 seconds"``, ``"600s, 10 jobs"``, a
        :class:`~stemkit.provenance.Cost`, a mapping of unit to amount, or a Budget."""
        if value is None or isinstance(value, Budget):
            return value
        if isinstance(value, bool):
            raise ConfigError(f"max_cost: {value!r} is not an amount; use e.g. 600 or '600 seconds'")
        if isinstance(value, int | float):
            return cls(default=_amount(value))
        if isinstance(value, Cost):
            return cls({_unit(value.unit): _amount(value.amount)})
        if isinstance(value, Mapping):
            return cls({_unit(str(k)): _amount(v) for k, v in value.items()})
        if isinstance(value, str):
            limits: dict[str, float] = {}
            default: float | None = None
            for part in value.split(","):
                match = _PART.match(part)
                if match is None:
                    raise ConfigError(f"max_cost: {value!r} is not a budget; use e.g. '600', '600 seconds' or "
                                      "'600 seconds, 10 jobs'")  # fmt: skip
                amount = _amount(float(match.group(1)))
                if match.group(2):
                    limits[_unit(match.group(2))] = amount
                else:
                    default = amount
            return cls(limits, default=default)
        raise ConfigError(f"max_cost: {value!r} is not a budget; use a number, '600 seconds' or {{'seconds': 600}}")

    # -- what counts ------------------------------------------------------------------------------------------
    def _charges(self, spend: CostEstimate) -> list[_Charge]:
        out: list[_Charge] = []
        if spend.cost is not None:
            out.append(_Charge(spend.cost.unit, spend.cost.amount, True))
        if spend.plan_usage is not None:
            out.append(_Charge(spend.plan_usage.unit, spend.plan_usage.amount, spend.plan_usage.unit in self.limits))
        return out

    def _limit(self, unit: str, counted: bool, bound: str | None) -> tuple[float | None, str | None]:
        """(the limit for ``unit``, the unit a bare number is now bound to)."""
        if unit in self.limits:
            return self.limits[unit], bound
        if not counted or self.default is None:
            return None, bound
        if bound is None or bound == unit:
            return self.default, unit
        raise ConfigError(
            f"max_cost={self.default:g} is ambiguous here: the providers bill in {bound} and in {unit}; give each "
            f"unit, e.g. max_cost='{self.default:g} {bound}, 10 {unit}'"
        )

    def _unknown(self, spend: CostEstimate, bound: str | None) -> str | None:
        """The unit of a budget that an estimate the provider cannot make would count against."""
        if spend.known or spend.unit is None:
            return None
        limit, _ = self._limit(spend.unit, True, bound)
        return spend.unit if limit is not None else None

    # -- before a call or a batch: the estimates as a whole ---------------------------------------------------
    def check(self, estimates: Iterable[Estimate], *, what: str = "this request") -> None:
        """Refuse (:class:`BudgetExceededError`) work whose estimates exceed the budget, before any of it starts.
        Nothing is committed: each job reserves its own share as it is submitted."""
        totals: dict[str, float] = {}
        counted: dict[str, bool] = {}
        with self._lock:
            bound = self._bound
            for item in estimates:
                spend = item.spend()
                unit = self._unknown(spend, bound)
                if unit is not None:
                    raise BudgetExceededError(
                        f"max_cost: {item.input} on {item.provider}: its cost is unknown before the provider has the "
                        f"audio ({item.note or 'a URL input'}), and the budget is in {unit}; download it first, or "
                        "separate it without max_cost",
                        unit=unit, budget=self._limit(unit, True, bound)[0],
                    )  # fmt: skip
                for charge in self._charges(spend):
                    totals[charge.unit] = totals.get(charge.unit, 0.0) + charge.amount
                    counted[charge.unit] = counted.get(charge.unit, False) or charge.counted
            for unit, amount in totals.items():
                limit, bound = self._limit(unit, counted[unit], bound)
                if limit is None:
                    continue
                already = self.committed.get(unit, 0.0)
                if already + amount > limit + 1e-9:
                    spent = f" (already committed: {already:g} {unit})" if already else ""
                    raise BudgetExceededError(
                        f"max_cost: {what} would take an estimated {amount:g} {unit}{spent}, over the budget of "
                        f"{limit:g} {unit}; nothing was submitted. Raise max_cost, separate fewer inputs, or use a "
                        "cheaper provider (`stemkit separate --dry-run` shows the estimate per input)",
                        unit=unit, budget=limit, estimate=already + amount,
                    )  # fmt: skip
            self._bound = bound

    # -- before each job: reserve its share ----------------------------------------------------------------------
    def reserve(self, spend: CostEstimate, *, what: str) -> dict[str, float]:
        """Commit ``spend`` (a job about to be submitted), or raise :class:`BudgetExceededError` and commit
        nothing. Returns what was committed, for :meth:`release` if the job is then not submitted after all."""
        with self._lock:
            bound = self._bound
            unit = self._unknown(spend, bound)
            if unit is not None:
                raise BudgetExceededError(
                    f"max_cost: {what}: the cost is unknown before the provider has the audio, and the budget is in "
                    f"{unit}; not submitted. Download the input first, or separate it without max_cost",
                    unit=unit,
                )
            planned = dict(self.committed)
            taken: dict[str, float] = {}
            for charge in self._charges(spend):
                limit, bound = self._limit(charge.unit, charge.counted, bound)
                if limit is None:
                    continue
                after = planned.get(charge.unit, 0.0) + charge.amount
                if after > limit + 1e-9:
                    raise BudgetExceededError(
                        f"max_cost: {what}: submitting it would bring the estimated spending to {after:g} "
                        f"{charge.unit}, over the budget of {limit:g} {charge.unit}; it was not submitted",
                        unit=charge.unit, budget=limit, estimate=after,
                    )  # fmt: skip
                planned[charge.unit] = after
                taken[charge.unit] = taken.get(charge.unit, 0.0) + charge.amount
            self.committed = planned
            self._bound = bound
            return taken

    def release(self, taken: Mapping[str, float]) -> None:
        """Give back a reservation whose job was never submitted (the provider refused it)."""
        with self._lock:
            for unit, amount in taken.items():
                self.committed[unit] = max(0.0, self.committed.get(unit, 0.0) - amount)


def _amount(value: Any) -> float:
    try:
        amount = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"max_cost: {value!r} is not an amount") from None
    if not math.isfinite(amount) or amount < 0:
        raise ConfigError(f"max_cost: {value!r} must be a finite amount, 0 or more")
    return amount


def _unit(text: str) -> str:
    name = text.strip().lower()
    return _UNITS.get(name, name)


# -- the budget of the call in progress ---------------------------------------------------------------------------
_BUDGET: ContextVar[Budget | None] = ContextVar("stemkit_budget", default=None)


@contextlib.contextmanager
def spending_limit(budget: Budget | None) -> Iterator[Budget | None]:
    """Within the block (and the tasks it starts), hosted jobs reserve their estimates against ``budget``."""
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def current_budget() -> Budget | None:
    return _BUDGET.get()


def job_spend(separator: Any, source: AudioSource) -> CostEstimate:
    """The estimate of one job sending ``source`` as it is (the lifecycle's view: fitting already happened)."""
    from stemkit.compose.fit import SentAudio
    from stemkit.cost import CostEstimate, cost_from_capabilities

    caps = separator.capabilities
    if source.is_remote:
        return CostEstimate(known=caps.cost_unit is None, unit=caps.cost_unit)
    sent = SentAudio(1, source.duration, source.size_bytes, (source.duration,))
    own = getattr(separator, "estimate_cost", None)
    spend: CostEstimate = own(sent) if callable(own) else cost_from_capabilities(caps, sent)
    return spend
