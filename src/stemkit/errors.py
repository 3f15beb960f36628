"""One error hierarchy for every provider.

Callers catch by intent: ``InputError`` means the audio itself is bad and no other provider will do better;
``ProviderError`` means *this* provider could not do it and a fallback chain may move on;
``ConfigError`` means the request or the environment is wrong and must be fixed by the caller.
Messages name the file or option, what is wrong and what to do, and never carry a secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stemkit.provenance import Attempt

__all__ = [
    "AllProvidersFailedError",
    "AuthenticationError",
    "BudgetExceededError",
    "ConfigError",
    "InputError",
    "JobExpiredError",
    "JobFailedError",
    "OutputError",
    "PermissionDeniedError",
    "ProtocolError",
    "ProviderError",
    "ProviderLimitError",
    "ProviderUnavailableError",
    "QuotaExceededError",
    "RateLimitError",
    "SeparationTimeout",
    "StemkitError",
    "without_prefix",
]


def without_prefix(text: str, provider: str | None) -> str:
    """``text`` without a leading ``provider: `` (or the provider's bare name, ``stemsplit`` of
    ``stemsplit?quality=best``), for a line that already names the provider: never ``stemsplit: stemsplit: …``."""
    if not provider:
        return text
    bare = provider.split("?", 1)[0]
    for name in dict.fromkeys((provider, bare, bare.split(":", 1)[0])):
        if text.startswith(f"{name}: "):
            return text[len(name) + 2 :]
    return text


class StemkitError(Exception):
    """Base class of every error stemkit raises on purpose."""


class ConfigError(StemkitError):
    """A bad provider spec, an unknown provider or option, a missing key: fix the request."""


class OutputError(ConfigError):
    """Stems cannot be written where or how they were asked for: the output folder is a file or not writable,
    the disk is full, the encoder refuses the format or sample rate, or a file name template is unusable.

    ``path`` is the file or folder concerned. It is a :class:`ConfigError` (fix the request; exit status 2 in
    the CLI) and is checked before any separation starts wherever it can be.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class BudgetExceededError(ConfigError):
    """The work asked for would cost more than ``max_cost=`` allows, by its estimate; nothing was submitted.

    ``unit`` is the unit of the budget that would be exceeded (``seconds`` of StemSplit credits, ``jobs`` of
    a subscription plan), ``budget`` its limit and ``estimate`` what the work would take (what the same call
    or batch has already committed included).
    """

    def __init__(self, message: str, *, unit: str | None = None, budget: float | None = None,
                 estimate: float | None = None) -> None:  # fmt: skip
        self.unit = unit
        self.budget = budget
        self.estimate = estimate
        super().__init__(message)


class InputError(StemkitError):
    """The audio itself is unusable (unreadable, empty, NaN, unsupported); every provider would fail."""


class ProviderError(StemkitError):
    """A provider could not produce the stems. Another provider may succeed.

    ``retryable`` says whether the *same* request to the *same* provider may succeed later
    (rate limits, outages); the transport has already used its retry budget when this reaches a caller.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status_code: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retryable: bool = False,
    ) -> None:
        self.message = message
        self.provider = provider
        self.status_code = status_code
        self.code = code
        self.request_id = request_id
        self.retryable = retryable
        super().__init__(message)

    def __str__(self) -> str:
        details = [f"{name} {value}" for name, value in self._details() if value is not None]
        named = self.provider and self.message.startswith((f"{self.provider}:", f"{self.provider} "))
        prefix = f"{self.provider}: " if self.provider and not named else ""
        suffix = f" ({', '.join(details)})" if details else ""
        return f"{prefix}{self.message}{suffix}"

    def _details(self) -> list[tuple[str, Any]]:
        return [("HTTP", self.status_code), ("code", self.code), ("request id", self.request_id)]


class AuthenticationError(ProviderError):
    """The API key is missing or invalid (HTTP 401)."""


class PermissionDeniedError(ProviderError):
    """The key is known but not allowed to do this, e.g. revoked (HTTP 403)."""


class QuotaExceededError(ProviderError):
    """The account has no credits left for this job (HTTP 402)."""

    def __init__(
        self,
        message: str,
        *,
        required_seconds: float | None = None,
        purchase_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.required_seconds = required_seconds
        self.purchase_url = purchase_url
        super().__init__(message, **kwargs)


class RateLimitError(ProviderError):
    """Too many requests, still refused after the transport's retries."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        limit: int | None = None,
        remaining: int | None = None,
        reset: float | None = None,
        **kwargs: Any,
    ) -> None:
        self.retry_after = retry_after
        self.limit = limit
        self.remaining = remaining
        self.reset = reset
        kwargs.setdefault("retryable", True)
        super().__init__(message, **kwargs)

    def _details(self) -> list[tuple[str, Any]]:
        return [*super()._details(), ("retry after s", self.retry_after)]


class ProviderUnavailableError(ProviderError):
    """The provider cannot be reached or is failing (5xx, connect error, timeout, model not available)."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("retryable", True)
        super().__init__(message, **kwargs)


class ProviderLimitError(ProviderError):
    """The input is outside *this provider's* limits (size, duration, format); another may take it."""


class _JobError(ProviderError):
    def __init__(self, message: str, *, job_id: str | None = None, **kwargs: Any) -> None:
        self.job_id = job_id
        super().__init__(message, **kwargs)

    def _details(self) -> list[tuple[str, Any]]:
        return [("job", self.job_id), *super()._details()]


class JobFailedError(_JobError):
    """The provider accepted the job and then reported that it failed."""


class JobExpiredError(_JobError):
    """The job or its results expired before they were fetched."""


class SeparationTimeout(_JobError):
    """The deadline passed while the job was still running; the job id lets the caller pick it up later."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("retryable", True)
        super().__init__(message, **kwargs)


class ProtocolError(ProviderError):
    """The provider answered something stemkit cannot use: an unexpected body, a corrupt or hostile archive."""


class AllProvidersFailedError(StemkitError):
    """Every provider of a chain failed or was skipped; ``attempts`` keeps each one with its error."""

    def __init__(self, attempts: Sequence[Attempt], message: str | None = None) -> None:
        self.attempts = list(attempts)
        if message is None:
            lines = ["every provider failed:"]
            lines += [f"  - {attempt.describe()}" for attempt in self.attempts]
            message = "\n".join(lines)
        super().__init__(message)
