"""Keeping API keys out of text: every key stemkit holds is remembered here, so that any message built from
a server's answer or a library's exception can be scrubbed of it before a user, a log or a report sees it.

A key reaches this registry when it is wrapped in :class:`stemkit.hosted.Secret`; the registry lives as long
as the process (the key is in its memory anyway) and is consulted only to redact.
"""

from __future__ import annotations

import threading

__all__ = ["REDACTED", "register_secret", "scrub"]

REDACTED = "***"
#: Shorter values are not scrubbed: replacing a 3-character "key" everywhere would garble ordinary text.
_MIN_LENGTH = 6
_known: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Remember ``value`` as a secret to scrub from text."""
    if len(value) >= _MIN_LENGTH:
        with _lock:
            _known.add(value)


def scrub(text: str) -> str:
    """``text`` with every known secret replaced by ``***`` (longest first, so no fragment survives)."""
    if not _known:
        return text
    with _lock:
        secrets = sorted(_known, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text
