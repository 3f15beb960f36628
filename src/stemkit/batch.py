"""Many inputs at once: ``separate_many`` yields one outcome per input as each finishes; a bad file never stops
the batch. It runs on ``aseparate``, so hosted providers overlap their network waits on one event loop and
local ones run in worker threads."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread

from stemkit._boundary import error_boundary
from stemkit._portal import sync_iterator
from stemkit.api import ProviderArg, load
from stemkit.errors import ConfigError, StemkitError
from stemkit.excerpt import parse_excerpt, separate_excerpt
from stemkit.inputs import expand_inputs, output_names
from stemkit.output import Normalization, OutputSettings, check_encoder, check_output, output_settings
from stemkit.protocol import ProgressCallback, Separator
from stemkit.provenance import Cost
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

    @property
    def origin(self) -> Literal["cached", "resumed", "new"] | None:
        """How the result came about: ``cached`` (the result cache answered), ``resumed`` (a job an earlier,
        interrupted run had submitted was finished), ``new``; None for a failed input."""
        return self.result.provenance.origin if self.result is not None else None

    @property
    def cost(self) -> Cost | None:
        """What this input cost now, as the provider reported it (None for a cached result: it cost nothing)."""
        return self.result.provenance.cost if self.result is not None else None


@dataclass(frozen=True)
class _Job:
    separator: Separator
    stems: tuple[str, ...] | None
    output_dir: Path | None
    settings: OutputSettings
    template: str
    progress: ProgressCallback | None
    timeout: float | None
    offset: float | None
    duration: float | None

    def save_options(self) -> dict[str, Any]:
        """:meth:`StemSet.save`'s keywords for these settings."""
        return {**self.settings.save_options(), "template": self.template}


async def _one(job: _Job, item: str | Path, name: str, limiter: anyio.CapacityLimiter) -> BatchItem:
    """One input, start to finish; whatever goes wrong is this item's error, never the batch's."""
    async with limiter:
        started = time.perf_counter()  # the item's own work, not its wait for a free slot
        result: StemSet | None = None
        try:
            with error_boundary():
                extra: dict[str, Any] = {} if job.timeout is None else {"timeout": job.timeout}
                result = await separate_excerpt(
                    job.separator, item, offset=job.offset, duration=job.duration, stems=job.stems,
                    progress=job.progress, **extra,
                )  # fmt: skip
                paths: dict[str, Path] = {}
                out = job.output_dir
                if out is not None:
                    done = result
                    paths = await anyio.to_thread.run_sync(
                        lambda: done.save(out, input_name=name, **job.save_options())
                    )
        except StemkitError as exc:
            if result is not None:
                await anyio.to_thread.run_sync(result.close)
            return BatchItem(item, name, error=exc, seconds=time.perf_counter() - started)
        return BatchItem(item, name, result=result, paths=paths, seconds=time.perf_counter() - started)


def _prepare(
    inputs: Iterable[str | Path] | str | Path,
    stems: Iterable[str] | str | None,
    concurrency: int,
    output_dir: str | Path | None,
    settings: OutputSettings,
    template: str,
) -> tuple[list[str | Path], list[str], tuple[str, ...] | None, Path | None]:
    """Everything that can be wrong with the request as a whole, checked before any separation starts."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency: {concurrency!r} is not a positive number of parallel separations")
    items = expand_inputs([inputs] if isinstance(inputs, str | Path) else inputs, unique=True)
    names = output_names(items)
    requested = normalize_request(stems)
    if settings.normalize is not None and settings.normalize.kind == "loudness":
        from stemkit.loudness import require_scipy

        require_scipy()
    if output_dir is not None:  # an unwritable folder or a template typo is found now, before anything is billed
        check_output(output_dir, settings.format, template, stems=requested, inputs=names, settings=settings)
        if settings.sample_rate is None:
            for rate in _input_rates(items):  # e.g. mp3 at 96 kHz, or 320 kbps at 22.05 kHz
                check_encoder(settings.format, rate, None, settings=settings)
    return items, names, requested, None if output_dir is None else Path(output_dir)


def _input_rates(items: Iterable[str | Path]) -> set[int]:
    """The sample rates of the local inputs libsndfile can probe (from their headers; others are skipped: their
    own errors come when they are separated)."""
    import soundfile as sf

    rates: set[int] = set()
    for item in items:
        if isinstance(item, str) and item.startswith(("http://", "https://")):
            continue
        try:
            rates.add(int(sf.info(str(item)).samplerate))
        except (sf.LibsndfileError, RuntimeError, OSError, TypeError):
            continue
    return rates


async def aseparate_many(
    inputs: Iterable[str | Path] | str | Path,
    provider: ProviderArg = None,
    *,
    stems: Iterable[str] | str | None = None,
    concurrency: int = 4,
    output_dir: str | Path | None = None,
    format: str = "wav",
    template: str = "{input}/{stem}.{ext}",
    bit_depth: int | None = None,
    bitrate: int | None = None,
    vbr_quality: float | None = None,
    clip: str = "auto",
    normalize: str | Normalization | None = None,
    output_sample_rate: int | None = None,
    offset: float | str | None = None,
    duration: float | str | None = None,
    progress: ProgressCallback | None = None,
    timeout: float | None = None,
    cache: Any = None,
    max_cost: Any = None,
    ledger: Any = None,
    engine: str = "local",
    engine_options: Mapping[str, Any] | None = None,
) -> AsyncIterator[BatchItem]:
    """Async generator of :class:`BatchItem`, in completion order, at most ``concurrency`` at a time.

    The one implementation of a batch (:func:`separate_many` runs it). A problem with the request as a whole
    (a bad provider spec, format or output setting, template, offset or concurrency; a batch whose estimated
    cost exceeds ``max_cost``) is raised before any separation starts; after that, each input's failure is its
    own item's ``error`` and the batch goes on. ``timeout`` bounds each input's separation (seconds; hosted
    providers have a default). ``offset`` and ``duration`` separate the same part of every input. The output
    settings (``bit_depth``, ``bitrate``, ``vbr_quality``, ``clip``, ``normalize``, and
    ``output_sample_rate``, which is :meth:`StemSet.save <stemkit.stemset.StemSet.save>`'s ``sample_rate``)
    are those of ``StemSet.save``. Run again after an interruption, a batch redoes only what is unfinished:
    results already made come from the result cache and jobs already submitted are resumed through the job
    ledger (``ledger``; each item's ``origin`` says which). ``engine`` runs the batch elsewhere (an engine
    plugin such as ``"ray"``, configured by ``engine_options``; see :mod:`stemkit.engines`).
    """
    from stemkit.budget import Budget, spending_limit
    from stemkit.ledger import using_ledger

    with error_boundary():
        settings = output_settings(
            format, bit_depth=bit_depth, bitrate=bitrate, vbr_quality=vbr_quality, clip=clip, normalize=normalize,
            sample_rate=output_sample_rate,
        )  # fmt: skip
        start, length = parse_excerpt(offset, duration)
        budget = Budget.parse(max_cost)
    if engine != "local" or engine_options is not None:
        from stemkit.engines import run_engine

        async for outcome in run_engine(
            engine, engine_options, inputs, provider, stems=stems, concurrency=concurrency, output_dir=output_dir,
            settings=settings, template=template, offset=start, duration=length, progress=progress,
            timeout=timeout, cache=cache, budget=budget, ledger=ledger,
        ):  # fmt: skip
            yield outcome
        return
    with error_boundary():
        prepared = await anyio.to_thread.run_sync(_prepare, inputs, stems, concurrency, output_dir, settings, template)
        items, names, requested, out = prepared
        separator = load(provider, cache=cache)
    owned = separator is not provider  # a Separator the caller passed in stays the caller's to close
    try:
        if budget is not None:
            from stemkit.cost import check_budget

            with error_boundary():
                await anyio.to_thread.run_sync(
                    lambda: check_budget(separator, items, requested, {}, budget, ledger=ledger)
                )
        job = _Job(separator, requested, out, settings, template, progress, timeout, start, length)
        limiter = anyio.CapacityLimiter(concurrency)
        send, receive = anyio.create_memory_object_stream[BatchItem](max(len(items), 1))
        async with anyio.create_task_group() as group:

            async def run(item: str | Path, name: str) -> None:
                with using_ledger(ledger), spending_limit(budget):  # this task's own context: the batch's
                    outcome = await _one(job, item, name, limiter)
                send.send_nowait(outcome)

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

    One bad file yields a BatchItem with its ``error`` and the rest go on; a file named twice (directly and
    through its folder) is separated once. With ``output_dir``, stems are written under it
    (``{input}/{stem}.{ext}`` by default: one subfolder per input, never overwriting). ``max_cost`` refuses a
    batch whose estimated cost exceeds it before anything is billed; re-run after an interruption, a batch
    redoes only what is unfinished (``item.origin``: cached, resumed or new).
    This is :func:`aseparate_many`, run from synchronous code.
    """,
)
