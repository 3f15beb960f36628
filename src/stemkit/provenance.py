"""Where a StemSet came from: provider, model, job, timings, cost, analysis and the fallback trail."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from stemkit.errors import without_prefix

__all__ = ["Attempt", "CacheHit", "Cost", "Excerpt", "Provenance"]

Outcome = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True)
class Cost:
    """What a separation cost, in the provider's own unit (credits, seconds of audio, dollars)."""

    amount: float
    unit: str

    def __str__(self) -> str:
        return f"{self.amount:g} {self.unit}"

    def to_dict(self) -> dict[str, Any]:
        return {"amount": self.amount, "unit": self.unit}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Cost | None:
        return None if data is None else cls(float(data["amount"]), str(data["unit"]))


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
        why = without_prefix(self.reason or (str(self.error) if self.error is not None else ""), self.provider)
        kind = f"{self.error_class}: " if self.error is not None else ""
        return f"{self.provider}: {self.outcome} after {self.seconds:.2f} s — {kind}{why}"

    def to_dict(self) -> dict[str, Any]:
        message = self.reason or (str(self.error) if self.error is not None else "")
        return {
            "provider": self.provider,
            "outcome": self.outcome,
            "seconds": round(self.seconds, 6),
            "error_class": self.error_class,
            "message": without_prefix(message, self.provider),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attempt:
        """An attempt read back from :meth:`to_dict`. The exception object is gone; its class name stays in
        the reason, so :meth:`describe` reads as it did."""
        message = str(data.get("message") or "")
        error_class = data.get("error_class")
        reason = f"{error_class}: {message}" if error_class else message
        return cls(str(data["provider"]), data["outcome"], float(data.get("seconds") or 0.0), None, reason)


@dataclass(frozen=True)
class CacheHit:
    """Set on the provenance of a StemSet answered from the result cache (no provider was asked).

    ``created`` is when the stored result was made (ISO 8601, UTC) and ``spec`` by which provider spec;
    ``seconds`` and ``cost`` are what making it took and cost then (this answer cost nothing).
    """

    key: str
    created: str
    spec: str
    seconds: float | None = None
    cost: Cost | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "created": self.created,
            "spec": self.spec,
            "seconds": self.seconds,
            "cost": self.cost.to_dict() if self.cost else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CacheHit:
        seconds = data.get("seconds")
        return cls(
            key=str(data["key"]),
            created=str(data["created"]),
            spec=str(data["spec"]),
            seconds=None if seconds is None else float(seconds),
            cost=Cost.from_dict(data.get("cost")),
        )


@dataclass(frozen=True)
class Excerpt:
    """The part of the input that was separated (``offset=`` / ``duration=``), in exact frames of the input.

    ``start`` and ``frames`` are sample positions at the input's ``sample_rate``; ``offset`` and ``duration``
    are the same in seconds. The StemSet's stems are the excerpt's length; ``Provenance.input_sha256`` and
    ``input_duration`` still describe the whole input.
    """

    start: int
    frames: int
    sample_rate: int

    @property
    def offset(self) -> float:
        return self.start / self.sample_rate

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    @property
    def end(self) -> int:
        return self.start + self.frames

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "frames": self.frames, "sample_rate": self.sample_rate,
                "offset": self.offset, "duration": self.duration}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Excerpt | None:
        if not data:
            return None
        return cls(int(data["start"]), int(data["frames"]), int(data["sample_rate"]))


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
    #: set when the result came from the result cache: when and by which spec it was made
    cache: CacheHit | None = None
    #: set when only part of the input was separated (``offset=`` / ``duration=``)
    excerpt: Excerpt | None = None

    @property
    def resumed(self) -> bool:
        """Made by finishing a hosted job an earlier run had submitted (found in the job ledger), not by a new
        one; for a fitted input, when any of its pieces was."""
        if self.extra.get("resumed"):
            return True
        fit = self.extra.get("fit")
        jobs = fit.get("jobs") if isinstance(fit, Mapping) else None
        return any(isinstance(job, Mapping) and job.get("resumed") for job in jobs or ())

    @property
    def origin(self) -> Literal["cached", "resumed", "new"]:
        """How this result came about: from the result cache, by resuming a job, or by new work."""
        if self.cache is not None:
            return "cached"
        return "resumed" if self.resumed else "new"

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "spec": self.spec,
            "model": self.model,
            "options": dict(self.options),
            "job_id": self.job_id,
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
            "cost": self.cost.to_dict() if self.cost else None,
            "analysis": dict(self.analysis),
            "input_sha256": self.input_sha256,
            "input_duration": self.input_duration,
            "input_name": self.input_name,
            "attempts": [a.to_dict() for a in self.attempts],
            "extra": dict(self.extra),
            "cache": self.cache.to_dict() if self.cache else None,
            "excerpt": self.excerpt.to_dict() if self.excerpt else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        """Provenance read back from :meth:`to_dict` (the result cache stores it this way)."""
        cache = data.get("cache")
        return cls(
            provider=str(data["provider"]),
            spec=str(data.get("spec") or ""),
            model=data.get("model"),
            options=dict(data.get("options") or {}),
            job_id=data.get("job_id"),
            timings={str(k): float(v) for k, v in (data.get("timings") or {}).items()},
            cost=Cost.from_dict(data.get("cost")),
            analysis=dict(data.get("analysis") or {}),
            input_sha256=data.get("input_sha256"),
            input_duration=data.get("input_duration"),
            input_name=data.get("input_name"),
            attempts=tuple(Attempt.from_dict(a) for a in data.get("attempts") or ()),
            extra=dict(data.get("extra") or {}),
            cache=CacheHit.from_dict(cache) if cache else None,
            excerpt=Excerpt.from_dict(data.get("excerpt")),
        )
