"""The one error boundary: nothing but a :class:`~stemkit.errors.StemkitError` leaves the public API.

Every public entry point (``separate``/``aseparate``, ``load``, a Separator's methods, ``separate_many``,
``compare``, ``StemSet.save``) runs inside :func:`error_boundary`, so whatever a provider plugin, a server
or the file system does, the caller catches by intent:

* a ``StemkitError`` passes unchanged (its message scrubbed of secrets);
* an exception group (a task group's) is unwrapped to its most telling member;
* an answer that does not parse or validate (pydantic's ``ValidationError``, httpx's decoding and redirect
  errors, an invalid URL) is a :class:`~stemkit.errors.ProtocolError`;
* a transport failure (httpx's connect/read/protocol errors) is a
  :class:`~stemkit.errors.ProviderUnavailableError`;
* an ``OSError`` while a provider works is a :class:`~stemkit.errors.ProviderError` naming the path;
* anything else is a :class:`~stemkit.errors.ProviderError` that says it is a bug in the provider, so a
  fallback chain moves on and a batch goes on.

Interrupts and cancellation (``KeyboardInterrupt``, ``SystemExit``, the event loop's cancellation) are
``BaseException`` subclasses and always pass: they are the caller's, not errors to convert.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from stemkit._secrets import scrub
from stemkit.errors import (
    ConfigError,
    InputError,
    ProtocolError,
    ProviderError,
    ProviderUnavailableError,
    StemkitError,
)

__all__ = ["as_stemkit_error", "error_boundary", "leaf_exceptions"]


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside ``exc`` (itself, when it is not a group)."""
    if isinstance(exc, BaseExceptionGroup):
        leaves: list[BaseException] = []
        for inner in exc.exceptions:
            leaves.extend(leaf_exceptions(inner))
        return leaves
    return [exc]


def _most_telling(leaves: list[BaseException]) -> BaseException:
    """What the caller must fix first, then a provider's own error, then anything else."""
    for kinds in ((InputError, ConfigError), (ProviderError,), (StemkitError,)):
        for leaf in leaves:
            if isinstance(leaf, kinds):
                return leaf
    return leaves[0]


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    first = text.splitlines()[0]
    return scrub(first[:300])


def _is(exc: BaseException, module: str, name: str) -> bool:
    """isinstance against a class of a library that may not be imported (and need not be, to check)."""
    mod = sys.modules.get(module)
    cls = getattr(mod, name, None) if mod is not None else None
    return isinstance(cls, type) and isinstance(exc, cls)


def as_stemkit_error(exc: BaseException, *, provider: str | None = None) -> BaseException:
    """The stemkit error ``exc`` means (``exc`` itself when it is one, or an interrupt/cancellation)."""
    if isinstance(exc, BaseExceptionGroup):
        leaves = leaf_exceptions(exc)
        if any(not isinstance(leaf, Exception) for leaf in leaves):
            return exc  # an interrupt or a cancellation inside: the group is the caller's, unchanged
        exc = _most_telling(leaves)
    if not isinstance(exc, Exception):
        return exc
    if isinstance(exc, StemkitError):
        _scrub_in_place(exc)
        return exc
    if _is(exc, "pydantic", "ValidationError"):
        return ProtocolError(f"the answer does not have the expected shape ({_short(exc)})", provider=provider)
    if _is(exc, "httpx", "TooManyRedirects"):
        return ProtocolError(f"the server redirected too many times ({_short(exc)})", provider=provider)
    if _is(exc, "httpx", "DecodingError"):
        return ProtocolError(f"the server sent a body that cannot be decoded ({_short(exc)})", provider=provider)
    if _is(exc, "httpx", "InvalidURL") or _is(exc, "httpx", "UnsupportedProtocol"):
        return ProtocolError(f"the server gave an unusable URL ({_short(exc)})", provider=provider)
    if _is(exc, "httpx", "TransportError") or _is(exc, "httpx", "HTTPError"):
        return ProviderUnavailableError(
            f"the connection failed ({type(exc).__name__}: {_short(exc)}); check the network or try again later",
            provider=provider,
        )
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return ProviderError(
            f"could not read or write its working files{where}: {exc.strerror or _short(exc)}; "
            "free disk space or set TMPDIR to a writable folder",
            provider=provider,
        )
    return ProviderError(
        f"internal error ({type(exc).__name__}: {_short(exc)}); this is a bug in the provider plugin, "
        "please report it",
        provider=provider,
        code="PROVIDER_BUG",
    )


def _scrub_in_place(exc: StemkitError) -> None:
    """A stemkit error built from a server's words may carry an echoed key: scrub its text."""
    if exc.args and isinstance(exc.args[0], str):
        clean = scrub(exc.args[0])
        if clean != exc.args[0]:
            exc.args = (clean, *exc.args[1:])
            if isinstance(exc, ProviderError):
                exc.message = scrub(exc.message)


@contextlib.contextmanager
def error_boundary(provider: str | None = None) -> Iterator[None]:
    """Let only stemkit errors (and interrupts/cancellation) out of the block."""
    try:
        yield
    except BaseException as exc:
        converted = as_stemkit_error(exc, provider=provider)
        if converted is exc:
            raise
        raise converted from exc
