"""Where a StemSet came from: provider, model, job, timings, cost, analysis and the fallback trail."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Attempt", "Cost", "Provenance"]

Outcome = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True)
class Cost:
    """What a separation cost, in the provider's own unit (credits, seconds of audio, dollars)."""

    amount: float
    unit: str

    def __str__(self) -> str:
        return f"{self.amount:g} {self.unit}"


@dataclass(frozen=True)
class Attempt:
    """One step of a fallback trail: a provider tried, failed or skipped, and why."""

    provider: str
    outcome: Outcome
    seconds: float = 0.0
    error: BaseException | None = None
    reason: str = ""

    @property
    def error_class(self) -> str | None:
        return type(self.error).__name__ if self.error is not None else None

    def describe(self) -> str:
        if self.outcome == "ok":
            return f"{self.provider}: ok in {self.seconds:.2f} s"
        why = self.reason or (str(self.error) if self.error is not None else "")
        kind = f"{self.error_class}: " if self.error is not None else ""
        return f"{self.provider}: {self.outcome} after {self.seconds:.2f} s — {kind}{why}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "outcome": self.outcome,
            "seconds": round(self.seconds, 6),
            "error_class": self.error_class,
            "message": self.reason or (str(self.error) if self.error is not None else ""),
        }


@dataclass(frozen=True)
class Provenance:
    """Everything a StemSet records about how it was made. Options are already redacted."""

    provider: str
    spec: str = ""
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    job_id: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    cost: Cost | None = None
    analysis: dict[str, Any] = field(default_factory=dict)
    input_sha256: str | None = None
    input_duration: float | None = None
    input_name: str | None = None
    attempts: tuple[Attempt, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "spec": self.spec,
            "model": self.model,
            "options": dict(self.options),
            "job_id": self.job_id,
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
            "cost": {"amount": self.cost.amount, "unit": self.cost.unit} if self.cost else None,
            "analysis": dict(self.analysis),
            "input_sha256": self.input_sha256,
            "input_duration": self.input_duration,
            "input_name": self.input_name,
            "attempts": [a.to_dict() for a in self.attempts],
            "extra": dict(self.extra),
        }
