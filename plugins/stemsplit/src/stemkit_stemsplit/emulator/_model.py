"""The emulator's state: configuration, account, uploads, jobs, webhooks, presigned URLs, and their JSON."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from stemkit.errors import ConfigError
from stemkit.hosted.emulator import EmulatorSettings
from stemkit.hosted.faults import FaultPlan

__all__ = ["EmulatorConfig", "JobRecord", "State", "iso"]

DEFAULT_API_KEY = "sk_test_emulator"
OUTPUT_TYPES = ("VOCALS", "INSTRUMENTAL", "BOTH", "FOUR_STEMS", "SIX_STEMS")
QUALITIES = ("FAST", "BALANCED", "BEST")
FORMATS = ("WAV", "MP3", "FLAC")
STATUSES = ("PENDING", "PROCESSING", "COMPLETED", "FAILED", "EXPIRED")
INPUT_SUFFIXES = (".mp3", ".wav", ".flac", ".m4a", ".aac", ".ogg", ".opus", ".webm")


def iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class EmulatorConfig:
    """How the emulator behaves. ``stemkit emulate stemsplit --option KEY=VALUE`` sets the fields marked
    (option): credits, rate_limit, youtube_file, max_file_mb, min_duration, queue_seconds, revoked_key."""

    api_key: str = DEFAULT_API_KEY
    revoked_keys: frozenset[str] = frozenset({"sk_test_revoked"})  # (option revoked_key)
    processing_seconds: float = 2.0
    queue_seconds: float | None = None  # (option) default: a tenth of processing_seconds
    credits_seconds: int = 3600  # (option credits)
    rate_limit: int = 60  # requests per minute per key (option)
    rate_window: float = 60.0
    max_file_bytes: int = 50 * 1024 * 1024  # (option max_file_mb)
    max_duration_seconds: float = 3600.0
    min_duration_seconds: float = 1.0  # (option min_duration)
    upload_url_ttl: float = 900.0
    output_url_ttl: float = 3600.0
    job_ttl: float = 86400.0
    youtube_file: Path | None = None  # (option): served for every YouTube job; without it they fail
    storage_dir: Path | None = None
    faults: FaultPlan = field(default_factory=FaultPlan)
    purchase_url: str = "https://stemsplit.io/pricing"
    webhook_timeout: float = 10.0

    @property
    def queue_delay(self) -> float:
        return self.processing_seconds / 10 if self.queue_seconds is None else self.queue_seconds

    @classmethod
    def from_settings(cls, settings: EmulatorSettings) -> EmulatorConfig:
        config = cls(faults=settings.faults)
        if settings.api_key:
            config.api_key = settings.api_key
        if settings.processing_seconds is not None:
            config.processing_seconds = settings.processing_seconds
        convert: dict[str, tuple[str, Callable[[str], Any]]] = {
            "credits": ("credits_seconds", int),
            "rate_limit": ("rate_limit", int),
            "youtube_file": ("youtube_file", Path),
            "max_file_mb": ("max_file_bytes", lambda v: int(float(v) * 1024 * 1024)),
            "min_duration": ("min_duration_seconds", float),
            "queue_seconds": ("queue_seconds", float),
            "revoked_key": ("revoked_keys", lambda v: frozenset({v})),
        }
        for key, raw in settings.options.items():
            name = key.replace("-", "_")
            if name not in convert:
                raise ConfigError(f"emulator option {key!r} is unknown; known options: {', '.join(convert)}")
            attr, typ = convert[name]
            try:
                setattr(config, attr, typ(raw))
            except ValueError:
                raise ConfigError(f"emulator option {key}={raw!r} is not valid") from None
        if config.youtube_file is not None and not config.youtube_file.is_file():
            raise ConfigError(f"emulator option youtube_file: {config.youtube_file} is not a file")
        return config


@dataclass
class Upload:
    key: str
    filename: str
    content_type: str
    path: Path
    size: int | None = None  # None until the PUT arrives


@dataclass
class JobRecord:
    id: str
    kind: str  # "stem" | "youtube"
    output_type: str
    quality: str
    output_format: str
    file_name: str
    source: Path | None
    duration: float | None
    size_bytes: int | None
    metadata: dict[str, Any] | None
    credits_required: int | None
    estimated_seconds: int
    origin: str
    """Scheme and host the job was created through: where its presigned URLs point."""
    created_at: datetime = field(default_factory=now)
    status: str = "PENDING"
    started_at: datetime | None = None
    started_clock: float | None = None
    completed_at: datetime | None = None
    completed_clock: float | None = None
    """``time.monotonic()`` when the job became terminal: what benchmarks measure against."""
    error_message: str | None = None
    credits_charged: int = 0
    outputs: dict[str, Path] = field(default_factory=dict)
    audio_metadata: dict[str, Any] | None = None
    ending: str | None = None  # an injected fault: "fail" | "expire"
    fault_message: str | None = None
    youtube_url: str | None = None
    video_id: str | None = None

    def progress(self, processing_seconds: float) -> int:
        if self.status == "COMPLETED":
            return 100
        if self.status != "PROCESSING" or self.started_clock is None:
            return 0
        if processing_seconds <= 0:
            return 99
        return min(99, int(100 * (time.monotonic() - self.started_clock) / processing_seconds))


@dataclass
class WebhookRecord:
    id: str
    url: str
    events: list[str]
    secret: str
    created_at: datetime = field(default_factory=now)
    is_active: bool = True
    fail_count: int = 0
    last_error: str | None = None
    last_called_at: datetime | None = None

    def to_json(self, *, with_secret: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "isActive": self.is_active,
            "failCount": self.fail_count,
            "lastError": self.last_error,
            "lastCalledAt": iso(self.last_called_at),
            "createdAt": iso(self.created_at),
        }
        if with_secret:
            out["secret"] = self.secret
            del out["failCount"], out["lastError"], out["lastCalledAt"]
        return out


@dataclass(frozen=True)
class Delivery:
    url: str
    event: str
    body: bytes
    signature: str
    status: int | None
    error: str | None


class State:
    """Everything the emulator remembers; mutated only on the server's event loop."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._own_storage = config.storage_dir is None
        self.storage = config.storage_dir or Path(tempfile.mkdtemp(prefix="stemkit-stemsplit-emulator-"))
        self.signing_key = secrets.token_bytes(32)
        self.credits = config.credits_seconds
        self.credits_updated = now()
        self.uploads: dict[str, Upload] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.webhooks: dict[str, WebhookRecord] = {}
        self.deliveries: list[Delivery] = []
        self.idempotency: dict[str, tuple[str, int, dict[str, Any]]] = {}
        self.windows: dict[str, tuple[float, int]] = {}
        self.storage_auth_rejections = 0

    def close(self) -> None:
        if self._own_storage:
            shutil.rmtree(self.storage, ignore_errors=True)

    # -- identity ---------------------------------------------------------------------------------------
    @staticmethod
    def new_id(prefix: str) -> str:
        return f"{prefix}_{secrets.token_hex(10)}"

    # -- rate limit -------------------------------------------------------------------------------------
    def hit(self, bucket: str) -> tuple[bool, dict[str, str]]:
        """Count one request; (allowed, the X-RateLimit-* headers to send)."""
        clock = time.time()
        start, count = self.windows.get(bucket, (clock, 0))
        if clock - start >= self.config.rate_window:
            start, count = clock, 0
        count += 1
        self.windows[bucket] = (start, count)
        reset = start + self.config.rate_window
        headers = {
            "X-RateLimit-Limit": str(self.config.rate_limit),
            "X-RateLimit-Remaining": str(max(0, self.config.rate_limit - count)),
            "X-RateLimit-Reset": str(math.ceil(reset)),
        }
        if count > self.config.rate_limit:
            headers["Retry-After"] = str(max(1, math.ceil(reset - clock)))
            return False, headers
        return True, headers

    # -- presigned URLs ---------------------------------------------------------------------------------
    def _signature(self, method: str, key: str, expires: int) -> str:
        message = f"{method}\n{key}\n{expires}".encode()
        return hmac.new(self.signing_key, message, hashlib.sha256).hexdigest()

    def presign(self, origin: str, method: str, key: str, ttl: float, *, expired: bool = False) -> tuple[str, str]:
        """(URL, expiresAt): the URL stops working at once when ``expired`` (the expire-urls fault)."""
        stated = time.time() + ttl
        expires = int(time.time()) - 1 if expired else int(stated)
        query = urlencode({"X-Expires": expires, "X-Signature": self._signature(method, key, expires)})
        return f"{origin}/storage/{quote(key)}?{query}", iso(datetime.fromtimestamp(stated, UTC)) or ""

    def check_presigned(self, method: str, key: str, query: dict[str, str]) -> str | None:
        """None when the URL is valid; else the S3-style error code."""
        try:
            expires = int(query.get("X-Expires", ""))
        except ValueError:
            return "AccessDenied"
        expected = self._signature("PUT" if method == "PUT" else "GET", key, expires)
        if not hmac.compare_digest(expected, query.get("X-Signature", "")):
            return "SignatureDoesNotMatch"
        if time.time() > expires:
            return "ExpiredRequest"
        return None

    # -- JSON -------------------------------------------------------------------------------------------
    def outputs_json(self, job: JobRecord, origin: str) -> dict[str, Any] | None:
        if job.status != "COMPLETED" or not job.outputs:
            return None
        expired = self.config.faults.fire("expire-urls") is not None
        out: dict[str, Any] = {}
        for name, path in job.outputs.items():
            key = path.relative_to(self.storage).as_posix()
            url, expires_at = self.presign(origin, "GET", key, self.config.output_url_ttl, expired=expired)
            out[name] = {"url": url, "expiresAt": expires_at}
        return out

    def job_input(self, job: JobRecord) -> dict[str, Any]:
        out: dict[str, Any] = {"fileName": job.file_name}
        if job.duration is not None:
            out["durationSeconds"] = math.ceil(job.duration)
        if job.size_bytes is not None:
            out["fileSizeBytes"] = job.size_bytes
        return out

    def job_options(self, job: JobRecord) -> dict[str, Any]:
        return {"outputType": job.output_type, "quality": job.quality, "outputFormat": job.output_format}

    def created_json(self, job: JobRecord) -> dict[str, Any]:
        """JobCreatedResponse (and the YouTube job's equivalent)."""
        out: dict[str, Any] = {
            "id": job.id,
            "status": job.status,
            "progress": 0,
            "createdAt": iso(job.created_at),
            "estimatedSeconds": job.estimated_seconds,
            "input": self.job_input(job),
            "options": self.job_options(job),
            "outputs": None,
            "metadata": job.metadata,
        }
        if job.credits_required is not None:
            out["creditsRequired"] = job.credits_required
        return self._youtube_fields(job, out)

    def detail_json(self, job: JobRecord, origin: str) -> dict[str, Any]:
        """JobDetailResponse, plus the SDK-documented audioMetadata, estimatedSeconds and metadata."""
        expires = job.completed_at + timedelta(seconds=self.config.job_ttl) if job.completed_at else None
        out: dict[str, Any] = {
            "id": job.id,
            "status": job.status,
            "progress": job.progress(self.config.processing_seconds),
            "createdAt": iso(job.created_at),
            "startedAt": iso(job.started_at),
            "completedAt": iso(job.completed_at),
            "input": self.job_input(job),
            "options": self.job_options(job),
            "outputs": self.outputs_json(job, origin),
            "creditsCharged": job.credits_charged,
            "errorMessage": job.error_message,
            "expiresAt": iso(expires),
            "estimatedSeconds": job.estimated_seconds,
            "audioMetadata": job.audio_metadata,
            "metadata": job.metadata,
        }
        if job.credits_required is not None:
            out["creditsRequired"] = job.credits_required
        return self._youtube_fields(job, out)

    def list_item_json(self, job: JobRecord) -> dict[str, Any]:
        out = {
            "id": job.id,
            "status": job.status,
            "progress": job.progress(self.config.processing_seconds),
            "createdAt": iso(job.created_at),
            "completedAt": iso(job.completed_at),
            "input": {k: v for k, v in self.job_input(job).items() if k != "fileSizeBytes"},
            "options": self.job_options(job),
            "creditsCharged": job.credits_charged,
            "errorMessage": job.error_message,
        }
        return self._youtube_fields(job, out)

    def _youtube_fields(self, job: JobRecord, out: dict[str, Any]) -> dict[str, Any]:
        if job.kind == "youtube":
            out.pop("input", None)
            out.update(
                {
                    "videoId": job.video_id,
                    "videoTitle": f"Emulated video {job.video_id}",
                    "videoDuration": math.ceil(job.duration) if job.duration is not None else None,
                    "videoThumbnail": f"https://i.ytimg.com/vi/{job.video_id}/hqdefault.jpg",
                    "channelName": "stemkit emulator",
                    "youtubeUrl": job.youtube_url,
                }
            )
        return out

    def balance_json(self) -> dict[str, Any]:
        minutes = self.credits // 60
        formatted = f"{minutes} minute{'s' if minutes != 1 else ''}" if minutes else f"{self.credits} seconds"
        return {
            "balanceSeconds": self.credits,
            "balanceMinutes": minutes,
            "balanceFormatted": formatted,
            "updatedAt": iso(self.credits_updated),
        }

    def charge(self, seconds: int) -> None:
        self.credits -= seconds
        self.credits_updated = now()
