"""The emulator's HTTP face: the StemSplit API under /api/v1, presigned storage under /storage."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import anyio
import anyio.to_thread
import httpx
import numpy as np
import soundfile as sf
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stemkit.hosted.emulator import FaultMiddleware, RequestRecorder, StreamedFile, read_body_to
from stemkit.hosted.faults import MIDDLEWARE_FAULTS, check_supported
from stemkit_stemsplit._wire import OUTPUT_TYPES as STEMS_OF
from stemkit_stemsplit.emulator._analysis import analyse
from stemkit_stemsplit.emulator._model import (
    FORMATS,
    INPUT_SUFFIXES,
    OUTPUT_TYPES,
    QUALITIES,
    STATUSES,
    Delivery,
    EmulatorConfig,
    JobRecord,
    State,
    Upload,
    WebhookRecord,
    iso,
    now,
)
from stemkit_stemsplit.webhooks import compute_signature

__all__ = ["API_PATH", "FAULT_KINDS", "build_app"]

API_PATH = "/api/v1"
#: The faults this emulator fires: the kit middleware's, plus the job and storage faults it places itself.
#: It serves no archives, so ``corrupt-zip`` and ``hostile-zip`` are refused.
FAULT_KINDS = MIDDLEWARE_FAULTS | {"drop-download", "fail-job", "expire-job", "expire-urls"}
_YOUTUBE_HOSTS = {"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com", "youtu.be"}
_EXT = {"WAV": "wav", "MP3": "mp3", "FLAC": "flac"}
_STORAGE_MAX = 5 * 1024**3
_MIME = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"code": self.code, "message": self.message, **self.extra}}, self.status)


def _xml_error(status: int, code: str, message: str) -> Response:
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return Response(body, status, media_type="application/xml")


class _ApiGate:
    """For every /api/v1 request: a request id, the rate limit (headers on every answer), authentication."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PATH):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization", "")
        token = auth.partition(" ")[2].strip() if auth.lower().startswith("bearer ") else ""
        allowed, extra = self.state.hit(token or f"ip:{(scope.get('client') or ('?',))[0]}")
        extra["X-Request-Id"] = "req_" + secrets.token_hex(8)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *_raw(extra)]}
            await send(message)

        error = self._authenticate(auth, token)
        if error is None and not allowed:
            retry = extra["Retry-After"]
            error = ApiError(429, "RATE_LIMIT_EXCEEDED", f"Rate limit exceeded. Try again in {retry} seconds.")
        if error is not None:
            await error.response()(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _authenticate(self, auth: str, token: str) -> ApiError | None:
        if not auth:
            return ApiError(
                401, "MISSING_API_KEY", "Missing API key. Include 'Authorization: Bearer sk_live_xxx' header."
            )
        if not token:
            return ApiError(401, "INVALID_API_KEY", "Invalid API key. Use 'Authorization: Bearer <key>'.")
        if token in self.state.config.revoked_keys:
            return ApiError(403, "API_KEY_REVOKED", "This API key has been revoked. Create a new one in Settings.")
        if not hmac.compare_digest(token.encode(), self.state.config.api_key.encode()):
            return ApiError(401, "INVALID_API_KEY", "Invalid API key.")
        return None


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def _origin(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "INVALID_REQUEST", "The request body must be JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_REQUEST", "The request body must be a JSON object.")
    return body


def _enum(body: dict[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = body.get(key, default)
    if value not in allowed:
        raise ApiError(400, "INVALID_REQUEST", f"{key} must be one of {', '.join(allowed)}.")
    return str(value)


class Emulator:
    """Routes and background work over one :class:`State`."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.config: EmulatorConfig = state.config
        self.tasks: set[asyncio.Task[None]] = set()

    # -- plumbing -----------------------------------------------------------------------------------------
    def endpoint(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                return exc.response()

        return wrapped

    async def idempotent(
        self, request: Request, body: dict[str, Any], create: Callable[[], Awaitable[tuple[int, dict[str, Any]]]]
    ) -> Response:
        """Same Idempotency-Key + same body → the first answer again (nothing created or charged twice)."""
        key = request.headers.get("idempotency-key")
        if not key:
            status, payload = await create()
            return JSONResponse(payload, status)
        scoped = f"{request.url.path}\n{key}"
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        if scoped in self.state.idempotency:
            seen, status, payload = self.state.idempotency[scoped]
            if seen != digest:
                raise ApiError(409, "IDEMPOTENCY_KEY_REUSED", "This Idempotency-Key was used with another body.")
            return JSONResponse(payload, status, headers={"Idempotent-Replayed": "true"})
        status, payload = await create()
        if status < 300:
            self.state.idempotency[scoped] = (digest, status, payload)
        return JSONResponse(payload, status)

    def spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- /upload ------------------------------------------------------------------------------------------
    async def upload(self, request: Request) -> Response:
        body = await _json_body(request)
        filename = body.get("filename")
        if not isinstance(filename, str) or not filename.strip():
            raise ApiError(400, "INVALID_REQUEST", "filename is required (e.g. 'song.mp3').")
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename).name) or "input"
        ctype = body.get("contentType") or _MIME.get(Path(safe).suffix.lstrip(".").lower(), "application/octet-stream")
        key = f"uploads/api_{secrets.token_hex(6)}/{safe}"
        url, expires_at = self.state.presign(_origin(request), "PUT", key, self.config.upload_url_ttl)
        self.state.uploads[key] = Upload(key, filename, str(ctype), self.state.storage / key)
        max_mb = self.config.max_file_bytes // (1024 * 1024)
        return JSONResponse(
            {
                "uploadUrl": url,
                "uploadKey": key,
                "expiresAt": expires_at,
                "maxFileSizeBytes": self.config.max_file_bytes,
                "maxFileSizeMb": max_mb,
                "contentType": ctype,
                "instructions": {
                    "step1": f"PUT your file to uploadUrl with Content-Type: {ctype}",
                    "step2": "POST /api/v1/jobs with the uploadKey",
                    "note": f"The URL expires in 15 minutes. Maximum file size is {max_mb} MB.",
                },
            }
        )

    # -- /jobs --------------------------------------------------------------------------------------------
    async def create_job(self, request: Request) -> Response:
        body = await _json_body(request)
        return await self.idempotent(request, body, lambda: self._create_job(body, _origin(request)))

    async def _create_job(self, body: dict[str, Any], origin: str) -> tuple[int, dict[str, Any]]:
        upload_key, source_url = body.get("uploadKey"), body.get("sourceUrl")
        if (upload_key is None) == (source_url is None):
            raise ApiError(400, "INVALID_REQUEST", "Provide exactly one of uploadKey or sourceUrl.")
        output_type = _enum(body, "outputType", OUTPUT_TYPES, "BOTH")
        quality = _enum(body, "quality", QUALITIES, "BEST")
        output_format = _enum(body, "outputFormat", FORMATS, "MP3")
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise ApiError(400, "INVALID_REQUEST", "metadata must be an object.")
        if upload_key is not None:
            upload = self.state.uploads.get(str(upload_key))
            if upload is None or upload.size is None:
                raise ApiError(400, "INVALID_REQUEST", "uploadKey is unknown, or its file was never PUT.")
            path, name = upload.path, str(body.get("fileName") or upload.filename)
        else:
            path = await self._fetch_source(str(source_url))
            name = str(body.get("fileName") or Path(urlparse(str(source_url)).path).name or "audio")
        duration, size = await self._probe(path, name)
        required = math.ceil(duration)
        if required > self.state.credits:
            raise ApiError(
                402,
                "INSUFFICIENT_CREDITS",
                "Not enough credits for this job.",
                requiredSeconds=required,
                purchaseUrl=self.config.purchase_url,
            )
        self.state.charge(required)
        job = self._new_job("stem", output_type, quality, output_format, name, path, duration, size, metadata, origin)
        job.credits_required = required
        return 201, self.state.created_json(job)

    def _new_job(
        self,
        kind: str,
        output_type: str,
        quality: str,
        output_format: str,
        name: str,
        path: Path | None,
        duration: float | None,
        size: int | None,
        metadata: dict[str, Any] | None,
        origin: str,
    ) -> JobRecord:
        estimate = round(self.config.queue_delay + self.config.processing_seconds)
        job = JobRecord(
            State.new_id("job"), kind, output_type, quality, output_format, name, path, duration, size,
            metadata, None, estimate, origin,
        )  # fmt: skip
        faults = self.config.faults
        if fault := faults.fire("fail-job"):
            job.ending, job.fault_message = "fail", str(fault["message"])
        elif faults.fire("expire-job"):
            job.ending = "expire"
        self.state.jobs[job.id] = job
        self.spawn(self._process(job))
        return job

    async def _fetch_source(self, url: str) -> Path:
        if urlparse(url).scheme not in ("http", "https"):
            raise ApiError(400, "INVALID_REQUEST", "sourceUrl must be an http(s) URL.")
        dest = self.state.storage / "sources" / secrets.token_hex(8) / (Path(urlparse(url).path).name or "audio")
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            async with httpx.AsyncClient(timeout=30, follow_redirects=True) as client, client.stream("GET", url) as r:
                if r.status_code != 200:
                    raise ApiError(400, "INVALID_REQUEST", f"sourceUrl answered HTTP {r.status_code}.")
                size = 0
                async with await anyio.open_file(dest, "wb") as out:
                    async for chunk in r.aiter_bytes():
                        size += len(chunk)
                        if size > self.config.max_file_bytes:
                            raise ApiError(400, "FILE_TOO_LARGE", self._too_large())
                        await out.write(chunk)
        except httpx.HTTPError as exc:
            raise ApiError(400, "INVALID_REQUEST", f"sourceUrl could not be fetched: {type(exc).__name__}") from None
        return dest

    def _too_large(self) -> str:
        return f"File exceeds the maximum size of {self.config.max_file_bytes // (1024 * 1024)} MB."

    async def _probe(self, path: Path, name: str) -> tuple[float, int]:
        size = path.stat().st_size
        if size > self.config.max_file_bytes:
            raise ApiError(400, "FILE_TOO_LARGE", self._too_large())
        if Path(name).suffix.lower() not in INPUT_SUFFIXES and path.suffix.lower() not in INPUT_SUFFIXES:
            raise ApiError(
                400, "UNSUPPORTED_FORMAT", "Unsupported format. Use MP3, WAV, FLAC, M4A, AAC, OGG, Opus or WebM."
            )
        try:
            info = await anyio.to_thread.run_sync(sf.info, str(path))
        except (sf.LibsndfileError, RuntimeError):
            raise ApiError(400, "UNSUPPORTED_FORMAT", "The file could not be decoded as audio.") from None
        duration = float(info.frames) / float(info.samplerate)
        if duration > self.config.max_duration_seconds:
            raise ApiError(400, "AUDIO_TOO_LONG", "Audio exceeds the maximum duration of 60 minutes.")
        if duration < self.config.min_duration_seconds:
            raise ApiError(
                400, "AUDIO_TOO_SHORT", f"Audio is shorter than the minimum of {self.config.min_duration_seconds:g} s."
            )
        return duration, size

    async def get_job(self, request: Request) -> Response:
        job = self.state.jobs.get(request.path_params["id"])
        kind = "youtube" if request.url.path.startswith(f"{API_PATH}/youtube-jobs") else "stem"
        if job is None or job.kind != kind:
            raise ApiError(404, "JOB_NOT_FOUND", "Job not found.")
        return JSONResponse(self.state.detail_json(job, _origin(request)))

    async def list_jobs(self, request: Request) -> Response:
        kind = "youtube" if request.url.path.startswith(f"{API_PATH}/youtube-jobs") else "stem"
        query = request.query_params
        try:
            limit, offset = int(query.get("limit", "20")), int(query.get("offset", "0"))
        except ValueError:
            raise ApiError(400, "INVALID_REQUEST", "limit and offset must be integers.") from None
        if not 1 <= limit <= 100 or offset < 0:
            raise ApiError(400, "INVALID_REQUEST", "limit must be 1-100 and offset 0 or more.")
        status = query.get("status")
        if status is not None and status not in STATUSES:
            raise ApiError(400, "INVALID_REQUEST", f"status must be one of {', '.join(STATUSES)}.")
        jobs = [j for j in self.state.jobs.values() if j.kind == kind and (status is None or j.status == status)]
        jobs.sort(key=lambda j: j.created_at, reverse=True)
        page = jobs[offset : offset + limit]
        return JSONResponse(
            {
                "jobs": [self.state.list_item_json(j) for j in page],
                "pagination": {
                    "total": len(jobs),
                    "limit": limit,
                    "offset": offset,
                    "hasMore": offset + limit < len(jobs),
                },
            }
        )

    # -- /youtube-jobs ------------------------------------------------------------------------------------
    async def create_youtube_job(self, request: Request) -> Response:
        body = await _json_body(request)
        return await self.idempotent(request, body, lambda: self._create_youtube_job(body, _origin(request)))

    async def _create_youtube_job(self, body: dict[str, Any], origin: str) -> tuple[int, dict[str, Any]]:
        url = body.get("youtubeUrl")
        video_id = _video_id(url) if isinstance(url, str) else None
        if video_id is None:
            raise ApiError(400, "INVALID_YOUTUBE_URL", "youtubeUrl must be a YouTube video URL.")
        output_type = _enum(body, "outputType", OUTPUT_TYPES, "BOTH")
        quality = _enum(body, "quality", QUALITIES, "BEST")
        output_format = _enum(body, "outputFormat", FORMATS, "MP3")
        source, duration, size, required = self.config.youtube_file, None, None, None
        if source is not None:
            duration, size = await self._probe(source, source.name)
            required = math.ceil(duration)
            if required > self.state.credits:
                raise ApiError(
                    402, "INSUFFICIENT_CREDITS", "Not enough credits for this job.",
                    requiredSeconds=required, purchaseUrl=self.config.purchase_url,
                )  # fmt: skip
            self.state.charge(required)
        job = self._new_job(
            "youtube", output_type, quality, output_format, f"{video_id}.audio", source, duration, size,
            body.get("metadata") if isinstance(body.get("metadata"), dict) else None, origin,
        )  # fmt: skip
        job.credits_required, job.youtube_url, job.video_id = required, str(url), video_id
        return 201, self.state.created_json(job)

    # -- /balance, /webhooks ------------------------------------------------------------------------------
    async def balance(self, request: Request) -> Response:
        return JSONResponse(self.state.balance_json())

    async def create_webhook(self, request: Request) -> Response:
        body = await _json_body(request)

        async def create() -> tuple[int, dict[str, Any]]:
            url = body.get("url")
            if not isinstance(url, str) or urlparse(url).scheme not in ("http", "https"):
                raise ApiError(400, "INVALID_REQUEST", "url must be an http(s) URL.")
            events = body.get("events", ["job.completed", "job.failed"])
            if (
                not isinstance(events, list)
                or not events
                or any(e not in ("job.completed", "job.failed") for e in events)
            ):
                raise ApiError(400, "INVALID_REQUEST", "events must be a list of job.completed, job.failed.")
            hook = WebhookRecord(State.new_id("wh"), url, [str(e) for e in events], "whsec_" + secrets.token_hex(24))
            self.state.webhooks[hook.id] = hook
            return 201, hook.to_json(with_secret=True)

        return await self.idempotent(request, body, create)

    async def list_webhooks(self, request: Request) -> Response:
        return JSONResponse({"webhooks": [h.to_json() for h in self.state.webhooks.values()]})

    async def delete_webhook(self, request: Request) -> Response:
        if self.state.webhooks.pop(request.path_params["id"], None) is None:
            raise ApiError(404, "WEBHOOK_NOT_FOUND", "Webhook not found.")
        return JSONResponse({"deleted": True})

    # -- presigned storage --------------------------------------------------------------------------------
    async def storage(self, request: Request) -> Response:
        key = unquote(request.path_params["key"])
        if "authorization" in request.headers:
            self.state.storage_auth_rejections += 1
            return _xml_error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query "
                "string parameter or the Authorization header should be specified",
            )
        query = {k: v[0] for k, v in parse_qs(request.url.query).items()}
        problem = self.state.check_presigned(request.method, key, query)
        if problem == "ExpiredRequest":
            return _xml_error(403, "AccessDenied", "Request has expired")
        if problem is not None:
            return _xml_error(
                403, problem, "The request signature we calculated does not match the signature you provided."
            )
        path = self.state.storage / key
        if request.method == "PUT":
            return await self._put_object(request, key, path)
        if not path.is_file():
            return _xml_error(404, "NoSuchKey", "The specified key does not exist.")
        drop = self.config.faults.fire("drop-download", path=request.url.path) if request.method == "GET" else None
        media = _MIME.get(path.suffix.lstrip("."), "application/octet-stream")
        return StreamedFile(path, media_type=media, cut_after=float(drop["after"]) if drop else None)

    async def _put_object(self, request: Request, key: str, path: Path) -> Response:
        upload = self.state.uploads.get(key)
        if upload is None:
            return _xml_error(403, "AccessDenied", "Access Denied")
        declared = request.headers.get("content-length")
        if declared is None:
            return _xml_error(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
        if int(declared) > _STORAGE_MAX:
            return _xml_error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        # Like S3, storage takes any size; the API refuses files over maxFileSizeBytes when the job is created.
        size = await read_body_to(request.receive, tmp, limit=_STORAGE_MAX)
        if size < 0 or size != int(declared):
            tmp.unlink(missing_ok=True)
            return _xml_error(
                400,
                "IncompleteBody",
                "You did not provide the number of bytes specified by the Content-Length HTTP header",
            )
        tmp.replace(path)
        upload.size = size
        return Response(status_code=200, headers={"ETag": f'"{secrets.token_hex(16)}"'})

    # -- the work -----------------------------------------------------------------------------------------
    async def _process(self, job: JobRecord) -> None:
        await anyio.sleep(self.config.queue_delay)
        job.status, job.started_at, job.started_clock = "PROCESSING", now(), time.monotonic()
        outputs: dict[str, Path] = {}
        analysis: dict[str, Any] | None = None
        error: str | None = None
        if job.ending is None:
            if job.source is None:
                error = (
                    "The emulator cannot reach YouTube. Start it with --option youtube_file=PATH to serve a "
                    "local file for YouTube jobs."
                )
            else:
                try:
                    outputs, analysis = await anyio.to_thread.run_sync(self._separate, job)
                except Exception as exc:
                    error = f"Separation failed: {exc}"
        remaining = self.config.processing_seconds - (time.monotonic() - (job.started_clock or 0.0))
        if remaining > 0:
            await anyio.sleep(remaining)
        if job.ending == "expire":
            self._finish(job, "EXPIRED", refund=True)
        elif job.ending == "fail" or error is not None:
            job.error_message = job.fault_message or error
            self._finish(job, "FAILED", refund=True)
        else:
            job.outputs, job.audio_metadata = outputs, analysis
            job.credits_charged = job.credits_required or 0
            self._finish(job, "COMPLETED", refund=False)
        event = {"COMPLETED": "job.completed", "FAILED": "job.failed"}.get(job.status)
        if event is not None:
            await self._deliver(job, event)

    def _finish(self, job: JobRecord, status: str, *, refund: bool) -> None:
        if refund and job.credits_required:
            self.state.charge(-job.credits_required)
        job.status, job.completed_at, job.completed_clock = status, now(), time.monotonic()

    def _separate(self, job: JobRecord) -> tuple[dict[str, Path], dict[str, Any]]:
        """Real stems from the dsp provider, in the requested format (runs in a worker thread)."""
        import stemkit
        from stemkit.audio import write_audio_atomic

        assert job.source is not None
        ext = _EXT[job.output_format]
        folder = self.state.storage / "outputs" / job.id
        names = STEMS_OF[job.output_type]
        dsp_names = [n for n in names if n not in ("piano", "guitar")]
        stems = stemkit.separate(job.source, provider="dsp", stems=dsp_names)
        rate = int(next(iter(stems.values())).sample_rate)
        out: dict[str, Path] = {}
        for name in names:
            # dsp has no piano or guitar model: in a SIX_STEMS job they come back silent, "other" keeps them
            audio = stems[name].audio if name in stems else np.zeros_like(stems["other"].audio)
            out[name] = write_audio_atomic(folder / f"{name}.{ext}", audio, rate, ext)
        mixture = (
            stems.mixture.audio if stems.mixture is not None else np.sum([s.audio for s in stems.values()], axis=0)
        )
        if job.kind == "youtube":
            out["fullAudio"] = write_audio_atomic(folder / f"full_audio.{ext}", mixture, rate, ext)
        return out, analyse(np.asarray(mixture), rate)

    async def _deliver(self, job: JobRecord, event: str) -> None:
        hooks = [h for h in self.state.webhooks.values() if h.is_active and event in h.events]
        if not hooks:
            return
        data = {
            "jobId": job.id,
            "status": job.status,
            "type": job.kind,
            "input": self.state.job_input(job) if job.kind == "stem" else {"youtubeUrl": job.youtube_url},
            "options": self.state.job_options(job),
            "outputs": self.state.outputs_json(job, job.origin),
            "creditsCharged": job.credits_charged,
            "errorMessage": job.error_message,
            "createdAt": iso(job.created_at),
            "completedAt": iso(job.completed_at),
        }
        body = json.dumps({"event": event, "timestamp": iso(now()), "data": data}, separators=(",", ":")).encode()
        async with httpx.AsyncClient(timeout=self.config.webhook_timeout) as client:
            for hook in hooks:
                signature = compute_signature(body, hook.secret)
                status: int | None = None
                error: str | None = None
                try:
                    response = await client.post(
                        hook.url,
                        content=body,
                        headers={
                            "Content-Type": "application/json",
                            "X-Webhook-Signature": signature,
                            "X-Webhook-Event": event,
                            "User-Agent": "StemSplit-Webhooks/1.0 (stemkit emulator)",
                        },
                    )
                    status = response.status_code
                    if not response.is_success:
                        error = f"HTTP {status}"
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                hook.last_called_at = now()
                if error is not None:
                    hook.fail_count += 1
                    hook.last_error = error
                self.state.deliveries.append(Delivery(hook.url, event, body, signature, status, error))


def _video_id(url: str) -> str | None:
    parsed = urlparse(url)
    host = (parsed.hostname or "").lower()
    if parsed.scheme not in ("http", "https") or host not in _YOUTUBE_HOSTS:
        return None
    if host == "youtu.be":
        vid = parsed.path.strip("/")
    elif parsed.path.startswith("/shorts/"):
        vid = parsed.path.split("/")[2] if len(parsed.path.split("/")) > 2 else ""
    else:
        vid = parse_qs(parsed.query).get("v", [""])[0]
    return vid if re.fullmatch(r"[A-Za-z0-9_-]{6,20}", vid) else None


def build_app(state: State) -> tuple[RequestRecorder, Emulator]:
    """The full stack: RequestRecorder(FaultMiddleware(ApiGate(router))).

    Its lifespan shutdown stops the background jobs and removes the storage folder (when the emulator
    created it), so ``stemkit emulate stemsplit`` leaves nothing behind however it is stopped.
    """
    check_supported(state.config.faults, FAULT_KINDS, emulator="stemsplit")
    emu = Emulator(state)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            for task in list(emu.tasks):
                task.cancel()
            for task in list(emu.tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            state.close()

    api = API_PATH
    e = emu.endpoint
    routes = [
        Route(f"{api}/upload", e(emu.upload), methods=["POST"]),
        Route(f"{api}/jobs", e(emu.create_job), methods=["POST"]),
        Route(f"{api}/jobs", e(emu.list_jobs), methods=["GET"]),
        Route(f"{api}/jobs/{{id}}", e(emu.get_job), methods=["GET"]),
        Route(f"{api}/youtube-jobs", e(emu.create_youtube_job), methods=["POST"]),
        Route(f"{api}/youtube-jobs", e(emu.list_jobs), methods=["GET"]),
        Route(f"{api}/youtube-jobs/{{id}}", e(emu.get_job), methods=["GET"]),
        Route(f"{api}/balance", e(emu.balance), methods=["GET"]),
        Route(f"{api}/webhooks", e(emu.create_webhook), methods=["POST"]),
        Route(f"{api}/webhooks", e(emu.list_webhooks), methods=["GET"]),
        Route(f"{api}/webhooks/{{id}}", e(emu.delete_webhook), methods=["DELETE"]),
        Route("/storage/{key:path}", emu.storage, methods=["GET", "HEAD", "PUT"]),
    ]
    router = Starlette(routes=routes, lifespan=lifespan)

    def injected(status: int, kind: str, retry_after: float | None) -> Response:
        codes = {429: "RATE_LIMIT_EXCEEDED", 403: "API_KEY_REVOKED"}
        code = codes.get(status, "INTERNAL_ERROR" if status >= 500 else "ERROR")
        message = {
            "RATE_LIMIT_EXCEEDED": f"Rate limit exceeded. Try again in {retry_after or 0:g} seconds.",
            "API_KEY_REVOKED": "This API key has been revoked.",
        }.get(code, "Internal server error (injected fault).")
        headers = {"X-Request-Id": "req_" + secrets.token_hex(8)}
        if retry_after is not None:
            headers["Retry-After"] = str(math.ceil(retry_after))
        if status == 429:
            headers.update(
                {"X-RateLimit-Limit": str(state.config.rate_limit), "X-RateLimit-Remaining": "0",
                 "X-RateLimit-Reset": str(math.ceil(time.time() + (retry_after or 0)))}
            )  # fmt: skip
        return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)

    faulty = FaultMiddleware(
        _ApiGate(router, state),
        state.config.faults,
        applies=lambda scope: str(scope["path"]).startswith(api),
        error=injected,
    )
    recorder = RequestRecorder(faulty)
    return recorder, emu
