"""Many inputs at once: ``separate_many`` yields one outcome per input as each finishes; a bad file never stops
the batch. It runs on ``aseparate``, so hosted providers overlap their network waits on one event loop and
local ones run in worker threads."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from stemkit._boundary import error_boundary
from stemkit._portal import sync_iterator
from stemkit.api import ProviderArg, load
from stemkit.errors import ConfigError, StemkitError
from stemkit.inputs import expand_inputs, output_names
from stemkit.output import check_output, output_format
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
    timeout: float | None


async def _one(job: _Job, item: str | Path, name: str, limiter: anyio.CapacityLimiter) -> BatchItem:
    """One input, start to finish; whatever goes wrong is this item's error, never the batch's."""
    async with limiter:
        started = time.perf_counter()  # the item's own work, not its wait for a free slot
        result: StemSet | None = None
        try:
            with error_boundary():
                extra = {} if job.timeout is None else {"timeout": job.timeout}
                result = await job.separator.aseparate(item, stems=job.stems, progress=job.progress, **extra)
                paths: dict[str, Path] = {}
                out = job.output_dir
                if out is not None:
                    done = result
                    paths = await anyio.to_thread.run_sync(
                        lambda: done.save(out, format=job.fmt, template=job.template, input_name=name)
                    )
        except StemkitError as exc:
            if result is not None:
                await anyio.to_thread.run_sync(result.close)
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
    """Everything that can be wrong with the request as a whole, checked before any separation starts."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency: {concurrency!r} is not a positive number of parallel separations")
    items = expand_inputs([inputs] if isinstance(inputs, str | Path) else inputs)
    names = output_names(items)
    requested = normalize_request(stems)
    if output_dir is None:
        output_format(fmt)
    else:  # an unwritable folder or a template typo is found now, before anything is separated (or billed)
        check_output(output_dir, fmt, template, stems=requested, inputs=names)
    return items, names, requested, None if output_dir is None else Path(output_dir)


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
    timeout: float | None = None,
    cache: Any = None,
    engine: str = "local",
    engine_options: Mapping[str, Any] | None = None,
) -> AsyncIterator[BatchItem]:
    """Async generator of :class:`BatchItem`, in completion order, at most ``concurrency`` at a time.

    The one implementation of a batch (:func:`separate_many` runs it). A problem with the request as a whole
    (a bad provider spec, format, template or concurrency) is raised before any separation starts; after
    that, each input's failure is its own item's ``error`` and the batch goes on. ``timeout`` bounds each
    input's separation (seconds; hosted providers have a default). ``engine`` runs the batch elsewhere (an
    engine plugin such as ``"ray"``, configured by ``engine_options``; see :mod:`stemkit.engines`).
    """
    if engine != "local" or engine_options is not None:
        from stemkit.engines import run_engine

        async for outcome in run_engine(
            engine, engine_options, inputs, provider, stems=stems, concurrency=concurrency, output_dir=output_dir,
            format=format, template=template, progress=progress, timeout=timeout, cache=cache,
        ):  # fmt: skip
            yield outcome
        return
    with error_boundary():
        prepared = await anyio.to_thread.run_sync(
            _prepare, inputs, provider, stems, concurrency, output_dir, format, template
        )
        items, names, requested, out = prepared
        separator = load(provider, cache=cache)
    owned = separator is not provider  # a Separator the caller passed in stays the caller's to close
    try:
        job = _Job(separator, requested, out, format, template, progress, timeout)
        limiter = anyio.CapacityLimiter(concurrency)
        send, receive = anyio.create_memory_object_stream[BatchItem](max(len(items), 1))
        async with anyio.create_task_group() as group:

            async def run(item: str | Path, name: str) -> None:
                send.send_nowait(await _one(job, item, name, limiter))

            for item, name in zip(items, names, strict=True):
                group.start_soon(run, item, name)
            for _ in items:
                yield await receive.receive()
    finally:
        if owned:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(separator.close)


separate_many = sync_iterator(
    aseparate_many,
    """Separate many inputs (files, folders of audio files, URLs), yielding each outcome as it finishes.

    One bad file yields a BatchItem with its ``error`` and the rest go on. With ``output_dir``, stems are
    written under it (``{input}/{stem}.{ext}`` by default: one subfolder per input, never overwriting).
    This is :func:`aseparate_many`, run from synchronous code.
    """,
)
