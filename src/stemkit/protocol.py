"""What every provider is: the Separator protocol, its Capabilities, and the progress events it reports."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

if TYPE_CHECKING:
    from types import TracebackType

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
    smallest one covering a request and derives the rest. ``complete`` says whether each combination sums to
    the mixture; when it does not, ``mixture - sum`` is available as a residual stem.
    """

    combinations: tuple[tuple[str, ...], ...]
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
        *,
        stems: Iterable[str] | str | None = None,
        progress: ProgressCallback | None = None,
        **options: Any,
    ) -> StemSet: ...

    async def aseparate(
        self,
        audio: Any,
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
