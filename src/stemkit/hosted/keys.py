"""API keys: held so they never show themselves, read so a stray newline or control character cannot leak
them, and sent only to the API's own origin.

* :class:`Secret` wraps a key from the moment it is read: ``repr``, ``str`` and f-strings show ``***``, and
  the value is registered for scrubbing from any message (:mod:`stemkit._secrets`).
* :func:`read_key` takes a key from a keyword or an environment variable: surrounding whitespace (a key
  pasted with its newline, read from a file) is dropped; a key with control characters or inner spaces is a
  :class:`~stemkit.errors.ConfigError` that never echoes it (HTTP libraries quote an illegal header value in
  their own errors, which is how keys end up in tracebacks).
* :class:`ApiScope` says which URLs are the API's (same scheme, host, port and base path); the transport
  adds the key to those requests only, on every hop of a redirect chain.
"""

from __future__ import annotations

import hmac
import os

import httpx

from stemkit._secrets import register_secret
from stemkit.errors import ConfigError

__all__ = ["ApiScope", "Secret", "read_key"]


class Secret:
    """Holds an API key; ``repr``, ``str`` and f-strings show ``***``, only :meth:`reveal` gives the value.

    Keeping the key in this wrapper (rather than a ``str`` attribute) means no traceback, log line,
    ``repr`` of a transport or pydantic dump can leak it by accident.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        """The key itself; call it only where the key goes onto the wire."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return hmac.compare_digest(self._value.encode(), other._value.encode())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled; pass the key through the environment instead")


def read_key(value: str | Secret | None, *, env: str, provider: str) -> Secret | None:
    """The key given as ``value``, else ``$env``; None when neither is set.

    Whitespace around the key is dropped. Anything but printable ASCII inside it is refused with a message
    that says where the key came from and never shows it.
    """
    where = "api_key=" if value is not None else env
    raw = value.reveal() if isinstance(value, Secret) else value if value is not None else os.environ.get(env)
    if raw is None:
        return None
    key = raw.strip()
    if not key:
        return None
    bad = [i for i, ch in enumerate(key) if not 0x21 <= ord(ch) <= 0x7E]
    if bad:
        register_secret(key)
        raise ConfigError(
            f"{provider}: the API key from {where} contains {len(bad)} invalid character(s) (control characters, "
            "spaces or non-ASCII, first at position "
            f"{bad[0] + 1}); copy the key again without them"
        )
    return value if isinstance(value, Secret) and value.reveal() == key else Secret(key)


class ApiScope:
    """The API's origin and base path, to tell its URLs from storage (presigned) URLs and other hosts."""

    def __init__(self, base_url: httpx.URL) -> None:
        self.base = base_url
        self._origin = _origin(base_url)
        self._path = base_url.path.rstrip("/")

    def contains(self, url: str | httpx.URL) -> bool:
        """True when ``url`` is under the base URL (same scheme, host, port and path prefix)."""
        u = httpx.URL(str(url))
        if _origin(u) != self._origin:
            return False
        return not self._path or u.path == self._path or u.path.startswith(self._path + "/")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host, url.port or default)
