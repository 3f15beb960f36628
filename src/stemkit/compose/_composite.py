"""What every composite (an ensemble, a pipeline) does around its own work, written once: refuse a closed
composite and whole-composite provider options, plan the request, open the input once for all its parts (off
the event loop), run behind one error boundary with one deadline, and close the parts it loaded."""

from __future__ import annotations

import abc
import functools
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any, ClassVar, Self

import anyio
import anyio.to_thread

from stemkit._boundary import error_boundary
from stemkit._portal import sync_method
from stemkit.audio import AudioSource, open_source
from stemkit.errors import ConfigError, StemkitError
from stemkit.excerpt import takes_excerpt
from stemkit.protocol import ProgressCallback, Separator
from stemkit.stems import Plan, normalize_request
from stemkit.stemset import StemSet

__all__ = ["Composite"]


class Composite(abc.ABC):
    """Base of :class:`~stemkit.compose.Ensemble` and :class:`~stemkit.compose.Pipeline`."""

    name: ClassVar[str]
    #: a spec showing where provider options go instead (for the refusal's message)
    options_example: ClassVar[str]
    #: a chain or another composite may hand it the input it already opened
    accepts_audio_source: ClassVar[bool] = True

    _closed: bool
    _owned: list[Separator]

    @abc.abstractmethod
    def plan(self, stems: Iterable[str] | str | None) -> Plan: ...

    @abc.abstractmethod
    async def _separate(
        self, source: AudioSource, plan: Plan, progress: ProgressCallback | None, deadline: float | None,
        started: float, owned: bool,
    ) -> StemSet:  # fmt: skip
        """The composite's own work on the opened input (``deadline``: a ``time.monotonic()`` instant)."""

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
        """Separate ``audio`` with the composite's parts; ``timeout`` bounds the whole call (the one
        implementation of both flavours)."""
        with error_boundary(self.name):
            if self._closed:
                raise StemkitError(f"{self.name}: this separator is closed; load a new one")
            if options:
                raise ConfigError(
                    f"{self.name}: provider option(s) {', '.join(sorted(options))} cannot be passed to a whole "
                    f"{self.name}; put them in each part's spec (e.g. {self.options_example!r})"
                )
            started = time.perf_counter()
            deadline = None if timeout is None else time.monotonic() + timeout
            plan = self.plan(normalize_request(stems))
            source = await anyio.to_thread.run_sync(functools.partial(open_source, audio, sample_rate=sample_rate))
            owned = source is not audio
            try:
                return await self._separate(source, plan, progress, deadline, started, owned)
            except BaseException:
                if owned:
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(source.close)
                raise

    separate = sync_method(
        aseparate,
        """Blocking :meth:`aseparate` (its one implementation, run to completion from synchronous code).""",
    )

    # -- lifetime ---------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the parts this composite loaded (separators passed in stay the caller's). Idempotent."""
        self._closed = True
        for separator in self._owned:
            separator.close()
        self._owned = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
