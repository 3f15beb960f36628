"""Many inputs at once: ``separate_many`` yields one outcome per input as each finishes; a bad file never stops
the batch. It runs on ``aseparate``, so hosted providers overlap their network waits on one event loop and
local ones run in worker threads."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from anyio.from_thread import start_blocking_portal

from stemkit.api import ProviderArg, load
from stemkit.audio import write_format
from stemkit.errors import ConfigError, StemkitError
from stemkit.inputs import expand_inputs, output_names
from stemkit.protocol import ProgressCallback, Separator
from stemkit.stems import normalize_request
from stemkit.stemset import StemSet

__all__ = ["BatchItem", "aseparate_many", "separate_many"]


@dataclass
class BatchItem:
    """The outcome for one input: a StemSet (and written paths) or the error that stopped it."""

    input: str | Path
    name: str
    result: StemSet | None = None
    error: StemkitError | None = None
    paths: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def provider(self) -> str | None:
        return self.result.provider if self.result is not None else None


@dataclass(frozen=True)
class _Job:
    separator: Separator
    stems: tuple[str, ...] | None
    output_dir: Path | None
    fmt: str
    template: str
    progress: ProgressCallback | None


async def _one(job: _Job, item: str | Path, name: str, limiter: anyio.CapacityLimiter) -> BatchItem:
    started = time.perf_counter()
    async with limiter:
        try:
            result = await job.separator.aseparate(item, stems=job.stems, progress=job.progress)
            paths: dict[str, Path] = {}
            out = job.output_dir
            if out is not None:
                paths = await anyio.to_thread.run_sync(
                    lambda: result.save(out, format=job.fmt, template=job.template, input_name=name)
                )
        except StemkitError as exc:
            return BatchItem(item, name, error=exc, seconds=time.perf_counter() - started)
    return BatchItem(item, name, result=result, paths=paths, seconds=time.perf_counter() - started)


def _prepare(
    inputs: Iterable[str | Path] | str | Path,
    provider: ProviderArg,
    stems: Iterable[str] | str | None,
    concurrency: int,
    output_dir: str | Path | None,
    fmt: str,
    template: str,
) -> tuple[list[str | Path], list[str], tuple[str, ...] | None, Path | None]:
    if concurrency < 1:
        raise ConfigError(f"concurrency: {concurrency} is not a positive number of parallel separations")
    write_format(fmt)
    items = expand_inputs([inputs] if isinstance(inputs, str | Path) else inputs)
    if output_dir is not None and "{input}" not in template and len(items) > 1:
        raise ConfigError(
            f"template: {template!r} has no {{input}}, so {len(items)} inputs would overwrite each other's stems"
        )
    return items, output_names(items), normalize_request(stems), None if output_dir is None else Path(output_dir)


async def aseparate_many(
    inputs: Iterable[str | Path] | str | Path,
    provider: ProviderArg = None,
    *,
    stems: Iterable[str] | str | None = None,
    concurrency: int = 4,
    output_dir: str | Path | None = None,
    format: str = "wav",
    template: str = "{input}/{stem}.{ext}",
    progress: ProgressCallback | None = None,
    cache: Any = None,
) -> AsyncIterator[BatchItem]:
    """Async generator of :class:`BatchItem`, in completion order, at most ``concurrency`` at a time."""
    items, names, requested, out = _prepare(inputs, provider, stems, concurrency, output_dir, format, template)
    separator = load(provider, cache=cache)
    owned = separator is not provider  # a Separator the caller passed in stays the caller's to close
    try:
        job = _Job(separator, requested, out, format, template, progress)
        limiter = anyio.CapacityLimiter(concurrency)
        send, receive = anyio.create_memory_object_stream[BatchItem](len(items))
        async with anyio.create_task_group() as group:

            async def run(item: str | Path, name: str) -> None:
                await send.send(await _one(job, item, name, limiter))

            for item, name in zip(items, names, strict=True):
                group.start_soon(run, item, name)
            for _ in items:
                yield await receive.receive()
    finally:
        if owned:
            separator.close()


def separate_many(
    inputs: Iterable[str | Path] | str | Path,
    provider: ProviderArg = None,
    *,
    stems: Iterable[str] | str | None = None,
    concurrency: int = 4,
    output_dir: str | Path | None = None,
    format: str = "wav",
    template: str = "{input}/{stem}.{ext}",
    progress: ProgressCallback | None = None,
    cache: Any = None,
) -> Iterator[BatchItem]:
    """Separate many inputs (files, folders of audio files, URLs), yielding each outcome as it finishes.

    One bad file yields a BatchItem with its ``error`` and the rest go on. With ``output_dir``, stems are
    written under it (``{input}/{stem}.{ext}`` by default: one subfolder per input, never overwriting).
    ``cache`` selects the result cache as for :func:`stemkit.load` (a re-run answers from it).
    """
    items, names, requested, out = _prepare(inputs, provider, stems, concurrency, output_dir, format, template)
    separator = load(provider, cache=cache)
    owned = separator is not provider  # a Separator the caller passed in stays the caller's to close
    try:
        job = _Job(separator, requested, out, format, template, progress)
        with start_blocking_portal() as portal:
            limiter: anyio.CapacityLimiter = portal.call(_limiter, concurrency)
            futures = [
                portal.start_task_soon(_one, job, item, name, limiter)
                for item, name in zip(items, names, strict=True)
            ]
            try:
                for future in as_completed(futures):
                    yield future.result()
            finally:
                for future in futures:
                    future.cancel()
    finally:
        if owned:
            separator.close()


async def _limiter(n: int) -> anyio.CapacityLimiter:
    return anyio.CapacityLimiter(n)

