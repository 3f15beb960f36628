"""Fitting an ensemble's weights on reference stems, and finding the spec that scores best.

For each stem, the weights of a ``mean`` ensemble that minimize the squared error against the references
over every track — non-negative and summing to one, so the fitted ensemble is still a weighted *mean* (the
spec's weights mean what they say) — found exactly: members are few, so every set of members that may carry
weight is tried and the best feasible solution of its equality-constrained least squares kept. Minimizing
the squared error is maximizing the SDR of the stem (the SDR's numerator is fixed by the reference).

Then every candidate — each member alone, the plain mean, the median (three members or more), the fitted
mean — is scored by SDR on the same tracks, and the best one's spec is the answer. The scores are
**in-sample**: the weights were fitted on those very references, so the fitted mean can only look as good
or better there; check it on other songs (``stemkit compare -p SPEC``) before trusting the difference.

Separations go through the result cache (:mod:`stemkit.cache`) as ``compare``'s do, so fitting right after a
comparison with the same cache bills no provider again.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from numpy.typing import NDArray

from stemkit._portal import run_sync
from stemkit.audio import FloatArray, open_source
from stemkit.cache import ResultCache, apply_cache, resolve_cache
from stemkit.compose._runs import Run, prepare_source, run_one
from stemkit.compose.combine import Aligned, Method, combine
from stemkit.compose.ensemble import EnsembleOptions, render_ensemble
from stemkit.compose.weights import Weights
from stemkit.config import parse_tree, render_tree
from stemkit.errors import ConfigError, InputError, StemkitError
from stemkit.evaluate.align import DEFAULT_MAX_LAG_SECONDS, estimate_lag, match
from stemkit.evaluate.cache import CachedSeparation, SeparationCache
from stemkit.evaluate.comparison import partition
from stemkit.evaluate.metrics import sdr
from stemkit.evaluate.references import LoadedReferences, match_references
from stemkit.inputs import expand_inputs
from stemkit.protocol import ProgressCallback, Separator
from stemkit.stems import CANONICAL_STEMS, normalize_request

__all__ = ["EnsembleFit", "fit_ensemble", "fit_simplex"]

#: every subset of members is tried: 2**12 small solves at most
MAX_MEMBERS = 12
_BLOCK = 1 << 16


def fit_simplex(gram: NDArray[np.float64], cross: NDArray[np.float64]) -> NDArray[np.float64]:
    """``argmin_w wᵀGw − 2bᵀw`` subject to ``w ≥ 0`` and ``Σw = 1``, exactly.

    ``gram[i, j] = ⟨xᵢ, xⱼ⟩`` and ``cross[i] = ⟨xᵢ, s⟩`` for estimates ``xᵢ`` of a reference ``s``. Each subset
    of members that may carry weight is solved with its equality constraint (the KKT system, least-squares
    so that identical members do not break it); the best solution with no negative weight wins.
    """
    k = len(cross)
    if k == 0:
        raise ValueError("fit_simplex: no members")
    best: tuple[float, NDArray[np.float64]] | None = None
    scale = max(float(np.max(np.abs(np.diag(gram)))), 1e-30)
    for size in range(1, k + 1):
        for subset in itertools.combinations(range(k), size):
            index = list(subset)
            system = np.zeros((size + 1, size + 1))
            system[:size, :size] = 2.0 * gram[np.ix_(index, index)] / scale
            system[:size, size] = 1.0
            system[size, :size] = 1.0
            rhs = np.concatenate([2.0 * cross[index] / scale, [1.0]])
            solution = np.linalg.lstsq(system, rhs, rcond=None)[0][:size]
            if np.any(solution < -1e-9):
                continue
            weights = np.zeros(k)
            weights[index] = np.clip(solution, 0.0, None)
            total = weights.sum()
            if total <= 0:
                continue
            weights /= total
            objective = float(weights @ gram @ weights - 2.0 * cross @ weights)
            if best is None or objective < best[0] - 1e-12 * scale:
                best = (objective, weights)
    assert best is not None  # a single member is always feasible
    return best[1]


@dataclass
class EnsembleFit:
    """What :func:`fit_ensemble` found: fitted weights per stem, every candidate's SDR, and the winner."""

    members: tuple[str, ...]
    stems: tuple[str, ...]
    weights: dict[str, tuple[float, ...]]
    #: candidate label → stem → mean SDR over the tracks (dB); ``"song"`` is the mean over stems
    scores: dict[str, dict[str, float]]
    #: candidate label → its spec string
    specs: dict[str, str]
    winner: str
    tracks: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def spec(self) -> str:
        """The spec string of the best-scoring candidate."""
        return self.specs[self.winner]

    def table(self) -> str:
        """The candidates' SDR side by side (in-sample), best first."""
        columns = [*self.stems, "song"]
        rows = sorted(self.scores, key=lambda c: -_finite(self.scores[c].get("song")))
        width = max(len(r) for r in rows) + 2
        lines = [
            f"ensemble fit on {len(self.tracks)} track(s) — SDR in dB, in-sample (weights fitted on these "
            "references: check them on other songs)",
            "".ljust(width) + "".join(c.rjust(11) for c in columns),
        ]
        for row in rows:
            cells = "".join(_cell(self.scores[row].get(c)).rjust(11) for c in columns)
            lines.append(f"{row}{' *' if row == self.winner else ''}".ljust(width) + cells)
        lines.append("fitted weights: " + "; ".join(
            f"{stem} " + ", ".join(f"{w:.3f}" for w in row) for stem, row in self.weights.items()
        ))
        lines.extend(f"note: {n}" for n in self.notes)
        lines.append(f"best: {self.spec}")
        return "\n".join(lines)


def _finite(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else -math.inf


def _cell(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


@dataclass
class _Track:
    name: str
    path: Path
    references: LoadedReferences
    stems: tuple[str, ...]
    sha256: str


def fit_ensemble(
    inputs: str | Path | Sequence[str | Path] | None,
    members: Sequence[str | Separator],
    *,
    references: str | Path,
    stems: str | Sequence[str] | None = None,
    cache: ResultCache | str | Path | None = None,
    max_lag_seconds: float = DEFAULT_MAX_LAG_SECONDS,
    progress: ProgressCallback | None = None,
) -> EnsembleFit:
    """Fit ``mean``-ensemble weights of ``members`` on ``references`` and score the candidates (see the module).

    ``inputs``, ``references`` and ``stems`` mean what they mean for :func:`stemkit.compare` (a stem folder for
    one input, or a MUSDB18-HQ root); ``cache`` the same too — pass ``report.cache`` after a comparison.
    """
    if len(members) < 2:
        raise ConfigError("fit: name at least two providers to fit an ensemble of, e.g. -p stemsplit -p dsp")
    if len(members) > MAX_MEMBERS:
        raise ConfigError(f"fit: {len(members)} providers; an ensemble fit takes at most {MAX_MEMBERS}")
    store = cache if isinstance(cache, ResultCache) else SeparationCache(cache)
    separators, labels, owned = _load(members)
    # Stored before use and read back from disk (no write-behind): every member's separations stay on disk.
    policy = resolve_cache(store, write_behind=False)
    separators = [apply_cache(separator, policy, owned=False) for separator in separators]
    try:
        tracks = _tracks(inputs, references, stems)
        return run_sync(_fit, tracks, separators, labels, max_lag_seconds, progress)
    finally:
        for separator in owned:
            separator.close()


def _load(members: Sequence[str | Separator]) -> tuple[list[Separator], list[str], list[Separator]]:
    from stemkit.api import load

    separators: list[Separator] = []
    labels: list[str] = []
    owned: list[Separator] = []
    try:
        for member in members:
            if isinstance(member, str):
                label = render_tree(parse_tree(member))  # the label compare gives it: cache entries are shared
                separator = load(member)
                owned.append(separator)
            else:
                separator, label = member, member.spec
            separators.append(separator)
            labels.append(label)
    except BaseException:
        for separator in owned:
            separator.close()
        raise
    if len(set(labels)) != len(labels):
        raise ConfigError("fit: a provider is listed twice; name each member once")
    return separators, labels, owned


def _tracks(inputs: Any, references: str | Path, stems: str | Sequence[str] | None) -> list[_Track]:
    given: list[Path] = []
    if inputs is not None:
        raw = [inputs] if isinstance(inputs, str | Path) else list(inputs)
        for item in expand_inputs(raw) if raw else []:
            path = Path(item)
            if not path.is_file():
                raise InputError(f"{path}: no such file; name an audio file or a folder of them")
            given.append(path)
    requested = normalize_request(stems)
    tracks = []
    for path, ref in match_references(given, references):
        loaded = ref.load()
        available = tuple(loaded.stems)
        if requested is not None:
            missing = [s for s in requested if s not in available]
            if missing:
                raise ConfigError(f"stems: {', '.join(missing)} not among the references in {ref.folder}")
            available = tuple(s for s in CANONICAL_STEMS if s in requested)
        source = open_source(path)
        try:
            sha = source.sha256
        finally:
            source.close()
        tracks.append(_Track(ref.name, path, loaded, available, sha))
    return tracks


async def _separations(
    track: _Track, separators: list[Separator], labels: list[str], progress: ProgressCallback | None,
) -> tuple[dict[int, tuple[Mapping[str, FloatArray], int]], list[str]]:
    """Each member's stems for one track: through the result cache (a hit asks no provider)."""
    found: dict[int, tuple[Mapping[str, FloatArray], int]] = {}
    notes: list[str] = []
    pending = [Run(index, separator, request=track.stems) for index, separator in enumerate(separators)]
    if pending:
        source = open_source(track.path)
        try:
            await prepare_source(source, [r.separator for r in pending])
            limiter = anyio.CapacityLimiter(1)
            async with anyio.create_task_group() as group:
                for run in pending:
                    group.start_soon(
                        functools.partial(run_one, run, source, progress=progress, deadline=None, limiter=limiter)
                    )
        finally:
            source.close()
        for run in pending:
            if run.result is None:
                notes.append(f"{labels[run.index]} failed on {track.name}: {run.error}; that track is left out")
                continue
            # The result stays open (its stored files back the stems) until the fit lets go of it.
            stored = CachedSeparation.from_stemset(run.result, seconds=run.seconds)
            found[run.index] = (stored.stems, stored.sample_rate)
    return found, notes


def _aligned(
    track: _Track, estimates: Mapping[str, FloatArray], rate: int, max_lag_seconds: float
) -> dict[str, FloatArray]:
    """A member's stems on the references' rate, channels, start and length (one lag per separation)."""
    refs = track.references
    parts = partition(list(estimates))
    lag = 0
    if parts and max_lag_seconds > 0:
        total = np.zeros(np.shape(estimates[parts[0]]), dtype=np.float32)
        for p in parts:
            total += estimates[p]
        summed = match(refs.mixture, total, reference_rate=refs.sample_rate, estimate_rate=rate)
        lag = estimate_lag(refs.mixture, summed, round(max_lag_seconds * refs.sample_rate))
    return {
        name: match(refs.stems[name], estimates[name], reference_rate=refs.sample_rate, estimate_rate=rate, lag=lag)
        for name in track.stems
        if name in estimates and name in refs.stems
    }


def _align_all(
    track: _Track, found: Mapping[int, tuple[Mapping[str, FloatArray], int]], max_lag_seconds: float
) -> dict[int, dict[str, FloatArray]]:
    return {i: _aligned(track, estimates, rate, max_lag_seconds) for i, (estimates, rate) in found.items()}


async def _fit(
    tracks: list[_Track], separators: list[Separator], labels: list[str],
    max_lag_seconds: float, progress: ProgressCallback | None,
) -> EnsembleFit:
    notes: list[str] = []
    usable: list[tuple[_Track, dict[int, dict[str, FloatArray]]]] = []
    for track in tracks:
        found, track_notes = await _separations(track, separators, labels, progress)
        notes.extend(track_notes)
        if len(found) < len(separators):
            continue
        aligned = await anyio.to_thread.run_sync(_align_all, track, found, max_lag_seconds)
        usable.append((track, aligned))
    if not usable:
        raise StemkitError("fit: no track has a separation from every member; see the failures:\n" + "\n".join(notes))
    return await anyio.to_thread.run_sync(_solve, usable, labels, notes)


def _solve(
    usable: list[tuple[_Track, dict[int, dict[str, FloatArray]]]], labels: list[str], notes: list[str]
) -> EnsembleFit:
    k = len(labels)
    stems = [s for s in CANONICAL_STEMS if any(s in a[i] for _, a in usable for i in a)]
    weights: dict[str, tuple[float, ...]] = {}
    for stem in stems:
        producers = [i for i in range(k) if all(stem in aligned[i] for _, aligned in usable)]
        if not producers:
            continue
        gram = np.zeros((len(producers), len(producers)))
        cross = np.zeros(len(producers))
        for track, aligned in usable:
            _accumulate(gram, cross, [aligned[i][stem] for i in producers], track.references.stems[stem])
        fitted = fit_simplex(gram, cross)
        row = [0.0] * k
        for i, w in zip(producers, fitted, strict=True):
            row[i] = round(float(w), 3)
        weights[stem] = tuple(row)
    fitted_stems = [s for s in stems if s in weights]
    candidates: dict[str, tuple[str, list[float] | None, str | None]] = {}
    for label in labels:
        candidates[label] = ("member", None, label)
    candidates["mean"] = ("mean", [1.0] * k, None)
    if k >= 3:
        candidates["median"] = ("median", [1.0] * k, None)
    candidates["mean, fitted weights"] = ("mean", None, None)
    scores: dict[str, dict[str, list[float]]] = {c: {} for c in candidates}
    for track, aligned in usable:
        refs = track.references
        frames = next(iter(refs.stems.values())).shape[1]
        for stem in fitted_stems:
            producers = [i for i in range(k) if stem in aligned[i]]
            reference = refs.stems[stem]
            for name, (kind, equal, member) in candidates.items():
                if kind == "member":
                    index = labels.index(member or "")
                    if stem not in aligned[index]:
                        continue
                    estimate = aligned[index][stem]
                else:
                    row = equal if equal is not None else list(weights[stem])
                    chosen = [i for i in producers if row[i] > 0] or producers
                    estimate = combine(
                        [Aligned(aligned[i][stem]) for i in chosen], [row[i] or 1.0 for i in chosen],
                        "median" if kind == "median" else "mean", frames=frames, sample_rate=refs.sample_rate,
                    )
                scores[name].setdefault(stem, []).append(float(sdr(reference, estimate)))
    table: dict[str, dict[str, float]] = {}
    for name, by_stem in scores.items():
        means = {stem: float(np.mean(values)) for stem, values in by_stem.items()}
        complete = all(s in means for s in fitted_stems)
        means["song"] = float(np.mean([means[s] for s in fitted_stems])) if complete else math.nan
        table[name] = means
    specs = {label: label for label in labels}

    def ensemble_spec(method: Method) -> str:
        return render_ensemble(labels, EnsembleOptions(method=method), Weights.equal(len(labels)))

    specs["mean"] = ensemble_spec("mean")
    if "median" in candidates:
        specs["median"] = ensemble_spec("median")
    specs["mean, fitted weights"] = _fitted_spec(labels, weights)
    winner = max(table, key=lambda c: _finite(table[c].get("song")))
    return EnsembleFit(
        members=tuple(labels), stems=tuple(fitted_stems), weights=weights, scores=table, specs=specs,
        winner=winner, tracks=[t.name for t, _ in usable], notes=notes,
    )


def _fitted_spec(labels: list[str], weights: Mapping[str, Sequence[float]]) -> str:
    """The fitted mean as a spec: members that weigh nothing for any stem left out, one member alone as
    itself, equal rows as no weights at all."""
    keep = [i for i in range(len(labels)) if any(row[i] > 0 for row in weights.values())]
    if len(keep) == 1:
        return labels[keep[0]]
    rows = {stem: [row[i] for i in keep] for stem, row in weights.items()}
    return render_ensemble([labels[i] for i in keep], EnsembleOptions(), Weights.parse(rows, len(keep)))


def _accumulate(
    gram: NDArray[np.float64], cross: NDArray[np.float64], estimates: list[FloatArray], reference: FloatArray
) -> None:
    """Add one track's ⟨xᵢ, xⱼ⟩ and ⟨xᵢ, s⟩ in float64, a block of samples at a time."""
    flat = [np.asarray(e).reshape(-1) for e in estimates]
    ref = np.asarray(reference).reshape(-1)
    for start in range(0, ref.shape[0], _BLOCK):
        block = np.stack([f[start : start + _BLOCK] for f in flat]).astype(np.float64)
        gram += block @ block.T
        cross += block @ ref[start : start + _BLOCK].astype(np.float64)
