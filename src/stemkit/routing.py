"""Fallback chains: try providers in order, skip the ones whose capabilities rule the request out, move on
after errors another provider may not have, stop at once for errors every provider would have.

There is exactly one retry layer in stemkit: a provider's own transport. A chain never calls the same
provider twice for one request, so a fault scenario costs (transport attempts per provider) summed over the
providers tried — never a product.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.to_thread
import numpy as np

from stemkit._boundary import error_boundary
from stemkit._portal import sync_method
from stemkit.audio import AudioSource, open_source
from stemkit.config import ProviderSpec
from stemkit.errors import (
    AllProvidersFailedError,
    AuthenticationError,
    ConfigError,
    InputError,
    PermissionDeniedError,
    ProviderError,
    StemkitError,
    without_prefix,
)
from stemkit.excerpt import takes_excerpt
from stemkit.protocol import Capabilities, ProgressCallback, Separator
from stemkit.provenance import Attempt
from stemkit.stems import normalize_request
from stemkit.stemset import StemSet

__all__ = ["BreakerSettings", "Chain", "CircuitBreaker", "member_input", "skip_reason"]

log = logging.getLogger("stemkit.routing")

OFFLINE_ENV = "STEMKIT_OFFLINE"


@dataclass(frozen=True)
class BreakerSettings:
    """After ``failures`` consecutive failures a provider is skipped for ``cooldown`` seconds, then one call
    is let through (half-open): success closes the breaker, failure opens it again."""

    failures: int = 3
    cooldown: float = 30.0
    clock: Callable[[], float] = time.monotonic


class CircuitBreaker:
    """One provider's breaker. Breakers are per process, shared by every chain naming the same spec."""

    def __init__(self, settings: BreakerSettings) -> None:
        self.settings = settings
        self._clock = settings.clock
        self._lock = threading.Lock()
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self._clock() - self.opened_at >= self.settings.cooldown:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        """Whether a call may go through now; in half-open state only one probe at a time."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "half-open" and not self._probing:
                self._probing = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self.consecutive_failures = 0
            self.opened_at = None
            self._probing = False

    def record_failure(self) -> None:
        with self._lock:
            self.consecutive_failures += 1
            if self._probing or self.consecutive_failures >= self.settings.failures:
                self.opened_at = self._clock()
            self._probing = False

    def release(self) -> None:
        """End a call that was neither a success nor a failure of the provider (cancelled, or the request's
        own fault): a half-open probe is given back, so the next call may probe again."""
        with self._lock:
            self._probing = False

    def retry_in(self) -> float:
        with self._lock:
            if self.opened_at is None:
                return 0.0
            return max(0.0, self.settings.cooldown - (self._clock() - self.opened_at))


_BREAKERS: dict[str, CircuitBreaker] = {}
_BREAKERS_LOCK = threading.Lock()


def breaker_for(key: str, settings: BreakerSettings) -> CircuitBreaker:
    with _BREAKERS_LOCK:
        breaker = _BREAKERS.get(key)
        if breaker is None or breaker.settings != settings:
            breaker = _BREAKERS[key] = CircuitBreaker(settings)
        return breaker


def reset_breakers() -> None:
    """Forget every breaker's state (tests, or after fixing a provider's configuration)."""
    with _BREAKERS_LOCK:
        _BREAKERS.clear()


def skip_reason(separator: Separator, source: AudioSource, requested: tuple[str, ...] | None) -> str | None:
    """Why ``separator`` cannot take this request, judged from its capabilities alone; None if it may."""
    caps = separator.capabilities
    if caps.needs_api_key and not caps.has_api_key:
        return "no API key configured"
    if caps.needs_network and os.environ.get(OFFLINE_ENV, "").strip() not in ("", "0"):
        return f"needs the network and {OFFLINE_ENV} is set"
    try:
        caps.plan(requested, provider=separator.name)
    except ConfigError:
        return f"cannot produce or derive {', '.join(_unplannable(caps, requested or ()))}"
    if source.kind == "youtube" and not caps.accepts_youtube:
        return "does not take YouTube URLs"
    if source.kind == "url" and not caps.accepts_urls:
        return "does not take URLs"
    from stemkit.compose.fit import fit_refusal  # a limit the provider's fit mode can meet is no reason to skip

    return fit_refusal(separator, source)


def _unplannable(caps: Capabilities, requested: Sequence[str]) -> list[str]:
    """The stems of a refused request that cannot be had even alone (the whole request when each alone can)."""

    def possible(name: str) -> bool:
        try:
            caps.plan([name])
        except ConfigError:
            return False
        return True

    return [name for name in requested if not possible(name)] or list(requested)


def _union(members: Sequence[Separator]) -> Capabilities:
    caps = [m.capabilities for m in members]
    combos: list[tuple[str, ...]] = []
    for cap in caps:
        for combo in cap.combinations:
            if combo not in combos:
                combos.append(combo)

    def widest(values: Iterable[float | int | None]) -> Any:
        seen = list(values)
        return None if any(v is None for v in seen) else max(v for v in seen if v is not None)

    formats: frozenset[str] = frozenset()
    if all(c.input_formats for c in caps):
        formats = frozenset().union(*(c.input_formats for c in caps))
    return Capabilities(
        combinations=tuple(combos),
        complete=all(c.complete for c in caps),
        input_formats=formats,
        output_formats=frozenset().union(*(c.output_formats for c in caps)),
        max_file_bytes=widest(c.max_file_bytes for c in caps),
        max_duration_seconds=widest(c.max_duration_seconds for c in caps),
        min_duration_seconds=min((c.min_duration_seconds or 0.0) for c in caps) or None,
        accepts_urls=any(c.accepts_urls for c in caps),
        accepts_youtube=any(c.accepts_youtube for c in caps),
        needs_network=all(c.needs_network for c in caps),
        needs_api_key=all(c.needs_api_key for c in caps),
        has_api_key=any(c.has_api_key or not c.needs_api_key for c in caps),
        local=any(c.local for c in caps),
        cost_unit=None,
        max_concurrency=None,
    )


class Chain:
    """A Separator that tries its members in order. It nests: a member may itself be a Chain."""

    name = "chain"
    #: stemkit's own separators take a composite's opened input as is (see :func:`member_input`)
    accepts_audio_source = True

    def __init__(
        self,
        members: Sequence[Separator],
        *,
        breaker: BreakerSettings | None = None,
        provider_timeout: float | None = None,
        deadline: float | None = None,
    ) -> None:
        if not members:
            raise ConfigError("provider: a chain needs at least one provider")
        self.members = list(members)
        self.breaker_settings = breaker or BreakerSettings()
        self.provider_timeout = provider_timeout
        self.deadline = deadline
        self._closed = False

    @classmethod
    def from_specs(
        cls,
        specs: Sequence[ProviderSpec],
        *,
        provider_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
        cache: Any = None,
        breaker: BreakerSettings | None = None,
        provider_timeout: float | None = None,
        deadline: float | None = None,
        **kwargs: Any,
    ) -> Chain:
        """Load each provider of a parsed chain. ``provider_kwargs`` maps a provider name to the keyword
        arguments (API key, client) for its constructor; other keywords are not accepted for a chain,
        because it is ambiguous which provider they are meant for."""
        if kwargs:
            raise ConfigError(
                f"load: keyword(s) {', '.join(sorted(kwargs))} are ambiguous for a chain; pass them per provider "
                "as provider_kwargs={'name': {...}}"
            )
        from stemkit.api import load_one

        members: list[Separator] = []
        try:
            for spec in specs:
                members.append(load_one(spec, cache=cache, **dict((provider_kwargs or {}).get(spec.name, {}))))
        except BaseException:
            for member in members:
                member.close()
            raise
        return cls(members, breaker=breaker, provider_timeout=provider_timeout, deadline=deadline)

    @property
    def spec(self) -> str:
        return " | ".join(m.spec for m in self.members)

    @property
    def capabilities(self) -> Capabilities:
        return _union(self.members)

    def __repr__(self) -> str:
        return f"<Chain {self.spec!r}>"

    def _breaker(self, member: Separator) -> CircuitBreaker:
        return breaker_for(member.spec, self.breaker_settings)

    # -- separation -------------------------------------------------------------------------------------
    def _begin(
        self, audio: Any, stems: Iterable[str] | str | None, sample_rate: int | None, options: Mapping[str, Any]
    ) -> tuple[AudioSource, tuple[str, ...] | None]:
        """Open the input once for every member; provider options belong in each member's spec (``fit=``, which
        every stemkit provider takes, is the one option a whole chain passes on)."""
        if self._closed:
            raise StemkitError("chain: this separator is closed; load a new one")
        if set(options) - {"fit"}:
            options = {k: v for k, v in options.items() if k != "fit"}
            raise ConfigError(
                f"chain: provider option(s) {', '.join(sorted(options))} cannot be passed to a whole chain; "
                "put them in each provider's spec string (e.g. 'stemsplit?quality=best | dsp')"
            )
        return open_source(audio, sample_rate=sample_rate), normalize_request(stems)

    def _next(
        self, member: Separator, source: AudioSource, requested: tuple[str, ...] | None, started: float,
        deadline: float | None,
    ) -> tuple[str | None, float | None]:
        """(skip reason, timeout for this member)."""
        timeout = self.provider_timeout
        if deadline is not None:
            left = deadline - (time.monotonic() - started)
            if left <= 0:
                return "the chain's deadline has passed", None
            timeout = left if timeout is None else min(timeout, left)
        breaker = self._breaker(member)
        reason = skip_reason(member, source, requested)
        if reason is None and not breaker.allow():
            reason = f"circuit open after repeated failures (next probe in {breaker.retry_in():.0f} s)"
        return reason, timeout

    def _failed(self, member: Separator, exc: BaseException, seconds: float) -> Attempt:
        self._breaker(member).record_failure()
        if isinstance(exc, AuthenticationError | PermissionDeniedError):
            # A misconfigured key must not hide behind a quiet fallback.
            log.warning(
                "%s: %s — falling back to the next provider; check its API key",
                member.spec,
                without_prefix(str(exc), member.spec),
            )
        else:
            log.info("%s failed (%s); trying the next provider", member.spec, type(exc).__name__)
        return Attempt(member.spec, "failed", seconds, exc, str(exc))

    @staticmethod
    def _moves_on(exc: BaseException) -> bool:
        return isinstance(exc, ProviderError | AllProvidersFailedError) and not isinstance(exc, InputError)

    @takes_excerpt
    async def aseparate(
        self,
        audio: Any,
        /,
        *,
        stems: Iterable[str] | str | None = None,
        progress: ProgressCallback | None = None,
        sample_rate: int | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> StemSet:
        """Try each member in order, without blocking the event loop (the one implementation of both flavours)."""
        with error_boundary("chain"):
            deadline = self.deadline if timeout is None else timeout
            source, requested = await anyio.to_thread.run_sync(self._begin, audio, stems, sample_rate, options)
            shared = {k: v for k, v in options.items() if k == "fit"}
            try:
                result = await self._run(audio, source, requested, progress, deadline, shared)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(source.close)
                raise
            # The StemSet may still derive stems from the shared source: it is released with the result.
            result.add_cleanup(source.close)
            return result

    separate = sync_method(
        aseparate,
        """Try each member in order. ``timeout`` bounds this whole call (default: the chain's ``deadline``).""",
    )

    async def _run(
        self, audio: Any, source: AudioSource, requested: tuple[str, ...] | None, progress: ProgressCallback | None,
        deadline: float | None, shared: Mapping[str, Any],
    ) -> StemSet:  # fmt: skip
        started = time.monotonic()
        attempts: list[Attempt] = []
        for member in self.members:
            # Judging limits may probe or stat the input (an array becomes a temporary file): not on the loop.
            reason, limit = await anyio.to_thread.run_sync(self._next, member, source, requested, started, deadline)
            if reason is not None:
                attempts.append(Attempt(member.spec, "skipped", 0.0, reason=reason))
                continue
            breaker = self._breaker(member)
            t0 = time.perf_counter()
            try:
                given, extra = member_input(member, source, audio)
                if limit is not None:
                    extra["timeout"] = limit
                if getattr(member, "accepts_audio_source", False):
                    extra.update(shared)  # stemkit's own separators take fit= (a plain protocol provider need not)
                with error_boundary(member.spec):
                    result = await member.aseparate(given, stems=requested, progress=progress, **extra)
            except (InputError, ConfigError):
                breaker.record_success()  # the provider was fine; the request was not
                raise
            except StemkitError as exc:
                if not self._moves_on(exc):
                    breaker.release()
                    raise
                attempts.append(self._failed(member, exc, time.perf_counter() - t0))
                continue
            finally:
                breaker.release()  # a half-open probe never stays taken, whatever ended the call
            breaker.record_success()
            trail = tuple(attempts) + tuple(result.provenance.attempts)
            return result.with_provenance(replace(result.provenance, attempts=trail))
        raise AllProvidersFailedError(attempts)

    def close(self) -> None:
        self._closed = True
        for member in self.members:
            member.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def member_input(member: Separator, source: AudioSource, original: Any = None) -> tuple[Any, dict[str, Any]]:
    """(input, extra keywords) to hand ``member`` for ``source``, which a composite (a chain, an ensemble, a
    pipeline) opened once for all its members.

    stemkit's own separators take the opened source as is (no second probe, hash or copy). A provider written
    to the protocol alone gets a public input type: the caller's ``original`` input when it can be read again,
    an array with its ``sample_rate``, the URL, or the local copy the composite made (a file object can be read
    only once).
    """
    if getattr(member, "accepts_audio_source", False):
        return source, {}
    if source.kind == "array":
        array = original if isinstance(original, np.ndarray) else source.read()
        return array, {"sample_rate": source.sample_rate}
    if isinstance(original, str | os.PathLike | bytes | bytearray | memoryview):
        return original, {}
    if source.is_remote:
        return source.url, {}
    return source.path, {}

