"""StemSplit's error answers mapped onto stemkit's error hierarchy by status and documented code."""

from __future__ import annotations

from urllib.parse import urlsplit

from stemkit.errors import (
    AuthenticationError,
    PermissionDeniedError,
    ProviderError,
    ProviderLimitError,
    QuotaExceededError,
)
from stemkit.hosted import ErrorContext
from stemkit_stemsplit._wire import DEFAULT_BASE_URL

__all__ = ["map_error"]

_LIMIT_CODES = {
    "FILE_TOO_LARGE": "the file is over StemSplit's 50 MB limit; compress it or use another provider",
    "AUDIO_TOO_LONG": "the audio is over StemSplit's 60 minute limit; cut it or use another provider",
    "AUDIO_TOO_SHORT": "the audio is too short for StemSplit; use a longer excerpt or another provider",
    "UNSUPPORTED_FORMAT": "StemSplit cannot read this format; convert it (WAV, FLAC, MP3) or use another provider",
}


def map_error(ctx: ErrorContext) -> ProviderError | None:
    """Refine the default status mapping with StemSplit's documented error codes; None defers to it."""
    if not ctx.to_api:
        return None  # storage answers (S3-style XML) keep the default mapping
    code, said, kw = ctx.server_code, ctx.describe(), ctx.common()
    status = ctx.status_code
    if status == 400 and code in _LIMIT_CODES:
        return ProviderLimitError(f"{said}; {_LIMIT_CODES[code]}", **kw)
    if status == 401:
        # Where a key comes from depends on who answered: StemSplit's own site for the real service, the
        # emulator's printout for `stemkit emulate stemsplit` (never the real settings page for a local server).
        if urlsplit(ctx.url).hostname == urlsplit(DEFAULT_BASE_URL).hostname:
            source = "StemSplit's keys are at https://stemsplit.io/app/settings/api"
        else:
            source = "for stemkit's emulator, the key `stemkit emulate stemsplit` prints"
        return AuthenticationError(
            f"{said}; set STEMSPLIT_API_KEY (or pass api_key=) to a valid key for {ctx.url.rsplit('/', 1)[0]} "
            f"({source})",
            **kw,
        )
    if status == 402:
        err = ctx.body.get("error") if isinstance(ctx.body, dict) else None
        err = err if isinstance(err, dict) else {}
        required, purchase = err.get("requiredSeconds"), err.get("purchaseUrl")
        where = f" at {purchase}" if isinstance(purchase, str) else ""
        return QuotaExceededError(
            f"{said}; buy more credits{where}"
            + (f" ({required} s needed)" if isinstance(required, int | float) else "")
            + ", or use another provider",
            required_seconds=float(required) if isinstance(required, int | float) else None,
            purchase_url=purchase if isinstance(purchase, str) else None,
            **kw,
        )
    if status == 403:
        return PermissionDeniedError(f"{said}; the API key was revoked, create a new one", **kw)
    if status == 404 and code == "JOB_NOT_FOUND":
        return ProviderError(f"{said}; check the job id (jobs belong to the key that created them)", **kw)
    return None
