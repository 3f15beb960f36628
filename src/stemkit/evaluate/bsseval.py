"""BSSEval v4 (SDR, SIR, ISR, SAR), stemkit's own implementation of what museval computes in ``mode="v4"``.

The algorithm (Vincent, Gribonval & Févotte 2006; version 4 as in SiSEC 2018, Liutkus, Stöter & Ito):

1. Each estimate is decomposed against the references with **time-invariant distortion filters** of
   ``filter_length`` (512) taps, estimated once on the whole track: the least-squares projection of the
   estimate onto the span of delayed copies of *every* reference channel (``P_all``), and onto the span of
   delayed copies of *its own* reference's channels (``P_own``).
2. Over each frame (1 s windows, 1 s hop), the projections are rebuilt from the frame's reference samples
   (the filters' tails included), and

   - SDR = ‖s‖² / ‖ŝ − s‖²           (distortion of any kind)
   - ISR = ‖s‖² / ‖P_own − s‖²        (spatial distortion: the image is filtered, not just copied)
   - SIR = ‖P_own‖² / ‖P_all − P_own‖² (interference: other references that leaked in)
   - SAR = ‖P_all‖² / ‖ŝ − P_all‖²     (artefacts: what no reference explains), all in dB.
3. A frame in which any reference or estimate is silent (every sample's channel sum is zero) is undefined
   (NaN) for every stem; SiSEC 2018 reports the **median over frames**.

How it is computed — no projection is ever built, in time or frequency:

- Everything rests on short-lag correlations (lags below ``filter_length``) of the references with each
  other and with the estimates, over the whole track and over each frame. One pass of blocked FFTs gives
  both (:mod:`stemkit.evaluate._lagcorr`): a run of blocks per frame, the channel pairs' cross-spectra
  summed per frame by one small matrix product per frequency, one inverse transform per frame.
- The normal equations' Gram matrix is block-Toeplitz; its Cholesky factor comes from the generalized Schur
  algorithm in ``O(m·n²)`` instead of a dense ``n³/3`` factorization (:mod:`stemkit.evaluate._toeplitz`).
- A frame's projection energies are quadratic forms of the filters in the frame's reference correlations:
  ``‖Σ_a x_a * h_a‖² = Σ_ab Σ_τ r_ab(τ)·(h_a ⋆ h_b)(τ)``, so every frame's four energies of every stem are one
  matrix product of the frames' correlations with the filters' autocorrelations; ``⟨ŝ, P_all⟩`` is the
  frame's reference–estimate correlations against the filters. SDR's error energy is summed in time.
- What depends only on the references (their correlations, whole-track and per frame; the factorized Gram
  matrices) lives in a :class:`BssReferences` and is computed once however many estimates are scored
  against it — during the first estimate's pass, which reads the references' blocks once for both.

The result matches museval 0.4.1 to ~1e-9 dB per frame on well-conditioned input (the tests check 0.01 dB)
and runs over 20× faster (``bench/evaluate_bsseval.py``, ``docs/benchmarks.md``).

Where stemkit says more than museval:

- **A rank-deficient projection** (references linearly dependent: a stem whose left and right channels are
  identical, two identical stems, or a synthetic stem so band-limited that its delayed copies are
  numerically dependent) makes the normal equations singular; museval solves them anyway and prints
  rounding noise (the old demo song's SIR of about −50 dB). stemkit measures the conditioning of each Gram
  matrix and leaves the metrics that rest on a singular projection undefined (NaN), saying why in
  :attr:`BssFrames.notes`. SDR does not use the projection and stays defined.
- **A perfect estimate** (equal to its reference over a frame) scores +inf on all four metrics, where
  museval gives +inf SDR and rounding noise (~150–300 dB) for the other three. Likewise a projection
  residual below what the computation can resolve reads +inf: below the solve's resolution
  (``(eps · condition number)²`` of the estimate's energy), or below the rounding of the correlations it is
  computed from (~100·eps of the magnitudes summed; a ratio beyond ~130 dB). The SAR of the mixture
  baseline, whose estimate lies exactly in the references' span, is +inf, not museval's ~150 dB of noise.
- **A stem silent throughout** (reference or estimate), which museval refuses, is left out of the joint
  evaluation with NaN for its four metrics and a note; the other stems are still scored.

scipy is needed (``pip install "stemkit[evaluate]"``); museval is not, but stays usable as a cross-check:
``bss_eval(..., backend="museval")`` (which needs museval and, for its import, ffmpeg).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray

from stemkit.errors import ConfigError, InputError
from stemkit.evaluate._lagcorr import Channel, crossing_correlations, lag_correlations
from stemkit.evaluate._toeplitz import Factor, block_toeplitz_cholesky

__all__ = [
    "BSS_METRICS",
    "EXTRA_HINT",
    "FILTER_LENGTH",
    "MUSEVAL_HINT",
    "RCOND_LIMIT",
    "BssFrames",
    "BssReferences",
    "bss_eval",
    "bss_eval_frames",
    "load_museval",
    "load_scipy",
]

#: Names of the four BSSEval v4 metrics, as stemkit reports them.
BSS_METRICS = ("bss-sdr", "bss-sir", "bss-isr", "bss-sar")
#: Taps of the distortion filters (museval's and SiSEC 2018's ``filters_len``).
FILTER_LENGTH = 512
#: Below this reciprocal condition number a Gram matrix is treated as singular. The error of a projection
#: grows with the condition number times float64's 1e-16; at 1e10 it reaches ~1e-6 of the signal, the level
#: where the interference and artefact energies (30-40 dB below the signal) start to drift by 0.01 dB.
RCOND_LIMIT = 1e-10
EXTRA_HINT = 'pip install "stemkit[evaluate]" (or: pip install scipy)'
MUSEVAL_HINT = 'pip install "stemkit[museval]" (or: pip install museval)'

# museval adds float64's epsilon to the Gram matrix's diagonal before solving; so does stemkit, to solve the
# same system.
_EPS = float(np.finfo(np.float64).eps)
# A residual energy computed from correlations carries rounding of about eps times the magnitudes summed into
# it (FFT rounding grows with the transform's log-length, and the sums run over thousands of terms); below
# this many eps of that scale it is indistinguishable from zero.
_ROUNDING = 128.0
_FRAME_CHUNK = 16  # frames summed at once in the time-domain passes
_SILENCE_CHUNK = 1 << 20  # samples summed at once when testing a whole stem for silence

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Backend = Literal["native", "museval"]


def load_scipy() -> ModuleType:
    """Import scipy (the native BSSEval's linear algebra and FFTs) or raise a ConfigError naming the extra."""
    try:
        import scipy.fft
        import scipy.linalg
    except ModuleNotFoundError:
        raise ConfigError(
            f"metrics: 'bss' (BSSEval v4) needs the optional scipy package, which is not installed; "
            f"{EXTRA_HINT}, or leave 'bss' out of the metrics"
        ) from None
    module: ModuleType = scipy
    return module


def load_museval() -> ModuleType:
    """Import museval (the cross-check backend) or raise a ConfigError naming the missing piece."""
    try:
        import museval
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {"museval", "musdb", "stempeg"}:
            raise ConfigError(
                f"bss_eval(backend='museval') needs the optional museval package, which is not installed "
                f"(missing module {exc.name!r}); {MUSEVAL_HINT}, or use the native backend (the default)"
            ) from None
        raise ConfigError(
            f"bss_eval(backend='museval'): museval is installed but a module it needs is missing ({exc.name!r}); "
            f"reinstall it with {MUSEVAL_HINT}, or use the native backend (the default)"
        ) from None
    except RuntimeError as exc:
        if "ffmpeg" not in str(exc).lower() and "ffprobe" not in str(exc).lower():
            raise
        missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
        what = " and ".join(missing) if missing else "ffmpeg/ffprobe"
        raise ConfigError(
            f"bss_eval(backend='museval'): museval's import (through musdb and stempeg) requires {what} on "
            f"PATH, and {'they are' if len(missing) != 1 else 'it is'} not found. Install ffmpeg "
            "(Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg; conda: conda install ffmpeg), "
            "or use the native backend (the default), which needs no ffmpeg"
        ) from None
    module: ModuleType = museval
    return module


@dataclass(frozen=True)
class BssFrames:
    """BSSEval v4 of one song, frame by frame.

    ``values[stem][metric]`` is one value per frame (NaN where undefined); ``frame_starts`` are the frames'
    start times in seconds; ``notes[stem]`` says why some of a stem's metrics are undefined throughout.
    """

    stems: tuple[str, ...]
    values: dict[str, dict[str, FloatArray]]
    frame_starts: FloatArray
    notes: dict[str, str] = field(default_factory=dict)

    def medians(self) -> dict[str, dict[str, float]]:
        """SiSEC 2018's aggregate: per stem and metric, the median over the frames where it is defined."""
        return {stem: {m: _frame_median(v) for m, v in per.items()} for stem, per in self.values.items()}


def _frame_median(values: FloatArray) -> float:
    finite = values[~np.isnan(values)]
    return float(np.median(finite)) if finite.size else float("nan")


def _validated(stems: Mapping[str, ArrayLike], names: Sequence[str], what: str) -> list[NDArray[np.floating[Any]]]:
    """The named stems as (channels, samples) float arrays of one shape, finite; their own dtype is kept
    (float32 audio is widened to float64 piece by piece where it is computed with)."""
    arrays: list[NDArray[np.floating[Any]]] = []
    for name in names:
        arr = np.asarray(stems[name])
        if not np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float64)
        if arr.ndim == 1:
            arr = arr[np.newaxis, :]
        if arr.ndim != 2 or arr.shape[-1] == 0:
            raise InputError(f"bss_eval: {what} {name!r} has shape {arr.shape}; pass (channels, samples) audio")
        # A sum is finite when every sample is (it could overflow only on samples near float64's limit, which
        # the full test then clears).
        if not np.isfinite(arr.sum(dtype=np.float64)) and not np.all(np.isfinite(arr)):
            raise InputError(f"bss_eval: {what} {name!r} has NaN or infinite samples; pass finite audio")
        arrays.append(np.ascontiguousarray(arr))
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise InputError(
            f"bss_eval: the {what}s have different shapes "
            f"({', '.join(f'{n}: {a.shape}' for n, a in zip(names, arrays, strict=True))}); "
            "align them first (stemkit.evaluate.align.match)"
        )
    return arrays


def _as_sources(stems: Mapping[str, ArrayLike], names: Sequence[str], what: str) -> FloatArray:
    """(sources, channels, samples) float64, as museval takes them."""
    return np.stack([np.asarray(a, dtype=np.float64) for a in _validated(stems, names, what)])


def _silent(source: NDArray[np.floating[Any]]) -> bool:
    """museval's test for one (channels, samples) source: every sample's channel sum is zero."""
    for first in range(0, source.shape[-1], _SILENCE_CHUNK):
        if np.any(source[:, first : first + _SILENCE_CHUNK].sum(axis=0, dtype=np.float64)):
            return False
    return True


@dataclass(frozen=True)
class _Layout:
    """museval's frames, and the runs the correlations are computed over: the stretches between consecutive
    frame boundaries (for hop = window, the frames themselves and the tail after the last one)."""

    length: int
    window: int
    hop: int

    @property
    def count(self) -> int:
        """Whole windows only, or one frame when the track is shorter than a window."""
        if self.window < self.length:
            return int((self.length - self.window + self.hop) // self.hop)
        return 1

    @property
    def frame_length(self) -> int:
        return int(min(self.window, self.length))

    @property
    def starts(self) -> IntArray:
        return np.arange(self.count, dtype=np.int64) * self.hop

    @property
    def ends(self) -> IntArray:
        return self.starts + self.frame_length

    def runs(self) -> tuple[IntArray, list[tuple[int, int]]]:
        """``[start, end)`` of every run, and for every frame the range of runs it is made of."""
        bounds = np.unique(np.concatenate([[0, self.length], self.starts, self.ends]))
        runs = np.stack([bounds[:-1], bounds[1:]], axis=1).astype(np.int64)
        first = np.searchsorted(bounds, self.starts)
        last = np.searchsorted(bounds, self.ends)
        return runs, list(zip(first.tolist(), last.tolist(), strict=True))

    def framed(self, source: NDArray[np.floating[Any]]) -> NDArray[Any]:
        """(channels, frames, frame length) view of a (channels, samples) source."""
        view = sliding_window_view(source, self.frame_length, axis=-1)
        return view[:, :: self.hop][:, : self.count]


@dataclass
class _Correlations:
    """Short-lag correlations ``Σ x_a[n]·y_b[n + k]``, ``0 ≤ k < filter length``: over the whole track
    ``(a, b, k)`` and restricted to each frame (both samples inside it) ``(frame, a, b, k)``."""

    whole: FloatArray
    frames: FloatArray


def _collect(
    per_run: FloatArray, layout: _Layout, xs: Sequence[Channel], ys: Sequence[Channel], lags: int
) -> _Correlations:
    """Whole-track and per-frame correlations from the runs' (which read ``y`` past their end): the whole
    track is the sum of its runs; a frame is the sum of its runs less the pairs that cross its end. ``per_run``
    is reused for the frames where each frame is one run (hop = window)."""
    _, members = layout.runs()
    whole = per_run.sum(axis=0)
    crossing = crossing_correlations(xs, ys, layout.ends, layout.starts, lags)
    if all(span == (f, f + 1) for f, span in enumerate(members)):
        frames = per_run[: layout.count]
    else:
        frames = np.empty((layout.count, *per_run.shape[1:]))
        for f, (first, last) in enumerate(members):
            frames[f] = per_run[first:last].sum(axis=0)
    frames -= crossing
    return _Correlations(whole, frames)


def _frame_sums(
    layout: _Layout,
    sources: Sequence[NDArray[np.floating[Any]]],
    references: Sequence[NDArray[np.floating[Any]]] | None = None,
) -> tuple[FloatArray, FloatArray, NDArray[np.bool_]]:
    """Per source and frame, in float64: the source's energy, the energy of its difference from its reference
    (zeros without references), and whether the source is silent in the frame (every channel sum zero)."""
    frames = layout.count
    energy, error = np.zeros((len(sources), frames)), np.zeros((len(sources), frames))
    silent = np.zeros((len(sources), frames), dtype=bool)
    for k, source in enumerate(sources):
        framed = layout.framed(source)
        framed_reference = layout.framed(references[k]) if references is not None else None
        for first in range(0, frames, _FRAME_CHUNK):
            part = slice(first, min(frames, first + _FRAME_CHUNK))
            block = np.asarray(framed[:, part], dtype=np.float64)
            energy[k, part] = np.einsum("ctn,ctn->t", block, block)
            silent[k, part] = ~np.any(block.sum(axis=0), axis=-1)
            if framed_reference is not None:
                difference = block - framed_reference[:, part]
                error[k, part] = np.einsum("ctn,ctn->t", difference, difference)
    return energy, error, silent


def _distortion_filters(
    projector: _Projector, correlations: FloatArray, joint_ok: bool, own_ok: list[bool], channels: int
) -> tuple[FloatArray, FloatArray]:
    """The time-invariant distortion filters from the whole track's reference–estimate correlations
    ``(reference channel, estimate channel, delay)``: ``taps[p, a, j]`` weighs reference channel ``a`` delayed by
    ``p`` towards estimate channel ``j``, onto every reference (joint) and onto the estimate's own stem. The
    systems are ordered (delay, channel), as the factors are; a singular one leaves its filters at zero."""
    width, _, length = correlations.shape
    rhs = correlations.transpose(2, 0, 1)  # (delay, reference channel, estimate channel)
    taps_all = np.zeros((length, width, width))
    if joint_ok:
        taps_all = projector.joint.solve(rhs.reshape(length * width, width)).reshape(length, width, width)
    taps_own = np.zeros((length, width, width))
    for k, factor in enumerate(projector.own):
        if own_ok[k]:
            own = slice(k * channels, (k + 1) * channels)
            solved = factor.solve(np.ascontiguousarray(rhs[:, own, own]).reshape(length * channels, -1))
            taps_own[:, own, own] = solved.reshape(length, channels, channels)
    return taps_all, taps_own


def _projection_energies(
    reference_frames: FloatArray, taps_all: FloatArray, taps_own: FloatArray, sources: int
) -> tuple[FloatArray, FloatArray]:
    """Per frame and stem, the energies of ``P_all``, ``P_own``, ``P_all − P_own`` and ``P_own − s`` (frame,
    quantity, stem), and the magnitudes summed into each (the scale of its rounding).

    ``‖Σ_a x_a * h_a‖²`` over a frame is ``Σ_ab Σ_τ r_ab(τ)·A_ab(τ)`` with the frame's reference correlations
    ``r`` and the filters' ``A_ab(τ) = Σ_q h_a[q + τ]·h_b[q]``, over lags of both signs; ``r_ab(−τ)·A_ab(−τ) =
    r_ba(τ)·A_ba(τ)``, so with ``r`` kept for τ ≥ 0 the lags τ ≥ 1 count twice. Every frame's energies are
    then one matrix product."""
    from scipy import fft

    length, width, _ = taps_all.shape
    frames = len(reference_frames)
    identity = np.zeros((length, width, width))
    identity[0] = np.eye(width)
    filters = np.stack([taps_all, taps_own, taps_all - taps_own, taps_own - identity]).transpose(0, 3, 2, 1)
    size = fft.next_fast_len(2 * length - 1, real=True)
    spectra = fft.rfft(filters, n=size, axis=-1)  # (quantity, estimate channel, reference channel, bins)
    autocorrelations = fft.irfft(spectra[:, :, :, None] * spectra[:, :, None, :].conj(), n=size, axis=-1)
    weights = np.full(length, 2.0)
    weights[0] = 1.0
    kernels = (autocorrelations[..., :length] * weights).reshape(4 * width, -1)
    flat = reference_frames.reshape(frames, -1)
    channels = width // sources
    energies = (flat @ kernels.T).reshape(frames, 4, sources, channels).sum(axis=-1)
    magnitudes = (np.abs(flat) @ np.abs(kernels).T).reshape(frames, 4, sources, channels).sum(axis=-1)
    return energies, magnitudes


@dataclass
class _Projector:
    """What a set of references needs to decompose estimates: the joint and per-stem factorizations."""

    names: tuple[str, ...]
    joint: Factor
    own: list[Factor]


class BssReferences:
    """References prepared for BSSEval v4: scoring several estimates against them computes what depends only
    on the references (their lagged correlations, whole-track and per frame; the factorized Gram matrices)
    once.

    ``references`` maps stem → ``(channels, samples)`` audio, all of one shape, at ``sample_rate``, float32
    or float64 (computed in float64 either way). The arrays are used where they are, not copied (a song's
    stems are hundreds of megabytes): leave them unchanged while scoring against these references.
    """

    def __init__(
        self,
        references: Mapping[str, ArrayLike],
        sample_rate: int,
        *,
        window_seconds: float = 1.0,
        hop_seconds: float = 1.0,
        filter_length: int = FILTER_LENGTH,
    ) -> None:
        load_scipy()
        if not references:
            raise InputError("bss_eval: no reference stems given; pass a mapping of stem name to audio")
        if sample_rate <= 0:
            raise InputError(f"bss_eval: sample_rate must be positive, got {sample_rate}")
        if not (window_seconds > 0 and hop_seconds > 0):
            raise InputError(
                f"bss_eval: window ({window_seconds} s) and hop ({hop_seconds} s) must be positive; SiSEC uses 1 s"
            )
        if filter_length < 1:
            raise InputError(f"bss_eval: filter_length must be at least 1, got {filter_length}")
        self.names = tuple(references)
        self.sample_rate = int(sample_rate)
        arrays = _validated(references, self.names, "reference")
        self.channels, self.length = arrays[0].shape
        self.window = max(1, round(window_seconds * sample_rate))
        self.hop = max(1, round(hop_seconds * sample_rate))
        self.filter_length = int(filter_length)
        self.silent = {name: _silent(src) for name, src in zip(self.names, arrays, strict=True)}
        self._layout = _Layout(self.length, self.window, self.hop)
        # The arrays themselves, not copies: a song's stems are hundreds of megabytes, read a few times.
        self._sources = arrays
        self._energy, _, self._silent_frames = _frame_sums(self._layout, self._sources)
        self._auto: _Correlations | None = None
        self._projectors: dict[tuple[str, ...], _Projector] = {}

    @property
    def sources(self) -> list[NDArray[np.floating[Any]]]:
        """The references, one (channels, samples) array per stem, in their own dtype."""
        return list(self._sources)

    @property
    def frames(self) -> int:
        """museval's frame count: whole windows only, or one frame when the track is shorter than a window."""
        return self._layout.count

    @property
    def frame_length(self) -> int:
        return self._layout.frame_length

    def _rows(self, names: Sequence[str]) -> list[int]:
        """Indices of the named stems' channels among all the references' channels, in order."""
        return [self.names.index(n) * self.channels + c for n in names for c in range(self.channels)]

    def _channels(self, names: Sequence[str]) -> list[Channel]:
        return [self._sources[self.names.index(n)][c] for n in names for c in range(self.channels)]

    # -- the reference-only part -----------------------------------------------------------------------
    def _correlate(self, estimates: list[Channel] | None, names: Sequence[str]) -> _Correlations | None:
        """One pass over the references' blocks: their own correlations the first time (kept), and the named
        stems' correlations with ``estimates`` (their channels, in order) when given."""
        runs, _ = self._layout.runs()
        lags = self.filter_length
        if self._auto is None:
            everything = self._channels(self.names)
            groups = [everything] if estimates is None else [everything, estimates]
            per_run = lag_correlations(everything, groups, runs, lags)
            self._auto = _collect(per_run[0], self._layout, everything, everything, lags)
            if estimates is None:
                return None
            rows = self._rows(names)
            with_estimates = per_run[1] if len(rows) == len(everything) else per_run[1][:, rows]
        elif estimates is None:
            return None
        else:
            (with_estimates,) = lag_correlations(self._channels(names), [estimates], runs, lags)
        return _collect(with_estimates, self._layout, self._channels(names), estimates, lags)

    def _auto_correlations(self) -> _Correlations:
        if self._auto is None:
            self._correlate(None, ())
        assert self._auto is not None
        return self._auto

    def projector(self, names: tuple[str, ...]) -> _Projector:
        """The factorized Gram matrices of the named stems' delayed references (joint, and each stem's own)."""
        found = self._projectors.get(names)
        if found is None:
            whole = self._auto_correlations().whole
            rows = self._rows(names)
            joint = block_toeplitz_cholesky(whole[np.ix_(rows, rows)][np.newaxis], _EPS)[0]
            own_rows = [self._rows([n]) for n in names]
            own = block_toeplitz_cholesky(np.stack([whole[np.ix_(r, r)] for r in own_rows]), _EPS)
            found = _Projector(names, joint, own)
            self._projectors[names] = found
        return found

    # -- scoring -------------------------------------------------------------------------------------------
    def evaluate(self, estimates: Mapping[str, ArrayLike]) -> BssFrames:
        """BSSEval v4 of ``estimates`` (stem → audio of the references' shape) against the stems they share."""
        names = [n for n in self.names if n in estimates]
        if not names:
            raise InputError(
                "bss_eval: no stem has both a reference and an estimate "
                f"(references: {', '.join(self.names)}; estimates: {', '.join(estimates) or 'none'})"
            )
        arrays = _validated(estimates, names, "estimate")
        if arrays[0].shape != (self.channels, self.length):
            raise InputError(
                f"bss_eval: estimates of shape {arrays[0].shape} do not match the references' "
                f"{(self.channels, self.length)}; align them first (stemkit.evaluate.align.match)"
            )
        nan = np.full(self.frames, np.nan)
        values = {n: {m: nan.copy() for m in BSS_METRICS} for n in names}
        notes: dict[str, str] = {}
        usable: list[str] = []
        for name, arr in zip(names, arrays, strict=True):
            if self.silent[name]:
                notes[name] = "its reference is silent throughout: BSSEval v4 is undefined for it"
            elif _silent(arr):
                notes[name] = "the estimate is silent throughout: BSSEval v4 is undefined for it"
            else:
                usable.append(name)
        starts = self._layout.starts.astype(np.float64) / self.sample_rate
        if usable:
            self._score(tuple(usable), [arrays[names.index(n)] for n in usable], values, notes)
        return BssFrames(tuple(names), values, starts, notes)

    def _score(
        self,
        names: tuple[str, ...],
        estimates: list[NDArray[np.floating[Any]]],
        values: dict[str, dict[str, FloatArray]],
        notes: dict[str, str],
    ) -> None:
        rows = self._rows(names)
        cross = self._correlate([e[c] for e in estimates for c in range(self.channels)], names)
        assert cross is not None
        projector = self.projector(names)
        sources, channels = len(names), self.channels
        joint_ok = projector.joint.rcond >= RCOND_LIMIT
        own_ok = [f.rcond >= RCOND_LIMIT for f in projector.own]
        for k, name in enumerate(names):
            reasons = []
            if not own_ok[k]:
                reasons.append(f"ISR and SIR: {self._deficiency(name, projector.own[k])}")
            if not joint_ok:
                reasons.append(f"SIR and SAR: {self._joint_deficiency(names, projector)}")
            if reasons:
                notes[name] = "; ".join(reasons)

        taps_all, taps_own = _distortion_filters(projector, cross.whole, joint_ok, own_ok, channels)
        auto = self._auto_correlations()
        ref_frames = auto.frames if len(rows) == auto.frames.shape[1] else auto.frames[:, rows][:, :, rows]
        energies, magnitudes = _projection_energies(ref_frames, taps_all, taps_own, sources)
        # ⟨ŝ_j, P_all_j⟩ over a frame: the frame's reference–estimate correlations against the filters.
        inner = np.einsum("fajp,paj->fj", cross.frames, taps_all).reshape(self.frames, sources, channels).sum(-1)
        inner_scale = np.einsum("fajp,paj->fj", np.abs(cross.frames), np.abs(taps_all))
        inner_scale = inner_scale.reshape(self.frames, sources, channels).sum(-1)

        indices = [self.names.index(n) for n in names]
        estimate_energy, error, estimate_silent = _frame_sums(
            self._layout, estimates, [self._sources[i] for i in indices]
        )
        true = self._energy[indices]
        silent_frame = (self._silent_frames[indices] | estimate_silent).any(axis=0)
        p_all, p_own = energies[:, 0].T, energies[:, 1].T
        interference, spatial = energies[:, 2].T, energies[:, 3].T
        artefacts = estimate_energy - 2 * inner.T + p_all

        # A residual below what the computation resolves is zero, and its ratio +inf: below the solve's
        # resolution, (eps · condition number)² of the estimate's energy, or below the rounding of the
        # correlations it is summed from.
        conditioning = min([projector.joint.rcond, *(f.rcond for f in projector.own)])
        resolution = (_EPS / conditioning) ** 2 * estimate_energy if conditioning > 0 else np.zeros_like(true)
        rounding = _ROUNDING * _EPS

        def resolved(residual: FloatArray, scale: FloatArray) -> FloatArray:
            return np.where(residual <= np.maximum(resolution, rounding * scale), 0.0, residual)

        with np.errstate(divide="ignore", invalid="ignore"):
            out = {
                "bss-sdr": 10 * np.log10(true / error),
                "bss-isr": 10 * np.log10(true / resolved(spatial, magnitudes[:, 3].T)),
                "bss-sir": 10 * np.log10(np.maximum(p_own, 0.0) / resolved(interference, magnitudes[:, 2].T)),
                "bss-sar": 10
                * np.log10(
                    np.maximum(p_all, 0.0)
                    / resolved(artefacts, estimate_energy + 2 * inner_scale.T + magnitudes[:, 0].T)
                ),
            }
        perfect = error == 0
        if not joint_ok:
            out["bss-sir"][:] = np.nan
            out["bss-sar"][:] = np.nan
        for k in range(sources):
            if not own_ok[k]:
                out["bss-isr"][k] = np.nan
                out["bss-sir"][k] = np.nan
        for metric in BSS_METRICS:
            # A frame where the estimate is its reference, sample for sample, is perfect on every metric
            # (the projections would otherwise leave rounding noise in the denominators).
            out[metric][perfect] = np.inf
            out[metric][:, silent_frame] = np.nan
        for k, name in enumerate(names):
            for metric in BSS_METRICS:
                values[name][metric] = out[metric][k]

    def _deficiency(self, name: str, factor: Factor) -> str:
        source = self._sources[self.names.index(name)]
        if source.shape[0] > 1 and all(np.array_equal(source[0], other) for other in source[1:]):
            cause = "its left and right channels are identical (a mono stem), so its delayed copies are dependent"
        else:
            cause = f"its delayed copies are numerically dependent (reciprocal condition {factor.rcond:.1e})"
        return f"the {name} reference's projection is singular: {cause}"

    def _joint_deficiency(self, names: tuple[str, ...], projector: _Projector) -> str:
        causes = [n for n, f in zip(names, projector.own, strict=True) if f.rcond < RCOND_LIMIT]
        if causes:
            return (
                f"the joint projection on all references is singular because of {', '.join(causes)} (see the ISR note)"
            )
        return (
            "the references are linearly dependent on one another (reciprocal condition "
            f"{projector.joint.rcond:.1e}), e.g. two stems that are copies of each other"
        )


def bss_eval_frames(
    references: Mapping[str, ArrayLike] | BssReferences,
    estimates: Mapping[str, ArrayLike],
    sample_rate: int,
    *,
    window_seconds: float = 1.0,
    hop_seconds: float = 1.0,
    backend: Backend = "native",
) -> BssFrames:
    """BSSEval v4, frame by frame (see the module docstring). ``references`` may be a prepared
    :class:`BssReferences` (its window and hop are then used); ``backend="museval"`` runs museval instead."""
    if backend == "museval":
        return _museval_frames(references, estimates, sample_rate, window_seconds, hop_seconds)
    if backend != "native":
        raise ConfigError(f"bss_eval: unknown backend {backend!r}; use 'native' or 'museval'")
    if isinstance(references, BssReferences):
        if references.sample_rate != sample_rate:
            raise InputError(
                f"bss_eval: the prepared references are at {references.sample_rate} Hz, not {sample_rate} Hz"
            )
        return references.evaluate(estimates)
    prepared = BssReferences(
        {n: references[n] for n in references if n in estimates} or references,
        sample_rate,
        window_seconds=window_seconds,
        hop_seconds=hop_seconds,
    )
    return prepared.evaluate(estimates)


def bss_eval(
    references: Mapping[str, ArrayLike] | BssReferences,
    estimates: Mapping[str, ArrayLike],
    sample_rate: int,
    *,
    window_seconds: float = 1.0,
    hop_seconds: float = 1.0,
    backend: Backend = "native",
) -> dict[str, dict[str, float]]:
    """BSSEval v4 of one song as SiSEC 2018 reports it: per stem, the median over 1 s frames.

    ``references`` and ``estimates`` map stem → ``(channels, samples)`` audio, aligned and of equal shape;
    the stems present in both are evaluated together (SIR depends on the other stems). Returns
    stem → {"bss-sdr", "bss-sir", "bss-isr", "bss-sar"} → dB. See :func:`bss_eval_frames` for the frames
    and the notes that say why a value is undefined.
    """
    return bss_eval_frames(
        references, estimates, sample_rate, window_seconds=window_seconds, hop_seconds=hop_seconds, backend=backend
    ).medians()


def _museval_frames(
    references: Mapping[str, ArrayLike] | BssReferences,
    estimates: Mapping[str, ArrayLike],
    sample_rate: int,
    window_seconds: float,
    hop_seconds: float,
) -> BssFrames:
    """The same evaluation through museval (its stems silent throughout left out, as the native one does)."""
    if isinstance(references, BssReferences):
        refs_map: Mapping[str, ArrayLike] = dict(zip(references.names, references.sources, strict=True))
        window, hop = references.window, references.hop
    else:
        refs_map = references
        window, hop = max(1, round(window_seconds * sample_rate)), max(1, round(hop_seconds * sample_rate))
    names = [n for n in refs_map if n in estimates]
    if not names:
        raise InputError("bss_eval: no stem has both a reference and an estimate")
    refs = _as_sources(refs_map, names, "reference")
    ests = _as_sources(estimates, names, "estimate")
    museval = load_museval()
    length = refs.shape[-1]
    frames = (length - window + hop) // hop if window < length else 1
    values = {n: {m: np.full(frames, np.nan) for m in BSS_METRICS} for n in names}
    notes: dict[str, str] = {}
    usable = []
    for k, name in enumerate(names):
        if _silent(refs[k]) or _silent(ests[k]):
            notes[name] = "silent throughout: BSSEval v4 is undefined for it"
        else:
            usable.append(k)
    if usable:
        sdr, isr, sir, sar = museval.evaluate(
            refs[usable].transpose(0, 2, 1), ests[usable].transpose(0, 2, 1), win=window, hop=hop, mode="v4"
        )
        for i, k in enumerate(usable):
            for metric, frame_values in zip(BSS_METRICS, (sdr, sir, isr, sar), strict=True):
                values[names[k]][metric] = np.asarray(frame_values[i], dtype=np.float64)
    starts = np.arange(frames, dtype=np.float64) * hop / sample_rate
    return BssFrames(tuple(names), values, starts, notes)
