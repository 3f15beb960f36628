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

How it is computed (vectorized, no frame loop in Python): the Gram matrix of the delayed references and the
correlations between references and estimates need only lags below ``filter_length``, so they come from
block-wise FFTs summed in the frequency domain (one small matrix product per frequency) instead of
full-length transforms; the normal equations are solved by a Cholesky factorization; per-frame energies
come from the frames' spectra by Parseval's theorem, so no projection is ever brought back to the time
domain. Everything that depends only on the references (their correlations, the factorized Gram
matrices) lives in a :class:`BssReferences` and is computed once however many estimates are scored against
it. The result matches museval 0.4.1 to ~1e-10 dB per frame on well-conditioned input (the tests check
0.01 dB) and runs far faster (``bench/evaluate_bsseval.py``, ``docs/benchmarks.md``).

Where stemkit says more than museval:

- **A rank-deficient projection** (references linearly dependent: a stem whose left and right channels are
  identical, two identical stems, or a synthetic stem so band-limited that its delayed copies are
  numerically dependent) makes the normal equations singular; museval solves them anyway and prints
  rounding noise (the old demo song's SIR of about −50 dB). stemkit measures the conditioning of each Gram
  matrix and leaves the metrics that rest on a singular projection undefined (NaN), saying why in
  :attr:`BssFrames.notes`. SDR does not use the projection and stays defined.
- **A perfect estimate** (equal to its reference over a frame) scores +inf on all four metrics, where
  museval gives +inf SDR and rounding noise (~150–300 dB) for the other three. Likewise a projection
  residual below the solve's resolution (``(eps · condition number)²`` of the estimate's energy, i.e. a
  ratio beyond ~130-190 dB) is rounding, and its ratio reads +inf: the SAR of the mixture baseline, whose
  estimate lies exactly in the references' span, is +inf, not museval's ~150 dB of noise.
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
# FFT size of the block-wise correlations: 16 384 leaves 15 362 samples per block with 512-tap filters.
_XCORR_FFT = 1 << 14
_XCORR_GROUP = 16  # blocks transformed at once (memory: channels x group x FFT size)
_FRAME_CHUNK = 8  # frames transformed at once in the per-frame pass

FloatArray = NDArray[np.float64]
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


def _as_sources(stems: Mapping[str, ArrayLike], names: Sequence[str], what: str) -> FloatArray:
    arrays = []
    for name in names:
        arr = np.asarray(stems[name], dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[np.newaxis, :]
        if arr.ndim != 2 or arr.shape[-1] == 0:
            raise InputError(f"bss_eval: {what} {name!r} has shape {arr.shape}; pass (channels, samples) audio")
        if not np.all(np.isfinite(arr)):
            raise InputError(f"bss_eval: {what} {name!r} has NaN or infinite samples; pass finite audio")
        arrays.append(arr)
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise InputError(
            f"bss_eval: the {what}s have different shapes "
            f"({', '.join(f'{n}: {a.shape}' for n, a in zip(names, arrays, strict=True))}); "
            "align them first (stemkit.evaluate.align.match)"
        )
    return np.stack(arrays)


def _silent(source: FloatArray) -> bool:
    """museval's test for one (channels, samples) source: every sample's channel sum is zero."""
    return not bool(np.any(source.sum(axis=0)))


def _lagged_xcorr(x: FloatArray, y: FloatArray, lo: int, hi: int) -> FloatArray:
    """``r[a, b, k - lo] = Σ_n x[a, n]·y[b, n + k]`` for lags ``lo ≤ k ≤ hi``, samples outside taken as zero.

    Only a few hundred lags are needed, so the signals are cut into blocks (``x`` plain, ``y`` widened by the
    lag range) whose cross-spectra are summed over blocks; one inverse transform per pair at the end.
    """
    from scipy import fft

    channels_x, n = x.shape
    channels_y = y.shape[0]
    span = hi - lo
    size = _XCORR_FFT
    while size - span < size // 2:
        size *= 2
    block = size - span
    blocks = -(-n // block)
    x_padded = np.zeros((channels_x, blocks * block))
    x_padded[:, :n] = x
    x_blocks = x_padded.reshape(channels_x, blocks, block)
    # y_padded[i] = y[i + lo]: block b reads y[b·block + lo, b·block + lo + size).
    y_padded = np.zeros((channels_y, blocks * block + size))
    first = max(0, -lo)
    y_padded[:, first : first + n - max(0, lo)] = y[:, max(0, lo) :]
    y_blocks = sliding_window_view(y_padded, size, axis=-1)[:, ::block][:, :blocks]
    acc = np.zeros((size // 2 + 1, channels_x, channels_y), dtype=np.complex128)
    for start in range(0, blocks, _XCORR_GROUP):
        spec_x = fft.rfft(x_blocks[:, start : start + _XCORR_GROUP], n=size, axis=-1)
        spec_y = fft.rfft(y_blocks[:, start : start + _XCORR_GROUP], axis=-1)
        # Per frequency: (channels_x × blocks) @ (blocks × channels_y), summing over the blocks.
        acc += np.matmul(spec_x.transpose(2, 0, 1).conj(), spec_y.transpose(2, 1, 0))
    corr = fft.irfft(acc, n=size, axis=0)[: span + 1]
    return np.ascontiguousarray(corr.transpose(1, 2, 0))


@dataclass
class _Factor:
    """A factorized Gram matrix (upper Cholesky), or why it could not be used."""

    factor: FloatArray | None
    rcond: float


def _factorize(gram: FloatArray) -> _Factor:
    """Cholesky of ``gram + eps·I`` (museval's system) with LAPACK's estimate of its reciprocal condition.
    ``gram`` is overwritten."""
    from scipy.linalg import cho_factor
    from scipy.linalg.lapack import dpocon

    regularized = gram  # factorized in place: the caller hands over its matrix
    regularized.flat[:: gram.shape[0] + 1] += _EPS
    norm = float(np.abs(regularized).sum(axis=0).max())
    try:
        factor, _ = cho_factor(regularized, lower=False, overwrite_a=True, check_finite=False)
    except np.linalg.LinAlgError:
        return _Factor(None, 0.0)  # not positive definite: singular to working precision
    rcond, info = dpocon(factor, norm)
    return _Factor(factor, float(rcond) if info == 0 else 0.0)


def _solve(factor: _Factor, rhs: FloatArray) -> FloatArray:
    from scipy.linalg import cho_solve

    assert factor.factor is not None
    return np.asarray(cho_solve((factor.factor, False), rhs, check_finite=False))


@dataclass
class _Projector:
    """What a set of references needs to decompose estimates: the joint and per-stem factorizations."""

    names: tuple[str, ...]
    joint: _Factor
    own: list[_Factor]


class BssReferences:
    """References prepared for BSSEval v4: scoring several estimates against them computes what depends only
    on the references (their lagged correlations, the factorized Gram matrices) once.

    ``references`` maps stem → ``(channels, samples)`` audio, all of one shape, at ``sample_rate``.
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
        self.sources = _as_sources(references, self.names, "reference")
        _, self.channels, self.length = self.sources.shape
        self.window = max(1, round(window_seconds * sample_rate))
        self.hop = max(1, round(hop_seconds * sample_rate))
        self.filter_length = int(filter_length)
        self.silent = {name: _silent(src) for name, src in zip(self.names, self.sources, strict=True)}
        self._correlations: FloatArray | None = None
        self._projectors: dict[tuple[str, ...], _Projector] = {}

    # -- frames ----------------------------------------------------------------------------------------
    @property
    def frames(self) -> int:
        """museval's frame count: whole windows only, or one frame when the track is shorter than a window."""
        if self.window < self.length:
            return int((self.length - self.window + self.hop) // self.hop)
        return 1

    @property
    def frame_length(self) -> int:
        return int(min(self.window, self.length))

    def _framed(self, sources: FloatArray) -> NDArray[Any]:
        """(sources, channels, frames, frame_length) view of (sources, channels, samples)."""
        return sliding_window_view(sources, self.frame_length, axis=-1)[..., :: self.hop, :][..., : self.frames, :]

    # -- the reference-only part -----------------------------------------------------------------------
    def _lag_correlations(self) -> FloatArray:
        """Correlations of every reference channel with every other at lags ±(filter_length − 1)."""
        if self._correlations is None:
            flat = self.sources.reshape(-1, self.length)
            lag = self.filter_length - 1
            self._correlations = _lagged_xcorr(flat, flat, -lag, lag)
        return self._correlations

    def _gram(self, indices: Sequence[int]) -> FloatArray:
        """Gram matrix of the delayed copies of the channels of ``indices``: rows (source, channel, delay).

        ``<x_a delayed p, x_b delayed q> = r_ab(p − q)``: every block is Toeplitz, read as a strided view of
        the reversed correlation. LAPACK's Cholesky reads one triangle only, so the blocks are copied as
        computed, without symmetrizing away the FFT rounding between ``r_ab(k)`` and ``r_ba(−k)``.
        """
        corr = self._lag_correlations()
        length, channels = self.filter_length, self.channels
        rows = [i * channels + c for i in indices for c in range(channels)]
        gram = np.empty((len(rows) * length, len(rows) * length))
        for i, a in enumerate(rows):
            for j, b in enumerate(rows):
                # corr[a, b] holds lags −(length−1)..(length−1); reversed, row p of the block starts at
                # lag p: T[p, q] = r(p − q) = reversed[(length − 1) − p + q].
                reversed_corr = corr[a, b, ::-1]
                block = sliding_window_view(reversed_corr, length)[::-1]
                gram[i * length : (i + 1) * length, j * length : (j + 1) * length] = block
        return gram

    def projector(self, names: tuple[str, ...]) -> _Projector:
        found = self._projectors.get(names)
        if found is None:
            indices = [self.names.index(n) for n in names]
            gram = self._gram(indices)
            block = self.channels * self.filter_length
            own = [
                _factorize(gram[k * block : (k + 1) * block, k * block : (k + 1) * block].copy())
                for k in range(len(names))
            ]
            found = _Projector(names, _factorize(gram), own)
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
        ests = _as_sources(estimates, names, "estimate")
        if ests.shape[1:] != (self.channels, self.length):
            raise InputError(
                f"bss_eval: estimates of shape {ests.shape[1:]} do not match the references' "
                f"{(self.channels, self.length)}; align them first (stemkit.evaluate.align.match)"
            )
        nan = np.full(self.frames, np.nan)
        values = {n: {m: nan.copy() for m in BSS_METRICS} for n in names}
        notes: dict[str, str] = {}
        usable: list[str] = []
        for k, name in enumerate(names):
            if self.silent[name]:
                notes[name] = "its reference is silent throughout: BSSEval v4 is undefined for it"
            elif _silent(ests[k]):
                notes[name] = "the estimate is silent throughout: BSSEval v4 is undefined for it"
            else:
                usable.append(name)
        starts = np.arange(self.frames, dtype=np.float64) * self.hop / self.sample_rate
        if usable:
            chosen = [names.index(n) for n in usable]
            self._score(tuple(usable), ests[chosen], values, notes)
        return BssFrames(tuple(names), values, starts, notes)

    def _score(
        self, names: tuple[str, ...], ests: FloatArray, values: dict[str, dict[str, FloatArray]], notes: dict[str, str]
    ) -> None:
        from scipy import fft

        projector = self.projector(names)
        indices = [self.names.index(n) for n in names]
        refs = self.sources[indices]
        sources, channels, length = len(names), self.channels, self.filter_length
        width = sources * channels
        flat_refs = refs.reshape(width, self.length)
        flat_ests = ests.reshape(width, self.length)
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

        # Distortion filters (time-invariant, from the whole track): solve G·C = D for every estimate channel.
        corr = _lagged_xcorr(flat_refs, flat_ests, 0, length - 1)  # (ref channel, est channel, delay)
        rhs = corr.transpose(0, 2, 1).reshape(width * length, width)
        taps_all = np.zeros((width, length, width))
        if joint_ok:
            taps_all = _solve(projector.joint, rhs).reshape(width, length, width)
        taps_own = np.zeros((sources, channels, length, channels))
        block = channels * length
        for k in range(sources):
            if own_ok[k]:
                own_rhs = rhs[k * block : (k + 1) * block, k * channels : (k + 1) * channels]
                taps_own[k] = _solve(projector.own[k], own_rhs).reshape(channels, length, channels)

        # Per frame: the frame's references filtered (tails included), energies by Parseval.
        frame = self.frame_length
        size = fft.next_fast_len(frame + length - 1, real=True)
        bins = size // 2 + 1
        weights = np.full(bins, 2.0 / size)
        weights[0] = 1.0 / size
        if size % 2 == 0:
            weights[-1] = 1.0 / size
        # Filters as one (bins, 2·width, width) stack: rows 0..width-1 give P_all, the rest P_own.
        filters = np.zeros((bins, 2 * width, width), dtype=np.complex128)
        filters[:, :width, :] = fft.rfft(taps_all, n=size, axis=1).transpose(1, 2, 0)
        own_spec = fft.rfft(taps_own, n=size, axis=2)  # (source, in channel, bins, out channel)
        for k in range(sources):
            rows = slice(width + k * channels, width + (k + 1) * channels)
            filters[:, rows, k * channels : (k + 1) * channels] = own_spec[k].transpose(1, 2, 0)

        ref_frames = self._framed(refs)  # (source, channel, frame, sample)
        est_frames = self._framed(ests)
        silent_frame = np.zeros(self.frames, dtype=bool)
        for framed in (ref_frames, est_frames):
            silent_frame |= (~np.any(framed.sum(axis=1), axis=-1)).any(axis=0)

        def energy(spectra: NDArray[np.complex128]) -> FloatArray:
            """(width, frames, bins) spectra → (sources, frames) energies."""
            power = spectra.real**2 + spectra.imag**2
            return np.asarray((power @ weights).reshape(sources, channels, -1).sum(axis=1))

        # Relative energy below which a projection residual is rounding: (eps · condition number)².
        conditioning = min([projector.joint.rcond, *(f.rcond for f in projector.own)])
        resolution = (_EPS / conditioning) ** 2 if conditioning > 0 else 0.0
        out = {m: np.full((sources, self.frames), np.nan) for m in BSS_METRICS}
        perfect = np.zeros((sources, self.frames), dtype=bool)
        for first in range(0, self.frames, _FRAME_CHUNK):
            part = slice(first, min(self.frames, first + _FRAME_CHUNK))
            r = ref_frames[:, :, part].reshape(width, -1, frame)
            e = est_frames[:, :, part].reshape(width, -1, frame)
            true = (r * r).sum(axis=-1).reshape(sources, channels, -1).sum(axis=1)
            diff = ((e - r) ** 2).sum(axis=-1).reshape(sources, channels, -1).sum(axis=1)
            spec_r = fft.rfft(r, n=size, axis=-1)  # (width, frames, bins)
            spec_e = fft.rfft(e, n=size, axis=-1)
            projected = np.matmul(filters, spec_r.transpose(2, 0, 1)).transpose(1, 2, 0)  # (2·width, frames, bins)
            p_all, p_own = projected[:width], projected[width:]
            # A projection is only as exact as its solve: a residual below that resolution (relative to the
            # estimate's energy) is rounding, not signal, and the ratio reads +inf (e.g. the SAR of an estimate
            # that lies in the references' span, like the mixture).
            floor = resolution * (e * e).sum(axis=-1).reshape(sources, channels, -1).sum(axis=1)

            def resolved(residual: FloatArray, floor: FloatArray = floor) -> FloatArray:
                return np.where(residual <= floor, 0.0, residual)

            with np.errstate(divide="ignore", invalid="ignore"):
                out["bss-sdr"][:, part] = 10 * np.log10(true / diff)
                out["bss-isr"][:, part] = 10 * np.log10(true / resolved(energy(p_own - spec_r)))
                out["bss-sir"][:, part] = 10 * np.log10(energy(p_own) / resolved(energy(p_all - p_own)))
                out["bss-sar"][:, part] = 10 * np.log10(energy(p_all) / resolved(energy(spec_e - p_all)))
            perfect[:, part] = diff == 0
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

    def _deficiency(self, name: str, factor: _Factor) -> str:
        source = self.sources[self.names.index(name)]
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
