"""EzStems (hosted Spleeter) as a stemkit provider.

Specs: ``ezstems``, ``ezstems?stems=2|4|5&cutoff=...&output=wav|mp3&plan=basic|premium|pro|custom``, plus
``base_url=``. The key comes from ``EZSTEMS_API_KEY`` (or ``api_key=``), the base URL from
``EZSTEMS_BASE_URL`` when the spec does not set one.

A request is planned onto the smallest Spleeter configuration that covers it (``stems=`` pins one); the
stems Spleeter does not produce directly (e.g. ``instrumental`` from a 4-stem run) are derived by stemkit and
marked derived. The file is checked against the plan's size limit before upload, streamed up as multipart,
the job polled (queue position and status reported as progress), and the ZIP streamed to a temporary file
and extracted safely (:mod:`stemkit_ezstems._archive`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, cast

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, field_validator

from stemkit.errors import ConfigError
from stemkit.hosted import (
    JobSnapshot,
    PollPolicy,
    RetryPolicy,
    Secret,
    StageReporter,
    apoll_job,
    poll_job,
)
from stemkit.protocol import Capabilities
from stemkit.provider import RawResult, SeparationJob, SeparatorBase
from stemkit_ezstems._archive import ZipLimits, extract_stems
from stemkit_ezstems._models import StatusData, UploadData
from stemkit_ezstems._service import (
    CANONICAL_BY_STEMS,
    DEFAULT_PLAN,
    PLAN_LIMITS,
    SPLEETER_STEMS,
    UPLOAD_FORMATS,
    Plan,
    StemCount,
)
from stemkit_ezstems.client import ENV_API_KEY, AsyncEzStemsClient, EzStemsClient, _resolve

__all__ = ["DEFAULT_POLL_POLICY", "EzStemsOptions", "EzStemsSeparator"]

#: EzStems gives no estimate, so poll steadily: a finished job is noticed within a second (the first poll is
#: quick, for short jobs), at about one status call per second per job.
DEFAULT_POLL_POLICY = PollPolicy(initial=0.2, multiplier=1.5, max_interval=1.0)
_MEDIA_TYPES = {".mp3": "audio/mpeg", ".wav": "audio/wav", ".m4a": "audio/mp4"}


class EzStemsOptions(BaseModel):
    """Options of an ``ezstems`` spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stems: StemCount | None = None
    """Pin a Spleeter configuration; by default the smallest one covering the request is used."""
    cutoff: str | None = None
    """Passed to the service as is ("Frequency cutoff setting")."""
    output: Literal["wav", "mp3"] | None = None
    """Format of the stems in the ZIP; the service's default when unset."""
    plan: Plan = DEFAULT_PLAN
    """Subscription level, for the upload size limit checked before uploading."""
    base_url: str | None = None

    @field_validator("stems", mode="before")
    @classmethod
    def _stems_from_text(cls, value: Any) -> Any:
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL ending in /api/v1")
        return value


class _Throttled:
    """Reports transfer progress at most once per percent."""

    def __init__(self, job: SeparationJob, stage: str) -> None:
        self._job, self._stage, self._last = job, stage, -1

    def __call__(self, done: int, total: int | None) -> None:
        if total:
            percent = int(100 * done / total)
            if percent != self._last:
                self._last = percent
                self._job.progress(self._stage, done / total)


def _snapshot(data: StatusData | UploadData) -> JobSnapshot:
    if isinstance(data, UploadData):
        return JobSnapshot(data.id, data.status, message=f"job {data.id} queued", raw=data)
    position = data.queue_position if data.status == "queued" else None
    message = data.failure_reason if data.status == "failed" else ""
    if data.status == "queued" and position:
        message = f"job {data.id} queued, position {position}"
    return JobSnapshot(data.id, data.status, queue_position=position, message=message, raw=data)


class EzStemsSeparator(SeparatorBase):
    """The ``ezstems`` provider: sync and async, on stemkit's hosted toolkit."""

    name = "ezstems"
    Options = EzStemsOptions

    def __init__(
        self,
        target: str | None = None,
        options: Any = None,
        *,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
    ) -> None:
        if target is not None:
            raise ConfigError(f"ezstems: takes no target (got {target!r}); use ezstems?stems=4")
        super().__init__(target, options)
        self._key: Secret | None = _resolve(api_key, None)[0]
        self._retry = retry
        self._poll = poll or DEFAULT_POLL_POLICY
        self._client: EzStemsClient | None = None

    @property
    def capabilities(self) -> Capabilities:
        opts = cast(EzStemsOptions, self.options)
        counts = (opts.stems,) if opts.stems else tuple(CANONICAL_BY_STEMS)
        return Capabilities(
            combinations=tuple(CANONICAL_BY_STEMS[n] for n in counts),
            complete=True,
            default_combination=counts.index(4) if 4 in counts else 0,  # like the document's examples
            input_formats=Capabilities.formats(UPLOAD_FORMATS),
            output_formats=Capabilities.formats(["wav", "mp3"]),
            max_file_bytes=PLAN_LIMITS[opts.plan],
            needs_network=True,
            needs_api_key=True,
            has_api_key=bool(self._key),
            local=False,
            extra={"model": "spleeter", "plan": opts.plan},
        )

    # -- plumbing ----------------------------------------------------------------------------------------
    def _client_args(self, options: EzStemsOptions) -> dict[str, Any]:
        if not self._key:
            raise ConfigError(f"ezstems: no API key; set {ENV_API_KEY} or pass api_key= to the provider")
        return {"api_key": self._key, "base_url": options.base_url, "retry": self._retry}

    def _sync_client(self, options: EzStemsOptions) -> EzStemsClient:
        args = self._client_args(options)
        if self._client is None or self._client.base_url != _resolve(self._key, options.base_url)[1]:
            if self._client is not None:
                self._client.close()
            self._client = EzStemsClient(**args)
        return self._client

    @staticmethod
    def _count(job: SeparationJob) -> int:
        for count, combination in CANONICAL_BY_STEMS.items():
            if combination == job.combination:
                return count
        raise ConfigError(f"ezstems: no Spleeter configuration produces {', '.join(job.combination)}")

    @staticmethod
    def _upload_args(job: SeparationJob) -> dict[str, Any]:
        opts: EzStemsOptions = job.options
        return {"cutoff": opts.cutoff, "output": opts.output, "progress": _Throttled(job, "upload")}

    @staticmethod
    def _extract(job: SeparationJob, archive: Path, count: int) -> dict[str, Path]:
        job.progress("write", 0.0, "extracting the stems archive")
        limits = ZipLimits.for_duration(job.source.duration, count)
        stems = extract_stems(archive, job.workdir / "stems", SPLEETER_STEMS[count], limits=limits)
        archive.unlink(missing_ok=True)
        return stems

    @staticmethod
    def _result(job_id: str, count: int, stems: dict[str, Path], timings: dict[str, float]) -> RawResult:
        return RawResult(
            stems=stems,
            job_id=job_id,
            model=f"spleeter:{count}stems",
            timings=timings,
            extra={"stems": count},
        )

    # -- the work ----------------------------------------------------------------------------------------
    def _separate(self, job: SeparationJob) -> RawResult:
        count = self._count(job)
        client = self._sync_client(job.options)
        timings: dict[str, float] = {}
        job.progress("upload", 0.0, f"uploading {job.source.name} for {count} stems")
        with _timed(timings, "upload"):
            created = client.upload(
                job.source.path, count, **self._upload_args(job), content_type=_media_type(job)
            )
        outcome = poll_job(
            _snapshot(created),
            lambda: _snapshot(client.status(created.id)),
            provider=self.name,
            report=_reporter(job),
            deadline=job.deadline,
            policy=self._poll,
        )
        timings.update(queue=outcome.queued_seconds, process=outcome.processing_seconds)
        job.progress("download", 0.0, f"downloading the stems of job {created.id}", job_id=created.id)
        with _timed(timings, "download"):
            archive = client.download(created.id, job.workdir / "stems.zip", progress=_Throttled(job, "download"))
        with _timed(timings, "extract"):
            stems = self._extract(job, archive, count)
        return self._result(created.id, count, stems, timings)

    async def _aseparate(self, job: SeparationJob) -> RawResult:
        count = self._count(job)
        timings: dict[str, float] = {}
        # One client per call: an httpx AsyncClient belongs to the event loop it first ran on.
        async with AsyncEzStemsClient(**self._client_args(job.options)) as client:
            job.progress("upload", 0.0, f"uploading {job.source.name} for {count} stems")
            with _timed(timings, "upload"):
                created = await client.upload(
                    job.source.path, count, **self._upload_args(job), content_type=_media_type(job)
                )

            async def fetch() -> JobSnapshot:
                return _snapshot(await client.status(created.id))

            outcome = await apoll_job(
                _snapshot(created),
                fetch,
                provider=self.name,
                report=_reporter(job),
                deadline=job.deadline,
                policy=self._poll,
            )
            timings.update(queue=outcome.queued_seconds, process=outcome.processing_seconds)
            job.progress("download", 0.0, f"downloading the stems of job {created.id}", job_id=created.id)
            with _timed(timings, "download"):
                archive = await client.download(
                    created.id, job.workdir / "stems.zip", progress=_Throttled(job, "download")
                )
        with _timed(timings, "extract"):
            stems = await anyio.to_thread.run_sync(self._extract, job, archive, count)
        return self._result(created.id, count, stems, timings)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        super().close()


def _reporter(job: SeparationJob) -> StageReporter:
    def report(stage: str, fraction: float | None = None, message: str = "", **kw: Any) -> None:
        job.progress(stage, fraction, message, **kw)

    return report


def _media_type(job: SeparationJob) -> str:
    return _MEDIA_TYPES.get(job.source.path.suffix.lower(), "application/octet-stream")


@contextlib.contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Adds the block's wall time to ``timings[name]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
