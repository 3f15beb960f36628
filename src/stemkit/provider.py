"""The base class every provider plugin builds on.

A plugin says what it can do (``capabilities``) and produces raw stems for one combination
(``_separate``: arrays or files, in the provider's own names, at whatever rate and length it likes). This
class does the rest, identically for every provider: opening and checking the input, refusing what the
provider's limits rule out before any work, planning which combination to run, normalizing every stem to the
input's rate, exact length and channel count, deriving requested stems the provider does not produce, and
recording provenance. That is what makes switching provider a one-string change.
"""

from __future__ import annotations

import abc
import math
import shutil
import tempfile
import time
import warnings
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self

import anyio
import anyio.to_thread
import numpy as np
import soundfile as sf
from pydantic import BaseModel, ConfigDict

from stemkit._boundary import error_boundary
from stemkit._portal import sync_method
from stemkit.audio import AudioSource, FloatArray, check_finite_stem, normalize_audio, open_source
from stemkit.config import ProviderSpec, redact, validate_options
from stemkit.errors import (
    ConfigError,
    InputError,
    ProtocolError,
    ProviderError,
    ProviderLimitError,
    SeparationTimeout,
    StemkitError,
)
from stemkit.excerpt import takes_excerpt
from stemkit.protocol import Capabilities, ProgressCallback, ProgressEvent
from stemkit.provenance import Attempt, Cost, Provenance
from stemkit.stems import Derivation, Plan, canonical_name, normalize_request
from stemkit.stemset import Stem, StemSet, exact_blocks

if TYPE_CHECKING:
    from stemkit.compose.fit import SentAudio
    from stemkit.cost import CostEstimate

__all__ = ["NoOptions", "RawResult", "SeparationJob", "SeparatorBase", "limit_violation"]


class NoOptions(BaseModel):
    """Options model of a provider that takes none."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class RawResult:
    """What a provider produced, before normalization: stems keyed by the provider's own names."""

    stems: Mapping[str, FloatArray | Path]
    sample_rate: int | None = None
    model: str | None = None
    job_id: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    cost: Cost | None = None
    analysis: dict[str, Any] = field(default_factory=dict)
    mixture: FloatArray | Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _Workdir:
    """A temporary folder that lives as long as any stem backed by a file in it."""

    def __init__(self, provider: str, source: AudioSource | None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=f"stemkit-{provider}-"))
        self._finalizer = weakref.finalize(self, _remove, self.path, source)

    def remove(self) -> None:
        self._finalizer()


def _remove(path: Path, source: AudioSource | None) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if source is not None:
        source.close()


@dataclass
class SeparationJob:
    """One call's worth of work handed to a provider's ``_separate`` / ``_aseparate``."""

    provider: str
    source: AudioSource
    combination: tuple[str, ...]
    options: Any
    workdir: Path
    deadline: float | None = None
    """``time.monotonic()`` value by which the call must end (None: no deadline)."""
    callback: ProgressCallback | None = None
    job_id: str | None = None
    """The provider's id for this job, once a hosted provider has accepted it (a timeout names it)."""
    requested: tuple[str, ...] | None = None
    """The stems the caller asked for (None: the provider's default set); ``combination`` is what is run."""
    idempotency_key: str | None = None
    """For a hosted job: the key to send with the request that creates it, the same on every try of the same
    request (from the job ledger), so a provider that honours it never creates (or bills) the job twice."""
    notes: dict[str, Any] = field(default_factory=dict)
    """For a hosted job: what an earlier try of this same request noted through the ledger (e.g. the key of an
    upload already made: :meth:`~stemkit.hosted.HostedSeparator._note`), so the retry sends the same request."""

    def progress(
        self,
        stage: str,
        fraction: float | None = None,
        message: str = "",
        *,
        job_id: str | None = None,
        queue_position: int | None = None,
    ) -> None:
        if self.callback is not None:
            self.callback(
                ProgressEvent(
                    provider=self.provider,
                    stage=stage,
                    fraction=None if fraction is None else min(1.0, max(0.0, float(fraction))),
                    message=message,
                    job_id=job_id,
                    queue_position=queue_position,
                    input_name=self.source.name,
                )
            )

    def remaining(self) -> float | None:
        """Seconds left before the caller's deadline, or None when there is none."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def check_deadline(self) -> None:
        """For CPU-bound providers, which cannot be interrupted: call between steps to stop at the deadline."""
        left = self.remaining()
        if left is not None and left <= 0:
            raise _DeadlinePassed


class _DeadlinePassed(Exception):
    """Raised by :meth:`SeparationJob.check_deadline`; the base class turns it into SeparationTimeout."""


def _seconds(value: float) -> str:
    """A duration for a message: 0.5, 12, 1800 — not 0.499999 or 1.8e+03."""
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def limit_violation(caps: Capabilities, source: AudioSource) -> tuple[str, str, str] | None:
    """The first of a provider's stated limits a local input breaks, as (code, what, advice), or None.

    One rule for both places that need it: a provider refusing the input, and a chain skipping the provider.
    """
    if source.is_remote:
        return None
    if caps.input_formats and source.kind == "file" and source.suffix.lstrip(".") not in caps.input_formats:
        formats = ", ".join(sorted(caps.input_formats))
        return ("UNSUPPORTED_FORMAT", f"{source.suffix or 'this'} input is not accepted (takes {formats})",
                "convert it or use another provider")
    if caps.max_file_bytes is not None and source.size_bytes > caps.max_file_bytes:
        limit = caps.max_file_bytes / 1e6
        return ("FILE_TOO_LARGE", f"{source.size_bytes / 1e6:.1f} MB is over the {limit:.0f} MB limit",
                "compress it or use another provider")
    if caps.max_duration_seconds is not None and source.duration > caps.max_duration_seconds:
        return ("AUDIO_TOO_LONG",
                f"{source.duration / 60:.1f} min is over the {caps.max_duration_seconds / 60:g} min limit",
                "cut it or use another provider")
    if caps.min_duration_seconds is not None and source.duration < caps.min_duration_seconds:
        return ("AUDIO_TOO_SHORT",
                f"{source.duration:.2f} s is under the {caps.min_duration_seconds:g} s minimum",
                "use a longer excerpt or another provider")
    return None


@dataclass(frozen=True)
class _Target:
    sample_rate: int
    channels: int
    frames: int


class SeparatorBase(abc.ABC):
    """Subclass this, set ``name`` and ``Options``, implement ``capabilities`` and ``_separate``."""

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: provider stem names that are not in stemkit's alias table
    stem_aliases: ClassVar[Mapping[str, str]] = {}
    #: a fallback chain may hand this separator its already opened input (an ``AudioSource``)
    accepts_audio_source: ClassVar[bool] = True

    def __init__(self, target: str | None = None, options: Mapping[str, Any] | BaseModel | None = None) -> None:
        raw = options.model_dump(exclude_unset=True) if isinstance(options, BaseModel) else dict(options or {})
        self.target = target
        # ``fit`` is reserved for the core (stemkit.compose.fit), never the plugin's: ``ezstems?fit=lossless``.
        from stemkit.compose.fit import FIT_OPTION, FitMode, fit_mode

        self._fit_given = FIT_OPTION in raw
        self.fit_mode: FitMode = fit_mode(raw.pop(FIT_OPTION, "auto"))
        self._raw_options: dict[str, Any] = raw
        self.options = validate_options(self.Options, raw, provider=self._label)
        self._closed = False

    @classmethod
    def from_spec(cls, spec: ProviderSpec | str, **kwargs: Any) -> Self:
        """Build from a spec (``name[:target][?k=v]``); keyword arguments carry secrets and objects."""
        from stemkit.config import parse_spec

        parsed = parse_spec(spec) if isinstance(spec, str) else spec
        return cls(parsed.target, parsed.options, **kwargs)

    # -- identity ---------------------------------------------------------------------------------------
    @property
    def _label(self) -> str:
        return self.name if self.target is None else f"{self.name}:{self.target}"

    @property
    def spec(self) -> str:
        options = {k: str(v) for k, v in self._raw_options.items()}
        if self._fit_given:
            options["fit"] = self.fit_mode
        return ProviderSpec(self.name, self.target, options).render()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec!r}>"

    def cache_identity(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """What identifies this provider's output, for the result cache: its name and target, every validated
        option (defaults filled in, so ``stemsplit`` and ``stemsplit?quality=best`` are one entry; secrets left
        out) with ``options`` (a call's own options) applied, and the plugin distribution's version.

        A plugin whose output depends on more (a model file's contents) or on less (a thread count) extends or
        trims this dict; it must stay JSON-serializable and must never hold a secret.
        """
        from stemkit.config import is_secret_key
        from stemkit.registry import distribution_version

        call = dict(options or {})
        fit = self._fit_for_call(call)  # core's option, not the plugin's: how an input is made to fit
        call.pop("fit", None)
        opts = (
            validate_options(self.Options, {**self._raw_options, **call}, provider=self._label)
            if call
            else self.options
        )
        dumped = opts.model_dump(mode="json")
        identity: dict[str, Any] = {
            "provider": self.name,
            "target": self.target,
            "options": {k: v for k, v in sorted(dumped.items()) if not is_secret_key(k)},
            "version": distribution_version(type(self)),
        }
        if fit != "auto":  # an input that must be fitted comes back differently under another mode
            identity["fit"] = fit
        if type(self).spec is not SeparatorBase.spec:
            # A provider that renders its own spec says more there than its options do (constructor settings).
            identity["spec"] = self.spec
        return identity

    @property
    @abc.abstractmethod
    def capabilities(self) -> Capabilities: ...

    def estimate_cost(self, sent: SentAudio) -> CostEstimate:
        """What sending ``sent`` (jobs and seconds of audio, after fitting) to this provider would cost.

        The default reads the capabilities (:func:`stemkit.cost.cost_from_capabilities`): a per-second
        ``cost_unit`` bills each job's seconds rounded up, a local provider costs compute time from its stated
        ``realtime_factor``. Override it for a provider's own billing (a subscription counts jobs, say); it
        must not make any request. ``stemkit.estimate`` and ``max_cost=`` read it.
        """
        from stemkit.cost import cost_from_capabilities

        return cost_from_capabilities(self.capabilities, sent)

    # -- the work a plugin does -------------------------------------------------------------------------
    #: Implement exactly one of these. CPU-bound work (a local model, DSP) implements the sync ``_separate``
    #: and the base class runs it in a worker thread; I/O-bound work (a hosted API) implements the async
    #: ``_aseparate`` — for hosted APIs, subclass :class:`stemkit.hosted.HostedSeparator`, which implements it
    #: once for every hosted provider. Either way ``separate`` and ``aseparate`` share one implementation.
    def _separate(self, job: SeparationJob) -> RawResult:
        """Produce ``job.combination`` for ``job.source``; report progress through ``job.progress``."""
        raise NotImplementedError

    async def _aseparate(self, job: SeparationJob) -> RawResult:
        """Async flavour; by default the sync work runs in a worker thread, never on the event loop."""
        return await anyio.to_thread.run_sync(self._separate, job)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not getattr(cls, "__abstractmethods__", None) and (
            cls._separate is SeparatorBase._separate and cls._aseparate is SeparatorBase._aseparate
        ):
            raise TypeError(f"{cls.__name__} must implement _separate (CPU-bound work) or _aseparate (I/O-bound)")

    def default_timeout(self, source: AudioSource) -> float | None:
        """Seconds a separation of ``source`` may take when the caller sets no ``timeout=`` (None: no limit)."""
        return None

    def _check_source(self, source: AudioSource) -> None:
        """Refuse an input this provider cannot take, before any work (override to add checks)."""
        caps = self.capabilities
        if source.kind == "youtube" and not caps.accepts_youtube:
            raise InputError(f"{source.name}: {self._label} cannot take a YouTube URL; download the audio first")
        if source.kind == "url" and not caps.accepts_urls:
            raise InputError(f"{source.name}: {self._label} separates local audio only; download the file first")
        violation = limit_violation(caps, source)
        if violation is not None:
            code, what, advice = violation
            raise ProviderLimitError(
                f"{source.name}: {what} for {self._label}; {advice}", provider=self.name, code=code
            )

    # -- public face ------------------------------------------------------------------------------------
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
        """Separate ``audio`` into ``stems`` as a normalized StemSet, without blocking the event loop.

        The one implementation of both flavours (:meth:`separate` runs it): prepare the input off the loop,
        run the provider's work under the deadline (``timeout`` seconds, else :meth:`default_timeout`),
        normalize and derive the stems — all behind one error boundary.
        """
        fit = self._fit_for_call(options)
        options.pop("fit", None)
        if fit != "off":  # fitting may split the input into pieces, each separated with fit="off"
            from stemkit.compose.fit import separate_fitted

            with error_boundary(self._label):
                return await separate_fitted(self, audio, mode=fit, stems=stems, progress=progress,
                                             sample_rate=sample_rate, timeout=timeout, options=options)  # fmt: skip
        started = time.perf_counter()
        with error_boundary(self._label):
            if timeout is not None and not timeout >= 0:
                raise ConfigError(f"timeout: {timeout!r} is not a number of seconds (0 or more)")
            scope = anyio.CancelScope(deadline=anyio.current_time() + timeout if timeout is not None else math.inf)
            job: SeparationJob | None = None
            result: StemSet | None = None
            try:
                with scope:
                    prepared, plan, workdir = await anyio.to_thread.run_sync(
                        self._prepare, audio, stems, progress, sample_rate, options
                    )
                    job = prepared
                    if timeout is None and (default := self.default_timeout(prepared.source)) is not None:
                        timeout = default
                        scope.deadline = anyio.current_time() + default
                    if scope.deadline != math.inf:
                        prepared.deadline = time.monotonic() + (scope.deadline - anyio.current_time())
                    result = await self._work(prepared, plan, workdir, started)
            except _DeadlinePassed:
                raise self._timed_out(job, timeout) from None
            if result is None:  # our own deadline cancelled the work (a caller's cancellation propagates)
                raise self._timed_out(job, timeout)
        assert job is not None
        job.progress("done", 1.0)
        return result

    separate = sync_method(
        aseparate,
        """Separate ``audio`` into ``stems`` (default: the provider's default set) as a normalized StemSet.

        ``timeout`` (seconds) bounds the whole call; without it, :meth:`default_timeout` applies (hosted
        providers have one). Only :class:`~stemkit.errors.StemkitError` errors are raised. This is
        :meth:`aseparate`, run to completion from synchronous code.
        """,
    )

    async def _work(self, job: SeparationJob, plan: Plan, workdir: _Workdir, started: float) -> StemSet:
        """The provider's work and the normalization of its result; the job's folder goes if either fails."""
        try:
            raw = await self._aseparate(job)
            return await anyio.to_thread.run_sync(self._assemble, job, plan, raw, started)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(workdir.remove)
            raise

    def _timed_out(self, job: SeparationJob | None, timeout: float | None) -> SeparationTimeout:
        name = job.source.name if job is not None else "the input"
        limit = f"{_seconds(timeout)} s" if timeout is not None else "its deadline"
        message = f"{name} was not separated within {limit}"
        job_id = job.job_id if job is not None else None
        if job_id is not None:
            message += (f"; job {job_id} keeps running at the provider: finish it with stemkit.resume({job_id!r}) "
                        "or `stemkit jobs resume`, or run the same request again (it resumes the job)")
        else:
            message += "; give it more time (timeout=) or use a faster provider"
        return SeparationTimeout(message, job_id=job_id, provider=self.name)

    def _fit_for_call(self, options: Mapping[str, Any]) -> str:
        """The fit mode of one call: its ``fit=`` keyword, else the spec's (``auto`` by default)."""
        from stemkit.compose.fit import FIT_OPTION, fit_mode

        return fit_mode(options[FIT_OPTION]) if FIT_OPTION in options else self.fit_mode

    def close(self) -> None:
        """Release sessions and connections. Idempotent."""
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the shared machinery ---------------------------------------------------------------------------
    def plan(self, stems: Iterable[str] | str | None) -> Plan:
        """Which combination this provider would run for ``stems``, and how each stem is obtained."""
        return self.capabilities.plan(stems, provider=self._label)

    def _prepare(
        self,
        audio: Any,
        stems: Iterable[str] | str | None,
        progress: ProgressCallback | None,
        sample_rate: int | None,
        options: Mapping[str, Any],
    ) -> tuple[SeparationJob, Plan, _Workdir]:
        if self._closed:
            raise StemkitError(f"{self._label}: this separator is closed; load a new one")
        opts = (
            validate_options(self.Options, {**self._raw_options, **options}, provider=self._label)
            if options
            else self.options
        )
        plan = self.plan(stems)
        source = open_source(audio, sample_rate=sample_rate)
        # A source the caller opened (a fallback chain shares one across its providers) is the caller's to close.
        owned = source is not audio
        try:
            self._check_source(source)
        except BaseException:
            if owned:
                source.close()
            raise
        workdir = _Workdir(self.name, source if owned else None)
        job = SeparationJob(self.name, source, plan.combination, opts, workdir.path, None, progress,
                            requested=normalize_request(stems))  # fmt: skip
        job.__dict__["_workdir"] = workdir  # keeps the folder alive for the job's lifetime
        job.progress("prepare", 0.0)
        return job, plan, workdir

    def _target(self, job: SeparationJob, raw: RawResult) -> _Target:
        """The shape every stem is normalized to: the input's; for a URL input, the provider's mixture or
        first stem (there is no local input to match)."""
        if not job.source.is_remote:
            return _Target(job.source.sample_rate, job.source.channels, job.source.frames)
        reference = raw.mixture if raw.mixture is not None else next(iter(raw.stems.values()), None)
        if isinstance(reference, Path):
            info = sf.info(reference)
            return _Target(int(info.samplerate), int(info.channels), int(info.frames))
        if isinstance(reference, np.ndarray) and raw.sample_rate is not None:
            arr = reference if reference.ndim == 2 else reference[np.newaxis, :]
            return _Target(raw.sample_rate, arr.shape[0], arr.shape[1])
        raise ProtocolError(f"{self._label}: returned no audio for {job.source.name}", provider=self.name)

    def _stem_from_raw(self, name: str, provider_name: str, value: FloatArray | Path, raw: RawResult,
                       target: _Target) -> Stem:
        if isinstance(value, Path):
            try:
                info = sf.info(value)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise ProtocolError(
                    f"{self._label}: stem {provider_name!r} ({value.name}) is not readable audio: {exc}",
                    provider=self.name,
                ) from exc
            if int(info.frames) == 0:
                raise ProtocolError(f"{self._label}: stem {provider_name!r} is empty", provider=self.name)
            check_finite_stem(value, stem=provider_name, provider=self._label, error=self._bad_audio_error)
            return Stem.from_file(
                name, value, sample_rate=target.sample_rate, channels=target.channels, frames=target.frames,
                provider_name=provider_name,
            )
        if raw.sample_rate is None:
            raise ProtocolError(f"{self._label}: returned arrays without a sample rate", provider=self.name)
        audio = normalize_audio(
            value, raw.sample_rate, to_rate=target.sample_rate, to_frames=target.frames, to_channels=target.channels
        )
        check_finite_stem(audio, stem=provider_name, provider=self._label, error=self._bad_audio_error)
        return Stem.from_array(name, audio, target.sample_rate, provider_name=provider_name)

    @property
    def _bad_audio_error(self) -> type[ProviderError]:
        """Unusable audio from a hosted provider is a bad answer (ProtocolError); from a local one, a fault of
        the provider itself (ProviderError). Either way a fallback chain moves on."""
        return ProviderError if self.capabilities.local else ProtocolError

    def _assemble(self, job: SeparationJob, plan: Plan, raw: RawResult, started: float) -> StemSet:
        target = self._target(job, raw)
        produced: dict[str, Stem] = {}
        for provider_name, value in raw.stems.items():
            name = canonical_name(provider_name, self.stem_aliases)
            if name is None or name not in plan.combination:
                warnings.warn(
                    f"{self._label}: ignoring unexpected stem {provider_name!r}", RuntimeWarning, stacklevel=2
                )
                continue
            produced[name] = self._stem_from_raw(name, provider_name, value, raw, target)
        missing = [name for name in plan.combination if name not in produced]
        if missing:
            raise ProtocolError(
                f"{self._label}: the result for {job.source.name} lacks the stem(s) {', '.join(missing)}",
                provider=self.name,
            )
        mixture = self._mixture(job, raw, target)
        outputs = [self._output(d, produced, mixture, target) for d in plan.outputs]
        workdir: _Workdir = job.__dict__["_workdir"]
        for stem in [*outputs, *produced.values()]:
            stem.keepalive = workdir
        timings = dict(raw.timings)
        timings["total"] = time.perf_counter() - started
        source = job.source
        provenance = Provenance(
            provider=self.name,
            spec=self.spec,
            model=raw.model or self.target,
            options=redact(job.options.model_dump()),
            job_id=raw.job_id,
            timings=timings,
            cost=raw.cost,
            analysis=dict(raw.analysis),
            input_sha256=source.sha256,
            input_duration=None if source.is_remote else source.duration,
            input_name=source.name,
            attempts=(Attempt(self._label, "ok", timings["total"]),),
            extra=dict(raw.extra),
        )
        if mixture is not None:
            mixture.keepalive = workdir
        return StemSet(outputs, provenance=provenance, mixture=mixture, cleanup=workdir.remove)

    def _mixture(self, job: SeparationJob, raw: RawResult, target: _Target) -> Stem | None:
        if raw.mixture is not None:
            return self._stem_from_raw("mixture", "mixture", raw.mixture, raw, target)
        if job.source.is_remote:
            return None
        source = job.source

        def blocks(blocksize: int) -> Iterator[FloatArray]:
            return exact_blocks(source.iter_blocks(blocksize), blocksize)

        # ``read`` when the whole mixture is asked for (an array input costs nothing), blocks when a residual
        # is derived or the mixture saved, so a long file input is never decoded whole for either.
        return Stem.derived_from(
            "mixture", source.read, blocks=blocks,
            sample_rate=target.sample_rate, channels=target.channels, frames=target.frames,
        )  # fmt: skip

    def _output(self, derivation: Derivation, produced: Mapping[str, Stem], mixture: Stem | None,
                target: _Target) -> Stem:
        if derivation.direct:
            stem = produced[derivation.name]
            stem.complement_of = derivation.complement_of
            return stem
        if derivation.uses_residual and mixture is None:
            raise ProtocolError(
                f"{self._label}: {derivation.name} needs the mixture to derive, and a URL input has none",
                provider=self.name,
            )
        sources = [produced[s] for s in derivation.sources]
        residual = (mixture, list(produced.values())) if derivation.uses_residual and mixture is not None else None
        return Stem.sum_of(
            derivation.name,
            sources,
            residual=residual,
            sample_rate=target.sample_rate,
            channels=target.channels,
            frames=target.frames,
            provider_name="+".join(
                [*(s.provider_name for s in sources), *(["residual"] if derivation.uses_residual else [])]
            ),
            complement_of=derivation.complement_of,
        )
