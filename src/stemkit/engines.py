"""Execution engines: where a batch of separations runs.

``local`` is stemkit's own (:mod:`stemkit.batch`: this process, ``concurrency`` separations at a time) and the
default. Any other engine is a plugin registered in the entry-point group ``stemkit.engines`` (the Ray engine,
``stemkit-ray``, is one; a Dask or Spark engine would be another), chosen by name::

    stemkit.separate_many(["catalogue/"], "dsp", output_dir="out", engine="ray",
                          engine_options={"address": "auto"})

The core never imports an engine by name. It checks what every engine must refuse the same way (the
concurrency, the stems, the format and template), hands the engine a :class:`BatchRequest`, and passes on the
:class:`~stemkit.batch.BatchItem` objects the engine yields: same inputs, same outputs, same items as local.

An engine is a class (the entry point) called with the ``engine_options`` as keyword arguments, whose
``aseparate_many(request)`` is an async generator of ``BatchItem`` in completion order. A problem with the
request as a whole is raised before any separation starts; each input's failure is its own item's ``error``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio.to_thread

from stemkit._boundary import error_boundary
from stemkit.errors import ConfigError, InputError
from stemkit.ledger import JobLedger
from stemkit.output import OutputSettings, check_template
from stemkit.protocol import ProgressCallback
from stemkit.registry import entry_points, load_entry_point
from stemkit.stems import normalize_request

if TYPE_CHECKING:
    from stemkit.api import ProviderArg
    from stemkit.batch import BatchItem
    from stemkit.budget import Budget

__all__ = ["ENGINE_GROUP", "LOCAL_ENGINE", "BatchRequest", "Engine", "engines", "load_engine", "run_engine"]

ENGINE_GROUP = "stemkit.engines"
LOCAL_ENGINE = "local"


@dataclass(frozen=True)
class BatchRequest:
    """A batch as the caller asked for it, after the checks every engine shares.

    ``inputs`` are as given (files, folders, URLs), not expanded: an engine lists folders and fsspec URLs where
    its workers can reach them. ``stems`` is normalized; ``settings`` (format, bit depth, clipping, …) and
    ``template`` are known to be valid, and ``settings.save_options()`` are what ``StemSet.save`` takes;
    ``offset``/``duration`` (seconds) are the part of every input to separate (``stemkit.excerpt``).
    ``provider`` is what ``load`` takes; ``cache`` is the ``cache=`` argument, resolved by each worker;
    ``ledger`` is the ``ledger=`` setting (``False``, a file path, or ``None`` for the environment's), for the
    workers to resolve with :func:`stemkit.ledger.using_ledger` around each separation: a context setting does
    not cross into another process. A ``max_cost`` budget was checked against the whole batch before the
    engine is called.
    """

    inputs: tuple[str | Path, ...]
    provider: ProviderArg
    stems: tuple[str, ...] | None
    concurrency: int
    output_dir: str | Path | None
    settings: OutputSettings
    template: str
    progress: ProgressCallback | None
    timeout: float | None
    cache: Any
    offset: float | None = None
    duration: float | None = None
    ledger: Any = None

    @property
    def format(self) -> str:
        return self.settings.format


class Engine(Protocol):
    """What an engine plugin's class builds (called with the ``engine_options``)."""

    def aseparate_many(self, request: BatchRequest) -> AsyncIterator[BatchItem]:
        """The batch's outcomes, one per input, in completion order."""
        ...


def engines() -> list[str]:
    """The engines that can run a batch: ``local`` and every installed engine plugin (nothing is imported)."""
    return [LOCAL_ENGINE, *(ep.name for ep in entry_points(ENGINE_GROUP) if ep.name != LOCAL_ENGINE)]


def load_engine(name: str, options: Mapping[str, Any] | None = None) -> Engine:
    """The engine plugin ``name``, built with ``options``; ConfigError if it is not installed or refuses them."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"engine: {name!r} is not an engine name; use one of {', '.join(engines())}")
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"engine_options: {options!r} is not a mapping of option names to values")
    if name == LOCAL_ENGINE:
        given = ", ".join(map(str, options or {})) or "an empty set"
        raise ConfigError(
            f"engine_options: the local engine takes none (got {given}); set concurrency= instead, or choose "
            "another engine"
        )
    factory = load_entry_point(ENGINE_GROUP, name, what="engine")
    try:
        engine: Engine = factory(**dict(options or {}))
    except TypeError as exc:
        raise ConfigError(f"engine {name!r}: {exc}") from None
    return engine


def _request(
    inputs: Iterable[str | Path] | str | Path,
    provider: ProviderArg,
    stems: Iterable[str] | str | None,
    concurrency: int,
    output_dir: str | Path | None,
    settings: OutputSettings,
    template: str,
    offset: float | None,
    duration: float | None,
    progress: ProgressCallback | None,
    timeout: float | None,
    cache: Any,
    ledger: Any,
) -> BatchRequest:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency: {concurrency!r} is not a positive number of parallel separations")
    given = (inputs,) if isinstance(inputs, str | Path) else tuple(inputs)
    if not given:
        raise InputError("no input given; name audio files or folders")
    check_template(template)
    if isinstance(ledger, JobLedger):
        ledger = ledger.path  # workers open the same file; the object itself stays in this process
    elif ledger not in (None, True, False) and not isinstance(ledger, str | os.PathLike):
        raise ConfigError(f"ledger: {ledger!r} is not a ledger setting; use False, a file path or a JobLedger")
    return BatchRequest(
        given, provider, normalize_request(stems), concurrency, output_dir, settings, template, progress, timeout,
        cache, offset, duration, ledger,
    )  # fmt: skip


def _check_budget(request: BatchRequest, budget: Budget) -> None:
    """``max_cost`` for a batch on an engine: the whole batch estimated here, before any worker starts (the
    inputs this process can read; an engine's workers cannot share this process's running total)."""
    from stemkit.api import load
    from stemkit.cost import check_budget
    from stemkit.inputs import expand_inputs

    items = expand_inputs(request.inputs, unique=True)
    separator = load(request.provider, cache=request.cache)
    try:
        check_budget(separator, items, request.stems, {}, budget, ledger=request.ledger)
    finally:
        if separator is not request.provider:
            separator.close()


async def run_engine(
    engine: str,
    engine_options: Mapping[str, Any] | None,
    inputs: Iterable[str | Path] | str | Path,
    provider: ProviderArg,
    *,
    stems: Iterable[str] | str | None,
    concurrency: int,
    output_dir: str | Path | None,
    settings: OutputSettings,
    template: str,
    offset: float | None = None,
    duration: float | None = None,
    progress: ProgressCallback | None,
    timeout: float | None,
    cache: Any,
    budget: Budget | None = None,
    ledger: Any = None,
) -> AsyncIterator[BatchItem]:
    """``aseparate_many`` on the engine plugin ``engine`` (the local engine is :mod:`stemkit.batch` itself)."""
    with error_boundary():
        request = await anyio.to_thread.run_sync(
            lambda: _request(
                inputs, provider, stems, concurrency, output_dir, settings, template, offset, duration, progress,
                timeout, cache, ledger,
            )
        )
        runner = await anyio.to_thread.run_sync(load_engine, engine, engine_options)
        if budget is not None:
            await anyio.to_thread.run_sync(_check_budget, request, budget)
    with error_boundary():  # an engine's own failure (its cluster lost) is a StemkitError like any other
        async for item in runner.aseparate_many(request):
            yield item
