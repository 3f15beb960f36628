"""Ensembles: several separators run on the same input, their stems aligned and combined into one StemSet.

    >>> sep = stemkit.ensemble(["stemsplit?quality=best", "onnx:htdemucs_ft"], method="median")  # doctest: +SKIP
    >>> sep = stemkit.load("(stemsplit + onnx:htdemucs_ft)?method=median | dsp")               # doctest: +SKIP

How a call goes:

1. **Plan.** The request is planned against the ensemble's capabilities (every combination some member
   offers), which fixes the stems to combine; the stems requested beyond them (``instrumental`` from a
   four-stem set, …) are *derived after combining*, exactly as a single provider derives them.
2. **Ask.** Each member is asked for the stems to combine that it can produce; a member that can produce
   none sits out, one whose capabilities rule the input out is skipped before any request.
3. **Run.** Members run concurrently: hosted jobs overlap; local members take turns on the CPU
   (``local_concurrency`` at a time, one by default, since a local model already uses every core).
4. **Align.** Each member's stems are aligned with the input (one lag per member, from its stems' sum
   against the mixture, within ``max_lag_seconds``; :mod:`stemkit.evaluate.align`).
5. **Combine.** Each stem over the members that produced it (:mod:`stemkit.compose.combine`), weighted per
   member and stem.

A member that fails is dropped and the rest combined (``on_failure="drop"``, the default; the trail and the
provenance say so), or fails the whole call (``on_failure="fail"``, the other members cancelled). Bad input
and bad requests fail at once either way, as in a chain.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self

import anyio
import anyio.to_thread
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from stemkit._boundary import error_boundary
from stemkit._portal import sync_method
from stemkit.audio import AudioSource, FloatArray, open_source
from stemkit.compose._assemble import build_stemset
from stemkit.compose._runs import Run, prepare_source, run_one, sum_costs
from stemkit.compose.combine import (
    METHODS,
    SPECTRAL_METHODS,
    WEIGHTED_METHODS,
    Aligned,
    Method,
    combine,
    require_backend,
)
from stemkit.compose.weights import Weights, WeightsArg
from stemkit.config import EnsembleSpec, SpecNode, parse_tree, render_tree, validate_options
from stemkit.errors import (
    AllProvidersFailedError,
    ConfigError,
    InputError,
    ProviderError,
    StemkitError,
)
from stemkit.evaluate.align import DEFAULT_MAX_LAG_SECONDS, estimate_lag, match
from stemkit.excerpt import takes_excerpt
from stemkit.protocol import Capabilities, ProgressCallback, ProgressEvent, Separator
from stemkit.stems import Plan, normalize_request, plan_stems
from stemkit.stemset import StemSet

__all__ = ["Ensemble", "EnsembleOptions", "ensemble", "render_ensemble"]

log = logging.getLogger("stemkit.compose")

OnFailure = Literal["drop", "fail"]
MemberArg = str | SpecNode | Separator


class EnsembleOptions(BaseModel):
    """An ensemble's options as a spec string writes them (``(a + b)?method=median&on_failure=fail``);
    ``weights`` and ``weights.<stem>`` are read separately (see :class:`~stemkit.compose.weights.Weights`)."""

    model_config = ConfigDict(extra="forbid")

    method: Method = "mean"
    on_failure: OnFailure = "drop"
    reference: int = Field(0, ge=0, description="member whose phase the spectral methods keep")
    max_lag_seconds: float = Field(DEFAULT_MAX_LAG_SECONDS, ge=0.0, le=1.0)
    local_concurrency: int = Field(1, ge=1, le=64)


_DEFAULTS = EnsembleOptions()


class Ensemble:
    """A Separator that runs its members on the same input and combines their stems (see the module)."""

    name = "ensemble"
    #: a chain or another composite may hand it the input it already opened
    accepts_audio_source = True

    def __init__(
        self,
        members: Sequence[Separator],
        *,
        method: Method = "mean",
        weights: WeightsArg | Weights = None,
        on_failure: OnFailure = "drop",
        reference: int = 0,
        max_lag_seconds: float = DEFAULT_MAX_LAG_SECONDS,
        local_concurrency: int = 1,
        owned: Sequence[Separator] = (),
    ) -> None:
        if not members:
            raise ConfigError("ensemble: name at least one member")
        try:
            opts = EnsembleOptions(
                method=method, on_failure=on_failure, reference=reference, max_lag_seconds=max_lag_seconds,
                local_concurrency=local_concurrency,
            )
        except ValueError as exc:
            raise ConfigError(f"ensemble: {_first_problem(exc)}") from None
        if opts.reference >= len(members):
            raise ConfigError(
                f"ensemble: reference={opts.reference} names no member; members are numbered 0 to {len(members) - 1}"
            )
        self.members = list(members)
        self.method: Method = opts.method
        self.on_failure: OnFailure = opts.on_failure
        self.reference = opts.reference
        self.max_lag_seconds = opts.max_lag_seconds
        self.local_concurrency = opts.local_concurrency
        require_backend(self.method)
        self.weights = weights if isinstance(weights, Weights) else Weights.parse(weights, len(self.members))
        if self.method not in WEIGHTED_METHODS and not self.weights.is_equal:
            raise ConfigError(
                f"ensemble: {self.method} takes the largest or smallest magnitude and has no weighted form; "
                "use weights with mean, median or mean_spec"
            )
        self._owned = list(owned)
        self._closed = False

    @classmethod
    def from_spec(
        cls, node: EnsembleSpec, members: Sequence[Separator], *, owned: Sequence[Separator] = ()
    ) -> Ensemble:
        """Build from a parsed ``(a + b)?options`` whose members are already loaded."""
        options = dict(node.options)
        weights = Weights.from_options(options, len(members))
        rest = {k: v for k, v in options.items() if k != "weights" and not k.startswith("weights.")}
        opts = validate_options(EnsembleOptions, rest, provider="ensemble")
        return cls(
            members, method=opts.method, weights=weights, on_failure=opts.on_failure, reference=opts.reference,
            max_lag_seconds=opts.max_lag_seconds, local_concurrency=opts.local_concurrency, owned=owned,
        )

    # -- identity ---------------------------------------------------------------------------------------
    @property
    def spec(self) -> str:
        """The spec string of this ensemble, e.g. ``(stemsplit + dsp)?method=median``; secrets redacted."""
        options = EnsembleOptions(
            method=self.method, on_failure=self.on_failure, reference=self.reference,
            max_lag_seconds=self.max_lag_seconds, local_concurrency=self.local_concurrency,
        )
        return render_ensemble([m.spec for m in self.members], options, self.weights)

    def __repr__(self) -> str:
        return f"<Ensemble {self.spec!r}>"

    @property
    def capabilities(self) -> Capabilities:
        """Every stem combination some member offers (a stem is combined over the members producing it).

        Limits are the widest of the members' under ``on_failure="drop"`` (one member that takes the input
        is enough) and the narrowest under ``"fail"`` (every member must take it).
        """
        return _capabilities([m.capabilities for m in self.members], every=self.on_failure == "fail",
                             method=self.method)

    def plan(self, stems: Iterable[str] | str | None) -> Plan:
        return self.capabilities.plan(stems, provider="ensemble")

    # -- separation -------------------------------------------------------------------------------------
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
        """Separate ``audio`` with every member and combine their stems; ``timeout`` bounds the whole call."""
        with error_boundary("ensemble"):
            if self._closed:
                raise StemkitError("ensemble: this separator is closed; load a new one")
            if options:
                raise ConfigError(
                    f"ensemble: provider option(s) {', '.join(sorted(options))} cannot be passed to a whole ensemble; "
                    "put them in each member's spec (e.g. 'stemsplit?quality=best + dsp')"
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
                    source.close()
                raise

    separate = sync_method(
        aseparate,
        """Blocking :meth:`aseparate` (its one implementation, run to completion from synchronous code).""",
    )

    async def _separate(
        self, source: AudioSource, plan: Plan, progress: ProgressCallback | None, deadline: float | None,
        started: float, owned: bool,
    ) -> StemSet:
        needed = _needed(plan)
        runs = [Run(i, m) for i, m in enumerate(self.members)]
        for run in runs:
            self._assign(run, source, needed)
        active = [r for r in runs if r.request is not None]
        if not active:
            raise AllProvidersFailedError(
                [a for r in runs for a in r.attempts()],
                "ensemble: no member can take this request:\n" + _lines(runs),
            )
        _emit(progress, source, "prepare", 0.0)
        await prepare_source(source, [r.separator for r in active])
        try:
            failed_at = await self._run_members(active, source, progress, deadline)
            ok = [r for r in runs if r.outcome == "ok"]
            failed = [r for r in runs if r.outcome == "failed"]
            if failed and self.on_failure == "fail":
                first = min(failed, key=lambda r: failed_at.get(r.index, 0.0))
                assert first.error is not None
                raise first.error
            if not ok:
                raise AllProvidersFailedError(
                    [a for r in runs for a in r.attempts()], "ensemble: every member failed:\n" + _lines(runs)
                )
            for run in runs:
                if run.request is not None and run.outcome != "ok":
                    log.warning("ensemble: dropped %s (%s); combining the other member(s)", run.label,
                                run.reason or type(run.error).__name__)
            members_done = time.perf_counter()
            _emit(progress, source, "separate", 0.0, "combining")
            produced, details, rate, mixture = await anyio.to_thread.run_sync(
                self._combine, ok, source, needed, plan
            )
            combine_seconds = time.perf_counter() - members_done
        finally:
            for run in runs:
                run.close()
        cost, by_unit = sum_costs([r.result.provenance.cost if r.result else None for r in runs])
        result = build_stemset(
            who=self.name,
            spec=self.spec,
            plan=plan,
            produced=produced,
            sample_rate=rate,
            source=source,
            mixture=mixture,
            started=started,
            timings={"members": members_done - started, "combine": combine_seconds},
            cost=cost,
            attempts=[a for r in runs for a in r.attempts()],
            options=self._provenance_options(),
            extra={
                "members": [r.record() for r in runs],
                "stems": details,
                "dropped": [r.label for r in runs if r.request is not None and r.outcome != "ok"],
                "cost_by_unit": by_unit,
            },
            cleanup=source.close if owned else None,
        )
        _emit(progress, source, "done", 1.0)
        return result

    def _assign(self, run: Run, source: AudioSource, needed: tuple[str, ...]) -> None:
        """What this member is asked for, or why it sits out."""
        from stemkit.routing import skip_reason

        request = _request_for(run.separator, needed)
        if request is None:
            run.reason = f"produces none of {', '.join(needed)}"
            return
        reason = skip_reason(run.separator, source, request)
        if reason is not None:
            if self.on_failure == "fail":
                raise ProviderError(
                    f"ensemble: member {run.label} cannot take this request ({reason}); with on_failure='fail' "
                    "every member must run — fix it, remove it, or use on_failure='drop'",
                    provider=self.name, code="MEMBER_UNAVAILABLE",
                )
            run.reason = reason
            return
        run.request = request

    async def _run_members(
        self, active: list[Run], source: AudioSource, progress: ProgressCallback | None, deadline: float | None
    ) -> dict[int, float]:
        """Run the members side by side; returns when each failing member failed (monotonic), by index."""
        limiter = anyio.CapacityLimiter(self.local_concurrency)
        fatal: list[BaseException] = []
        failed_at: dict[int, float] = {}
        done = 0

        async def one(run: Run, scope: anyio.CancelScope) -> None:
            nonlocal done
            try:
                await run_one(run, source, progress=progress, deadline=deadline, limiter=limiter)
            except (InputError, ConfigError) as exc:  # the request is bad for every member: stop them all
                fatal.append(exc)
                scope.cancel()
                return
            if run.outcome == "failed":
                failed_at[run.index] = time.monotonic()
                if self.on_failure == "fail":
                    scope.cancel()
            done += 1
            _emit(progress, source, "processing", done / len(active), f"{run.label}: {run.outcome}")

        async with anyio.create_task_group() as group:
            for run in active:
                group.start_soon(one, run, group.cancel_scope)
        for run in active:
            if run.outcome == "skipped":  # cancelled
                run.reason = "cancelled: another member failed and on_failure='fail'"
        if fatal:
            raise fatal[0]
        return failed_at

    def _combine(
        self, ok: list[Run], source: AudioSource, needed: tuple[str, ...], plan: Plan
    ) -> tuple[dict[str, FloatArray], dict[str, Any], int, FloatArray | None]:
        """Align each member's stems with the input and combine each needed stem (worker thread)."""
        reference_run = next((r for r in ok if r.index == self.reference), ok[0])
        if source.is_remote:
            base = reference_run.result
            assert base is not None
            rate, channels, frames = base.sample_rate, base.channels, base.frames
            mixture = base.mixture.audio if base.mixture is not None else None
        else:
            rate, channels, frames = source.sample_rate, source.channels, source.frames
            mixture = source.read()
        expected_other = _other_complement(plan)
        stems: dict[int, dict[str, FloatArray]] = {}
        for run in ok:
            assert run.result is not None
            assert run.request is not None
            own = {}
            for name in run.request:
                stem = run.result[name]
                if name == "other" and not _same_other(stem.complement_of, expected_other):
                    run.notes.append(
                        f"its other excludes {', '.join(stem.complement_of or ())}, not "
                        f"{', '.join(expected_other or ())}: left out of other"
                    )
                    continue
                own[name] = _fit(stem.audio, run.result.sample_rate, rate, channels, frames)
            stems[run.index] = own
        # The signal every member is aligned with: the input itself, or (a URL) the reference member's stems.
        anchor = mixture if mixture is not None else _total(stems[reference_run.index], channels, frames)
        max_lag = round(self.max_lag_seconds * rate)
        lags = {}
        for run in ok:
            own = stems[run.index]
            lag = 0
            if own and max_lag > 0:
                lag = estimate_lag(anchor, _total(own, channels, frames), max_lag)
            lags[run.index] = lag
            run.extra["lag_seconds"] = lag / rate
        produced: dict[str, FloatArray] = {}
        details: dict[str, Any] = {}
        for name in needed:
            contributors = [r for r in ok if name in stems[r.index]]
            if not contributors:
                raise AllProvidersFailedError(
                    [a for r in ok for a in r.attempts()],
                    f"ensemble: no member that produces {name} succeeded; the members that could have failed or "
                    "were skipped",
                )
            row = self.weights.for_stem(name)
            weights = [row[r.index] for r in contributors]
            note = None
            if not any(w > 0 for w in weights):
                note = "every member that produced it has weight 0: combined with equal weights"
                weights = [1.0] * len(contributors)
            phase_from = next((i for i, r in enumerate(contributors) if r.index == self.reference), 0)
            produced[name] = combine(
                [Aligned(stems[r.index][name], lags[r.index]) for r in contributors],
                weights, self.method, frames=frames, sample_rate=rate, reference=phase_from,
            )
            details[name] = {
                "members": [r.index for r in contributors],
                "weights": weights,
                **({"phase_from": contributors[phase_from].index} if self.method in SPECTRAL_METHODS else {}),
                **({"note": note} if note else {}),
            }
        return produced, details, rate, mixture

    def _provenance_options(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "weights": self.weights.describe(),
            "on_failure": self.on_failure,
            "reference": self.reference,
            "max_lag_seconds": self.max_lag_seconds,
            "local_concurrency": self.local_concurrency,
        }

    # -- lifetime ---------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the members this ensemble loaded (separators passed in stay the caller's). Idempotent."""
        self._closed = True
        for member in self._owned:
            member.close()
        self._owned = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def ensemble(
    members: Sequence[MemberArg],
    *,
    method: Method = "mean",
    weights: WeightsArg = None,
    on_failure: OnFailure = "drop",
    reference: int = 0,
    max_lag_seconds: float = DEFAULT_MAX_LAG_SECONDS,
    local_concurrency: int = 1,
    provider_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
) -> Ensemble:
    """An ensemble of ``members`` (spec strings — chains, pipelines, ensembles — or loaded Separators).

    ``method``: ``mean``, ``median``, ``max_spec``, ``min_spec`` or ``mean_spec``. ``weights``: one per member
    (a number, or a mapping of stem to number), or a mapping of stem to one number per member.
    ``on_failure``: ``"drop"`` a failing member and combine the rest, or ``"fail"``. ``reference``: the member
    whose phase the spectral methods keep. ``max_lag_seconds``: how far a member may be offset and still be
    aligned (0 turns alignment off). ``local_concurrency``: local members computing at once.
    ``provider_kwargs`` maps a provider name to keyword arguments for loading it (``{"stemsplit":
    {"api_key": ...}}``). Members given as strings are closed with the ensemble.
    """
    if isinstance(members, str) or not isinstance(members, Sequence):
        raise ConfigError("ensemble: members must be a list, e.g. ['stemsplit', 'dsp']; or load '(stemsplit + dsp)'")
    from stemkit.compose.build import build

    loaded: list[Separator] = []
    owned: list[Separator] = []
    try:
        for member in members:
            if isinstance(member, str) or not isinstance(member, Separator):
                separator = build(parse_tree(member), provider_kwargs=provider_kwargs)
                owned.append(separator)
            else:
                separator = member
            loaded.append(separator)
        return Ensemble(
            loaded, method=method, weights=weights, on_failure=on_failure, reference=reference,
            max_lag_seconds=max_lag_seconds, local_concurrency=local_concurrency, owned=owned,
        )
    except BaseException:
        for separator in owned:
            separator.close()
        raise


# -- helpers ------------------------------------------------------------------------------------------------
def _first_problem(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}={first.get('input')!r}: {first['msg']}" + (
            f" (choose from {', '.join(METHODS)})" if where == "method" else ""
        )
    return str(exc)


def render_ensemble(members: Sequence[str], options: EnsembleOptions, weights: Weights) -> str:
    """The spec string of an ensemble of the members with these specs: only the options that differ from the
    defaults (and the method, for an ensemble of one, which would otherwise be its member)."""
    query: dict[str, str] = {}
    if options.method != _DEFAULTS.method or len(members) == 1:
        query["method"] = options.method
    query.update(weights.options())
    if options.on_failure != _DEFAULTS.on_failure:
        query["on_failure"] = options.on_failure
    if options.reference != _DEFAULTS.reference:
        query["reference"] = str(options.reference)
    if options.max_lag_seconds != _DEFAULTS.max_lag_seconds:
        query["max_lag_seconds"] = repr(options.max_lag_seconds)
    if options.local_concurrency != _DEFAULTS.local_concurrency:
        query["local_concurrency"] = str(options.local_concurrency)
    nodes: list[SpecNode] = []
    for spec in members:
        try:
            nodes.append(parse_tree(spec))
        except ConfigError:  # a Separator whose spec is not a spec string: shown as it is
            inner = " + ".join(f"({m})" for m in members)
            return f"({inner})?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else inner
    return render_tree(EnsembleSpec(tuple(nodes), query))


def _needed(plan: Plan) -> tuple[str, ...]:
    """The stems of the planned combination that the requested ones are made from (all of them when one is
    the residual, which is the mixture minus everything produced)."""
    if plan.needs_mixture:
        return plan.combination
    used = {s for d in plan.outputs for s in d.sources}
    return tuple(s for s in plan.combination if s in used)


def _can(caps: Capabilities, stems: tuple[str, ...]) -> bool:
    try:
        caps.plan(stems)
    except ConfigError:
        return False
    return True


def _request_for(member: Separator, needed: tuple[str, ...]) -> tuple[str, ...] | None:
    """The needed stems this member can produce. ``other`` only alongside every other needed stem, so that
    what it excludes is the same for every member."""
    caps = member.capabilities
    named = [s for s in needed if s != "other" and _can(caps, (s,))]
    if "other" in needed and all(s in named for s in needed if s != "other") and _can(caps, (*named, "other")):
        named.append("other")
    request = tuple(s for s in needed if s in named)
    while request and not _can(caps, request):
        request = request[:-1]
    return request or None


def _other_complement(plan: Plan) -> tuple[str, ...] | None:
    if "other" not in plan.combination:
        return None
    direct = plan_stems(None, [plan.combination])
    return next((d.complement_of for d in direct.outputs if d.name == "other"), None)


def _same_other(got: tuple[str, ...] | None, expected: tuple[str, ...] | None) -> bool:
    return got is None or expected is None or set(got) == set(expected)


def _fit(audio: FloatArray, from_rate: int, rate: int, channels: int, frames: int) -> FloatArray:
    """A member's stem at the ensemble's rate, channels and length (only a URL input can make them differ)."""
    if audio.shape == (channels, frames) and from_rate == rate:
        return audio
    shape = np.broadcast_to(np.float32(0.0), (channels, frames))
    return match(shape, audio, reference_rate=rate, estimate_rate=from_rate)


def _total(stems: Mapping[str, FloatArray], channels: int, frames: int) -> FloatArray:
    total = np.zeros((channels, frames), dtype=np.float32)
    for audio in stems.values():
        total += audio
    return total


def _emit(
    progress: ProgressCallback | None, source: AudioSource, stage: str, fraction: float, message: str = ""
) -> None:
    if progress is not None:
        progress(ProgressEvent("ensemble", stage, fraction, message, input_name=source.name))


def _lines(runs: Sequence[Run]) -> str:
    return "\n".join(f"  - {a.describe()}" for r in runs for a in r.attempts())


def limit_min(values: Sequence[float | None], every: bool) -> float | None:
    """The shortest input a set of members takes: the longest stated minimum when every member must take it,
    else the shortest (None when some member states none)."""
    stated = [v for v in values if v is not None]
    if every:
        return max(stated) if stated else None
    return None if len(stated) < len(values) else min(stated)


def _capabilities(caps: Sequence[Capabilities], *, every: bool, method: str) -> Capabilities:
    combos: list[tuple[str, ...]] = []
    partial: set[tuple[str, ...]] = set()
    for cap in caps:
        for combo in cap.combinations:
            if combo not in combos:
                combos.append(combo)
        partial |= set(cap.partial)
    first = caps[0]
    default = combos.index(first.combinations[first.default_combination])

    def limit(values: Sequence[float | int | None]) -> Any:
        if every:  # the narrowest stated limit
            stated = [v for v in values if v is not None]
            return min(stated) if stated else None
        return None if any(v is None for v in values) else max(v for v in values if v is not None)

    stated_formats = [c.input_formats for c in caps if c.input_formats]
    if every:
        formats = frozenset.intersection(*stated_formats) if stated_formats else frozenset()
    else:
        formats = frozenset().union(*stated_formats) if len(stated_formats) == len(caps) else frozenset()
    minimums = [c.min_duration_seconds for c in caps]
    units = {c.cost_unit for c in caps if c.cost_unit is not None}
    concurrency = [c.max_concurrency for c in caps if c.max_concurrency is not None]
    one = all if every else any
    return Capabilities(
        combinations=tuple(combos),
        partial=frozenset(partial),
        complete=method == "mean" and all(c.complete for c in caps),
        default_combination=default,
        input_formats=formats,
        output_formats=frozenset().union(*(c.output_formats for c in caps)),
        max_file_bytes=limit([c.max_file_bytes for c in caps]),
        max_duration_seconds=limit([c.max_duration_seconds for c in caps]),
        min_duration_seconds=limit_min(minimums, every),
        accepts_urls=one(c.accepts_urls for c in caps),
        accepts_youtube=one(c.accepts_youtube for c in caps),
        needs_network=(any if every else all)(c.needs_network for c in caps),
        needs_api_key=(any if every else all)(c.needs_api_key for c in caps),
        has_api_key=one(c.has_api_key or not c.needs_api_key for c in caps),
        local=all(c.local for c in caps),
        cost_unit=next(iter(units)) if len(units) == 1 else None,
        max_concurrency=min(concurrency) if concurrency else None,
        extra={"method": method, "on_failure": "fail" if every else "drop"},
    )

