"""What every provider is: the Separator protocol, its Capabilities, and the progress events it reports."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

if TYPE_CHECKING:
    from types import TracebackType

    from stemkit.stems import Plan
    from stemkit.stemset import StemSet

__all__ = ["Capabilities", "ProgressCallback", "ProgressEvent", "Separator"]


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a separation, as a provider reports it.

    ``stage`` is one of ``prepare``, ``upload``, ``queued``, ``processing``, ``download``, ``separate``,
    ``write``, ``done``; ``fraction`` is the stage's completion in [0, 1] when known.
    """

    provider: str
    stage: str
    fraction: float | None = None
    message: str = ""
    job_id: str | None = None
    queue_position: int | None = None
    input_name: str | None = None


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do, so that a caller or router can rule it out before calling it.

    ``combinations`` lists the stem sets one run can produce (canonical names); the planner picks the
    smallest one covering a request and derives the rest. Each combination is taken to partition the
    mixture (its stems sum to it, so its ``other`` is whatever its siblings are not) unless it is listed in
    ``partial`` — e.g. a specialist model's lone ``other``, which is MUSDB's "other". What a combination
    leaves uncovered is available as a residual, ``mixture - sum``. ``complete`` says whether the provider's
    stems sum to the mixture exactly (a property of its output, for the record).
    """

    combinations: tuple[tuple[str, ...], ...]
    partial: frozenset[tuple[str, ...]] = frozenset()
    complete: bool = True
    default_combination: int = 0
    input_formats: frozenset[str] = frozenset()
    output_formats: frozenset[str] = frozenset({"wav"})
    max_file_bytes: int | None = None
    max_duration_seconds: float | None = None
    min_duration_seconds: float | None = None
    accepts_urls: bool = False
    accepts_youtube: bool = False
    needs_network: bool = False
    needs_api_key: bool = False
    has_api_key: bool = True
    local: bool = True
    cost_unit: str | None = None
    max_concurrency: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def stems(self) -> frozenset[str]:
        """Every canonical stem some combination produces directly."""
        return frozenset(s for combo in self.combinations for s in combo)

    def plan(self, stems: Iterable[str] | str | None, *, provider: str = "provider") -> Plan:
        """Which combination a run for ``stems`` needs and how each stem is obtained (ConfigError if none)."""
        from stemkit.stems import normalize_request, plan_stems

        return plan_stems(
            normalize_request(stems), self.combinations, partial=self.partial, provider=provider,
            default=self.default_combination,
        )

    def describe(self) -> str:
        combos = "; ".join(", ".join(c) for c in self.combinations)
        return f"combinations [{combos}]"

    @staticmethod
    def formats(names: Iterable[str]) -> frozenset[str]:
        return frozenset(n.lower().lstrip(".") for n in names)


@runtime_checkable
class Separator(Protocol):
    """A provider, loaded and configured: call it as many times as you like, then close it."""

    @property
    def name(self) -> str: ...

    @property
    def spec(self) -> str:
        """The spec string that selects this provider, secrets redacted."""
        ...

    @property
    def capabilities(self) -> Capabilities: ...

    def separate(
        self,
        audio: Any,
        /,
        *,
        stems: Iterable[str] | str | None = None,
        progress: ProgressCallback | None = None,
        **options: Any,
    ) -> StemSet: ...

    async def aseparate(
        self,
        audio: Any,
        /,
        *,
        stems: Iterable[str] | str | None = None,
        progress: ProgressCallback | None = None,
        **options: Any,
    ) -> StemSet: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
