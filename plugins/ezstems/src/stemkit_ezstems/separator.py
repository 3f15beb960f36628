"""EzStems (hosted Spleeter) as a stemkit provider.

Specs: ``ezstems``, ``ezstems?stems=2|4|5&cutoff=...&output=wav|mp3&plan=basic|premium|pro|custom``, plus
``base_url=``. The key comes from ``EZSTEMS_API_KEY`` (or ``api_key=``), the base URL from
``EZSTEMS_BASE_URL`` when the spec does not set one.

A request is planned onto the smallest Spleeter configuration that covers it (``stems=`` pins one); the
stems Spleeter does not produce directly (e.g. ``instrumental`` from a 4-stem run) are derived by stemkit and
marked derived. The file is checked against the plan's size limit before upload, streamed up as multipart,
the job polled (queue position and status reported as progress), and the ZIP streamed to a temporary file
and extracted safely (:mod:`stemkit_ezstems._archive`). The job's lifecycle (polling, downloads, limits,
deadlines, the job ledger that resumes a job after a crash) is :class:`stemkit.hosted.HostedSeparator`'s,
shared by every hosted provider. EzStems is a subscription: a job costs nothing per use but counts against the
plan (``estimate_cost``); it takes no idempotency key, see ``_submit``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, field_validator

from stemkit.compose.fit import SentAudio
from stemkit.cost import CostEstimate
from stemkit.errors import ConfigError
from stemkit.hosted import (
    HostedSeparator,
    JobSnapshot,
    Limits,
    Output,
    PollOutcome,
    PollPolicy,
    RetryPolicy,
    Secret,
    Submission,
    read_key,
)
from stemkit.protocol import Capabilities
from stemkit.provenance import Cost
from stemkit.provider import RawResult, SeparationJob
from stemkit_ezstems._archive import ZipLimits, extract_stems
from stemkit_ezstems._models import StatusData, UploadData
from stemkit_ezstems._service import (
    CANONICAL_BY_STEMS,
    DEFAULT_PLAN,
    PLAN_LIMITS,
    PLAN_TITLES,
    SPLEETER_STEMS,
    UPLOAD_FORMATS,
    Plan,
    StemCount,
)
from stemkit_ezstems.client import ENV_API_KEY, AsyncEzStemsClient

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


class EzStemsSeparator(HostedSeparator[AsyncEzStemsClient]):
    """The ``ezstems`` provider."""

    name = "ezstems"
    Options = EzStemsOptions
    poll_policy = DEFAULT_POLL_POLICY

    def __init__(
        self,
        target: str | None = None,
        options: Any = None,
        *,
        api_key: str | Secret | None = None,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        limits: Limits | None = None,
    ) -> None:
        if target is not None:
            raise ConfigError(f"ezstems: takes no target (got {target!r}); use ezstems?stems=4")
        super().__init__(target, options)
        self._key = read_key(api_key, env=ENV_API_KEY, provider=self.name)
        self._retry, self._limits = retry, limits
        if poll is not None:
            self.poll_policy = poll

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

    @staticmethod
    def _count(job: SeparationJob) -> int:
        for count, combination in CANONICAL_BY_STEMS.items():
            if combination == job.combination:
                return count
        raise ConfigError(f"ezstems: no Spleeter configuration produces {', '.join(job.combination)}")

    # -- the lifecycle's hooks ----------------------------------------------------------------------------
    def _client(self, options: EzStemsOptions) -> AsyncEzStemsClient:
        return AsyncEzStemsClient(self._key, base_url=options.base_url, retry=self._retry, limits=self._limits)

    def _transport(self, client: AsyncEzStemsClient) -> Any:
        return client.transport

    def estimate_cost(self, sent: SentAudio) -> CostEstimate:
        """A subscription: nothing is billed per job, but every job (each piece of a fitted input) counts against
        the plan's limits, so a budget in ``jobs`` (``max_cost="20 jobs"``) counts them."""
        plan = PLAN_TITLES[cast(EzStemsOptions, self.options).plan]
        return CostEstimate(plan_usage=Cost(float(sent.jobs), "jobs"), note=f"counted against the {plan} plan")

    async def _submit(self, client: AsyncEzStemsClient, job: SeparationJob, upload: Path | None) -> Submission:
        """Upload the file: EzStems creates the job in the same request and answers with its id.

        EzStems takes no idempotency key (its API document names none), so ``job.idempotency_key`` is not sent:
        the lifecycle records the job id in the ledger the moment this returns, and a process killed in the
        instant between the upload's answer and that record would submit the job again on its next run. Every
        other crash resumes the recorded job.
        """
        assert upload is not None
        opts: EzStemsOptions = job.options
        count = self._count(job)
        job.progress("upload", 0.0, f"uploading {job.source.name} for {count} stems")
        started = time.perf_counter()
        created = await client.upload(
            upload, count, cutoff=opts.cutoff, output=opts.output, progress=_Throttled(job, "upload"),
            content_type=_MEDIA_TYPES.get(upload.suffix.lower(), "application/octet-stream"),
        )  # fmt: skip
        return Submission(created.id, _snapshot(created), {"upload": time.perf_counter() - started})

    async def _status(self, client: AsyncEzStemsClient, job: SeparationJob, job_id: str) -> JobSnapshot:
        return _snapshot(await client.status(job_id))

    def _outputs(self, job: SeparationJob, final: JobSnapshot) -> Sequence[Output]:
        return [Output("archive", "stems.zip", "download.php", params={"id": final.job_id})]

    def _unpack(self, job: SeparationJob, archive: Path) -> dict[str, Path]:
        count = self._count(job)
        limits = ZipLimits.for_duration(job.source.duration, count)
        return extract_stems(archive, job.workdir / "stems", SPLEETER_STEMS[count], limits=limits)

    def _result(
        self, job: SeparationJob, outcome: PollOutcome, stems: dict[str, Path], mixture: Path | None,
        timings: dict[str, float],
    ) -> RawResult:  # fmt: skip
        count = self._count(job)
        return RawResult(
            stems=stems, job_id=outcome.snapshot.job_id, model=f"spleeter:{count}stems", timings=timings,
            extra={"stems": count},
        )  # fmt: skip
