"""Fitting an input to a provider's limits instead of failing or skipping it.

A provider's :class:`~stemkit.protocol.Capabilities` say which formats, sizes and durations it takes. When
an input breaks one of them, :func:`plan_fit` works out how to make it fit:

- **transcode** it to a format the provider accepts: losslessly (FLAC/OGG/AIFF/M4A → WAV, or FLAC), or,
  when size demands, to the highest constant bit rate MP3 (320 kbps at 32 kHz and above);
- **pad** an input shorter than the provider's minimum with silence (trimmed off the stems again);
- **split** an input that is too long or too large even so into overlapping chunks of (nearly) equal length
  that each fit, separate them — concurrently for a hosted provider — and stitch every stem back with
  crossfades in the overlaps (:mod:`stemkit.compose._stitch`) to the input's exact length.

One implementation runs a separation through a plan, :func:`separate_fitted` (async; CPU work in worker
threads). It is behind the ``fit=`` option every provider built on :class:`~stemkit.provider.SeparatorBase`
takes (a call keyword or a spec option, ``auto`` by default), behind :class:`Fitted` (a composite Separator
whose capabilities say what it accepts after fitting), and behind a fallback chain's decision to skip a
provider (:func:`fit_refusal`). Modes:

``auto``
    transcode when needed (lossless first, MP3 when size demands), chunk when needed.
``lossless``
    like ``auto``, but never a lossy codec: a too-large input is split instead.
``transcode``
    transcode or pad, never split (one job, no seams); an input that would need chunks is refused.
``off``
    no fitting: an input outside the limits is a :class:`~stemkit.errors.ProviderLimitError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.to_thread
import soundfile as sf

from stemkit._portal import sync_method
from stemkit.audio import AudioSource, FloatArray, normalize_audio, open_source
from stemkit.config import parse_spec
from stemkit.errors import ConfigError, InputError, OutputError, ProviderLimitError, SeparationTimeout
from stemkit.excerpt import takes_excerpt
from stemkit.ledger import fitted_piece
from stemkit.protocol import Capabilities, ProgressCallback, ProgressEvent, Separator
from stemkit.provenance import Attempt, Cost, Provenance
from stemkit.provider import _Workdir
from stemkit.stemset import Stem, StemSet

from ._plan import (
    CHUNK_ALIGN,
    DEFAULT_OVERLAP,
    FIT_MODES,
    FIT_OPTION,
    MIN_CHUNK_SECONDS,
    FitMode,
    FitPlan,
    SentAudio,
    estimate_sent,
    fit_mode,
    fit_refusal,
    fitted_capabilities,
    plan_fit,
)
from ._stitch import Stitcher
from ._transcode import write_pieces

__all__ = [
    "CHUNK_ALIGN",
    "DEFAULT_OVERLAP",
    "FIT_MODES",
    "FIT_OPTION",
    "MIN_CHUNK_SECONDS",
    "FitMode",
    "FitPlan",
    "Fitted",
    "SentAudio",
    "estimate_sent",
    "fit_mode",
    "fit_refusal",
    "fitted_capabilities",
    "plan_fit",
    "separate_fitted",
]

#: Chunks of a hosted provider in flight at once when its capabilities state no ``max_concurrency``.
HOSTED_CONCURRENCY = 4


# -- running a separation through a plan ---------------------------------------------------------------------
@dataclass
class _Run:
    separator: Separator
    source: AudioSource
    plan: FitPlan
    stems: Iterable[str] | str | None
    progress: ProgressCallback | None
    options: Mapping[str, Any]
    deadline: float | None
    concurrency: int
    results: list[StemSet | None] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return str(getattr(self.separator, "spec", self.separator.name))

    def report(self, stage: str, fraction: float | None, message: str) -> None:
        if self.progress is not None:
            self.progress(ProgressEvent(self.separator.name, stage, fraction, message, input_name=self.source.name))

    def chunk_progress(self, index: int) -> ProgressCallback | None:
        if self.progress is None:
            return None
        progress, total = self.progress, len(self.plan.pieces)

        def report(event: ProgressEvent) -> None:
            if event.stage == "done":
                return  # one "done", for the whole input, at the very end
            prefix = f"chunk {index + 1}/{total}" if total > 1 else "fitted"
            message = f"{prefix}: {event.message}" if event.message else prefix
            progress(dataclasses.replace(event, message=message, input_name=self.source.name))

        return report

    def call_options(self) -> dict[str, Any]:
        out = dict(self.options)
        if hasattr(self.separator, "fit_mode"):
            out[FIT_OPTION] = "off"  # the pieces fit; never fit them again
        if self.deadline is not None:
            out["timeout"] = max(0.001, self.deadline - time.monotonic())
        return out


async def separate_fitted(
    separator: Separator,
    audio: Any,
    *,
    mode: FitMode | str = "auto",
    stems: Iterable[str] | str | None = None,
    progress: ProgressCallback | None = None,
    sample_rate: int | None = None,
    timeout: float | None = None,
    options: Mapping[str, Any] | None = None,
    overlap: float = DEFAULT_OVERLAP,
    chunk_seconds: float | None = None,
    concurrency: int | None = None,
) -> StemSet:
    """Separate ``audio`` with ``separator``, fitting it to the separator's limits first when it must.

    An input that fits goes to ``separator.aseparate`` untouched and its StemSet comes back as is. Otherwise
    the pieces of the :func:`plan_fit` plan are written (in a worker thread, while earlier pieces are already
    being separated), separated with ``fit="off"``, and stitched; the StemSet has the input's rate, exact
    length and channel count, and ``provenance.extra["fit"]`` records the plan and every piece's job.
    """
    chosen = fit_mode(mode)
    opts = dict(options or {})
    source = await anyio.to_thread.run_sync(lambda: open_source(audio, sample_rate=sample_rate))
    owned = source is not audio
    try:
        label = str(getattr(separator, "_label", separator.name))
        plan = await anyio.to_thread.run_sync(
            lambda: plan_fit(
                separator.capabilities, source, chosen, overlap=overlap, chunk_seconds=chunk_seconds, provider=label
            )
        )
        if plan is None:
            if hasattr(separator, "fit_mode"):
                opts[FIT_OPTION] = "off"
            if timeout is not None:
                opts["timeout"] = timeout
            result = await separator.aseparate(source, stems=stems, progress=progress, **opts)
            return _closing(result, source) if owned else result
        caps = separator.capabilities
        limit = concurrency or (1 if caps.local else caps.max_concurrency or HOSTED_CONCURRENCY)
        deadline = None if timeout is None else time.monotonic() + timeout
        run = _Run(separator, source, plan, stems, progress, opts, deadline, max(1, limit))
        try:
            with anyio.fail_after(timeout):
                result = await _run_plan(run)
        except TimeoutError:
            done = sum(r is not None for r in run.results)
            raise SeparationTimeout(
                f"{source.name}: {run.label} did not finish within {timeout:g} s "
                f"({done} of {len(plan.pieces)} fitted piece(s) done); allow more time (timeout=)",
                provider=separator.name,
            ) from None
    except BaseException:
        if owned:
            source.close()
        raise
    return _closing(result, source) if owned else result


def _closing(result: StemSet, source: AudioSource) -> StemSet:
    """The same stems, also releasing ``source`` (which a derived mixture may still read) on close."""

    def cleanup() -> None:
        result.close()
        source.close()

    return StemSet(result.values(), provenance=result.provenance, mixture=result.mixture, cleanup=cleanup)


async def _run_plan(run: _Run) -> StemSet:
    started = time.perf_counter()
    plan = run.plan
    count = len(plan.pieces)
    run.results = [None] * count
    run.seconds = [0.0] * count
    try:
        pieces_dir = _Workdir(f"{run.separator.name}-fit", None)
    except OSError as exc:
        raise _write_failed(run, Path(tempfile.gettempdir()) / "stemkit-fit", exc) from exc
    run.report("prepare", 0.0, f"fitting {run.source.name} to {run.label}: {plan.describe()}")
    try:
        writing = await _separate_pieces(run, pieces_dir.path)
        stitch_started = time.perf_counter()
        result = await anyio.to_thread.run_sync(_assemble, run, started, writing, stitch_started)
    finally:
        pieces_dir.remove()
    run.report("done", 1.0, "")
    return result


async def _separate_pieces(run: _Run, folder: Path) -> float:
    """Write the pieces in a worker thread and separate each as soon as it is written; seconds spent writing."""
    plan = run.plan
    send, receive = anyio.create_memory_object_stream[tuple[int, Path]](max_buffer_size=run.concurrency)
    writing = 0.0

    def pieces() -> Iterator[Path]:
        return write_pieces(run.source, plan.pieces, plan.encoding, folder, pad=plan.pad)

    async def produce() -> None:
        nonlocal writing
        generator = await anyio.to_thread.run_sync(pieces)
        async with send:
            index = 0
            while True:
                t0 = time.perf_counter()
                try:
                    path = await anyio.to_thread.run_sync(next, generator, None)
                except (OSError, sf.SoundFileError) as exc:
                    raise _write_failed(run, folder, exc) from exc
                writing += time.perf_counter() - t0
                if path is None:
                    break
                _check_size(run, path)
                await send.send((index, path))
                index += 1
        if index != len(plan.pieces):
            raise InputError(
                f"{run.source.name}: the audio ended after {index} of {len(plan.pieces)} pieces; "
                "the file is shorter than its header says (is it complete?)"
            )

    async def separate(index: int, path: Path, slot: anyio.Semaphore) -> None:
        async with slot:
            t0 = time.perf_counter()
            with fitted_piece(run.source, index, len(plan.pieces), plan.mode):  # the job ledger names the input
                run.results[index] = await run.separator.aseparate(
                    path, stems=run.stems, progress=run.chunk_progress(index), **run.call_options()
                )
            run.seconds[index] = time.perf_counter() - t0

    await anyio.to_thread.run_sync(lambda: run.source.sha256)  # hashed once, off the loop, for fitted_piece
    slot = anyio.Semaphore(run.concurrency)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(produce)
            async with receive:
                async for index, path in receive:
                    group.start_soon(separate, index, path, slot)
    except BaseExceptionGroup as grouped:
        raise _first(grouped) from None
    return writing


def _write_failed(run: _Run, folder: Path, exc: BaseException) -> OutputError:
    """A temporary file of the fitting (a piece, a stitched stem) could not be written: usually a full disk."""
    why = getattr(exc, "strerror", None) or str(exc)
    return OutputError(
        f"{run.source.name}: fitting it to {run.label} needs temporary files in {folder.parent}, and writing them "
        f"failed ({why}); free space there or point TMPDIR at a larger disk",
        path=str(folder),
    )


def _first(grouped: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that stopped the pieces (the others were cancelled because of it)."""
    for exc in grouped.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first(exc)
        if not isinstance(exc, anyio.get_cancelled_exc_class()):
            return exc
    return grouped.exceptions[0]


def _check_size(run: _Run, path: Path) -> None:
    limit = run.plan.max_bytes
    size = path.stat().st_size
    if limit is not None and size > limit:  # the plan's bound is generous; reaching this is a stemkit bug
        raise ProviderLimitError(
            f"{run.source.name}: a fitted piece came out at {size / 1e6:.1f} MB, over the {limit / 1e6:.0f} MB "
            f"limit of {run.label} (stemkit's size bound was wrong; please report it, and use fit=lossless meanwhile)",
            provider=run.separator.name,
            code="CANNOT_FIT",
        )


def _assemble(run: _Run, started: float, writing: float, stitch_started: float) -> StemSet:
    """Stitch every stem, chunk by chunk (one chunk's stems in memory at a time), into float WAV files."""
    plan, source = run.plan, run.source
    results = [r for r in run.results if r is not None]
    assert len(results) == len(plan.pieces)
    first = results[0]
    names = list(first)
    out = _Workdir(f"{run.separator.name}-fitted", None)
    run.report("write", 0.0, f"stitching {len(plan.pieces)} piece(s)")
    try:
        stitchers = {name: Stitcher(plan.pieces) for name in names}
        paths = {name: out.path / f"{name}.wav" for name in names}
        with contextlib.ExitStack() as stack:
            files = {
                name: stack.enter_context(
                    sf.SoundFile(paths[name], "w", source.sample_rate, source.channels, subtype="FLOAT")
                )
                for name in names
            }
            for index, ((start, stop), result) in enumerate(zip(plan.pieces, results, strict=True)):
                for name in names:
                    audio = _fit_back(result[name].audio, result.sample_rate, source, stop - start)
                    for block in stitchers[name].add(index, audio):
                        files[name].write(block.T)
                result.close()
                run.report("write", (index + 1) / len(plan.pieces), "")
    except (OSError, sf.SoundFileError) as exc:
        out.remove()
        raise _write_failed(run, out.path, exc) from exc
    except BaseException:
        out.remove()
        raise
    stems = []
    for name in names:
        stem = Stem.from_file(
            name, paths[name], sample_rate=source.sample_rate, channels=source.channels, frames=source.frames,
            provider_name=first[name].provider_name, complement_of=first[name].complement_of,
        )  # fmt: skip
        stem.derived = first[name].derived
        stem.keepalive = out
        stems.append(stem)
    mixture = Stem.derived_from(
        "mixture", source.read, sample_rate=source.sample_rate, channels=source.channels, frames=source.frames
    )
    total = time.perf_counter() - started
    provenance = _provenance(run, results, total, writing, time.perf_counter() - stitch_started)
    return StemSet(stems, provenance=provenance, mixture=mixture, cleanup=out.remove)


def _fit_back(audio: FloatArray, rate: int, source: AudioSource, frames: int) -> FloatArray:
    """A piece's stem at the input's rate and channel count, without the padding: ``frames`` long."""
    return normalize_audio(audio, rate, to_rate=source.sample_rate, to_frames=frames, to_channels=source.channels)


def _provenance(run: _Run, results: list[StemSet], total: float, writing: float, stitching: float) -> Provenance:
    first = results[0].provenance
    costs = [r.provenance.cost for r in results]
    cost = None
    if all(c is not None for c in costs) and len({c.unit for c in costs if c is not None}) == 1:
        cost = Cost(sum(c.amount for c in costs if c is not None), first.cost.unit if first.cost else "")
    analyses = [r.provenance.analysis for r in results]
    analysis = {k: v for k, v in first.analysis.items() if all(a.get(k) == v for a in analyses)}
    record = run.plan.to_dict()
    record["jobs"] = [
        {
            "job_id": r.provenance.job_id,
            "seconds": seconds,
            "cost": None if r.provenance.cost is None else {"amount": r.provenance.cost.amount,
                                                             "unit": r.provenance.cost.unit},
            "timings": dict(r.provenance.timings),
            "resumed": r.provenance.resumed,
        }
        for r, seconds in zip(results, run.seconds, strict=True)
    ]  # fmt: skip
    extra = dict(first.extra) if len(results) == 1 else {}
    extra["fit"] = record
    timings = dict(first.timings) if len(results) == 1 else {}
    timings.update(total=total, fit=writing, stitch=stitching)
    source = run.source
    return Provenance(
        provider=first.provider,
        spec=first.spec,
        model=first.model,
        options=dict(first.options),
        job_id=first.job_id if len(results) == 1 else None,
        timings=timings,
        cost=cost,
        analysis=analysis,
        input_sha256=source.sha256,
        input_duration=source.duration,
        input_name=source.name,
        attempts=(Attempt(run.label, "ok", total),),
        extra=extra,
    )


# -- the composite ---------------------------------------------------------------------------------------------
class Fitted:
    """A Separator that fits every input to ``inner``'s limits (see :func:`plan_fit`) before separating.

    ``overlap`` is the seconds neighbouring chunks share; ``chunk_seconds`` caps a chunk's length even where
    ``inner`` states no limit; ``concurrency`` is how many chunks are in flight at once (default: one for a
    local provider, its ``max_concurrency`` or 4 for a hosted one). Its :attr:`capabilities` say what it
    accepts after fitting. Closing it closes ``inner``.
    """

    def __init__(
        self,
        inner: Separator,
        mode: FitMode | str = "auto",
        *,
        overlap: float = DEFAULT_OVERLAP,
        chunk_seconds: float | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.inner = inner
        self.mode: FitMode = fit_mode(mode)
        if chunk_seconds is not None and chunk_seconds <= 0:
            raise ConfigError(f"chunk_seconds: {chunk_seconds!r} must be a positive number of seconds")
        if concurrency is not None and concurrency < 1:
            raise ConfigError(f"concurrency: {concurrency!r} must be at least 1")
        self.overlap = overlap
        self.chunk_seconds = chunk_seconds
        self.concurrency = concurrency

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def spec(self) -> str:
        """The inner provider's spec with this mode as its ``fit`` option (a chain's spec as it is)."""
        spec = self.inner.spec
        if "|" in spec or self.mode == getattr(self.inner, "fit_mode", "auto"):
            return spec
        return parse_spec(spec).with_options({FIT_OPTION: self.mode}).render()

    @property
    def fit_mode(self) -> FitMode:
        return self.mode

    @property
    def capabilities(self) -> Capabilities:
        return fitted_capabilities(self.inner.capabilities, self.mode)

    def __repr__(self) -> str:
        return f"<Fitted {self.inner!r} fit={self.mode}>"

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
        """Separate ``audio`` with the inner provider, fitted to its limits; ``fit=`` overrides the mode."""
        mode = fit_mode(options.pop(FIT_OPTION)) if FIT_OPTION in options else self.mode
        return await separate_fitted(
            self.inner, audio, mode=mode, stems=stems, progress=progress, sample_rate=sample_rate, timeout=timeout,
            options=options, overlap=self.overlap, chunk_seconds=self.chunk_seconds, concurrency=self.concurrency,
        )  # fmt: skip

    separate = sync_method(
        aseparate,
        """Blocking :meth:`aseparate` (its one implementation, run to completion from synchronous code).""",
    )

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
