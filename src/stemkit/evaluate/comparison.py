"""``stemkit.compare``: run several providers over the same inputs and score them the way the field does.

Every provider is driven through the Separator protocol (``separate``), so anything ``stemkit.load`` can
load takes part, hosted or local. Separations run concurrently — each provider up to its
``capabilities.max_concurrency`` (one at a time for a local provider that states no limit, four for a
hosted one), all providers side by side — through the result cache (:mod:`stemkit.evaluate.cache`), so a
second comparison with another metric or one more provider bills nothing twice.

Scoring a track waits until all its separations are in, then: each provider's stems are aligned to the
references (one lag per separation, from the sum of its stems against the reference mixture, within
``max_lag_seconds``), resampled and length-matched (:mod:`stemkit.evaluate.align`), then scored.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stemkit.audio import FloatArray, open_source
from stemkit.cache import CachePolicy, ResultCache, apply_cache, resolve_cache
from stemkit.config import ProviderSpec, parse_chain, render_chain
from stemkit.errors import ConfigError, InputError, StemkitError
from stemkit.evaluate.align import DEFAULT_MAX_LAG_SECONDS, estimate_lag, match, shift
from stemkit.evaluate.baselines import mixture_estimates, oracle_estimates
from stemkit.evaluate.bsseval import BSS_METRICS, bss_eval, load_museval
from stemkit.evaluate.cache import CachedSeparation, SeparationCache
from stemkit.evaluate.metrics import agreement, mixture_consistency, sdr_and_si_sdr
from stemkit.evaluate.references import LoadedReferences, ReferenceSet, match_references
from stemkit.evaluate.report import SONG, Report, RunRecord, Score
from stemkit.inputs import expand_inputs, output_names
from stemkit.protocol import ProgressCallback, ProgressEvent, Separator
from stemkit.stems import CANONICAL_STEMS, normalize_request

__all__ = ["BASELINES", "METRICS", "compare", "parse_metrics"]

BASELINES = ("mixture", "oracle")
#: Metric names accepted by ``metrics=`` / ``--metrics``; ``bss`` stands for its four BSSEval v4 metrics.
METRICS = ("sdr", "si-sdr", "bss", "consistency", "agreement")
_METRIC_ALIASES = {
    "si_sdr": "si-sdr",
    "sisdr": "si-sdr",
    "bsseval": "bss",
    "bss_eval": "bss",
    "bss-eval": "bss",
    "museval": "bss",
    "mixture-consistency": "consistency",
    "mixture_consistency": "consistency",
}
_NEEDS_REFERENCES = frozenset({"sdr", "si-sdr", "bss"})
_FINE_STEMS = ("vocals", "drums", "bass", "piano", "guitar", "other")
_HOSTED_DEFAULT_CONCURRENCY = 4

InputArg = str | Path | Sequence[str | Path] | None
ProviderItem = str | ProviderSpec | Separator


def parse_metrics(metrics: str | Sequence[str] | None, *, references: bool) -> list[str]:
    """Canonical metric names in the order given, ``bss`` expanded; checked against the references."""
    if metrics is None:
        return ["sdr", "si-sdr", "consistency"] if references else ["consistency", "agreement"]
    items = [m for m in metrics.split(",")] if isinstance(metrics, str) else list(metrics)
    names: list[str] = []
    for item in items:
        key = str(item).strip().lower()
        key = _METRIC_ALIASES.get(key, key)
        if key not in METRICS:
            raise ConfigError(f"metrics: unknown metric {str(item).strip()!r}; choose from {', '.join(METRICS)}")
        if key in _NEEDS_REFERENCES and not references:
            raise ConfigError(
                f"metrics: {key!r} scores against references, and none were given; pass references=DIR "
                "(--references DIR or --musdb ROOT), or use the reference-free metrics consistency, agreement"
            )
        expanded = list(BSS_METRICS) if key == "bss" else [key]
        names.extend(n for n in expanded if n not in names)
    if not names:
        raise ConfigError(f"metrics: no metric named; choose from {', '.join(METRICS)}")
    return names


def partition(stems: Sequence[str]) -> list[str]:
    """The stems of a set that together make up the mixture: the instrument stems (with ``other``, which
    a StemSet defines as what its siblings leave) or else vocals + instrumental."""
    fine = [s for s in _FINE_STEMS if s in stems]
    if [s for s in fine if s != "vocals"]:
        return fine
    if "instrumental" in stems:
        return [*fine, "instrumental"]
    return fine


@dataclass
class _Contestant:
    label: str
    kind: str  # "provider" | "mixture" | "oracle"
    separator: Separator | None = None
    owned: bool = False
    alpha: float = 2.0
    limit: int = 1
    semaphore: threading.Semaphore | None = None

    @property
    def baseline(self) -> bool:
        return self.kind != "provider"


@dataclass
class _Track:
    name: str
    path: Path
    references: ReferenceSet | None
    sha256: str = ""
    duration: float = 0.0
    stems: tuple[str, ...] | None = None


@dataclass
class _Outcome:
    separation: CachedSeparation | None
    cached: bool
    error: StemkitError | None = None


def _baseline(spec: ProviderSpec) -> _Contestant:
    if spec.target is not None:
        raise ConfigError(f"provider: {spec.render()!r}: the {spec.name} baseline takes no target")
    known = {"mixture": set(), "oracle": {"alpha"}}[spec.name]
    unknown = sorted(set(spec.options) - known)
    if unknown:
        listing = ", ".join(sorted(known)) or "none"
        raise ConfigError(f"provider: {spec.name}: unknown option(s) {', '.join(unknown)}; known options: {listing}")
    alpha = 2.0
    if "alpha" in spec.options:
        try:
            alpha = float(spec.options["alpha"])
        except ValueError:
            alpha = -1.0
        if not (alpha > 0 and np.isfinite(alpha)):
            raise ConfigError(
                f"provider: oracle?alpha={spec.options['alpha']}: alpha must be a positive number "
                "(1 for magnitude ratio masks, 2 for power ratio masks)"
            )
    return _Contestant(spec.render(), spec.name, alpha=alpha)


def _contestants(
    providers: Sequence[ProviderItem] | ProviderItem, have_references: bool, baselines: bool, policy: CachePolicy
) -> list[_Contestant]:
    single = isinstance(providers, str | ProviderSpec | Separator)
    items: list[ProviderItem] = [providers] if single else list(providers)  # type: ignore[list-item,arg-type]
    if not items and not (have_references and baselines):
        raise ConfigError("providers: name at least one provider to compare, e.g. providers=['dsp']")
    out: list[_Contestant] = []
    try:
        for item in items:
            if isinstance(item, str | ProviderSpec):
                specs = parse_chain(item)
                if len(specs) == 1 and specs[0].name in BASELINES:
                    out.append(_baseline(specs[0]))
                    continue
                from stemkit.api import load

                out.append(_Contestant(render_chain(specs), "provider", load(specs, cache=policy), owned=True))
            elif isinstance(item, Separator):
                cached = apply_cache(item, policy, owned=False)  # closing the wrapper leaves the caller's open
                out.append(_Contestant(item.spec, "provider", cached, owned=cached is not item))
            else:
                raise ConfigError(
                    f"providers: {item!r} is neither a spec string nor a Separator; "
                    "pass e.g. 'dsp' or stemkit.load('dsp')"
                )
        if have_references and baselines:
            kinds = {c.kind for c in out}
            out += [_Contestant(name, name) for name in BASELINES if name not in kinds]
        labels = [c.label for c in out]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ConfigError(f"providers: {', '.join(repeated)} listed twice; name each provider once")
        if not have_references:
            named = [c.label for c in out if c.baseline]
            if named:
                raise ConfigError(
                    f"providers: the {' and '.join(named)} baseline(s) are scored against references, and none "
                    "were given; pass references=DIR (--references DIR or --musdb ROOT) or leave them out"
                )
    except BaseException:
        for c in out:
            if c.owned and c.separator is not None:
                c.separator.close()
        raise
    for c in out:
        if c.separator is not None:
            caps = c.separator.capabilities
            c.limit = max(1, caps.max_concurrency or (1 if caps.local else _HOSTED_DEFAULT_CONCURRENCY))
            c.semaphore = threading.Semaphore(c.limit)
    return out


def _tracks(inputs: InputArg, references: str | Path | None, stems: str | Sequence[str] | None) -> list[_Track]:
    given: list[Path] = []
    if inputs is not None:
        raw: Sequence[str | Path] = [inputs] if isinstance(inputs, str | Path) else list(inputs)
        for item in expand_inputs(raw) if raw else []:
            if isinstance(item, str) and item.startswith(("http://", "https://")):
                raise ConfigError(
                    f"inputs: {item} is a URL; compare scores local audio (it reads the mixture), download it first"
                )
            path = Path(item)
            if not path.is_file():
                raise InputError(f"{path}: no such file; name an audio file or a folder of them")
            given.append(path)
    requested = normalize_request(stems)
    if references is None:
        if not given:
            raise ConfigError("inputs: name at least one audio file (or pass references=MUSDB_ROOT to use its tracks)")
        return [
            _Track(name, path, None, stems=requested) for name, path in zip(output_names(given), given, strict=True)
        ]
    pairs = match_references(given, references)
    names: list[str] = []
    for path, ref in pairs:
        base = ref.name if ref.mixture is not None and path.resolve() == ref.mixture.resolve() else path.stem
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    tracks = []
    for name, (path, ref) in zip(names, pairs, strict=True):
        available = tuple(ref.stems)
        if requested is not None:
            missing = [s for s in requested if s not in available]
            if missing:
                raise ConfigError(
                    f"stems: {', '.join(missing)} not among the references in {ref.folder} ({', '.join(available)}); "
                    "request stems that have a reference"
                )
            available = tuple(s for s in CANONICAL_STEMS if s in requested)
        tracks.append(_Track(name, path, ref, stems=available))
    return tracks


def _emit(progress: ProgressCallback | None, **fields: Any) -> None:
    if progress is not None:
        progress(ProgressEvent(**fields))


def _separate(contestant: _Contestant, track: _Track, progress: ProgressCallback | None) -> _Outcome:
    assert contestant.separator is not None
    assert contestant.semaphore is not None

    def forward(event: ProgressEvent) -> None:
        if progress is not None:
            progress(dataclasses.replace(event, provider=contestant.label, input_name=track.name))

    with contestant.semaphore:
        _emit(progress, provider=contestant.label, stage="prepare", fraction=0.0, input_name=track.name)
        started = time.perf_counter()
        try:
            result = contestant.separator.separate(track.path, stems=track.stems, progress=forward)
        except StemkitError as exc:
            _emit(
                progress,
                provider=contestant.label,
                stage="done",
                fraction=1.0,
                message=f"failed: {type(exc).__name__}",
                input_name=track.name,
            )
            return _Outcome(None, cached=False, error=exc)
    # The result stays open (its files back the stems) until the comparison lets go of it.
    separation = CachedSeparation.from_stemset(result, seconds=time.perf_counter() - started)
    return _Outcome(separation, cached=separation.cached)


def compare(
    inputs: InputArg = None,
    providers: Sequence[ProviderItem] | ProviderItem = ("dsp",),
    *,
    references: str | Path | None = None,
    metrics: str | Sequence[str] | None = None,
    stems: str | Sequence[str] | None = None,
    baselines: bool = True,
    cache: ResultCache | str | Path | bool | None = None,
    progress: ProgressCallback | None = None,
    max_lag_seconds: float = DEFAULT_MAX_LAG_SECONDS,
) -> Report:
    """Separate ``inputs`` with every provider and score the results.

    ``inputs``: audio files or folders of them; may be omitted with a MUSDB18-HQ ``references`` root (every
    track's ``mixture.wav`` is then an input). ``providers``: spec strings (``"dsp"``, ``"ezstems?stems=4"``,
    a chain ``"a | b"``) or loaded Separators; ``mixture`` and ``oracle`` (``oracle?alpha=1``) name the SiSEC
    baselines, which are added automatically when there are references (``baselines=False`` to leave them
    out). ``references``: a folder of stems for one input, or a MUSDB18-HQ root. ``metrics``: any of
    ``sdr, si-sdr, bss, consistency, agreement`` (default: sdr, si-sdr, consistency with references;
    consistency, agreement without). ``stems``: which stems to request and score (default: the reference
    stems; without references, each provider's default set). ``cache``: None keeps paid providers'
    separations in the shared result cache and local ones in a temporary cache (``report.cache``, reusable);
    a folder, URL or ResultCache keeps every provider's there across runs; False keeps none.
    ``progress`` receives the providers' ProgressEvents (``provider`` is the spec as listed,
    ``input_name`` the track), from worker threads.

    A provider that fails on an input does not stop the comparison: the failure is recorded in
    ``report.runs`` (``report.failures``, ``report.raise_for_failures()``) and shown in every table. Bad
    input, unknown providers, options or metrics fail before any separation starts.
    """
    if not (0.0 <= max_lag_seconds <= 10.0):
        raise ConfigError(f"max_lag_seconds: {max_lag_seconds} is outside [0, 10]; codec delays are well under 1 s")
    tracks = _tracks(inputs, references, stems)
    have_references = references is not None
    metric_names = parse_metrics(metrics, references=have_references)
    if any(m in BSS_METRICS for m in metric_names):
        load_museval()  # fail before separating anything
    store: ResultCache | None
    if cache is False:
        store = None
    elif isinstance(cache, ResultCache):
        store = cache
    else:
        store = ResultCache() if cache is True else SeparationCache(cache)
    # Stored before scoring and read back from disk: a long comparison keeps its separations on disk.
    policy = resolve_cache(store or False, write_behind=False)
    contestants = _contestants(providers, have_references, baselines, policy)
    try:
        for track in tracks:
            source = open_source(track.path)
            try:
                track.sha256 = source.sha256
                track.duration = source.duration
            finally:
                source.close()
        return _run(tracks, contestants, metric_names, store, progress, max_lag_seconds, have_references)
    finally:
        for c in contestants:
            if c.owned and c.separator is not None:
                c.separator.close()


def _run(
    tracks: list[_Track],
    contestants: list[_Contestant],
    metric_names: list[str],
    cache: ResultCache | None,
    progress: ProgressCallback | None,
    max_lag_seconds: float,
    have_references: bool,
) -> Report:
    real = [c for c in contestants if not c.baseline]
    workers = max(1, min(32, sum(c.limit for c in real)))
    futures: dict[str, Future[_Outcome]] = {}
    pending: dict[int, set[str]] = {}
    keys: dict[tuple[int, str], str] = {}
    report = Report(
        tracks=[t.name for t in tracks],
        providers=[c.label for c in contestants],
        stems=[],
        metrics=metric_names,
        references=have_references,
        cache=cache,
    )
    stems_seen: list[str] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stemkit-compare") as pool:
        try:
            for index, track in enumerate(tracks):
                pending[index] = set()
                for c in real:
                    key = f"{track.sha256}|{c.label}|{','.join(track.stems or ())}"
                    keys[(index, c.label)] = key
                    if key not in futures:
                        futures[key] = pool.submit(_separate, c, track, progress)
                    pending[index].add(key)
            done: set[str] = set()
            by_future = {future: key for key, future in futures.items()}
            scored: set[int] = set()

            def ready() -> None:
                for index, track in enumerate(tracks):
                    if index not in scored and pending[index] <= done:
                        scored.add(index)
                        outcomes = {c.label: futures[keys[(index, c.label)]].result() for c in real}
                        _score_track(report, track, contestants, outcomes, metric_names, max_lag_seconds, stems_seen)

            ready()  # tracks with no real provider (baselines only)
            for future in as_completed(by_future):
                future.result()  # a bug (not a StemkitError) in a provider surfaces here
                done.add(by_future[future])
                ready()
        except BaseException:
            for future in futures.values():
                future.cancel()
            raise
    report.stems = [s for s in CANONICAL_STEMS if s in stems_seen]
    return report


def _sum(stems: Mapping[str, NDArray[Any]], names: Sequence[str]) -> FloatArray:
    first = stems[names[0]]
    total = np.zeros(first.shape, dtype=np.float32)
    for name in names:
        total += stems[name]
    return total


def _score_track(
    report: Report,
    track: _Track,
    contestants: list[_Contestant],
    outcomes: Mapping[str, _Outcome],
    metric_names: list[str],
    max_lag_seconds: float,
    stems_seen: list[str],
) -> None:
    source = open_source(track.path)
    try:
        mix = source.read()
        rate = source.sample_rate
    finally:
        source.close()
    refs: LoadedReferences | None = track.references.load() if track.references is not None else None
    estimates: dict[str, tuple[Mapping[str, NDArray[Any]], int]] = {}
    for c in contestants:
        if c.baseline:
            continue
        outcome = outcomes[c.label]
        if outcome.separation is None:
            error = outcome.error
            report.runs.append(
                RunRecord(
                    track=track.name,
                    provider=c.label,
                    duration=track.duration,
                    error=str(error) if error else "no result",
                    error_class=type(error).__name__ if error else None,
                )
            )
            continue
        estimates[c.label] = (outcome.separation.stems, outcome.separation.sample_rate)
    lags: dict[str, float | None] = {}
    for c in contestants:
        seconds: float | None = None
        started = time.perf_counter()
        if c.kind == "mixture":
            assert track.stems is not None
            estimates[c.label] = (mixture_estimates(mix, track.stems), rate)
        elif c.kind == "oracle":
            assert refs is not None
            # Every reference takes part in the masks; only the requested stems are scored.
            masked = oracle_estimates(refs.mixture, refs.stems, alpha=c.alpha)
            wanted = track.stems or tuple(masked)
            estimates[c.label] = ({n: masked[n] for n in wanted if n in masked}, refs.sample_rate)
        if c.baseline:
            seconds = time.perf_counter() - started
        if c.label not in estimates:
            continue
        stems, est_rate = estimates[c.label]
        for name in stems:
            if name not in stems_seen:
                stems_seen.append(name)
        lag_seconds = _score_one(report, track, c, stems, est_rate, mix, rate, refs, metric_names, max_lag_seconds)
        lags[c.label] = lag_seconds
        outcome_or_none = outcomes.get(c.label)
        separation = outcome_or_none.separation if outcome_or_none is not None else None
        report.runs.append(
            RunRecord(
                track=track.name,
                provider=c.label,
                duration=track.duration,
                seconds=separation.seconds if separation is not None else seconds,
                cached=outcome_or_none.cached if outcome_or_none is not None else False,
                cost_amount=separation.cost_amount if separation is not None else None,
                cost_unit=separation.cost_unit if separation is not None else None,
                model=separation.model if separation is not None else c.kind,
                lag_seconds=lag_seconds,
            )
        )
    if "agreement" in metric_names:
        same_shape = {
            label: dict(stems)
            for label, (stems, est_rate) in estimates.items()
            if not next(c for c in contestants if c.label == label).baseline and est_rate == rate
        }
        for stem, by_ref in agreement(same_shape).items():
            for ref_label, by_est in by_ref.items():
                for est_label, value in by_est.items():
                    report.scores.append(Score(track.name, est_label, stem, "agreement", value, against=ref_label))


def _score_one(
    report: Report,
    track: _Track,
    contestant: _Contestant,
    stems: Mapping[str, NDArray[Any]],
    est_rate: int,
    mix: FloatArray,
    rate: int,
    refs: LoadedReferences | None,
    metric_names: list[str],
    max_lag_seconds: float,
) -> float | None:
    """Score one separation of one track; returns the lag (seconds) applied to align it, if any."""
    label = contestant.label
    parts = partition(list(stems))
    lag_seconds: float | None = None
    if "consistency" in metric_names and parts:
        if contestant.kind == "oracle" and refs is not None:
            base, base_rate = refs.mixture, refs.sample_rate
        else:
            base, base_rate = mix, rate
        summed = match(base, _sum(stems, parts), reference_rate=base_rate, estimate_rate=est_rate)
        lag = estimate_lag(base, summed, round(max_lag_seconds * base_rate))
        realigned = match(base, shift(summed, lag))
        consistency = mixture_consistency(base, [realigned])
        report.scores.append(Score(track.name, label, SONG, "consistency", consistency))
    if refs is None:
        return lag_seconds
    scored = [name for name in refs.stems if name in stems]
    if not scored:
        return lag_seconds
    lag = 0
    if contestant.kind != "oracle" and parts:
        summed = match(refs.mixture, _sum(stems, parts), reference_rate=refs.sample_rate, estimate_rate=est_rate)
        lag = estimate_lag(refs.mixture, summed, round(max_lag_seconds * refs.sample_rate))
    lag_seconds = lag / refs.sample_rate
    aligned = {
        name: match(refs.stems[name], stems[name], reference_rate=refs.sample_rate, estimate_rate=est_rate, lag=lag)
        for name in scored
    }
    per_metric: dict[str, list[float]] = {}
    if "sdr" in metric_names or "si-sdr" in metric_names:
        for name in scored:
            value_sdr, value_si = sdr_and_si_sdr(refs.stems[name], aligned[name])
            for metric, value in (("sdr", value_sdr), ("si-sdr", value_si)):
                if metric in metric_names:
                    report.scores.append(Score(track.name, label, name, metric, float(value)))
                    per_metric.setdefault(metric, []).append(float(value))
    if any(m in BSS_METRICS for m in metric_names):
        bss = bss_eval({n: refs.stems[n] for n in scored}, aligned, refs.sample_rate)
        for name in scored:
            for metric in BSS_METRICS:
                if metric in metric_names:
                    report.scores.append(Score(track.name, label, name, metric, bss[name][metric]))
                    per_metric.setdefault(metric, []).append(bss[name][metric])
    for metric, values in per_metric.items():
        finite_or_inf = [v for v in values if not np.isnan(v)]
        song = float(np.mean(finite_or_inf)) if finite_or_inf else float("nan")
        report.scores.append(Score(track.name, label, SONG, metric, song))
    return lag_seconds
