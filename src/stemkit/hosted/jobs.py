"""Waiting for a hosted job: poll with a backoff that honors the provider's estimate, report progress, turn
FAILED / EXPIRED into stemkit errors.

The hosted job lifecycle (:mod:`stemkit.hosted.lifecycle`) runs this for every hosted plugin; a plugin only
translates each status answer into a :class:`JobSnapshot`::

    outcome = await poll_job(first_snapshot, fetch_snapshot, provider="mine", report=job.progress)
    outcome.snapshot.raw          # the provider's final answer
    outcome.queued_seconds, outcome.processing_seconds

The caller's deadline is a cancel scope around the whole separation (the lifecycle turns it into a
``SeparationTimeout`` naming the job); the helper never retries a failed fetch itself: the transport already
did (one retry layer).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import anyio

from stemkit.errors import JobExpiredError, JobFailedError

__all__ = ["JobSnapshot", "JobState", "PollOutcome", "PollPolicy", "StageReporter", "poll_job"]

JobState = Literal["queued", "processing", "completed", "failed", "expired"]


@dataclass(frozen=True)
class JobSnapshot:
    """One status answer, in stemkit's terms.

    ``eta_seconds``: how long from *now* the provider expects the job to take (its estimate), if it said.
    ``fraction``: progress in [0, 1] when the provider reports it. ``raw``: the provider's own answer.
    """

    job_id: str
    state: JobState
    fraction: float | None = None
    eta_seconds: float | None = None
    queue_position: int | None = None
    message: str = ""
    raw: Any = None

    @property
    def terminal(self) -> bool:
        return self.state in ("completed", "failed", "expired")


@dataclass(frozen=True)
class PollPolicy:
    """When to ask again.

    Before the provider's estimated finish, polls are sparse (a quarter of the remaining estimate, at
    least ``progress_interval``) and one lands on the estimate itself. Once the estimate has passed, or
    when there is none, the interval starts at ``initial`` and grows by ``multiplier`` up to
    ``max_interval``, so a finished job is noticed within about ``initial`` seconds of an accurate estimate.
    """

    initial: float = 0.5
    multiplier: float = 1.3
    max_interval: float = 5.0
    progress_interval: float = 5.0
    min_interval: float = 0.02


@dataclass(frozen=True)
class PollOutcome:
    """The completed job's last snapshot and where the time went."""

    snapshot: JobSnapshot
    queued_seconds: float
    processing_seconds: float
    polls: int


class StageReporter(Protocol):
    """What the helper calls for progress: ``SeparationJob.progress`` has this shape."""

    def __call__(
        self,
        stage: str,
        fraction: float | None = None,
        message: str = "",
        *,
        job_id: str | None = None,
        queue_position: int | None = None,
    ) -> None: ...


class _Poller:
    """When to ask again, and what each answer means."""

    def __init__(
        self, provider: str, policy: PollPolicy, report: StageReporter | None, clock: Callable[[], float]
    ) -> None:
        self.provider, self.policy, self.report, self.clock = provider, policy, report, clock
        self.start = clock()
        self.processing_since: float | None = None
        self.estimate_end: float | None = None
        self.late_polls = 0
        self.polls = 0

    def observe(self, snap: JobSnapshot) -> PollOutcome | None:
        """Take in a snapshot: report it, finish (returns the outcome) or raise for a bad ending."""
        now = self.clock()
        if snap.eta_seconds is not None and snap.eta_seconds > 0:
            self.estimate_end = now + snap.eta_seconds
        if snap.state == "processing" and self.processing_since is None:
            self.processing_since = now
        if self.report is not None and snap.state in ("queued", "processing"):
            self.report(
                snap.state,
                snap.fraction,
                snap.message or f"job {snap.job_id} {snap.state}",
                job_id=snap.job_id,
                queue_position=snap.queue_position,
            )
        if snap.state == "completed":
            began = self.processing_since if self.processing_since is not None else self.start
            return PollOutcome(snap, began - self.start, now - began, self.polls)
        if snap.state == "failed":
            raise JobFailedError(
                f"job {snap.job_id} failed at the provider: {snap.message or 'no reason given'}; "
                "try another provider, or check the input",
                job_id=snap.job_id,
                provider=self.provider,
            )
        if snap.state == "expired":
            raise JobExpiredError(
                f"job {snap.job_id} expired before its results were fetched; submit it again",
                job_id=snap.job_id,
                provider=self.provider,
            )
        return None

    def next_delay(self) -> float:
        p, now = self.policy, self.clock()
        if self.estimate_end is not None and now < self.estimate_end - p.min_interval:
            remaining = self.estimate_end - now
            delay = min(remaining, max(p.progress_interval, remaining / 4))
        else:
            delay = min(p.max_interval, p.initial * p.multiplier**self.late_polls)
            self.late_polls += 1
        self.polls += 1
        return max(delay, p.min_interval)


async def poll_job(
    first: JobSnapshot,
    fetch: Callable[[], Awaitable[JobSnapshot]],
    *,
    provider: str,
    report: StageReporter | None = None,
    policy: PollPolicy | None = None,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> PollOutcome:
    """Poll until the job completes; ``first`` is the answer that created it (so no immediate re-poll).

    Raises JobFailedError or JobExpiredError (each naming the job id); errors from ``fetch`` propagate
    unchanged. Bound it with a cancel scope: it polls for as long as the job runs.
    """
    poller = _Poller(provider, policy or PollPolicy(), report, clock)
    snap = first
    while (outcome := poller.observe(snap)) is None:
        await sleep(poller.next_delay())
        snap = await fetch()
    return outcome
