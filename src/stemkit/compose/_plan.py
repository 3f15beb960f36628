"""Planning how an input fits a provider: what its capabilities refuse, which encoding and which pieces make
it fit (or why nothing can), what a fitted request sends, and what a provider accepts once inputs are fitted.

Pure decisions on an :class:`~stemkit.audio.AudioSource`'s facts (format, size, rate, length); the running
is :mod:`stemkit.compose.fit`'s.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from stemkit.audio import AudioSource, open_source
from stemkit.errors import ConfigError, ProviderLimitError
from stemkit.protocol import Capabilities, Separator
from stemkit.provider import limit_violation

from ._stitch import Bounds, chunk_bounds
from ._transcode import Encoding, lossless_subtype, mp3_encoding

__all__ = [
    "CHUNK_ALIGN",
    "DEFAULT_OVERLAP",
    "FIT_MODES",
    "FIT_OPTION",
    "MIN_CHUNK_SECONDS",
    "FitMode",
    "FitPlan",
    "SentAudio",
    "estimate_sent",
    "fit_mode",
    "fit_refusal",
    "fitted_capabilities",
    "plan_fit",
]

FitMode = Literal["auto", "lossless", "transcode", "off"]
FIT_MODES: tuple[FitMode, ...] = get_args(FitMode)
#: The reserved option name: ``stemsplit?fit=lossless`` or ``sep.separate(audio, fit="off")``.
FIT_OPTION = "fit"
#: Seconds neighbouring chunks share (at most a fifth of a chunk).
DEFAULT_OVERLAP = 10.0
#: Chunks start on multiples of this many frames, so that a model whose STFT hop divides it (4096 = 4 x 1024
#: = 8 x 512 ...) frames every chunk on the same grid as the whole input and separates its interior the same.
CHUNK_ALIGN = 4096
#: The shortest chunk stemkit splits an input into: shorter ones give a model too little context to separate.
MIN_CHUNK_SECONDS = 5.0
_MIN_MARGIN = 0.01  # seconds of padding beyond a provider's minimum, so rounding on its side cannot refuse it


def fit_mode(value: object) -> FitMode:
    """Check a ``fit=`` value (``auto``, ``lossless``, ``transcode`` or ``off``)."""
    text = value.strip().lower() if isinstance(value, str) else value
    for known in FIT_MODES:
        if text == known:
            return known
    raise ConfigError(f"fit: {value!r} is not a fit mode; use one of {', '.join(FIT_MODES)}")


@dataclass(frozen=True)
class FitPlan:
    """How an input is made to fit a provider: an encoding, and the pieces (input frames) to send.

    ``pieces`` are ``[start, stop)`` frame ranges of the input; neighbours share ``overlap`` frames. One piece
    covering the whole input is a plain transcode (``pad`` silent frames appended when the input is shorter
    than the provider's minimum).
    """

    mode: FitMode
    reasons: tuple[str, ...]
    encoding: Encoding
    pieces: tuple[Bounds, ...]
    overlap: int
    pad: int
    sample_rate: int
    channels: int
    frames: int
    max_bytes: int | None = None

    @property
    def chunked(self) -> bool:
        return len(self.pieces) > 1

    @property
    def job_seconds(self) -> tuple[float, ...]:
        """Seconds of audio each job sends (overlaps and padding included)."""
        seconds = [(stop - start) / self.sample_rate for start, stop in self.pieces]
        seconds[-1] += self.pad / self.sample_rate
        return tuple(seconds)

    @property
    def sent_seconds(self) -> float:
        return sum(self.job_seconds)

    @property
    def sent_bytes(self) -> int:
        """An upper bound of the bytes uploaded (exact for PCM WAV, within a few kB otherwise)."""
        return sum(self.encoding.size_bound(s, self.channels) for s in self.job_seconds)

    def describe(self) -> str:
        what = self.encoding.describe()
        if self.chunked:
            overlap = self.overlap / self.sample_rate
            text = f"{len(self.pieces)} overlapping chunks ({what}, {overlap:.3g} s overlap)"
        else:
            text = f"one piece ({what})"
        if self.pad:
            text += f", padded with {self.pad / self.sample_rate:.3g} s of silence"
        return text

    def to_dict(self) -> dict[str, Any]:
        """What provenance records under ``extra["fit"]``."""
        return {
            "mode": self.mode,
            "reasons": list(self.reasons),
            **self.encoding.to_dict(),
            "chunks": len(self.pieces),
            "overlap_seconds": self.overlap / self.sample_rate,
            "padded_seconds": self.pad / self.sample_rate,
            "sent_seconds": self.sent_seconds,
            "sent_bytes_max": self.sent_bytes,
            "pieces": [[start / self.sample_rate, stop / self.sample_rate] for start, stop in self.pieces],
        }


@dataclass(frozen=True)
class _Needs:
    """What the provider refuses about an input as it is."""

    reasons: tuple[str, ...]
    format: bool
    too_short: bool

    def __bool__(self) -> bool:
        return bool(self.reasons)


def _accepts(caps: Capabilities, fmt: str) -> bool:
    return not caps.input_formats or fmt in caps.input_formats


def _needs(caps: Capabilities, source: AudioSource, chunk_seconds: float | None) -> _Needs:
    reasons: list[str] = []
    wrong_format = not _accepts(caps, source.suffix.lstrip("."))
    if wrong_format:
        formats = ", ".join(sorted(caps.input_formats))
        reasons.append(f"{source.suffix or 'this'} input is not accepted (takes {formats})")
    if caps.max_file_bytes is not None and source.size_bytes > caps.max_file_bytes:
        reasons.append(f"{source.size_bytes / 1e6:.1f} MB is over the {caps.max_file_bytes / 1e6:.0f} MB limit")
    if caps.max_duration_seconds is not None and source.duration > caps.max_duration_seconds:
        reasons.append(f"{source.duration / 60:.1f} min is over the {caps.max_duration_seconds / 60:g} min limit")
    too_short = caps.min_duration_seconds is not None and source.duration < caps.min_duration_seconds
    if too_short:
        reasons.append(f"{source.duration:.2f} s is under the {caps.min_duration_seconds:g} s minimum")
    if chunk_seconds is not None and source.duration > chunk_seconds:
        reasons.append(f"{source.duration:.1f} s is longer than chunk_seconds={chunk_seconds:g}")
    return _Needs(tuple(reasons), wrong_format, too_short)


def _candidates(caps: Capabilities, source: AudioSource, mode: FitMode) -> list[Encoding]:
    """Encodings the provider accepts and the mode allows, best first: WAV, FLAC, then MP3."""
    subtype = lossless_subtype(source)
    out: list[Encoding] = []
    if _accepts(caps, "wav"):
        out.append(Encoding("wav", subtype, source.sample_rate))
    if _accepts(caps, "flac") and subtype in ("PCM_16", "PCM_24"):
        out.append(Encoding("flac", subtype, source.sample_rate))
    if mode in ("auto", "transcode") and _accepts(caps, "mp3"):
        out.append(mp3_encoding(source.sample_rate))
    return out


def _max_seconds(caps: Capabilities, encoding: Encoding, channels: int, chunk_seconds: float | None) -> float:
    limits = [math.inf]
    if caps.max_duration_seconds is not None:
        limits.append(caps.max_duration_seconds)
    if caps.max_file_bytes is not None:
        limits.append(encoding.max_seconds(caps.max_file_bytes, channels))
    if chunk_seconds is not None:
        limits.append(chunk_seconds)
    return min(limits)


class _CannotFit(ProviderLimitError):
    """A ProviderLimitError that also keeps the reason fitting could not help (for a chain's skip reason)."""

    def __init__(self, message: str, *, why: str, **kwargs: Any) -> None:
        self.why = why
        super().__init__(message, **kwargs)


def _refuse(source: AudioSource, provider: str, needs: _Needs, mode: FitMode, why: str) -> ProviderLimitError:
    return _CannotFit(
        f"{source.name}: {'; '.join(needs.reasons)} for {provider}, and fit={mode} cannot make it fit: {why}",
        why=why,
        provider=provider.split(":", maxsplit=1)[0],
        code="CANNOT_FIT",
    )


def plan_fit(
    capabilities: Capabilities,
    source: AudioSource,
    mode: FitMode | str = "auto",
    *,
    overlap: float = DEFAULT_OVERLAP,
    chunk_seconds: float | None = None,
    provider: str = "provider",
) -> FitPlan | None:
    """How to make ``source`` fit a provider with these capabilities: None when it fits as it is, a
    :class:`FitPlan` when it can be made to, a :class:`~stemkit.errors.ProviderLimitError` (code
    ``CANNOT_FIT``) saying why when it cannot.

    Among the encodings the provider accepts (and ``mode`` allows) the first that sends the input as one
    piece wins (WAV, then FLAC, then MP3); failing that, the one that needs the fewest chunks (ties go to the
    lossless one). ``chunk_seconds`` caps the length of a piece even where the provider states no limit
    (to bound a local model's memory, or to spread a hosted job over several workers).
    """
    mode = fit_mode(mode)
    if source.is_remote:
        return None  # no local audio to transcode or cut; the provider's own limits apply
    if chunk_seconds is not None and chunk_seconds <= 0:
        raise ConfigError(f"chunk_seconds: {chunk_seconds!r} must be a positive number of seconds")
    if overlap < 0:
        raise ConfigError(f"overlap: {overlap!r} must be zero or more seconds")
    needs = _needs(capabilities, source, chunk_seconds)
    if not needs:
        return None
    if mode == "off":
        raise _refuse(source, provider, needs, mode, "fitting is off")
    candidates = _candidates(capabilities, source, mode)
    if not candidates:
        writable = "wav, flac" + (", mp3" if mode != "lossless" else "")
        raise _refuse(source, provider, needs, mode, f"stemkit can write {writable}, none of which it takes")
    rate, channels, frames = source.sample_rate, source.channels, source.frames
    minimum = capabilities.min_duration_seconds or 0.0
    min_frames = math.ceil((minimum + _MIN_MARGIN) * rate) if minimum else 0
    pad = max(0, min_frames - frames)
    for encoding in candidates:
        if (frames + pad) / rate <= _max_seconds(capabilities, encoding, channels, chunk_seconds):
            return FitPlan(mode, needs.reasons, encoding, ((0, frames),), 0, pad, rate, channels, frames,
                           capabilities.max_file_bytes)  # fmt: skip
    if mode == "transcode":
        raise _refuse(source, provider, needs, mode, "it would have to be split into chunks (fit=auto splits it)")
    best: FitPlan | None = None
    shortest = max(min_frames, math.ceil(MIN_CHUNK_SECONDS * rate))
    for encoding in candidates:
        max_frames = math.floor(_max_seconds(capabilities, encoding, channels, chunk_seconds) * rate)
        if max_frames < shortest:
            continue
        shared = min(round(overlap * rate), max_frames // 5)
        grid = CHUNK_ALIGN if encoding.sample_rate == rate and max_frames >= 20 * CHUNK_ALIGN else 1
        bounds = chunk_bounds(frames, max_frames, shared, grid)
        if min(stop - start for start, stop in bounds) < shortest:
            continue
        if best is None or len(bounds) < len(best.pieces):
            best = FitPlan(mode, needs.reasons, encoding, bounds, shared, 0, rate, channels, frames,
                           capabilities.max_file_bytes)  # fmt: skip
    if best is None:
        raise _refuse(
            source, provider, needs, mode,
            f"a chunk that fits would be shorter than {max(MIN_CHUNK_SECONDS, minimum):g} s (too little to separate)",
        )  # fmt: skip
    return best


def fit_refusal(separator: Separator, source: AudioSource) -> str | None:
    """Why ``separator`` cannot take ``source`` even with its ``fit_mode``; None when it can (as it is or
    fitted). What a fallback chain asks before skipping a provider."""
    caps = separator.capabilities
    violation = limit_violation(caps, source)
    if violation is None:
        return None
    mode = getattr(separator, "fit_mode", "off")
    if mode == "off":
        return violation[1]
    try:
        plan_fit(caps, source, mode, provider=separator.name)
    except _CannotFit as exc:
        return f"{violation[1]}, and fit={mode} cannot make it fit: {exc.why}"
    return None


def fitted_capabilities(caps: Capabilities, mode: FitMode = "auto") -> Capabilities:
    """What a provider accepts once inputs are fitted to it in ``mode``.

    Any format stemkit decodes (when it can write one the provider takes), any size and duration when
    chunks are allowed; with ``transcode`` the longest input that fits as one MP3 (or lossless piece).
    """
    if mode == "off":
        return caps
    writable = [f for f in ("wav", "flac", *(("mp3",) if mode != "lossless" else ())) if _accepts(caps, f)]
    if not writable:
        return caps
    max_duration: float | None = None
    if mode == "transcode":
        limits = [caps.max_duration_seconds or math.inf]
        if caps.max_file_bytes is not None:
            best = mp3_encoding(44_100) if "mp3" in writable else Encoding("wav", "PCM_16", 44_100)
            limits.append(best.max_seconds(caps.max_file_bytes, 2))
        max_duration = None if min(limits) == math.inf else min(limits)
    return dataclasses.replace(
        caps, input_formats=frozenset(), max_file_bytes=None, max_duration_seconds=max_duration,
        min_duration_seconds=None,
    )  # fmt: skip


# -- what a fitted request sends (for cost estimates) --------------------------------------------------------
@dataclass(frozen=True)
class SentAudio:
    """How much audio a request sends to a provider once fitted: what a per-second or per-job bill counts.

    ``job_seconds`` has one entry per job (StemSplit, for one, bills each job's duration rounded up to a
    whole second).
    """

    jobs: int
    seconds: float
    bytes: int
    job_seconds: tuple[float, ...]
    plan: FitPlan | None = None


def estimate_sent(
    provider: Separator | Capabilities,
    audio: Any,
    *,
    mode: FitMode | str | None = None,
    sample_rate: int | None = None,
    overlap: float = DEFAULT_OVERLAP,
    chunk_seconds: float | None = None,
) -> SentAudio:
    """How many jobs, seconds and bytes separating ``audio`` with ``provider`` sends, after fitting.

    ``mode`` defaults to the provider's own ``fit_mode`` (``auto`` for bare capabilities). Nothing is
    uploaded or written; raises what the separation would (``ProviderLimitError`` when it cannot fit).
    """
    caps = provider if isinstance(provider, Capabilities) else provider.capabilities
    chosen = fit_mode(mode if mode is not None else getattr(provider, "fit_mode", "auto"))
    source = open_source(audio, sample_rate=sample_rate)
    try:
        if source.is_remote:
            raise ConfigError(f"{source.name}: a URL input's length is unknown until the provider fetches it")
        name = getattr(provider, "name", "provider")
        plan = plan_fit(caps, source, chosen, overlap=overlap, chunk_seconds=chunk_seconds, provider=name)
        if plan is None:
            return SentAudio(1, source.duration, source.size_bytes, (source.duration,))
        return SentAudio(len(plan.pieces), plan.sent_seconds, plan.sent_bytes, plan.job_seconds, plan)
    finally:
        if source is not audio:
            source.close()
