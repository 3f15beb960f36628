"""The hosted lifecycle's side of the job ledger (:mod:`stemkit.ledger`).

:class:`TrackedJob` is one hosted job's ledger entry as :class:`~stemkit.hosted.HostedSeparator` sees it.
Every ledger call runs in a worker thread, never on the event loop. The ledger must never be why a separation
fails nor lose a job the provider holds, so a ledger that fails part-way (a full disk, a damaged file) gives a
:class:`~stemkit.ledger.LedgerWarning` and is dropped for the rest of the job, which goes on.

:func:`resuming` is how :mod:`stemkit.resuming` hands the lifecycle the very entry to finish, rather than the one
an identical request would find (which may differ: a job submitted by an older stemkit, options since changed).
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from stemkit.errors import JobExpiredError, StemkitError
from stemkit.ledger import (
    JobLedger,
    JobRequest,
    LedgerEntry,
    LedgerWarning,
    ResumeInfo,
    current_setting,
    resolve_ledger,
)
from stemkit.provenance import Cost
from stemkit.provider import SeparationJob

__all__ = ["TrackedJob", "resuming"]

T = TypeVar("T")

#: entries a request of this process is submitting now, by (ledger file, entry id): an identical request made
#: meanwhile (``asyncio.gather`` of the same song, two threads) waits for that job instead of submitting and
#: paying for a second one. Another process's unconfirmed entry is sent again under its idempotency key.
_SUBMITTING: dict[tuple[Path, int], threading.Event] = {}
_SUBMITTING_LOCK = threading.Lock()

_EXPLICIT: ContextVar[tuple[JobLedger, LedgerEntry] | None] = ContextVar("stemkit_resume_entry", default=None)


@contextlib.contextmanager
def resuming(ledger: JobLedger, entry: LedgerEntry) -> Iterator[None]:
    """Within the block, a hosted job of ``entry``'s provider and input finishes ``entry`` (in ``ledger``)."""
    token = _EXPLICIT.set((ledger, entry))
    try:
        yield
    finally:
        _EXPLICIT.reset(token)


class TrackedJob:
    """A hosted job's entry in the ledger: :meth:`begin` before submitting, then what became of it."""

    def __init__(
        self, ledger: JobLedger, entry: LedgerEntry, *, explicit: bool = False, claimed: bool = False
    ) -> None:
        self.ledger: JobLedger | None = ledger
        self.entry = entry
        #: finishing an entry named by the caller (``stemkit.resume``), not one found by an identical request
        self.explicit = explicit
        #: this request is the one of its process submitting the entry (see :meth:`release`)
        self.claimed = claimed
        self._claim_path = ledger.path

    @classmethod
    async def begin(cls, separator: Any, job: SeparationJob) -> TrackedJob | None:
        """The entry of this job: the one being resumed by name, or the open entry of an identical earlier
        request, or a new one. None when the ledger is off or cannot be used."""
        named = _EXPLICIT.get()
        if named is not None:
            ledger, entry = named
            if entry.provider == separator.name and entry.input_sha256 == await _sha(job):
                fresh = await anyio.to_thread.run_sync(ledger.get, entry.id)
                if fresh is None or not fresh.pending:
                    state = fresh.status.value if fresh is not None else "gone from the ledger"
                    raise JobExpiredError(
                        f"{separator.name}: job {entry.job_id or entry.id} is no longer pending ({state}); "
                        "separate the input again for a new job",
                        job_id=entry.job_id, provider=separator.name,
                    )  # fmt: skip
                return cls(ledger, fresh, explicit=True)

        def open_entry() -> TrackedJob | threading.Event | None:
            ledger = resolve_ledger(current_setting())
            if ledger is None:
                return None
            request = describe_request(separator, job)
            with _SUBMITTING_LOCK:  # the lookup and the claim are one step for this process's requests
                try:
                    entry = ledger.begin(request, resume_within=getattr(separator, "result_retention", None))
                except Exception as exc:  # a damaged or locked ledger: separate without it
                    _warn(ledger, exc)
                    return None
                claim = (ledger.path, entry.id)
                if entry.resumable:
                    return cls(ledger, entry)
                busy = _SUBMITTING.get(claim)
                if busy is not None:
                    return busy  # an identical request of this process is submitting it right now
                _SUBMITTING[claim] = threading.Event()
            return cls(ledger, entry, claimed=True)

        while True:
            with anyio.CancelScope(shield=True):  # a claim made in the thread must not be lost to a cancel
                found = await anyio.to_thread.run_sync(open_entry)
            if isinstance(found, threading.Event):
                # Wait for that submission, then take its job (resumable now) instead of billing a second one.
                await anyio.to_thread.run_sync(found.wait, abandon_on_cancel=True)
                continue
            if found is not None and found.claimed:
                try:
                    await anyio.lowlevel.checkpoint()
                except BaseException:
                    found.release()
                    raise
            return found

    def release(self) -> None:
        """End this request's claim on submitting its entry (submitted, refused or failed): identical requests
        of this process that waited look at the entry again."""
        if self.claimed:
            self.claimed = False
            with _SUBMITTING_LOCK:
                event = _SUBMITTING.pop((self._claim_path, self.entry.id), None)
            if event is not None:
                event.set()

    # -- the points of a job's life (each shielded: a deadline must not cut a record in half) ------------------
    async def submitted(self, job_id: str) -> None:
        await self._call(lambda ledger: ledger.submitted(self.entry.id, job_id))

    async def finished(self, cost: Cost | None) -> None:
        await self._call(lambda ledger: ledger.finished(self.entry.id, cost))

    async def failed(self, error: BaseException) -> None:
        await self._call(lambda ledger: ledger.failed(self.entry.id, error))

    async def expired(self, error: BaseException) -> None:
        await self._call(lambda ledger: ledger.expired(self.entry.id, error))

    async def note(self, **values: Any) -> None:
        await self._call(lambda ledger: ledger.note(self.entry.id, **values))

    async def discard(self) -> None:
        """Forget an entry this try created and never submitted (refused before anything was sent)."""
        if not self.entry.reused and not self.explicit:
            await self._call(lambda ledger: ledger.discard(self.entry.id))

    async def _call(self, action: Callable[[JobLedger], T]) -> None:
        ledger = self.ledger
        if ledger is None:
            return

        def run() -> None:
            try:
                result = action(ledger)
            except Exception as exc:
                _warn(ledger, exc)
                self.ledger = None
                return
            if isinstance(result, LedgerEntry):
                self.entry = result

        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(run)


def describe_request(separator: Any, job: SeparationJob) -> JobRequest:
    """The ledger's record of ``job``: its identity (provider, validated options, combination, input hash) and
    what resuming it needs (:class:`~stemkit.ledger.ResumeInfo`)."""
    source = job.source
    options = job.options.model_dump(mode="json") if hasattr(job.options, "model_dump") else {}
    changed = (
        job.options.model_dump(mode="json", exclude_defaults=True) if hasattr(job.options, "model_dump") else {}
    )
    return JobRequest.for_separator(
        separator,
        input_sha256=source.sha256,
        stems=job.combination,
        options=options,
        input_name=source.name,
        input_duration=None if source.is_remote else source.duration,
        resume=ResumeInfo.describe(source, options=changed, target=separator.target, requested=job.requested),
    )


async def _sha(job: SeparationJob) -> str:
    return await anyio.to_thread.run_sync(lambda: job.source.sha256)


def _warn(ledger: JobLedger, exc: BaseException) -> None:
    reason = exc.message if isinstance(exc, StemkitError) and hasattr(exc, "message") else str(exc)
    warnings.warn(
        f"stemkit job ledger: {ledger.path} could not be used ({type(exc).__name__}: {reason}); this job goes on "
        "unrecorded, so it is not protected against being submitted again if the process dies",
        LedgerWarning,
        stacklevel=2,
    )
