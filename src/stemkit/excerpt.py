"""Separating part of an input: ``offset=`` and ``duration=`` (seconds, or ``[HH:]MM:SS[.frac]``).

The part is cut in the core, before any provider runs, at exact sample boundaries of the input
(``round(offset × rate)``, ``round(duration × rate)`` frames, ended early at the input's end), so every
provider — hosted ones upload only the excerpt, a fallback chain judges limits on it, the result cache keys
it apart from the whole song — sees the same audio. The StemSet is the excerpt's length, and its provenance
records the range (:class:`~stemkit.provenance.Excerpt`) next to the whole input's hash and duration.

Every stemkit separator takes the two options (its ``aseparate`` is wrapped with :func:`takes_excerpt`);
:func:`separate_excerpt` serves any other Separator too (``stemkit.separate`` and ``separate_many`` use it).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from stemkit.audio import MIN_FRAMES, AudioSource, open_source
from stemkit.errors import ConfigError, InputError
from stemkit.protocol import ProgressCallback, Separator
from stemkit.provenance import Excerpt
from stemkit.stemset import StemSet

__all__ = ["excerpt_range", "parse_excerpt", "parse_time", "separate_excerpt", "takes_excerpt"]

_CLOCK = re.compile(r"^(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+(?:\.\d*)?)$")

M = TypeVar("M", bound=Callable[..., Awaitable[StemSet]])


def parse_time(value: float | int | str | None, name: str) -> float | None:
    """Seconds from a number or ``[HH:]MM:SS[.frac]`` (``"1:30"`` is 90 s); a ConfigError names ``name``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{name}: {value!r} is not a time; give seconds (90) or minutes:seconds (1:30)")
    if isinstance(value, str):
        text = value.strip()
        match = _CLOCK.match(text)
        if match is not None:
            seconds = int(match["h"] or 0) * 3600 + int(match["m"]) * 60 + float(match["s"])
        else:
            try:
                seconds = float(text.removesuffix("s"))
            except ValueError:
                raise ConfigError(
                    f"{name}: {value!r} is not a time; give seconds (90) or minutes:seconds (1:30)"
                ) from None
    else:
        seconds = float(value)
    if not math.isfinite(seconds):
        raise ConfigError(f"{name}: {value!r} is not a finite number of seconds")
    return seconds


def parse_excerpt(
    offset: float | str | None, duration: float | str | None
) -> tuple[float | None, float | None]:
    """``(offset, duration)`` in seconds, checked without the input (a batch checks them before it starts)."""
    start, length = parse_time(offset, "offset"), parse_time(duration, "duration")
    if start is not None and start < 0:
        raise ConfigError(f"offset: {start:g} s is before the start; give 0 or more seconds")
    if length is not None and length <= 0:
        raise ConfigError(f"duration: {length:g} s is not a length; give more than 0 seconds")
    return start, length


def excerpt_range(source: AudioSource, offset: float | None, duration: float | None) -> Excerpt:
    """The exact frames ``offset``/``duration`` (seconds, from :func:`parse_excerpt`) select in ``source``;
    an error says what is wrong and what to do."""
    offset, duration = parse_excerpt(offset, duration)
    if source.is_remote:
        raise InputError(
            f"{source.name}: offset and duration cut local audio, and a URL input has none here; download the "
            "file first"
        )
    rate, total = source.sample_rate, source.frames
    start = round((offset or 0.0) * rate)
    if start >= total:
        raise InputError(
            f"{source.name}: offset {offset:g} s is at or past the end of the audio ({total / rate:.2f} s long); "
            "give a smaller offset"
        )
    end = total if duration is None else min(total, start + round(duration * rate))
    if end - start < MIN_FRAMES:
        raise InputError(
            f"{source.name}: the excerpt from {start / rate:g} s holds {end - start} sample(s); "
            f"give a duration of at least {MIN_FRAMES} samples ({MIN_FRAMES / rate:.2g} s)"
        )
    return Excerpt(start, end - start, rate)


async def separate_excerpt(
    separator: Separator,
    audio: Any,
    *,
    offset: float | str | None = None,
    duration: float | str | None = None,
    stems: Iterable[str] | str | None = None,
    progress: ProgressCallback | None = None,
    sample_rate: int | None = None,
    **options: Any,
) -> StemSet:
    """Separate the part of ``audio`` that ``offset``/``duration`` select with ``separator`` (any Separator).

    With neither, this is ``separator.aseparate(audio, …)``. The excerpt's temporary file lives as long as
    the StemSet (a derived stem may still read it), and goes when the StemSet is closed.
    """
    start, length = parse_excerpt(offset, duration)
    if start is None and length is None:
        rate = {} if sample_rate is None else {"sample_rate": sample_rate}
        return await separator.aseparate(audio, stems=stems, progress=progress, **rate, **options)

    def cut() -> tuple[AudioSource, AudioSource, Excerpt]:
        source = open_source(audio, sample_rate=sample_rate)
        try:
            chosen = excerpt_range(source, start, length)
            return source, source.excerpt(chosen.start, chosen.frames), chosen
        except BaseException:
            if source is not audio:
                source.close()
            raise

    source, part, excerpt = await anyio.to_thread.run_sync(cut)
    owned = source is not audio
    try:
        from stemkit.routing import member_input

        given, extra = member_input(separator, part, None)
        result = await separator.aseparate(given, stems=stems, progress=progress, **extra, **options)
    except BaseException:
        part.close()
        if owned:
            source.close()
        raise
    whole = source
    provenance = replace(
        result.provenance,
        excerpt=excerpt,
        input_sha256=await anyio.to_thread.run_sync(lambda: whole.sha256),
        input_duration=whole.duration,
        input_name=whole.name,
    )
    out = result.with_provenance(provenance)
    out.add_cleanup(part.close)
    if owned:
        out.add_cleanup(source.close)
    return out


def takes_excerpt(method: M) -> M:
    """Give a separator's ``aseparate`` the ``offset=`` and ``duration=`` options (see the module docstring)."""

    @functools.wraps(method)
    async def aseparate(
        self: Separator,
        audio: Any,
        /,
        *,
        offset: float | str | None = None,
        duration: float | str | None = None,
        **kwargs: Any,
    ) -> StemSet:
        if offset is None and duration is None:
            return await method(self, audio, **kwargs)
        return await separate_excerpt(self, audio, offset=offset, duration=duration, **kwargs)

    return aseparate  # type: ignore[return-value]
