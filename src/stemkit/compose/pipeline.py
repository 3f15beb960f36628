"""Pipelines: a separation whose stems are separated further, stage by stage, into one StemSet.

    >>> sep = stemkit.pipeline("stemsplit", Stage("onnx:htdemucs", feed="instrumental"))     # doctest: +SKIP
    >>> sep = stemkit.load("stemsplit >[instrumental] onnx:htdemucs")                          # doctest: +SKIP

The first stage separates the input. Every later stage is fed one stem of the result so far and splits it
into parts of it, which **replace** it: ``stemsplit >[instrumental] onnx:htdemucs`` gives StemSplit's vocals
and the local model's drums, bass and other of StemSplit's instrumental.

What ``other`` means stays what it means everywhere in stemkit: **what the named stems leave out.** When a
stage's named parts do not make up the stem it was fed (drums and bass are not the whole instrumental), the
rest — the fed stem minus its named parts — is added to ``other`` (created if the set has none). So the
stems of a pipeline always sum to the mixture, whatever the later providers find in what they are fed (a
local model's "vocals" in a hosted instrumental is bleed; it stays in the instrumental's rest). When the
named parts do make up the stem (``lead_vocals`` and ``backing_vocals`` of ``vocals``), they replace it as
the provider produced them.

A stage is asked for ``into`` (its named parts, and ``other`` to ask for the rest explicitly), by default
every stem of its provider's default combination that is part of the stem it is fed. The result's stems
are the final set (:attr:`Pipeline.stems`), and anything the core can derive from it: ask a pipeline for
``instrumental`` and it is the sum of the instrumental's parts. Stages whose stems no requested stem needs
are not run.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.to_thread
import numpy as np
import soundfile as sf

from stemkit._boundary import error_boundary
from stemkit._portal import sync_method
from stemkit.audio import AudioSource, FloatArray, open_source
from stemkit.compose._assemble import build_stemset
from stemkit.compose._parts import covers, covers_mixture, is_part
from stemkit.compose._runs import Run, is_local, prepare_source, run_one, sum_costs
from stemkit.config import PipelineSpec, SpecNode, StageSpec, parse_tree, render_tree
from stemkit.errors import ConfigError, ProviderError, StemkitError
from stemkit.excerpt import takes_excerpt
from stemkit.protocol import Capabilities, ProgressCallback, ProgressEvent, Separator
from stemkit.stems import Plan, normalize_request
from stemkit.stemset import StemSet

__all__ = ["Pipeline", "Stage", "pipeline"]

StageArg = Any  # Stage | spec string | Separator | (feed, provider) | (feed, provider, into)


@dataclass(frozen=True)
class Stage:
    """One stage: ``provider`` (a spec string or a Separator) fed the input (first stage, ``feed=None``) or
    the stem ``feed`` of the result so far, asked for ``into`` (default: see the module docstring)."""

    provider: str | Separator
    feed: str | None = None
    into: Sequence[str] | str | None = None


@dataclass(frozen=True)
class _Layout:
    """What one stage does, worked out when the pipeline is built."""

    feed: str | None
    parts: tuple[str, ...]  # named parts asked of the provider
    rest_to_other: bool  # whether the fed stem minus its parts goes to ``other``
    into: tuple[str, ...] | None  # as the caller gave it, for the spec


class Pipeline:
    """A Separator that runs its stages in turn (see the module docstring)."""

    name = "pipeline"
    #: a chain or another composite may hand it the input it already opened
    accepts_audio_source = True

    def __init__(self, stages: Sequence[Stage], *, owned: Sequence[Separator] = ()) -> None:
        if len(stages) < 2:
            raise ConfigError("pipeline: give at least two stages (a first separation, then a stage fed one stem)")
        separators: list[Separator] = []
        for number, stage in enumerate(stages, 1):
            if not isinstance(stage.provider, Separator):
                raise ConfigError(f"pipeline: stage {number}'s provider is not loaded; use stemkit.pipeline(...)")
            if (stage.feed is None) != (number == 1):
                raise ConfigError(
                    "pipeline: the first stage is fed the input (no feed=); every later stage names the stem it "
                    f"is fed (feed='instrumental'); stage {number} does not"
                )
            separators.append(stage.provider)
        self.separators = separators
        self._layout, self._sets = _lay_out(stages, separators)
        self._stems = self._sets[-1]
        self._owned = list(owned)
        self._closed = False

    # -- identity ---------------------------------------------------------------------------------------
    @property
    def stems(self) -> tuple[str, ...]:
        """The stems the stages leave, in order; requested stems are these or derived from them."""
        return self._stems

    @property
    def spec(self) -> str:
        """The spec string of this pipeline, e.g. ``stemsplit >[instrumental] dsp``; secrets redacted."""
        nodes: list[SpecNode] = []
        for separator in self.separators:
            try:
                nodes.append(parse_tree(separator.spec))
            except ConfigError:
                return " ".join(
                    (f">[{lay.feed}] " if lay.feed else "") + f"({sep.spec})"
                    for lay, sep in zip(self._layout, self.separators, strict=True)
                )
        stages = tuple(
            StageSpec(node, lay.feed, lay.into) for node, lay in zip(nodes, self._layout, strict=True)
        )
        return render_tree(PipelineSpec(stages))

    def __repr__(self) -> str:
        return f"<Pipeline {self.spec!r}>"

    @property
    def capabilities(self) -> Capabilities:
        """The stems left after each stage, as combinations (the last, :attr:`stems`, is the default; a request
        the first stages already answer runs only those); the first stage's input limits; what any stage needs
        (network, a key)."""
        caps = [s.capabilities for s in self.separators]
        first = caps[0]
        longest = [c.max_duration_seconds for c in caps if c.max_duration_seconds is not None]
        shortest = [c.min_duration_seconds for c in caps if c.min_duration_seconds is not None]
        units = {c.cost_unit for c in caps if c.cost_unit is not None}
        concurrency = [c.max_concurrency for c in caps if c.max_concurrency is not None]
        combinations = tuple(dict.fromkeys(self._sets))
        return Capabilities(
            combinations=combinations,
            default_combination=combinations.index(self._stems),
            complete=all(c.complete for c in caps),
            input_formats=first.input_formats,
            output_formats=frozenset({"wav"}),
            max_file_bytes=first.max_file_bytes,
            max_duration_seconds=min(longest) if longest else None,
            min_duration_seconds=max(shortest) if shortest else None,
            accepts_urls=first.accepts_urls,
            accepts_youtube=first.accepts_youtube,
            needs_network=any(c.needs_network for c in caps),
            needs_api_key=any(c.needs_api_key for c in caps),
            has_api_key=all(c.has_api_key or not c.needs_api_key for c in caps),
            local=all(c.local for c in caps),
            cost_unit=next(iter(units)) if len(units) == 1 else None,
            max_concurrency=min(concurrency) if concurrency else None,
            extra={"stages": [s.spec for s in self.separators]},
        )

    def plan(self, stems: Iterable[str] | str | None) -> Plan:
        return self.capabilities.plan(stems, provider="pipeline")

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
        """Run the stages the requested stems need, in order; ``timeout`` bounds the whole call."""
        with error_boundary("pipeline"):
            if self._closed:
                raise StemkitError("pipeline: this separator is closed; load a new one")
            if options:
                raise ConfigError(
                    f"pipeline: provider option(s) {', '.join(sorted(options))} cannot be passed to a whole pipeline; "
                    "put them in each stage's spec (e.g. 'stemsplit?quality=best >[instrumental] dsp')"
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

    def _needed_stages(self, plan: Plan) -> list[bool]:
        """Which stages to run: the first ones whose stems answer the request, and of those only the ones that
        produce something a requested stem is made of (the first always runs)."""
        last = self._sets.index(plan.combination)
        wanted = set(plan.combination) if plan.needs_mixture else {s for d in plan.outputs for s in d.sources}
        run = [False] * len(self._layout)
        for index in range(last, 0, -1):
            lay = self._layout[index]
            made = set(lay.parts) | ({"other"} if lay.rest_to_other else set())
            if made & wanted:
                run[index] = True
                assert lay.feed is not None
                wanted.add(lay.feed)
        run[0] = True
        return run

    async def _separate(
        self, source: AudioSource, plan: Plan, progress: ProgressCallback | None, deadline: float | None,
        started: float, owned: bool,
    ) -> StemSet:
        needed = self._needed_stages(plan)
        runs = [Run(i, s) for i, s in enumerate(self.separators)]
        await prepare_source(source, self.separators[:1])
        current: dict[str, FloatArray] = {}
        rate = 0
        mixture: FloatArray | None = None
        timings: dict[str, float] = {}
        try:
            for index, (run, lay) in enumerate(zip(runs, self._layout, strict=True)):
                if not needed[index]:
                    run.reason = "not needed for the requested stems"
                    continue
                _emit(progress, source, "processing", index / len(runs), f"stage {index + 1}: {run.label}")
                run.request = lay.parts
                run.extra["feed"] = lay.feed or "input"
                run.extra["parts"] = list(lay.parts)
                stage_started = time.perf_counter()
                if lay.feed is None:
                    await run_one(run, source, progress=progress, deadline=deadline, limiter=None)
                    result = _result(run)
                    rate = result.sample_rate
                    mixture = await anyio.to_thread.run_sync(_mixture, source, result)
                    whole = mixture
                else:
                    whole = current.pop(lay.feed)
                    await self._run_fed(run, whole, rate, progress, deadline)
                    result = _result(run)
                gain = float(run.extra.get("input_gain", 1.0))
                parts, rest = await anyio.to_thread.run_sync(_split, result, lay, whole, gain, run.label)
                current.update(parts)
                if rest is not None:
                    current["other"] = current["other"] + rest if "other" in current else rest
                run.close()
                timings[f"stage{index + 1}"] = time.perf_counter() - stage_started
        finally:
            for run in runs:
                run.close()
        cost, by_unit = sum_costs([r.result.provenance.cost if r.result else None for r in runs])
        result_set = build_stemset(
            who=self.name,
            spec=self.spec,
            plan=plan,
            produced=current,
            sample_rate=rate,
            source=source,
            mixture=mixture,
            started=started,
            timings=timings,
            cost=cost,
            attempts=[a for r in runs if r.request is not None for a in r.attempts()],
            options={"stems": list(self._stems)},
            extra={"stages": [r.record() for r in runs], "cost_by_unit": by_unit},
            cleanup=source.close if owned else None,
        )
        _emit(progress, source, "done", 1.0)
        return result_set

    async def _run_fed(
        self, run: Run, whole: FloatArray, rate: int, progress: ProgressCallback | None, deadline: float | None
    ) -> None:
        """Run a later stage on one stem: an array for a local provider; for one that uploads, a lossless file in
        a format it takes (scaled below full scale first when the stem peaks above it, and scaled back)."""
        if is_local(run.separator):
            run.extra["input"] = "array"
            await run_one(run, whole, sample_rate=rate, progress=progress, deadline=deadline, limiter=None)
            return
        folder = Path(await anyio.to_thread.run_sync(functools.partial(tempfile.mkdtemp, prefix="stemkit-pipeline-")))
        try:
            path, gain = await anyio.to_thread.run_sync(_write_stage_input, whole, rate, folder,
                                                        run.separator.capabilities.input_formats)
            run.extra["input"] = path.suffix.lstrip(".")
            run.extra["input_gain"] = gain
            await run_one(run, path, progress=progress, deadline=deadline, limiter=None)
        finally:
            await anyio.to_thread.run_sync(functools.partial(shutil.rmtree, folder, ignore_errors=True))

    # -- lifetime ---------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the stages' separators this pipeline loaded (separators passed in stay the caller's)."""
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


def pipeline(
    first: StageArg,
    *stages: StageArg,
    provider_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
) -> Pipeline:
    """A pipeline: ``first`` separates the input, each of ``stages`` separates one stem of the result so far.

    ``first`` is a spec string, a Separator or a :class:`Stage`; each later stage a :class:`Stage`
    (``Stage("dsp", feed="instrumental", into=["drums", "bass", "other"])``) or a tuple ``(feed, provider)``
    or ``(feed, provider, into)``. ``provider_kwargs`` maps a provider name to keyword arguments for loading
    it. Providers given as strings are closed with the pipeline.
    """
    from stemkit.compose.build import build

    given = [first if isinstance(first, Stage) else Stage(first), *(_stage(s) for s in stages)]
    owned: list[Separator] = []
    loaded: list[Stage] = []
    try:
        for stage in given:
            provider = stage.provider
            if not isinstance(provider, Separator):
                provider = build(parse_tree(provider), provider_kwargs=provider_kwargs)
                owned.append(provider)
            loaded.append(Stage(provider, stage.feed, stage.into))
        return Pipeline(loaded, owned=owned)
    except BaseException:
        for separator in owned:
            separator.close()
        raise


# -- helpers ------------------------------------------------------------------------------------------------
def _stage(value: StageArg) -> Stage:
    if isinstance(value, Stage):
        return value
    if isinstance(value, tuple) and len(value) in (2, 3):
        return Stage(value[1], feed=value[0], into=value[2] if len(value) == 3 else None)
    raise ConfigError(
        f"pipeline: {value!r} is not a stage; use Stage(provider, feed='instrumental') or ('instrumental', provider)"
    )


def _names(value: Sequence[str] | str | None) -> tuple[str, ...] | None:
    return None if value is None else normalize_request(value)


def _lay_out(
    stages: Sequence[Stage], separators: Sequence[Separator]
) -> tuple[list[_Layout], list[tuple[str, ...]]]:
    """Work out each stage's parts and the stems left after each stage, refusing what cannot work before
    anything runs."""
    layout: list[_Layout] = []
    sets: list[tuple[str, ...]] = []
    current: list[str] = []
    for number, (stage, separator) in enumerate(zip(stages, separators, strict=True), 1):
        where = f"pipeline: stage {number} ({separator.spec})"
        caps = separator.capabilities
        given = _names(stage.into)
        feed = None if stage.feed is None else _names(stage.feed)
        if feed is not None and len(feed) != 1:
            raise ConfigError(f"{where}: feed= names one stem, got {stage.feed!r}")
        whole = feed[0] if feed is not None else None
        if whole is not None and whole not in current:
            raise ConfigError(
                f"{where}: is fed {whole!r}, which the stages before it do not leave (they leave "
                f"{', '.join(current)}); feed one of those"
            )
        if given is not None:
            into = given
        else:
            default = caps.combinations[caps.default_combination]
            into = tuple(s for s in default if s == "other" or whole is None or is_part(s, whole))
        parts = tuple(s for s in into if s != "other")
        if not parts:
            offered = ", ".join(caps.combinations[caps.default_combination])
            raise ConfigError(
                f"{where}: produces no part of {whole or 'the input'} (it offers {offered}); name the parts it "
                f"should produce: {separator.spec}[part,part]"
            )
        for part in parts:
            if whole is not None and not is_part(part, whole):
                raise ConfigError(
                    f"{where}: {part} is not part of {whole}; a stage splits the stem it is fed into parts of it"
                )
        for i, a in enumerate(parts):
            for b in parts[i + 1 :]:
                if is_part(a, b) or is_part(b, a):
                    raise ConfigError(f"{where}: {a} and {b} overlap; ask for stems that do not contain each other")
        clash = [p for p in parts if p in current and p != whole]
        if clash:
            raise ConfigError(
                f"{where}: would produce {', '.join(clash)}, which an earlier stage already produced; "
                "a stage replaces the stem it is fed by parts of it"
            )
        try:
            caps.plan(parts, provider=separator.spec)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        complete = covers_mixture(parts) if whole is None else covers(whole, parts)
        rest_to_other = "other" in into or not complete
        if whole is not None:
            current.remove(whole)
        current.extend(parts)
        if rest_to_other and "other" not in current:
            current.append("other")
        layout.append(_Layout(whole, parts, rest_to_other, given if stage.into is not None else None))
        sets.append(tuple(current))
    return layout, sets


def _result(run: Run) -> StemSet:
    if run.outcome != "ok" or run.result is None:
        assert run.error is not None
        raise run.error
    return run.result


def _mixture(source: AudioSource, result: StemSet) -> FloatArray | None:
    if not source.is_remote:
        return source.read()
    return result.mixture.audio if result.mixture is not None else None


def _split(
    result: StemSet, lay: _Layout, whole: FloatArray | None, gain: float, label: str
) -> tuple[dict[str, FloatArray], FloatArray | None]:
    """A stage's named parts (the input gain undone), and the rest of what it was fed when that goes to
    ``other``."""
    parts = {name: np.asarray(result[name].audio, dtype=np.float32) for name in lay.parts}
    if gain != 1.0:
        parts = {name: audio / np.float32(gain) for name, audio in parts.items()}
    if not lay.rest_to_other:
        return parts, None
    if whole is None:
        raise ProviderError(
            f"pipeline: stage 1 ({label}) leaves 'other' to derive as the rest of the mixture, and a URL input "
            "has none; download the audio first",
            provider="pipeline",
        )
    rest = np.array(whole, dtype=np.float32, copy=True)
    for audio in parts.values():
        rest -= audio
    return parts, rest


def _write_stage_input(audio: FloatArray, rate: int, folder: Path, formats: frozenset[str]) -> tuple[Path, float]:
    """A 24-bit lossless file of a stem for a provider that takes files: FLAC where it takes FLAC, else WAV.
    A stem can exceed full scale (it is a difference of signals); such a stem is scaled down to fit, and the
    gain is returned so that the parts can be scaled back."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    gain = 1.0 if peak <= 0.999 else 0.999 / peak
    fmt = "flac" if not formats or "flac" in formats else "wav"
    path = folder / f"stem.{fmt}"
    sf.write(path, (audio * np.float32(gain)).T, rate, subtype="PCM_24", format=fmt.upper())
    return path, gain


def _emit(
    progress: ProgressCallback | None, source: AudioSource, stage: str, fraction: float, message: str = ""
) -> None:
    if progress is not None:
        progress(ProgressEvent("pipeline", stage, fraction, message, input_name=source.name))

