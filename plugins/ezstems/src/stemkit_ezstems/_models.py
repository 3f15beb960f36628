"""The EzStems wire format, as its API document shows it.

Successful responses are an envelope ``{"success": true, "data": ...}`` (key deactivation answers
``{"success": true, "message": ...}`` without data); errors are ``{"error": ..., "message": ...}``.
The models accept what the document shows and ignore fields it does not (a service adds fields over time);
``stems`` arrives as ``"2"`` from upload and ``2`` from status, ``is_active`` as ``1``/``0``: both coerce.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = [
    "ApiKeyInfo",
    "ErrorBody",
    "GeneratedKey",
    "JobStatus",
    "StatusData",
    "UploadData",
]

JobStatus = Literal["queued", "processing", "completed", "failed"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class UploadData(_Wire):
    """``data`` of a successful ``POST upload.php``."""

    id: str = Field(min_length=1)
    filename: str | None = None
    status: JobStatus = "queued"
    stems: int
    check_status_endpoint: str | None = None


class StatusData(_Wire):
    """``data`` of ``GET status.php``; ``error``/``message`` explain a ``failed`` job."""

    id: str = Field(min_length=1)
    status: JobStatus
    queue_position: int | None = None
    stems: int | None = None
    created_at: str | None = None
    download_url: str | None = None
    error: str | None = None
    message: str | None = None

    @property
    def failure_reason(self) -> str:
        parts = [p for p in (self.error, self.message) if p]
        return ": ".join(parts) if parts else "the service gave no reason"


class ApiKeyInfo(_Wire):
    """One row of ``GET keys.php``; ``api_key`` is already masked by the service (``********abcd1234``)."""

    id: int
    api_key: str
    is_active: bool
    rate_limit: int | None = None
    calls_count: int | None = None
    created_at: str | None = None
    last_used_at: str | None = None


class GeneratedKey(_Wire):
    """``data`` of ``POST keys.php``: the new key, shown once (a SecretStr: never in a repr or a log)."""

    api_key: SecretStr
    message: str | None = None


class ErrorBody(_Wire):
    """An error response: ``error`` is the headline, ``message`` the details when there are any."""

    error: str | None = None
    message: str | None = None

    def text(self, default: str) -> str:
        parts = [p for p in (self.error, self.message) if p]
        # no final full stop: the message goes on ("…: Invalid API key; set EZSTEMS_API_KEY …")
        return ": ".join(parts).rstrip(".") if parts else default


def envelope_data(body: Any) -> Any:
    """The ``data`` of a success envelope, or ``None`` when the body is not one."""
    if isinstance(body, dict) and body.get("success") is True:
        return body.get("data")
    return None
