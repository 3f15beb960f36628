"""The ``stemsplit`` provider: StemSplit's hosted API behind stemkit's Separator protocol.

Spec: ``stemsplit?quality=fast|balanced|best&format=mp3|wav|flac&base_url=...``; the key comes from
``STEMSPLIT_API_KEY`` or ``api_key=``, the base URL from ``base_url=``, ``STEMSPLIT_BASE_URL`` or production.

A local file is uploaded (presigned PUT, streamed from disk); an http(s) URL is passed as ``sourceUrl``; a
YouTube URL becomes a ``/youtube-jobs`` job whose ``fullAudio`` is the StemSet's mixture. The requested stems
pick the smallest ``outputType`` covering them; the core derives the rest. The job's lifecycle (polling,
downloads, limits, deadlines) is :class:`stemkit.hosted.HostedSeparator`'s, shared by every hosted provider.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict

from stemkit.errors import ConfigError, ProviderError
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
    require_outputs,
)
from stemkit.protocol import Capabilities
from stemkit.provenance import Cost
from stemkit.provider import RawResult, SeparationJob
from stemkit_stemsplit._wire import OUTPUT_TYPES, Job
from stemkit_stemsplit.client import ENV_API_KEY, NO_KEY, AsyncStemSplitClient, StemSplitClient

__all__ = ["StemSplitOptions", "StemSplitSeparator"]

_TYPE_FOR: dict[frozenset[str], str] = {frozenset(stems): name for name, stems in OUTPUT_TYPES.items()}
_STATE = {"PENDING": "queued", "PROCESSING": "processing", "COMPLETED": "completed", "FAILED": "failed",
          "EXPIRED": "expired"}  # fmt: skip
_MIXTURE_KEY = "fullAudio"


class StemSplitOptions(BaseModel):
    """Options of the ``stemsplit`` spec."""

    model_config = ConfigDict(extra="forbid")

    quality: Literal["fast", "balanced", "best"] = "best"
    format: Literal["mp3", "wav", "flac"] = "flac"
    """Lossless by default: stems are normalized to the input sample-exactly, which MP3's padding blurs."""
    base_url: str | None = None


def snapshot(job: Job, *, created: bool = False) -> JobSnapshot:
    """A StemSplit job answer in the job helper's terms.

    ``estimatedSeconds`` counts from the job's creation, so only the creation answer gives an ETA from now.
    """
    return JobSnapshot(
        job_id=job.id,
        state=_STATE[job.status],  # type: ignore[arg-type]
        fraction=job.progress / 100 if job.status == "PROCESSING" else None,
        eta_seconds=float(job.estimated_seconds) if created and job.estimated_seconds else None,
        message=job.error_message or f"job {job.id} {job.status.lower()} {job.progress}%",
        raw=job,
    )


class StemSplitSeparator(HostedSeparator[AsyncStemSplitClient]):
    """StemSplit (https://stemsplit.io) as a stemkit provider."""

    name = "stemsplit"
    Options = StemSplitOptions

    def __init__(
        self,
        target: str | None = None,
        options: Mapping[str, Any] | BaseModel | None = None,
        *,
        api_key: str | Secret | None = None,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(target, options)
        if target is not None:
            raise ConfigError(f"stemsplit takes no target (got {target!r}); use stemsplit?quality=best&format=flac")
        self._key = read_key(api_key, env=ENV_API_KEY, provider=self.name)
        self._retry, self._timeout, self._limits = retry, timeout, limits
        if poll is not None:
            self.poll_policy = poll

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            combinations=tuple(OUTPUT_TYPES.values()),
            complete=True,
            default_combination=0,
            input_formats=Capabilities.formats(["mp3", "wav", "flac", "m4a", "aac", "ogg", "opus", "webm"]),
            output_formats=Capabilities.formats(["mp3", "wav", "flac"]),
            max_file_bytes=50 * 1024 * 1024,
            max_duration_seconds=60 * 60.0,
            accepts_urls=True,
            accepts_youtube=True,
            needs_network=True,
            needs_api_key=True,
            has_api_key=self._key is not None,
            local=False,
            cost_unit="seconds",
            extra={"rate_limit_per_minute": 60},
        )

    def client(self, options: StemSplitOptions | None = None) -> StemSplitClient:
        """A blocking client with this separator's key and settings, for the API's extras (close it)."""
        opts = options or self.options
        assert isinstance(opts, StemSplitOptions)
        if self._key is None:
            raise ConfigError(NO_KEY)
        return StemSplitClient(self._key, base_url=opts.base_url, retry=self._retry, timeout=self._timeout)

    # -- the lifecycle's hooks ----------------------------------------------------------------------------
    def _client(self, options: StemSplitOptions) -> AsyncStemSplitClient:
        if self._key is None:
            raise ConfigError(NO_KEY)
        return AsyncStemSplitClient(
            self._key, base_url=options.base_url, retry=self._retry, timeout=self._timeout, limits=self._limits
        )

    def _transport(self, client: AsyncStemSplitClient) -> Any:
        return client.transport

    async def _submit(self, client: AsyncStemSplitClient, job: SeparationJob, upload: Path | None) -> Submission:
        """Create the job under the ledger's idempotency key (the same on every try of this request).

        The upload is noted in the ledger before the job is created, so that a try after a crash between the
        two sends the very same body (same ``uploadKey``) under the same key: StemSplit answers it with the job
        it already created, instead of a second, billed one. An upload it no longer knows is made again.
        """
        opts: StemSplitOptions = job.options
        src = job.source
        common: dict[str, Any] = {
            "output_type": _TYPE_FOR[frozenset(job.combination)],
            "quality": opts.quality.upper(),
            "output_format": opts.format.upper(),
            "idempotency_key": job.idempotency_key or True,
        }
        timings: dict[str, float] = {}
        if src.kind == "youtube":
            created = await client.create_youtube_job(str(src.url), **common)
        elif upload is None:
            created = await client.create_job(source_url=str(src.url), **common)
        else:
            created = await self._create_from_upload(client, job, upload, common, timings)
        replayed = client.transport.last_replayed  # the job an earlier, interrupted try created
        return Submission(created.id, snapshot(created, created=True), timings, replayed=replayed)

    async def _create_from_upload(
        self, client: AsyncStemSplitClient, job: SeparationJob, upload: Path, common: dict[str, Any],
        timings: dict[str, float],
    ) -> Job:  # fmt: skip
        upload_key, file_name = job.notes.get("upload_key"), job.notes.get("file_name")
        if isinstance(upload_key, str) and isinstance(file_name, str):  # an earlier try uploaded it already
            try:
                return await client.create_job(upload_key=upload_key, file_name=file_name, **common)
            except ProviderError as exc:
                if exc.status_code != 400 or exc.code != "INVALID_REQUEST":
                    raise
                # StemSplit no longer knows that upload, so no job was created from it: upload again.
        started = time.perf_counter()
        name = _upload_name(upload, job.source.name)
        job.progress("upload", 0.0, f"uploading {name}")
        ticket = await client.upload_file(upload, filename=name, progress=_upload_progress(job))
        timings["upload"] = time.perf_counter() - started
        await self._note(job, upload_key=ticket.upload_key, file_name=name)
        return await client.create_job(upload_key=ticket.upload_key, file_name=name, **common)

    async def _status(self, client: AsyncStemSplitClient, job: SeparationJob, job_id: str) -> JobSnapshot:
        get = client.get_youtube_job if job.source.kind == "youtube" else client.get_job
        return snapshot(await get(job_id))

    def _outputs(self, job: SeparationJob, final: JobSnapshot) -> Sequence[Output]:
        done: Job = final.raw
        outputs = require_outputs(done.outputs, job_id=done.id, provider=self.name)
        return [
            Output("mixture" if key == _MIXTURE_KEY else "stem", key, out.url) for key, out in outputs.items()
        ]

    def _result(
        self, job: SeparationJob, outcome: PollOutcome, stems: dict[str, Path], mixture: Path | None,
        timings: dict[str, float],
    ) -> RawResult:  # fmt: skip
        final: Job = outcome.snapshot.raw
        meta = final.audio_metadata
        analysis = {k: v for k, v in (("bpm", meta.bpm), ("key", meta.key)) if v is not None} if meta else {}
        extra: dict[str, Any] = {"output_type": _TYPE_FOR[frozenset(job.combination)], "polls": outcome.polls}
        if final.video_title:
            extra["video_title"] = final.video_title
        if final.credits_required is not None:
            extra["credits_required"] = final.credits_required
        return RawResult(
            stems=stems,
            model=f"stemsplit/{job.options.quality}",
            job_id=final.id,
            timings=timings,
            cost=Cost(float(final.credits_charged), "seconds") if final.credits_charged is not None else None,
            analysis=analysis,
            mixture=mixture,
            extra=extra,
        )


def _upload_name(path: Path, name: str) -> str:
    """The file name the job records: the user's own name when it had one, else the temp file's."""
    candidate = Path(name).name
    return candidate if Path(candidate).suffix.lower() == path.suffix.lower() else path.name


def _upload_progress(job: SeparationJob) -> Callable[[int, int | None], None]:
    def report(done: int, total: int | None) -> None:
        job.progress("upload", done / total if total else None)

    return report
