"""StemSplit's wire shapes (camelCase JSON), as the OpenAPI document and the official SDK define them.

Every model keeps unknown fields (``extra="allow"``): the service adding a field never breaks a client.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

#: Where the real service lives (the OpenAPI document's production server).
DEFAULT_BASE_URL = "https://stemsplit.io/api/v1"

__all__ = [
    "DEFAULT_BASE_URL",
    "OUTPUT_TYPES",
    "AudioMetadata",
    "Balance",
    "Job",
    "JobList",
    "OutputFile",
    "UploadTicket",
    "Webhook",
    "WebhookEvent",
    "WebhookEventData",
]

JobStatus = Literal["PENDING", "PROCESSING", "COMPLETED", "FAILED", "EXPIRED"]
OutputType = Literal["VOCALS", "INSTRUMENTAL", "BOTH", "FOUR_STEMS", "SIX_STEMS"]
Quality = Literal["FAST", "BALANCED", "BEST"]
OutputFormat = Literal["WAV", "MP3", "FLAC"]

#: outputType -> the stems (the API's own output keys) it produces
OUTPUT_TYPES: dict[str, tuple[str, ...]] = {
    "BOTH": ("vocals", "instrumental"),
    "VOCALS": ("vocals",),
    "INSTRUMENTAL": ("instrumental",),
    "FOUR_STEMS": ("vocals", "drums", "bass", "other"),
    "SIX_STEMS": ("vocals", "drums", "bass", "other", "piano", "guitar"),
}


class Wire(BaseModel):
    model_config = ConfigDict(
        extra="allow", populate_by_name=True, alias_generator=to_camel, protected_namespaces=(), frozen=True
    )


class UploadTicket(Wire):
    upload_url: str
    upload_key: str
    expires_at: datetime | None = None
    max_file_size_bytes: int | None = None
    max_file_size_mb: int | None = None
    content_type: str | None = None


class OutputFile(Wire):
    url: str
    expires_at: datetime | None = None


class AudioMetadata(Wire):
    bpm: float | None = None
    key: str | None = None


class Job(Wire):
    """A job from ``/jobs`` or ``/youtube-jobs`` (the YouTube fields are None for the former)."""

    id: str
    status: JobStatus
    progress: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    input: dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    outputs: dict[str, OutputFile] | None = None
    audio_metadata: AudioMetadata | None = None
    credits_required: int | None = None
    credits_charged: int | None = None
    estimated_seconds: int | None = None
    error_message: str | None = None
    expires_at: datetime | None = None
    metadata: dict[str, Any] | None = None
    # /youtube-jobs only
    video_id: str | None = None
    video_title: str | None = None
    video_duration: int | None = None
    youtube_url: str | None = None


class Pagination(Wire):
    total: int
    limit: int
    offset: int
    has_more: bool


class JobList(Wire):
    jobs: list[Job]
    pagination: Pagination


class Balance(Wire):
    balance_seconds: int
    balance_minutes: int | None = None
    balance_formatted: str | None = None
    updated_at: datetime | None = None


class Webhook(Wire):
    id: str
    url: str
    events: list[str] = Field(default_factory=list)
    secret: str | None = None
    """Only in the answer to ``POST /webhooks``: save it then, it is never shown again."""
    is_active: bool = True
    fail_count: int = 0
    last_error: str | None = None
    last_called_at: datetime | None = None
    created_at: datetime | None = None

    def __repr__(self) -> str:
        return f"Webhook(id={self.id!r}, url={self.url!r}, events={self.events!r}, secret=***)"


class WebhookEventData(Wire):
    job_id: str
    status: JobStatus
    type: str | None = None
    input: dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    outputs: dict[str, OutputFile] | None = None
    credits_charged: int | None = None
    error_message: str | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None


class WebhookEvent(Wire):
    """A verified webhook delivery (``job.completed`` / ``job.failed``)."""

    event: str
    timestamp: datetime
    data: WebhookEventData
