"""``stemkit.compare``: run several providers over the same inputs and score them the way the field does.

Every provider is driven through the Separator protocol (``separate``), so anything ``stemkit.load`` can
load takes part, hosted or local. Separations run concurrently — each provider up to its
``capabilities.max_concurrency`` (one at a time for a local provider that states no limit, four for a
hosted one), all providers side by side — through the result cache (:mod:`stemkit.evaluate.cache`), so a
second comparison with another metric or one more provider bills nothing twice.

Scoring a track waits until all its separations are in, then: each provider's stems are aligned to the
references (one lag per separation, from the sum of its stems against the reference mixture, within
``max_lag_seconds``), resampled and length-matched (:mod:`stemkit.evaluate.align`), then scored.

Each provider is scored on the stems it can produce: with references, every stem the references give
directly or by derivation (``instrumental`` = the sum of the non-vocal references, as a provider's derived
instrumental is the sum of its non-vocal stems) that some provider produces; a provider is asked for the
ones it can produce or derive from one run, and the run table says which. Reference-based scores and
reference-free indicators (:mod:`stemkit.evaluate.indicators`) are kept apart in the report.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stemkit.audio import FloatArray, open_source
from stemkit.cache import CachePolicy, ResultCache, apply_cache, resolve_cache
from stemkit.config import ProviderSpec, parse_tree, render_tree
from stemkit.errors import ConfigError, InputError, StemkitError
from stemkit.evaluate.align import DEFAULT_MAX_LAG_SECONDS, estimate_lag, match
from stemkit.evaluate.baselines import mixture_estimates, oracle_estimates
from stemkit.evaluate.bsseval import BSS_METRICS, BssReferences, load_scipy
from stemkit.evaluate.cache import CachedSeparation, SeparationCache
from stemkit.evaluate.indicators import activity, clipped_samples, consensus, leakage, loudness, peak_dbfs
from stemkit.evaluate.labels import short_labels
from stemkit.evaluate.listening import Listening, choose_excerpt, make_clip, parse_excerpt
from stemkit.evaluate.metrics import agreement, mixture_consistency, sdr_and_si_sdr
from stemkit.evaluate.references import LoadedReferences, ReferenceSet, derivable, derive, match_references
from stemkit.evaluate.report import INDICATORS, SONG, Report, RunRecord, Score
from stemkit.inputs import expand_inputs, output_names
from stemkit.protocol import Capabilities, ProgressCallback, ProgressEvent, Separator
from stemkit.stems import normalize_request, order_stems

__all__ = ["BASELINES", "METRICS", "compare", "parse_metrics"]

BASELINES = ("mixture", "oracle")
#: Metric names accepted by ``metrics=`` / ``--metrics``. ``bss`` stands for its four BSSEval v4 metrics and
#: ``indicators`` for every reference-free indicator.
METRICS = ("sdr", "si-sdr", "bss", *INDICATORS, "indicators")
_METRIC_ALIASES = {
    "si_sdr": "si-sdr",
    "sisdr": "si-sdr",
    "bsseval": "bss",
    "bss_eval": "bss",
    "bss-eval": "bss",
    "museval": "bss",
    "mixture-consistency": "consistency",
    "mixture_consistency": "consistency",
    "clipping": "clipped",
    "peak-level": "peak",
    "lufs": "loudness",
    "silence": "activity",
}
_NEEDS_REFERENCES = frozenset({"sdr", "si-sdr", "bss"})
_DEFAULT_INDICATORS = ("consistency", "consensus", "leakage", "peak", "clipped", "loudness", "activity")
_FINE_STEMS = ("vocals", "drums", "bass", "piano", "guitar", "other")
_HOSTED_DEFAULT_CONCURRENCY = 4

InputArg = str | Path | Sequence[str | Path] | None
ProviderItem = str | ProviderSpec | Separator
ProvidersArg = Sequence[ProviderItem] | ProviderItem | Mapping[str, ProviderItem]


def _loudness_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyloudnorm") is not None


def parse_metrics(metrics: str | Sequence[str] | None, *, references: bool) -> list[str]:
    """Canonical metric names in the order given, ``bss`` and ``indicators`` expanded; checked against the
    references. The default: sdr, si-sdr and the indicators with references; the indicators and the
    agreement matrix without (``loudness`` only where pyloudnorm is installed)."""
    if metrics is None:
        indicators = [m for m in _DEFAULT_INDICATORS if m != "loudness" or _loudness_available()]
        return ["sdr", "si-sdr", *indicators] if references else [*indicators, "agreement"]
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
                f"(--references DIR or --musdb ROOT), or use the reference-free indicators {', '.join(INDICATORS)}"
            )
        expanded = list(BSS_METRICS) if key == "bss" else list(_DEFAULT_INDICATORS) if key == "indicators" else [key]
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
    spec: str = ""
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
    stems: tuple[str, ...] | None = None  # what the comparison scores (None: each provider's default set)
    requests: dict[str, tuple[str, ...] | None] = field(default_factory=dict)  # per contestant label


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
    return _Contestant(spec.render(), spec.name, spec=spec.render(), alpha=alpha)


def _check_label(label: str) -> str:
    text = str(label).strip()
    if not text or "=" in text or "|" in text or len(text) > 40:
        raise ConfigError(
            f"label: {label!r} is not a usable provider label; use 1-40 characters without '=' or '|', "
            "e.g. --label fast=dsp"
        )
    return text


def _contestants(
    providers: ProvidersArg, have_references: bool, baselines: bool, policy: CachePolicy
) -> list[_Contestant]:
    chosen: dict[int, str] = {}
    if isinstance(providers, Mapping):
        labelled = [(_check_label(label), item) for label, item in providers.items()]
        items: list[ProviderItem] = [item for _, item in labelled]
        chosen = {i: label for i, (label, _) in enumerate(labelled)}
    else:
        single = isinstance(providers, str | ProviderSpec | Separator)
        items = [providers] if single else list(providers)  # type: ignore[list-item,arg-type]
    if not items and not (have_references and baselines):
        raise ConfigError("providers: name at least one provider to compare, e.g. providers=['dsp']")
    out: list[_Contestant] = []
    try:
        for item in items:
            if isinstance(item, str | ProviderSpec):
                tree = parse_tree(item)
                if isinstance(tree, ProviderSpec) and tree.name in BASELINES:
                    out.append(_baseline(tree))
                    continue
                from stemkit.api import load

                rendered = render_tree(tree)
                out.append(_Contestant(rendered, "provider", rendered, load(item, cache=policy), owned=True))
            elif isinstance(item, Separator):
                cached = apply_cache(item, policy, owned=False)  # closing the wrapper leaves the caller's open
                out.append(_Contestant(item.spec, "provider", item.spec, cached, owned=cached is not item))
            else:
                raise ConfigError(
                    f"providers: {item!r} is neither a spec string nor a Separator; "
                    "pass e.g. 'dsp' or stemkit.load('dsp')"
                )
        specs_listed = [c.spec for c in out]
        repeated = sorted({spec for spec in specs_listed if specs_listed.count(spec) > 1})
        if repeated and not chosen:
            raise ConfigError(f"providers: {', '.join(repeated)} listed twice; name each provider once")
        if have_references and baselines:
            kinds = {c.kind for c in out}
            out += [_Contestant(name, name, name) for name in BASELINES if name not in kinds]
        automatic = short_labels([c.spec for c in out])
        for index, contestant in enumerate(out):
            contestant.label = chosen.get(index, automatic[index])
        labels = [c.label for c in out]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ConfigError(
                f"providers: the label(s) {', '.join(repeated)} are used twice; give each provider its own"
            )
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


def _plans(caps: Capabilities, stems: Sequence[str], label: str) -> bool:
    try:
        caps.plan(list(stems), provider=label)
    except ConfigError:
        return False
    return True


def _natural_stems(caps: Capabilities, candidates: Sequence[str]) -> list[str]:
    """The candidate stems the provider's richest combination produces directly."""
    best: list[str] = []
    for combo in caps.combinations:
        direct = [s for s in candidates if s in combo]
        if len(direct) > len(best):
            best = direct
    return best


def _producible(caps: Capabilities, wanted: Sequence[str], label: str) -> tuple[str, ...]:
    """The stems of ``wanted`` (in order) that one run of the provider produces or derives, greedily."""
    picked: list[str] = []
    for stem in wanted:
        if _plans(caps, [*picked, stem], label):
            picked.append(stem)
    return tuple(picked)


def _plan_requests(tracks: list[_Track], contestants: list[_Contestant], explicit: bool) -> None:
    """Decide, per track, the stems to score and what to ask each provider for (ConfigError when a provider
    can produce none of the requested stems)."""
    for track in tracks:
        if track.stems is None:
            for c in contestants:
                track.requests[c.label] = None
            continue
        candidates = list(track.stems)
        if not explicit:
            union: list[str] = []
            for c in contestants:
                natural = (
                    _natural_stems(c.separator.capabilities, candidates)
                    if c.separator is not None
                    else [s for s in candidates if s in (track.references.stems if track.references else ())]
                )
                union += [s for s in natural if s not in union]
            candidates = order_stems(union) or candidates
        track.stems = tuple(candidates)
        for c in contestants:
            if c.separator is None:
                track.requests[c.label] = track.stems
                continue
            got = _producible(c.separator.capabilities, track.stems, c.label)
            if not got:
                raise ConfigError(
                    f"stems: {c.label} can produce none of {', '.join(track.stems)} "
                    f"(it offers {c.separator.capabilities.describe()}); request stems it can produce with "
                    "--stems, or compare it separately"
                )
            track.requests[c.label] = got


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
        available = derivable(ref)
        if requested is not None:
            missing = [s for s in requested if s not in available]
            if missing:
                raise ConfigError(
                    f"stems: {', '.join(missing)} not among the references in {ref.folder} ({', '.join(ref.stems)}) "
                    f"nor derivable from them; request stems that have a reference ({', '.join(available)})"
                )
            available = tuple(order_stems(requested))
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
            result = contestant.separator.separate(
                track.path, stems=track.requests.get(contestant.label), progress=forward
            )
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
    providers: ProvidersArg = ("dsp",),
    *,
    references: str | Path | None = None,
    metrics: str | Sequence[str] | None = None,
    stems: str | Sequence[str] | None = None,
    baselines: bool = True,
    cache: ResultCache | str | Path | bool | None = None,
    progress: ProgressCallback | None = None,
    max_lag_seconds: float = DEFAULT_MAX_LAG_SECONDS,
    excerpt: str | tuple[float, float] | None = None,
) -> Report:
    """Separate ``inputs`` with every provider and score the results.

    ``inputs``: audio files or folders of them; may be omitted with a MUSDB18-HQ ``references`` root (every
    track's ``mixture.wav`` is then an input). ``providers``: spec strings (``"dsp"``, ``"ezstems?stems=4"``,
    a chain ``"a | b"``) or loaded Separators, or a mapping label → spec to name them yourself (labels are
    otherwise short and automatic; ``report.specs`` keeps every full spec). ``mixture`` and ``oracle``
    (``oracle?alpha=1``) name the SiSEC baselines, which are added automatically when there are references
    (``baselines=False`` to leave them out). ``references``: a folder of stems for one input, or a MUSDB18-HQ
    root. ``metrics``: any of ``sdr, si-sdr, bss`` (against references) and the reference-free indicators
    ``consistency, agreement, consensus, leakage, peak, clipped, loudness, activity`` (``indicators`` names
    them all); see :func:`parse_metrics` for the default. ``stems``: which stems to score (default: every stem
    the references give or derive that some provider produces; each provider is scored on those it can
    produce). ``cache``: None keeps paid providers' separations in the shared result cache and local
    ones in a temporary cache (``report.cache``, reusable); a folder, URL or ResultCache keeps every
    provider's there across runs; False keeps none. ``excerpt``: keep a listening excerpt of the first track for
    the HTML report, ``"auto"`` (the busiest 20 s), ``"START:END"`` or ``(start, end)`` in seconds.
    ``progress`` receives the providers' ProgressEvents (``provider`` is the label, ``input_name`` the
    track), from worker threads.

    A provider that fails on an input does not stop the comparison: the failure is recorded in
    ``report.runs`` (``report.failures``, ``report.raise_for_failures()``) and shown in every table. Bad
    input, unknown providers, options or metrics fail before any separation starts.
    """
    if not (0.0 <= max_lag_seconds <= 10.0):
        raise ConfigError(f"max_lag_seconds: {max_lag_seconds} is outside [0, 10]; codec delays are well under 1 s")
    window = None if excerpt is None or excerpt == "auto" else parse_excerpt(excerpt)
    tracks = _tracks(inputs, references, stems)
    have_references = references is not None
    metric_names = parse_metrics(metrics, references=have_references)
    if any(m in BSS_METRICS for m in metric_names):
        load_scipy()  # fail before separating anything
    if "loudness" in metric_names and not _loudness_available():
        loudness(np.zeros((1, 1)), 8000)  # raises the ConfigError naming the extra
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
        _plan_requests(tracks, contestants, explicit=stems is not None)
        for track in tracks:
            source = open_source(track.path)
            try:
                track.sha256 = source.sha256
                track.duration = source.duration
            finally:
                source.close()
        if window is not None and window[0] >= tracks[0].duration:
            raise ConfigError(
                f"excerpt: starts at {window[0]:g} s, after the end of {tracks[0].path.name} "
                f"({tracks[0].duration:.1f} s); choose a range inside it"
            )
        listen = excerpt is not None
        return _run(
            tracks, contestants, metric_names, store, progress, max_lag_seconds, have_references, listen, window
        )
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
    listen: bool,
    window: tuple[float, float] | None,
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
        specs={c.label: c.spec for c in contestants},
    )
    stems_seen: list[str] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stemkit-compare") as pool:
        try:
            for index, track in enumerate(tracks):
                pending[index] = set()
                for c in real:
                    key = f"{track.sha256}|{c.spec}|{','.join(track.requests.get(c.label) or ())}"
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
                        scorer = _TrackScorer(report, track, contestants, metric_names, max_lag_seconds)
                        scorer.run(outcomes, stems_seen, listen=listen and index == 0, window=window)

            ready()  # tracks with no real provider (baselines only)
            for future in as_completed(by_future):
                future.result()  # a bug (not a StemkitError) in a provider surfaces here
                done.add(by_future[future])
                ready()
        except BaseException:
            for future in futures.values():
                future.cancel()
            raise
    report.stems = order_stems(stems_seen)
    return report


def _sum(stems: Mapping[str, NDArray[Any]], names: Sequence[str]) -> FloatArray:
    first = stems[names[0]]
    total = np.zeros(first.shape, dtype=np.float32)
    for name in names:
        total += stems[name]
    return total


def _bss_groups(scored: Sequence[str]) -> list[tuple[list[str], list[str]]]:
    """Joint BSSEval sets: (stems evaluated together, stems whose values are kept). The finest partition is
    evaluated jointly; a coarser derived stem (instrumental) with the vocals, so no set holds a stem and its
    own parts (which would make the projection singular)."""
    main = [s for s in partition(list(scored)) if s in scored]
    groups = [(main, main)] if main else []
    for stem in scored:
        if stem in main:
            continue
        partner = ["vocals"] if stem == "instrumental" and "vocals" in scored else []
        groups.append(([*partner, stem], [stem]))
    return groups


class _TrackScorer:
    """Scores every contestant of one track; references, BSSEval's reference-only work and the excerpt are
    prepared once and shared by the contestants."""

    def __init__(
        self,
        report: Report,
        track: _Track,
        contestants: list[_Contestant],
        metric_names: list[str],
        max_lag_seconds: float,
    ) -> None:
        self.report = report
        self.track = track
        self.contestants = contestants
        self.metrics = metric_names
        self.max_lag_seconds = max_lag_seconds
        source = open_source(track.path)
        try:
            self.mix = source.read()
            self.rate = source.sample_rate
        finally:
            source.close()
        self.refs: LoadedReferences | None = track.references.load() if track.references is not None else None
        self.ref_stems: dict[str, FloatArray] = {}
        if self.refs is not None and track.stems:
            self.ref_stems = derive(self.refs, track.stems)
            for name in self.ref_stems:
                if name not in self.refs.stems and name not in report.derived_references:
                    report.derived_references.append(name)
        self._bss: BssReferences | None = None
        self.aligned: dict[str, dict[str, FloatArray]] = {}  # label -> stem -> audio on the scoring time base

    def bss_references(self) -> BssReferences:
        if self._bss is None:
            assert self.refs is not None
            self._bss = BssReferences(self.ref_stems, self.refs.sample_rate)
        return self._bss

    def run(
        self,
        outcomes: Mapping[str, _Outcome],
        stems_seen: list[str],
        *,
        listen: bool,
        window: tuple[float, float] | None,
    ) -> None:
        report, track = self.report, self.track
        estimates: dict[str, tuple[Mapping[str, NDArray[Any]], int]] = {}
        for c in self.contestants:
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
        for c in self.contestants:
            started = time.perf_counter()
            if c.kind == "mixture":
                assert track.stems is not None
                estimates[c.label] = (mixture_estimates(self.mix, track.stems), self.rate)
            elif c.kind == "oracle":
                assert self.refs is not None
                assert track.stems is not None
                # Every reference file takes part in the masks; derived stems are sums, as for the references.
                masked = oracle_estimates(self.refs.mixture, self.refs.stems, alpha=c.alpha)
                oracle_refs = LoadedReferences(
                    masked, self.refs.mixture, self.refs.sample_rate, self.refs.mixture_is_sum
                )
                estimates[c.label] = (derive(oracle_refs, track.stems), self.refs.sample_rate)
            seconds = time.perf_counter() - started if c.baseline else None
            if c.label not in estimates:
                continue
            stems, est_rate = estimates[c.label]
            for name in stems:
                if name not in stems_seen:
                    stems_seen.append(name)
            lag_seconds = self._score_one(c, stems, est_rate)
            outcome_or_none = outcomes.get(c.label)
            separation = outcome_or_none.separation if outcome_or_none is not None else None
            scored_on = tuple(n for n in stems if not self.ref_stems or n in self.ref_stems)
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
                    stems=scored_on,
                )
            )
        real = {c.label for c in self.contestants if not c.baseline}
        self._cross_provider({label: stems for label, stems in self.aligned.items() if label in real})
        if listen:
            self._listen(window)

    # -- one contestant ----------------------------------------------------------------------------------
    def _score_one(self, contestant: _Contestant, stems: Mapping[str, NDArray[Any]], est_rate: int) -> float | None:
        """Score one separation; returns the lag (seconds) applied to align it to the references, if any."""
        report, track, label = self.report, self.track, contestant.label
        parts = partition(list(stems))
        refs = self.refs
        oracle = contestant.kind == "oracle"

        def lag_against(base: NDArray[Any], base_rate: int) -> int:
            if not parts or oracle:
                return 0  # the oracle is built on the references' own time base
            summed = match(base, _sum(stems, parts), reference_rate=base_rate, estimate_rate=est_rate)
            return estimate_lag(base, summed, round(self.max_lag_seconds * base_rate))

        # Consistency: the stems against what the provider was given (the oracle: the reference mixture).
        input_mix, input_rate = (
            (refs.mixture, refs.sample_rate) if oracle and refs is not None else (self.mix, self.rate)
        )
        input_lag = lag_against(input_mix, input_rate)
        if "consistency" in self.metrics and parts:
            summed = match(
                input_mix, _sum(stems, parts), reference_rate=input_rate, estimate_rate=est_rate, lag=input_lag
            )
            report.scores.append(
                Score(track.name, label, SONG, "consistency", mixture_consistency(input_mix, [summed]))
            )
        # Everything else on the references' time base (or the input's, without references).
        if refs is not None:
            base, base_rate = refs.mixture, refs.sample_rate
            lag = lag_against(base, base_rate)
        else:
            base, base_rate, lag = input_mix, input_rate, input_lag
        aligned = {
            name: match(base, stems[name], reference_rate=base_rate, estimate_rate=est_rate, lag=lag) for name in stems
        }
        self.aligned[label] = aligned
        if not contestant.baseline:
            self._indicators(label, aligned, base_rate)
        if refs is None:
            return None
        scored = [name for name in self.ref_stems if name in stems]
        lag_seconds = lag / refs.sample_rate
        if not scored:
            return lag_seconds
        per_metric: dict[str, list[float]] = {}
        if "sdr" in self.metrics or "si-sdr" in self.metrics:
            for name in scored:
                value_sdr, value_si = sdr_and_si_sdr(self.ref_stems[name], aligned[name])
                for metric, value in (("sdr", value_sdr), ("si-sdr", value_si)):
                    if metric in self.metrics:
                        report.scores.append(Score(track.name, label, name, metric, float(value)))
                        per_metric.setdefault(metric, []).append(float(value))
        if any(m in BSS_METRICS for m in self.metrics):
            prepared = self.bss_references()
            for together, kept in _bss_groups(scored):
                frames = prepared.evaluate({n: aligned[n] for n in together})
                medians = frames.medians()
                for name in kept:
                    for metric in BSS_METRICS:
                        if metric in self.metrics:
                            report.scores.append(Score(track.name, label, name, metric, medians[name][metric]))
                            per_metric.setdefault(metric, []).append(medians[name][metric])
                    if name in frames.notes:
                        report.add_note(f"{track.name}: {label} / {name}: BSSEval: {frames.notes[name]}")
        for metric, values in per_metric.items():
            finite_or_inf = [v for v in values if not np.isnan(v)]
            song = float(np.mean(finite_or_inf)) if finite_or_inf else float("nan")
            report.scores.append(Score(track.name, label, SONG, metric, song))
        return lag_seconds

    def _indicators(self, label: str, aligned: Mapping[str, FloatArray], rate: int) -> None:
        report, track = self.report, self.track
        for name, audio in aligned.items():
            if "peak" in self.metrics:
                report.scores.append(Score(track.name, label, name, "peak", peak_dbfs(audio)))
            if "clipped" in self.metrics:
                report.scores.append(Score(track.name, label, name, "clipped", float(clipped_samples(audio))))
            if "loudness" in self.metrics:
                report.scores.append(Score(track.name, label, name, "loudness", loudness(audio, rate)))
            if "activity" in self.metrics:
                report.scores.append(Score(track.name, label, name, "activity", activity(audio, rate)))
        if "leakage" in self.metrics:
            parts = partition(list(aligned))
            if len(parts) > 1:
                for name, value in leakage({n: aligned[n] for n in parts}, rate).items():
                    report.scores.append(Score(track.name, label, name, "leakage", value))

    # -- across providers --------------------------------------------------------------------------------
    def _cross_provider(self, aligned: Mapping[str, Mapping[str, FloatArray]]) -> None:
        report, track = self.report, self.track
        if "agreement" in self.metrics:
            for stem, by_ref in agreement(aligned).items():
                for ref_label, by_est in by_ref.items():
                    for est_label, value in by_est.items():
                        report.scores.append(Score(track.name, est_label, stem, "agreement", value, against=ref_label))
        if "consensus" in self.metrics:
            seen = {s for per in aligned.values() for s in per}
            stems = [s for s in order_stems(seen) if sum(s in per for per in aligned.values()) >= 2]
            for stem in stems:
                having = {label: per[stem] for label, per in aligned.items() if stem in per}
                for label, value in consensus(having).items():
                    report.scores.append(Score(track.name, label, stem, "consensus", value))

    # -- the listening excerpt ---------------------------------------------------------------------------
    def _listen(self, window: tuple[float, float] | None) -> None:
        rate = self.refs.sample_rate if self.refs is not None else self.rate
        basis: Mapping[str, NDArray[Any]] = self.ref_stems or next(iter(self.aligned.values()), {})
        if window is None:
            start, end = choose_excerpt(basis or {"mixture": self.mix}, rate)
            chosen = "auto"
        else:
            start, end = window[0], min(window[1], self.track.duration)
            chosen = "given"
        first, last = round(start * rate), round(end * rate)
        listening = Listening(self.track.name, start, end, chosen)
        mix = self.refs.mixture if self.refs is not None else self.mix
        wanted: list[tuple[str, str, str, NDArray[Any]]] = [("mixture", "mixture", "mixture", mix)]
        order = order_stems({*self.ref_stems, *(s for a in self.aligned.values() for s in a)})
        for stem in order:
            if stem in self.ref_stems:
                wanted.append((stem, "reference", "reference", self.ref_stems[stem]))
            for c in self.contestants:
                stems = self.aligned.get(c.label)
                if c.kind == "mixture" or stems is None or stem not in stems:
                    continue  # the mixture baseline's every stem is the mixture, which has its own player
                wanted.append((stem, c.label, "baseline" if c.baseline else "provider", stems[stem]))
        # Encoding is libsndfile's C code, which runs without the GIL: two at a time.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="stemkit-listen") as pool:
            clips = pool.map(lambda w: make_clip(w[0], w[1], w[2], w[3][:, first:last], rate), wanted)
            listening.clips.extend(clips)
        self.report.listening = listening
