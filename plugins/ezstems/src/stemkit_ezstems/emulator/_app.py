"""The EzStems emulator: an ASGI app that speaks the documented EzStems wire format.

It follows ``ezstems-api.txt``: PHP-style paths under ``/api/v1``, Bearer keys, the ``{"success": true,
"data": ...}`` envelope and ``{"error", "message"}`` errors, processing ids ``<timestamp>_<stems>``, a FIFO
queue whose waiting jobs report ``queue_position``, ZIP downloads, key management, 405 on a wrong method,
403 past a key's rate limit, and the size limit of the account's plan.

Where the document is silent the emulator chooses, and says so here:

- the rate limit counts calls per key in a sliding window (``rate_limit`` calls per ``rate_window`` seconds,
  default 600 per 60; refused calls do not count) and its 403 carries no ``Retry-After`` (the document
  mentions none);
- a file past the plan's limit, a bad ``stems``/``output`` value, an unsupported file type, or a download
  before completion answer 400 with an ``error`` and a ``message``; an unknown id answers 404;
- ``output`` is ``wav`` (16-bit PCM, the default) or ``mp3``; ``cutoff`` is accepted and recorded;
- the ZIP holds one folder named after the stored upload with ``<stem>.<ext>`` inside, as Spleeter writes it;
- ``POST keys.php`` (generate) accepts an active Bearer key in place of the website login the real service
  asks for, since an offline emulator has no website;
- the 5-stem piano stem is silence (see ``_backend``).

Emulator options (``stemkit emulate ezstems --option KEY=VALUE``): ``plan`` (basic, premium, pro, custom),
``rate_limit``, ``rate_window``, ``workers`` (jobs processed at once, default 2). A fault is limited to one
endpoint with the kit's ``path=`` filter, e.g. ``--fault 5xx:count=2,path=/status.php``.

Faults (``--fault``): ``403``/``forbidden`` and ``429``/``rate-limit`` storms, ``5xx``/``server-error``,
``latency``, ``truncate`` (an API response cut mid-body), ``drop-download`` (the ZIP cut mid-body),
``corrupt-zip:variant=damaged|cut``, ``hostile-zip:variant=...`` (see ``HOSTILE_VARIANTS``), ``fail-job``
(the job ends ``failed`` with ``message``) and ``expire-job`` (the job is forgotten when it completes:
status and download answer 404). It hands out no presigned URLs, so ``expire-urls`` (like any fault it does
not fire) is refused with a ``ConfigError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path, PurePath
from typing import Any, get_args

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from stemkit.errors import ConfigError
from stemkit.hosted.emulator import EmulatorSettings as KitSettings
from stemkit.hosted.emulator import FaultMiddleware, RequestRecorder, StreamedFile
from stemkit.hosted.faults import MIDDLEWARE_FAULTS, FaultPlan, check_supported
from stemkit_ezstems._service import PLAN_LIMITS, PLAN_TITLES, UPLOAD_FORMATS, Plan
from stemkit_ezstems.emulator._backend import OUTPUT_FORMATS, separate_to_files
from stemkit_ezstems.emulator._zips import (
    CORRUPT_VARIANTS,
    HOSTILE_VARIANTS,
    corrupt_copy,
    hostile_copy,
    write_zip,
)

__all__ = [
    "DEFAULT_API_KEY",
    "FAULT_KINDS",
    "PREFIX",
    "EmulatorRuntime",
    "EmulatorState",
    "EzStemsSettings",
    "build",
]

DEFAULT_API_KEY = "ezstems_test_emulator"
PREFIX = "/api/v1"
ENDPOINTS = ("upload", "status", "download", "keys")
_METHODS = {"upload": ("POST",), "status": ("GET",), "download": ("GET",), "keys": ("GET", "POST", "DELETE")}
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_ID = re.compile(r"^\d+_\d+$")
_MB = 1024 * 1024
#: The faults this emulator fires: the kit middleware's, plus the job and archive faults it places itself.
#: It hands out no presigned URLs, so ``expire-urls`` is refused.
FAULT_KINDS = MIDDLEWARE_FAULTS | {"drop-download", "fail-job", "expire-job", "corrupt-zip", "hostile-zip"}


@dataclass(frozen=True)
class EzStemsSettings:
    """The emulator's settings, from ``stemkit emulate``'s common ones plus its ``--option``s."""

    api_key: str = DEFAULT_API_KEY
    processing_seconds: float = 2.0
    plan: Plan = "basic"
    rate_limit: int = 600
    rate_window: float = 60.0
    workers: int = 2

    @classmethod
    def from_kit(cls, kit: KitSettings) -> EzStemsSettings:
        options = dict(kit.options)
        base = cls(
            api_key=kit.api_key or DEFAULT_API_KEY,
            processing_seconds=2.0 if kit.processing_seconds is None else kit.processing_seconds,
        )
        known = ("plan", "rate_limit", "rate_window", "workers")
        unknown = [k for k in options if k not in known]
        if unknown:
            raise ConfigError(f"ezstems emulator: unknown option(s) {', '.join(unknown)}; known: {', '.join(known)}")
        values: dict[str, Any] = {}
        try:
            if "plan" in options:
                if options["plan"] not in get_args(Plan):
                    raise ValueError(f"plan must be one of {', '.join(get_args(Plan))}")
                values["plan"] = options["plan"]
            for name, kind in (("rate_limit", int), ("rate_window", float), ("workers", int)):
                if name in options:
                    values[name] = kind(options[name])
                    if values[name] <= 0:
                        raise ValueError(f"{name} must be positive")
        except ValueError as exc:
            raise ConfigError(f"ezstems emulator: bad option: {exc}") from None
        return replace(base, **values)


def _check_faults(plan: FaultPlan) -> None:
    check_supported(plan, FAULT_KINDS, emulator="ezstems")
    for kind, variants in (("hostile-zip", HOSTILE_VARIANTS), ("corrupt-zip", CORRUPT_VARIANTS)):
        fault = plan.get(kind)
        if fault is not None and fault.params.get("variant") not in variants:
            raise ConfigError(
                f"ezstems emulator: {kind} variant {fault.params.get('variant')!r} is unknown; "
                f"known variants: {', '.join(variants)}"
            )


@dataclass
class KeyRecord:
    id: int
    key: str
    active: bool = True
    calls_count: int = 0
    created_at: str = ""
    last_used_at: str | None = None
    recent: deque[float] = field(default_factory=deque)

    def public(self, rate_limit: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "api_key": "********" + self.key[-8:],
            "is_active": int(self.active),
            "rate_limit": rate_limit,
            "calls_count": self.calls_count,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
        }


@dataclass
class Job:
    id: str
    stems: int
    filename: str
    upload: Path
    output: str
    cutoff: str | None
    created_at: str
    fail_message: str | None = None
    status: str = "queued"
    error: str | None = None
    archive: Path | None = None
    finished_at: float | None = None  # time.monotonic() when the job reached completed or failed


def _now() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def _ok(data: Any) -> JSONResponse:
    return JSONResponse({"success": True, "data": data})


def _error(status: int, error: str, message: str | None = None, headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"error": error}
    if message is not None:
        body["message"] = message
    return JSONResponse(body, status_code=status, headers=headers)


class EmulatorState:
    """Keys, jobs, the queue and the active faults of one emulator instance."""

    def __init__(self, settings: EzStemsSettings, faults: FaultPlan) -> None:
        self.settings = settings
        self.faults = faults
        self.keys: dict[str, KeyRecord] = {settings.api_key: KeyRecord(1, settings.api_key, created_at=_now())}
        self.jobs: dict[str, Job] = {}
        self.arrivals: Counter[tuple[str, str]] = Counter()
        self._ids: set[str] = set()
        self.pending: list[str] = []
        self._key_ids = itertools.count(2)
        self._lock = threading.Lock()
        self._tmp = tempfile.TemporaryDirectory(prefix="ezstems-emulator-")
        self.workdir = Path(self._tmp.name)
        self._queue: asyncio.Queue[str] | None = None
        self._running: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._paused = False
        self._finished = threading.Condition()

    # -- control, callable from any thread ------------------------------------------------------------
    def pause(self) -> None:
        """Hold jobs in ``processing`` until :meth:`resume` (tests observe queue positions this way)."""
        self._paused = True
        if self._loop is not None and self._running is not None:
            self._loop.call_soon_threadsafe(self._running.clear)

    def resume(self) -> None:
        self._paused = False
        if self._loop is not None and self._running is not None:
            self._loop.call_soon_threadsafe(self._running.set)

    def wait_finished(self, job_id: str, timeout: float = 30.0) -> Job:
        """Block until job ``job_id`` is completed or failed (for tests and benchmarks; never sleeps)."""

        def done() -> bool:
            job = self.jobs.get(job_id)
            return job is None or job.finished_at is not None

        with self._finished:
            if not self._finished.wait_for(done, timeout):
                raise TimeoutError(f"job {job_id} did not finish within {timeout} s")
        job = self.jobs.get(job_id)
        if job is None:
            raise KeyError(f"job {job_id} is unknown or expired")
        return job

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self._tmp.cleanup()

    # -- the queue ------------------------------------------------------------------------------------
    def enqueue(self, job: Job) -> None:
        if self._queue is None:
            self._loop = asyncio.get_running_loop()
            self._queue = asyncio.Queue()
            self._running = asyncio.Event()
            if not self._paused:
                self._running.set()
            self._tasks = [asyncio.create_task(self._work()) for _ in range(self.settings.workers)]
        self.jobs[job.id] = job
        self.pending.append(job.id)
        self._queue.put_nowait(job.id)

    async def _work(self) -> None:
        assert self._queue is not None
        assert self._running is not None
        while True:
            job = self.jobs[await self._queue.get()]
            self.pending.remove(job.id)
            job.status = "processing"
            started = time.monotonic()
            error: str | None = None
            try:
                if job.fail_message is not None:
                    error = job.fail_message
                else:
                    job.archive = await asyncio.to_thread(self._separate, job)
            except Exception as exc:
                error = f"Spleeter could not process the file: {exc}"
            remaining = self.settings.processing_seconds - (time.monotonic() - started)
            if remaining > 0:
                await asyncio.sleep(remaining)
            await self._running.wait()
            job.error = error
            job.status = "failed" if error else "completed"
            job.finished_at = time.monotonic()
            if self.faults.fire("expire-job"):
                del self.jobs[job.id]
            with self._finished:
                self._finished.notify_all()

    def _separate(self, job: Job) -> Path:
        out = self.workdir / f"{job.id}.out"
        out.mkdir()
        folder = PurePath(job.filename).stem
        files = separate_to_files(job.upload, job.stems, job.output, out)
        archive = self.workdir / f"{job.id}.zip"
        write_zip(archive, [(f"{folder}/{f.name}", f) for f in files])
        shutil.rmtree(out)
        job.upload.unlink(missing_ok=True)
        return archive

    def new_id(self, stems: int) -> str:
        """``<timestamp>_<stems>``, moved on a second when that id is taken (reserved at once)."""
        stamp = int(time.time())
        with self._lock:
            while f"{stamp}_{stems}" in self._ids:
                stamp += 1
            self._ids.add(f"{stamp}_{stems}")
        return f"{stamp}_{stems}"

    def queue_position(self, job: Job) -> int:
        return self.pending.index(job.id) + 1 if job.id in self.pending else 0

    # -- keys and limits ------------------------------------------------------------------------------
    def authenticate(self, request: Request) -> KeyRecord | Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _error(401, "Unauthorized", "API key is required: send 'Authorization: Bearer YOUR_API_KEY'")
        record = self.keys.get(token.strip())
        if record is None or not record.active:
            return _error(401, "Unauthorized", "Invalid or inactive API key")
        return record

    def admit(self, record: KeyRecord) -> Response | None:
        now = time.monotonic()
        with self._lock:
            while record.recent and record.recent[0] <= now - self.settings.rate_window:
                record.recent.popleft()
            if len(record.recent) >= self.settings.rate_limit:
                return self.rate_limited(403, None)
            record.recent.append(now)
            record.calls_count += 1
            record.last_used_at = _now()
        return None

    def rate_limited(self, status: int, retry_after: float | None) -> Response:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
        limit, window = self.settings.rate_limit, self.settings.rate_window
        return _error(
            status,
            "Rate limit exceeded",
            f"This API key is limited to {limit} requests per {window:g} seconds",
            headers,
        )

    def fault_response(self, status: int, kind: str, retry_after: float | None) -> Response:
        """The service's own error shape for a fault the kit's middleware injects."""
        if status in (403, 429):
            return self.rate_limited(status, retry_after)
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
        return _error(
            status, "Internal Server Error", "The server encountered an error processing the request", headers
        )


Handler = Callable[[Request, EmulatorState, KeyRecord], Awaitable[Response]]


async def _upload(request: Request, state: EmulatorState, key: KeyRecord) -> Response:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return _error(400, "Bad Request", "Send the upload as multipart/form-data with fields 'file' and 'stems'")
    async with request.form(max_files=1, max_fields=16) as form:
        upload = form.get("file")
        stems_value = form.get("stems")
        cutoff = form.get("cutoff")
        output = form.get("output") or "wav"
        if not isinstance(upload, UploadFile) or not upload.filename:
            return _error(400, "No file uploaded", "Send the audio file as the multipart field 'file'")
        if not isinstance(stems_value, str) or stems_value.strip() not in ("2", "4", "5"):
            return _error(400, "Invalid stems parameter", "stems must be 2, 4 or 5")
        suffix = PurePath(upload.filename).suffix.lower().lstrip(".")
        if suffix not in UPLOAD_FORMATS:
            return _error(400, "Unsupported file type", "Allowed file types: MP3, WAV, M4A")
        if not isinstance(output, str) or output.lower() not in OUTPUT_FORMATS:
            return _error(400, "Invalid output parameter", f"output must be one of: {', '.join(OUTPUT_FORMATS)}")
        limit = PLAN_LIMITS[state.settings.plan]
        if (upload.size or 0) > limit:
            title = PLAN_TITLES[state.settings.plan]
            return _error(400, "File too large", f"Maximum file size for your {title} plan is {limit // _MB} MB")
        stems = int(stems_value)
        job_id = state.new_id(stems)
        filename = f"{job_id}_{secrets.randbelow(90000) + 10000}.{suffix}"
        path = state.workdir / filename
        await asyncio.to_thread(_save, upload, path)
    fail = state.faults.fire("fail-job", path=request.url.path, method=request.method)
    state.enqueue(
        Job(
            id=job_id,
            stems=stems,
            filename=filename,
            upload=path,
            output=output.lower(),
            cutoff=cutoff if isinstance(cutoff, str) else None,
            created_at=_now(),
            fail_message=str(fail["message"]) if fail else None,
        )
    )
    return _ok(
        {
            "id": job_id,
            "filename": filename,
            "status": "queued",
            "stems": str(stems),
            "check_status_endpoint": f"{PREFIX}/status.php?id={job_id}",
        }
    )


def _save(upload: UploadFile, path: Path) -> None:
    upload.file.seek(0)
    with open(path, "wb") as sink:
        shutil.copyfileobj(upload.file, sink, _MB)


def _find_job(request: Request, state: EmulatorState) -> Job | Response:
    job_id = request.query_params.get("id")
    if not job_id:
        return _error(400, "Missing id parameter", "Pass the processing id as ?id=<timestamp>_<stems>")
    if not _ID.match(job_id):
        return _error(400, "Invalid id parameter", "The processing id has the format <timestamp>_<stems>")
    job = state.jobs.get(job_id)
    if job is None:
        return _error(404, "Not Found", f"No processing with id {job_id}")
    return job


async def _status(request: Request, state: EmulatorState, key: KeyRecord) -> Response:
    job = _find_job(request, state)
    if isinstance(job, Response):
        return job
    data: dict[str, Any] = {
        "id": job.id,
        "status": job.status,
        "queue_position": state.queue_position(job),
        "stems": job.stems,
        "created_at": job.created_at,
    }
    if job.status == "completed":
        data["download_url"] = f"{PREFIX}/download.php?id={job.id}"
    if job.status == "failed":
        data["error"] = job.error
    return _ok(data)


async def _download(request: Request, state: EmulatorState, key: KeyRecord) -> Response:
    job = _find_job(request, state)
    if isinstance(job, Response):
        return job
    if job.status != "completed" or job.archive is None:
        detail = f"Processing failed: {job.error}" if job.status == "failed" else f"Status is {job.status}"
        return _error(400, "Processing not complete", f"{detail}; the ZIP is available once status is completed")
    archive = job.archive
    headers = {"Content-Disposition": f'attachment; filename="{PurePath(job.filename).stem}_stems.zip"'}
    where = {"path": request.url.path, "method": request.method}
    if drop := state.faults.fire("drop-download", **where):
        return StreamedFile(archive, media_type="application/zip", headers=headers, cut_after=float(drop["after"]))
    for kind, make in (("corrupt-zip", corrupt_copy), ("hostile-zip", hostile_copy)):
        if fault := state.faults.fire(kind, **where):
            variant = str(fault["variant"])
            archive = state.workdir / f"{job.id}.{kind}.{variant}.zip"
            if not archive.exists():
                await asyncio.to_thread(make, job.archive, archive, variant)
            break
    return StreamedFile(archive, media_type="application/zip", headers=headers)


async def _keys(request: Request, state: EmulatorState, key: KeyRecord) -> Response:
    if request.method == "GET":
        return _ok([k.public(state.settings.rate_limit) for k in state.keys.values()])
    if request.method == "DELETE":
        key.active = False
        return JSONResponse({"success": True, "message": "API key deactivated successfully"})
    new = KeyRecord(next(state._key_ids), secrets.token_hex(32), created_at=_now())
    state.keys[new.key] = new
    return _ok({"api_key": new.key, "message": "Store this API key securely. It won't be shown again."})


_HANDLERS: dict[str, Handler] = {"upload": _upload, "status": _status, "download": _download, "keys": _keys}


def _endpoint(state: EmulatorState, endpoint: str) -> Callable[[Request], Awaitable[Response]]:
    handler = _HANDLERS[endpoint]
    allowed = _METHODS[endpoint]

    async def serve(request: Request) -> Response:
        if request.method not in allowed:
            message = f"Use {' or '.join(allowed)} for {endpoint}.php"
            return _error(405, "Method Not Allowed", message, {"Allow": ", ".join(allowed)})
        record = state.authenticate(request)
        if isinstance(record, Response):
            return record
        return state.admit(record) or await handler(request, state, record)

    return serve


async def _not_found(request: Request) -> Response:
    return _error(404, "Not Found", f"No endpoint at {request.url.path}")


def _endpoint_of(scope: Scope) -> str | None:
    path = str(scope.get("path", ""))
    if path.startswith(PREFIX + "/") and path.endswith(".php"):
        name = path[len(PREFIX) + 1 : -4]
        return name if name in ENDPOINTS else None
    return None


@dataclass
class EmulatorRuntime:
    """One emulator: the ASGI ``app`` to serve, its ``state`` and the ``recorder`` of requests it received."""

    app: ASGIApp
    state: EmulatorState
    recorder: RequestRecorder
    _faults: FaultMiddleware

    def set_faults(self, *faults: str) -> FaultPlan:
        """Replace the active faults (``--fault`` strings)."""
        plan = FaultPlan.parse(faults)
        _check_faults(plan)
        self.state.faults = self._faults.plan = plan
        return plan

    def count(self, method: str, endpoint: str) -> int:
        """How many ``method`` requests reached ``endpoint`` (faulted ones included).

        Counted on arrival, before any answer is sent, so a client that has its answer sees its request
        counted (the recorder's entries are only complete once the server has finished responding).
        """
        with self.state._lock:
            return self.state.arrivals[(method, endpoint)]


def build(settings: KitSettings | None = None) -> EmulatorRuntime:
    """Build an emulator from ``stemkit emulate``'s settings (``None``: every default)."""
    kit = settings or KitSettings()
    _check_faults(kit.faults)
    state = EmulatorState(EzStemsSettings.from_kit(kit), kit.faults)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            state.close()

    routes = [Route(f"{PREFIX}/{name}.php", _endpoint(state, name), methods=_ALL_METHODS) for name in _HANDLERS]
    routes.append(Route("/{path:path}", _not_found, methods=_ALL_METHODS))
    starlette = Starlette(routes=routes, lifespan=lifespan)
    starlette.state.emulator = state

    def applies(scope: Scope) -> bool:
        return _endpoint_of(scope) is not None

    faults = FaultMiddleware(starlette, state.faults, applies=applies, error=state.fault_response)

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = _endpoint_of(scope)
        if endpoint is not None:
            with state._lock:
                state.arrivals[(str(scope["method"]), endpoint)] += 1
        await faults(scope, receive, send)

    recorder = RequestRecorder(counted)
    return EmulatorRuntime(recorder, state, recorder, faults)
