"""The hosted job lifecycle, written once for every hosted provider:

    submit (upload included) → poll, honouring the provider's estimate → resolve the finished job's outputs →
    download them (one refresh of expired URLs) → unpack → a raw result for the core to normalize.

A hosted plugin subclasses :class:`HostedSeparator` and supplies only what is particular to its API: how to
open a client, submit a job, read its status, list its outputs, and describe the result. Everything that must
hold for every hosted provider is enforced here, once:

* every job is recorded in the job ledger (:mod:`stemkit.ledger`, through :mod:`stemkit.hosted.tracking`)
  before it is submitted and as soon as the provider accepts it; an identical request finds a job an earlier
  process submitted and **resumes** it (polls it, downloads its stems) instead of submitting it again, and a
  retried submission carries the same idempotency key (:attr:`SeparationJob.idempotency_key`, which a
  plugin's ``_submit`` sends) and the provider's own notes from the earlier try (``_note``: an upload already
  made), so the provider can recognise it; failed and expired jobs are recorded and never resumed;
* a job is submitted only within the call's spending limit (``max_cost=``, :mod:`stemkit.budget`): its
  estimate is reserved first, and a job that would go over is not submitted;
* a job is submitted only while the call's deadline has not passed (the whole call runs in the core's cancel
  scope), and as soon as the provider accepts it its id is on the job, so a timeout names it;
* only the outputs that were asked for are downloaded (the requested stems, the mixture a provider returns,
  or the one archive that holds them), under names stemkit chooses — a server cannot choose a path — and
  every destination is checked to stay inside the job's own folder;
* each download is bounded by what the input's duration can justify (declared and received sizes, after
  decompression), streamed to a temporary file and renamed into place;
* downloads run concurrently; an expired presigned URL is refreshed once through the API;
* no exception group ever leaves: concurrent failures are collected and the most telling one is raised.
"""

from __future__ import annotations

import abc
import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Generic, Literal, TypeVar
from urllib.parse import urlsplit

import anyio
import anyio.to_thread

from stemkit._portal import AsyncClosable, sync_method
from stemkit.audio import AudioSource
from stemkit.errors import (
    BudgetExceededError,
    JobExpiredError,
    JobFailedError,
    ProtocolError,
    ProviderError,
    StemkitError,
)
from stemkit.hosted.jobs import JobSnapshot, PollOutcome, PollPolicy, poll_job
from stemkit.hosted.mapping import PresignedURLRejected
from stemkit.hosted.tracking import TrackedJob
from stemkit.hosted.transport import AsyncHostedTransport
from stemkit.protocol import ProgressCallback
from stemkit.provider import RawResult, SeparationJob, SeparatorBase
from stemkit.stems import canonical_name
from stemkit.stemset import StemSet

__all__ = ["HostedSeparator", "Output", "Submission", "download_limit", "require_outputs"]

C = TypeVar("C", bound=AsyncClosable)

#: The sample rate, channel count and sample size a provider's stem file may use at most, to bound a download
#: by the input's duration: float32 stereo at 48 kHz (or the input's own rate, when higher), plus headroom.
_MIN_RATE, _MIN_CHANNELS, _BYTES_PER_SAMPLE, _HEADROOM, _SLACK = 48_000, 2, 4, 1.10, 4 << 20
_AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus", ".aiff", ".aif"})


@dataclass(frozen=True)
class Submission:
    """A job the provider has accepted: its id, the answer that created it, and where the time went.

    ``replayed``: the provider said the job already existed — an earlier try of the same request (a run that
    died before it recorded the answer) created it, and this answer repeats that one (e.g. StemSplit's
    ``Idempotent-Replayed: true``); the result is then marked resumed, not new.
    """

    job_id: str
    first: JobSnapshot
    timings: dict[str, float] = field(default_factory=dict)
    replayed: bool = False


@dataclass(frozen=True)
class Output:
    """One file a finished job offers: a stem (under the provider's name for it), the mixture, or an archive
    that holds the stems. ``url`` is absolute or a path under the API's base URL."""

    kind: Literal["stem", "mixture", "archive"]
    name: str
    url: str
    params: Mapping[str, str] | None = None


def download_limit(source: AudioSource, stems: int, *, max_duration: float | None) -> int:
    """The most bytes ``stems`` stem files of ``source`` can justify (a URL input: ``max_duration`` seconds)."""
    if source.is_remote:
        seconds, rate, channels = (max_duration or 3600.0), _MIN_RATE, _MIN_CHANNELS
    else:
        seconds, rate, channels = source.duration, max(source.sample_rate, _MIN_RATE), max(source.channels, 2)
    per_stem = seconds * rate * channels * _BYTES_PER_SAMPLE * _HEADROOM
    return int(per_stem * max(stems, 1)) + _SLACK


class HostedSeparator(SeparatorBase, Generic[C]):
    """Base class of hosted providers: the lifecycle above, configured by the hooks below."""

    #: How to poll this provider (override per provider: e.g. one with no estimate polls steadily).
    poll_policy: PollPolicy = PollPolicy()
    #: The default deadline of a hosted separation is this many seconds plus twice the input's duration.
    base_timeout: ClassVar[float] = 1800.0
    #: How long the provider keeps a job's results (seconds), when it says: a ledger entry older than this is
    #: recorded as expired instead of resumed. None: ask the provider (a job it no longer has is expired then).
    result_retention: ClassVar[float | None] = None

    def default_timeout(self, source: AudioSource) -> float | None:
        return self.base_timeout + (0.0 if source.is_remote else 2.0 * source.duration)

    # -- what a plugin supplies ---------------------------------------------------------------------------
    @abc.abstractmethod
    def _client(self, options: Any) -> C:
        """A new async API client for one call (an httpx client belongs to the event loop it runs on)."""

    @abc.abstractmethod
    def _transport(self, client: C) -> AsyncHostedTransport:
        """The client's transport (the lifecycle downloads through it)."""

    @abc.abstractmethod
    async def _submit(self, client: C, job: SeparationJob, upload: Path | None) -> Submission:
        """Create the job: upload ``upload`` (a local file) or pass the source's URL. Report progress."""

    @abc.abstractmethod
    async def _status(self, client: C, job: SeparationJob, job_id: str) -> JobSnapshot:
        """Ask for the job's status."""

    @abc.abstractmethod
    def _outputs(self, job: SeparationJob, final: JobSnapshot) -> Sequence[Output]:
        """The files a completed job offers (all of them: the lifecycle picks what was asked for)."""

    @abc.abstractmethod
    def _result(
        self, job: SeparationJob, outcome: PollOutcome, stems: dict[str, Path], mixture: Path | None,
        timings: dict[str, float],
    ) -> RawResult:  # fmt: skip
        """Describe the result (model, job id, cost, analysis) around the downloaded stems."""

    def _unpack(self, job: SeparationJob, archive: Path) -> dict[str, Path]:
        """Stems (by the provider's names) from an archive output; runs in a worker thread."""
        raise ProtocolError(f"{self.name}: job {job.job_id} returned an archive this provider cannot open",
                            provider=self.name)  # fmt: skip

    def _upload_needed(self, job: SeparationJob) -> bool:
        return not job.source.is_remote

    async def _note(self, job: SeparationJob, **values: Any) -> None:
        """Remember ``values`` (JSON, nothing secret) for this request in the job ledger: a retry of the same
        request after a crash finds them in ``job.notes``. E.g. StemSplit notes the key of the upload it made
        before creating the job, so a retried creation sends the very same body under the same idempotency key.
        """
        job.notes.update(values)
        tracked: TrackedJob | None = job.__dict__.get("_tracked")
        if tracked is not None:
            await tracked.note(**values)

    def _gone(self, exc: BaseException) -> bool:
        """Whether ``exc`` from asking for a job's status means the provider no longer has the job."""
        return isinstance(exc, JobExpiredError) or (isinstance(exc, ProviderError) and exc.status_code in (404, 410))

    # -- the lifecycle ------------------------------------------------------------------------------------
    async def _aseparate(self, job: SeparationJob) -> RawResult:
        async with contextlib.aclosing(self._client(job.options)) as client:
            tracked = await TrackedJob.begin(self, job)
            found = tracked is not None and tracked.entry.resumable
            submission = await self._reattach(client, job, tracked) if tracked is not None and found else None
            if submission is None:
                if found:  # the provider no longer had it (recorded as expired): a new entry, a new job
                    tracked = await TrackedJob.begin(self, job)
                earlier = tracked is not None and (tracked.entry.reused or tracked.explicit)
                submission = await self._submit_tracked(client, job, tracked)
                # the provider answered with the job an earlier, interrupted run created (not this run's retry)
                resumed = submission.replayed and earlier
            else:
                resumed = True
            job.job_id = submission.job_id
            timings = dict(submission.timings)

            async def status() -> JobSnapshot:
                return await self._status(client, job, submission.job_id)

            try:
                outcome = await poll_job(
                    submission.first, status, provider=self.name, report=job.progress, policy=self.poll_policy
                )
                timings["queue"], timings["process"] = outcome.queued_seconds, outcome.processing_seconds
                started = time.perf_counter()
                files = await self._download(client, job, outcome.snapshot, status)
                timings["download"] = time.perf_counter() - started
            except JobFailedError as exc:
                if tracked is not None:
                    await tracked.failed(exc)
                raise
            except StemkitError as exc:
                if tracked is not None and self._gone(exc):
                    await tracked.expired(exc)
                raise  # anything else leaves the job open: the next identical request resumes it
        started = time.perf_counter()
        stems, mixture = await anyio.to_thread.run_sync(self._collect, job, files)
        if "archive" in files:
            timings["extract"] = time.perf_counter() - started
        raw = self._result(job, outcome, stems, mixture, timings)
        if resumed:
            raw.extra["resumed"] = True
        if tracked is not None:
            await tracked.finished(raw.cost)
        return raw

    async def _reattach(self, client: C, job: SeparationJob, tracked: TrackedJob) -> Submission | None:
        """A job an earlier run submitted (the ledger has its id): its current status, to poll from there.
        None when the provider no longer has it (recorded as expired; an identical request submits anew)."""
        job_id = str(tracked.entry.job_id)
        job.job_id = job_id
        job.progress("queued", None, f"resuming job {job_id}, submitted by an earlier run", job_id=job_id)
        try:
            first = await self._status(client, job, job_id)
        except StemkitError as exc:
            if not self._gone(exc):
                raise
            await tracked.expired(exc)
            if tracked.explicit:
                raise JobExpiredError(
                    f"job {job_id} is gone at {self.name} ({exc}); it cannot be resumed, separate the input again",
                    job_id=job_id, provider=self.name,
                ) from exc  # fmt: skip
            return None
        if first.state == "expired" and not tracked.explicit:
            await tracked.expired(JobExpiredError(f"job {job_id} expired before its results were fetched"))
            return None
        return Submission(job_id, first, {})

    async def _submit_tracked(self, client: C, job: SeparationJob, tracked: TrackedJob | None) -> Submission:
        """Submit within the call's budget, under the ledger entry's idempotency key, recording the job id."""
        from stemkit.budget import current_budget, job_spend

        budget = current_budget()
        taken: dict[str, float] | None = None
        if budget is not None:
            spend = await anyio.to_thread.run_sync(job_spend, self, job.source)
            try:
                taken = budget.reserve(spend, what=f"{job.source.name} on {self._label}")
            except BudgetExceededError:
                if tracked is not None:
                    await tracked.discard()
                    tracked.release()
                raise
        if tracked is not None:
            job.idempotency_key = tracked.entry.idempotency_key
            job.notes = dict(tracked.entry.notes)
            job.__dict__["_tracked"] = tracked
        try:
            try:
                upload = await anyio.to_thread.run_sync(lambda: job.source.path) if self._upload_needed(job) else None
                submission = await self._submit(client, job, upload)
            except StemkitError as exc:
                if _refused(exc):  # the provider said no: it holds no job, and nothing was billed
                    if budget is not None and taken is not None:
                        budget.release(taken)
                    if tracked is not None:
                        await (tracked.failed(exc) if isinstance(exc, ProviderError) else tracked.discard())
                raise  # anything else (a cut connection, a timeout) may have reached it: the entry stays open
            if tracked is not None:
                await tracked.submitted(submission.job_id)
        finally:
            if tracked is not None:
                tracked.release()  # identical requests of this process waiting on this submission look again
        return submission

    # -- resuming a job by its id -------------------------------------------------------------------------
    async def aresume(
        self,
        job_id: str,
        /,
        *,
        audio: Any = None,
        progress: ProgressCallback | None = None,
        timeout: float | None = None,
        cache: Any = None,
        ledger: Any = None,
    ) -> StemSet:
        """Finish job ``job_id`` of this provider — one a :class:`~stemkit.errors.SeparationTimeout` named, or
        one a process that died left in the job ledger — and return its StemSet, stored in the result cache
        under the original request's key (so the same ``separate`` call later is a cache hit).

        ``audio`` is the original input; it is needed only when the job was never confirmed submitted, or a
        requested stem is derived from the mixture (see :func:`stemkit.resume`).
        """
        from stemkit.resuming import aresume

        return await aresume(job_id, provider=self, audio=audio, progress=progress, timeout=timeout, cache=cache,
                             ledger=ledger)  # fmt: skip

    resume = sync_method(aresume, """Blocking :meth:`aresume`: finish job ``job_id`` and return its StemSet.""")

    def _choose(self, job: SeparationJob, offered: Sequence[Output]) -> dict[str, Output]:
        """Local file name (without suffix) → output, for what was asked for only."""
        chosen: dict[str, Output] = {}
        for output in offered:
            if output.kind == "stem":
                name = canonical_name(output.name, self.stem_aliases)
                if name is None or name not in job.combination:
                    continue
            else:
                name = output.kind
            chosen.setdefault(name, output)
        if not chosen:
            raise ProtocolError(
                f"job {job.job_id} completed without any of the requested outputs ({', '.join(job.combination)})",
                provider=self.name,
            )
        return chosen

    async def _download(
        self, client: C, job: SeparationJob, final: JobSnapshot, status: Any
    ) -> dict[str, Path]:
        transport = self._transport(client)
        folder = job.workdir / "downloads"
        await anyio.to_thread.run_sync(lambda: folder.mkdir(parents=True, exist_ok=True))
        outputs = self._choose(job, self._outputs(job, final))
        files: dict[str, Path] = {}
        for attempt in (1, 2):
            errors = await self._fetch_all(transport, job, folder, outputs, files)
            if not errors:
                return files
            if attempt == 1 and all(isinstance(e, PresignedURLRejected) for e in errors):
                outputs = self._choose(job, self._outputs(job, await status()))  # one refresh mints fresh URLs
                continue
            raise next((e for e in errors if not isinstance(e, PresignedURLRejected)), errors[0])
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetch_all(
        self,
        transport: AsyncHostedTransport,
        job: SeparationJob,
        folder: Path,
        outputs: Mapping[str, Output],
        files: dict[str, Path],
    ) -> list[StemkitError]:
        """Download what is not in ``files`` yet, concurrently; the failures, collected (never a group)."""
        errors: list[StemkitError] = []
        wanted = [name for name in outputs if name not in files]
        limits = {
            name: download_limit(
                job.source,
                len(job.combination) + 1 if outputs[name].kind == "archive" else 1,
                max_duration=self.capabilities.max_duration_seconds,
            )
            for name in wanted
        }

        async def fetch(name: str) -> None:
            output = outputs[name]
            dest = folder / f"{name}{_suffix(output)}"
            if not _inside(dest, job.workdir):
                raise ProtocolError(f"refusing to write {dest} outside the job's folder", provider=self.name)
            try:
                files[name] = await transport.download(
                    output.url, dest, params=output.params, max_bytes=limits[name]
                )
            except StemkitError as exc:
                errors.append(exc)
                return
            job.progress("download", len(files) / len(outputs), f"downloaded {name}", job_id=job.job_id)

        job.progress("download", len(files) / len(outputs), f"downloading job {job.job_id}", job_id=job.job_id)
        async with anyio.create_task_group() as group:
            for name in wanted:
                group.start_soon(fetch, name)
        return errors

    def _collect(self, job: SeparationJob, files: Mapping[str, Path]) -> tuple[dict[str, Path], Path | None]:
        """(stems by name, the mixture) from the downloads, unpacking an archive."""
        stems = {name: path for name, path in files.items() if name not in ("mixture", "archive")}
        if "archive" in files:
            job.progress("write", 0.0, "unpacking the stems archive", job_id=job.job_id)
            stems.update(self._unpack(job, files["archive"]))
            with contextlib.suppress(OSError):
                os.unlink(files["archive"])
        return stems, files.get("mixture")


def _refused(exc: StemkitError) -> bool:
    """A submission the provider definitely did not take: a 4xx answer (not a timeout, conflict or rate limit:
    those may follow a request it did take), or a problem found before anything was sent."""
    if isinstance(exc, ProviderError):
        status = exc.status_code
        return status is not None and 400 <= status < 500 and status not in (408, 409, 425, 429)
    return True


def _suffix(output: Output) -> str:
    if output.kind == "archive":
        return ".zip"
    try:
        suffix = PurePosixPath(urlsplit(output.url).path).suffix.lower()
    except ValueError:
        suffix = ""
    return suffix if suffix in _AUDIO_SUFFIXES else ".audio"


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def require_outputs(outputs: Mapping[str, Any] | None, *, job_id: str, provider: str) -> Mapping[str, Any]:
    """A completed job's outputs, or the ProtocolError for a job that lists none."""
    if not outputs:
        raise ProtocolError(f"job {job_id} is completed but lists no outputs", provider=provider)
    return outputs


