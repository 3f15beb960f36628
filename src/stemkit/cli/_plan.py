"""What ``stemkit separate`` prints about work and money: the plan of ``--dry-run`` and the summary of a run."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from stemkit.cli._console import console, err_console

if TYPE_CHECKING:
    from stemkit.batch import BatchItem
    from stemkit.cost import Estimate, Estimates

__all__ = ["print_plan", "print_summary", "run_summary"]

_ACTIONS = {"cached": "cached", "resume": "resume", "submit": "submit", "run": "run", "cannot": "cannot run"}


def print_plan(estimates: Estimates) -> None:
    """Per input, one line: what would happen (cached, resume job X, submit, run), with which provider, which
    stems come direct and which derived, how the input is fitted, and the estimated cost; then the totals."""
    for item in estimates:
        if item.action == "cannot":
            console.print(f"{item.input}: cannot be separated: {item.error}")
            continue
        fit = f"fitted: {item.fit}" if item.fit else "sent as is"
        console.print(f"{item.input}: {_action(item)} with {item.provider}; stems {_stems(item)}; {fit}; "
                      f"estimated cost {item.describe_cost()}")  # fmt: skip
        for line in _details(item):
            console.print(f"    {line}")
    tally = estimates.tally()
    counts = ", ".join(f"{n} {_ACTIONS.get(a, a)}" for a, n in tally.items())
    totals = estimates.totals()
    cost = ", ".join(f"{amount:g} {unit}" for unit, amount in totals.items()) or "nothing billed"
    compute = f"; ~{estimates.compute_seconds:.3g} s of local compute" if estimates.compute_seconds else ""
    unknown = [i.input for i in estimates if not i.known]
    more = f"; cost unknown for {len(unknown)} (URL inputs)" if unknown else ""
    console.print(f"dry run, nothing was separated: {counts}; estimated cost {cost}{compute}{more}")


def _action(item: Estimate) -> str:
    if item.action == "resume":
        return f"resume job {item.job_id}"
    if item.action == "submit" and item.unconfirmed:
        return "submit (retry, same idempotency key)"
    if item.action == "submit" and item.jobs > 1:
        return f"submit {item.jobs} jobs"
    return _ACTIONS.get(item.action, item.action)


def _stems(item: Estimate) -> str:
    if item.action == "cannot":
        return "-"
    parts = []
    if item.direct:
        parts.append("direct: " + ", ".join(item.direct))
    if item.derived:
        parts.append("derived: " + ", ".join(item.derived))
    return "; ".join(parts) or ", ".join(item.stems) or "default set"


def _details(item: Estimate) -> list[str]:
    lines = [f"skipped {provider}: {reason}" for provider, reason in item.skipped]
    if item.note:
        lines.append(item.note)
    return lines


def run_summary(items: Sequence[BatchItem]) -> str:
    """``12 inputs: 8 cached, 3 resumed, 1 new; cost 540 seconds``: what a (re-)run did and what it cost."""
    counts: dict[str, int] = {"cached": 0, "resumed": 0, "new": 0}
    failed = 0
    for item in items:
        if item.origin is None:
            failed += 1
        else:
            counts[item.origin] += 1
    parts = [f"{n} {origin}" for origin, n in counts.items()]
    if failed:
        parts.append(f"{failed} failed")
    totals = _sum(item.cost for item in items)
    cost = ", ".join(f"{amount:g} {unit}" for unit, amount in totals.items()) if totals else "nothing billed"
    noun = "input" if len(items) == 1 else "inputs"
    return f"{len(items)} {noun}: {', '.join(parts)}; cost {cost}"


def print_summary(items: Sequence[BatchItem]) -> None:
    err_console.print(run_summary(items))


def _sum(costs: Iterable[Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for cost in costs:
        if cost is not None:
            out[cost.unit] = out.get(cost.unit, 0.0) + cost.amount
    return out
