"""The ``stemsplit`` provider: StemSplit's hosted API behind stemkit's Separator protocol.

Spec: ``stemsplit?quality=fast|balanced|best&format=mp3|wav|flac&base_url=...``; the key comes from
``STEMSPLIT_API_KEY`` or ``api_key=``, the base URL from ``base_url=``, ``STEMSPLIT_BASE_URL`` or production.

A local file is uploaded (presigned PUT, streamed from disk); an http(s) URL is passed as ``sourceUrl``; a
YouTube URL becomes a ``/youtube-jobs`` job whose ``fullAudio`` is the StemSet's mixture. The requested stems
pick the smallest ``outputType`` covering them; the core derives the rest.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import anyio
import httpx
from pydantic import BaseModel, ConfigDict

from stemkit.errors import ConfigError, ProtocolError
from stemkit.hosted import (
    JobSnapshot,
    PollOutcome,
    PollPolicy,
    PresignedURLRejected,
    RetryPolicy,
    Secret,
    apoll_job,
    poll_job,
)
from stemkit.protocol import Capabilities
from stemkit.provenance import Cost
from stemkit.provider import RawResult, SeparationJob, SeparatorBase
from stemkit_stemsplit._wire import OUTPUT_TYPES, Job, OutputFile
from stemkit_stemsplit.client import AsyncStemSplitClient, StemSplitClient

__all__ = ["StemSplitOptions", "StemSplitSeparator"]

_TYPE_FOR: dict[frozenset[str], str] = {frozenset(stems): name for name, stems in OUTPUT_TYPES.items()}
_STATE = {"PENDING": "queued", "PROCESSING": "processing", "COMPLETED": "completed", "FAILED": "failed"}
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
        state=_STATE.get(job.status, "expired"),  # type: ignore[arg-type]
        fraction=job.progress / 100 if job.status == "PROCESSING" else None,
        eta_seconds=float(job.estimated_seconds) if created and job.estimated_seconds else None,
        message=job.error_message or f"job {job.id} {job.status.lower()} {job.progress}%",
        raw=job,
    )


def _file_name(url: str, name: str, fmt: str) -> str:
    suffix = Path(urlparse(url).path).suffix
    return f"{name}{suffix or '.' + fmt}"


class StemSplitSeparator(SeparatorBase):
    """StemSplit (https://stemsplit.io) as a stemkit provider; sync and async on one httpx transport."""

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
    ) -> None:
        super().__init__(target, options)
        if target is not None:
            raise ConfigError(f"stemsplit takes no target (got {target!r}); use stemsplit?quality=best&format=flac")
        key = api_key if api_key is not None else os.environ.get("STEMSPLIT_API_KEY")
        self._key: Secret | None = (key if isinstance(key, Secret) else Secret(key)) if key else None
        self._retry, self._poll, self._timeout = retry, poll, timeout
        self._clients: dict[str, StemSplitClient] = {}

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

    # -- clients ------------------------------------------------------------------------------------------
    def _client_args(self, options: StemSplitOptions) -> dict[str, Any]:
        if self._key is None:
            raise ConfigError(
                "stemsplit: no API key; set STEMSPLIT_API_KEY or pass api_key= "
                "(get one at https://stemsplit.io/app/settings/api)"
            )
        return {"base_url": options.base_url, "retry": self._retry, "timeout": self._timeout}

    def client(self, options: StemSplitOptions | None = None) -> StemSplitClient:
        """The separator's sync client (kept open until :meth:`close`), for the API's extras."""
        opts = options or self.options
        assert isinstance(opts, StemSplitOptions)
        args = self._client_args(opts)
        key = opts.base_url or ""
        if key not in self._clients:
            self._clients[key] = StemSplitClient(self._key, **args)
        return self._clients[key]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        super().close()

    # -- sync ---------------------------------------------------------------------------------------------
    def _separate(self, job: SeparationJob) -> RawResult:
        opts: StemSplitOptions = job.options
        client = self.client(opts)
        timings: dict[str, float] = {}
        src, output_type = job.source, _TYPE_FOR[frozenset(job.combination)]
        fetch: Callable[[], Job]
        if src.kind == "youtube":
            created = client.create_youtube_job(
                str(src.url), output_type=output_type, quality=opts.quality.upper(), output_format=opts.format.upper()
            )
            fetch = lambda: client.get_youtube_job(created.id)  # noqa: E731
        else:
            if src.kind == "url":
                created = client.create_job(
                    source_url=str(src.url),
                    output_type=output_type,
                    quality=opts.quality.upper(),
                    output_format=opts.format.upper(),
                )
            else:
                started = time.perf_counter()
                name = _upload_name(src.path, src.name)
                job.progress("upload", 0.0, f"uploading {name}")
                ticket = client.upload_file(src.path, filename=name, progress=_upload_progress(job))
                timings["upload"] = time.perf_counter() - started
                created = client.create_job(
                    upload_key=ticket.upload_key,
                    file_name=name,
                    output_type=output_type,
                    quality=opts.quality.upper(),
                    output_format=opts.format.upper(),
                )
            fetch = lambda: client.get_job(created.id)  # noqa: E731
        outcome = poll_job(
            snapshot(created, created=True), lambda: snapshot(fetch()), provider=self.name, report=job.progress,
            deadline=job.deadline, policy=self._poll,
        )  # fmt: skip
        started = time.perf_counter()
        final: Job = outcome.snapshot.raw
        outputs = dict(_outputs(final))
        files: dict[str, Path] = {}
        for attempt in (1, 2):
            try:
                for name, out in outputs.items():
                    if name not in files:
                        job.progress("download", len(files) / len(outputs), f"downloading {name}")
                        files[name] = client.download(out.url, job.workdir / _file_name(out.url, name, opts.format))
                break
            except PresignedURLRejected:
                if attempt == 2:
                    raise
                outputs = dict(_outputs(fetch()))  # the URLs expired: one more GET mints fresh ones
        timings["download"] = time.perf_counter() - started
        return self._result(job, final, files, outcome, timings)

    # -- async --------------------------------------------------------------------------------------------
    async def _aseparate(self, job: SeparationJob) -> RawResult:
        opts: StemSplitOptions = job.options
        args = self._client_args(opts)
        timings: dict[str, float] = {}
        src, output_type = job.source, _TYPE_FOR[frozenset(job.combination)]
        async with AsyncStemSplitClient(self._key, **args) as client:
            fetch: Callable[[], Awaitable[Job]]
            if src.kind == "youtube":
                created = await client.create_youtube_job(
                    str(src.url),
                    output_type=output_type,
                    quality=opts.quality.upper(),
                    output_format=opts.format.upper(),
                )
                fetch = lambda: client.get_youtube_job(created.id)  # noqa: E731
            else:
                if src.kind == "url":
                    created = await client.create_job(
                        source_url=str(src.url),
                        output_type=output_type,
                        quality=opts.quality.upper(),
                        output_format=opts.format.upper(),
                    )
                else:
                    started = time.perf_counter()
                    path = await anyio.to_thread.run_sync(lambda: src.path)
                    name = _upload_name(path, src.name)
                    job.progress("upload", 0.0, f"uploading {name}")
                    ticket = await client.upload_file(path, filename=name, progress=_upload_progress(job))
                    timings["upload"] = time.perf_counter() - started
                    created = await client.create_job(
                        upload_key=ticket.upload_key,
                        file_name=name,
                        output_type=output_type,
                        quality=opts.quality.upper(),
                        output_format=opts.format.upper(),
                    )
                fetch = lambda: client.get_job(created.id)  # noqa: E731

            async def fetch_snapshot() -> JobSnapshot:
                return snapshot(await fetch())

            outcome = await apoll_job(
                snapshot(created, created=True), fetch_snapshot, provider=self.name, report=job.progress,
                deadline=job.deadline, policy=self._poll,
            )  # fmt: skip
            started = time.perf_counter()
            final: Job = outcome.snapshot.raw
            outputs = dict(_outputs(final))
            files: dict[str, Path] = {}

            async def get(name: str, out: OutputFile) -> None:
                files[name] = await client.download(out.url, job.workdir / _file_name(out.url, name, opts.format))
                job.progress("download", len(files) / len(outputs), f"downloaded {name}")

            for attempt in (1, 2):
                try:
                    async with anyio.create_task_group() as tg:
                        for name, out in outputs.items():
                            if name not in files:
                                tg.start_soon(get, name, out)
                    break
                except* PresignedURLRejected as group:
                    if attempt == 2:
                        raise group.exceptions[0] from None
                    outputs = dict(_outputs(await fetch()))
            timings["download"] = time.perf_counter() - started
        return self._result(job, final, files, outcome, timings)

    # -- shared -------------------------------------------------------------------------------------------
    def _result(
        self, job: SeparationJob, final: Job, files: dict[str, Path], outcome: PollOutcome, timings: dict[str, float]
    ) -> RawResult:
        timings["queue"], timings["process"] = outcome.queued_seconds, outcome.processing_seconds
        mixture = files.pop(_MIXTURE_KEY, None)
        stems = {name: path for name, path in files.items() if name in job.combination}
        missing = [s for s in job.combination if s not in stems]
        if missing:
            raise ProtocolError(
                f"stemsplit job {final.id} completed without the output(s) {', '.join(missing)}", provider=self.name
            )
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


def _outputs(job: Job) -> Mapping[str, OutputFile]:
    if not job.outputs:
        raise ProtocolError(f"stemsplit job {job.id} is COMPLETED but lists no outputs", provider="stemsplit")
    return job.outputs


def _upload_name(path: Path, name: str) -> str:
    """The file name the job records: the user's own name when it had one, else the temp file's."""
    candidate = Path(name).name
    return candidate if Path(candidate).suffix.lower() == path.suffix.lower() else path.name


def _upload_progress(job: SeparationJob) -> Callable[[int, int | None], None]:
    def report(done: int, total: int | None) -> None:
        job.progress("upload", done / total if total else None)

    return report
