"""Where and how stems are written: output formats and their settings, file name templates, the output folder.

Everything that can be known about an output before any separation runs is checked here, once, and raised as
an :class:`~stemkit.errors.OutputError` naming the path or option and what to do: an unknown format, a bit
depth the format cannot hold, an MP3 bit rate the encoder refuses at that sample rate, an unknown clip mode or
normalization, a sample rate or channel count the encoder refuses, a template with a typo, an unknown field,
characters no file can have, or names too long for the file system, and an output folder that is a file or
cannot be written. :class:`OutputSettings` (made by :func:`output_settings`) carries the format's settings.
:func:`check_output` runs these checks for a whole batch (``separate_many`` and ``stemkit separate`` call it
before they start, so a typo never costs a billed separation); :func:`output_targets` is the same checks plus
the real file names, and is what :meth:`StemSet.save <stemkit.stemset.StemSet.save>` writes to.
"""

from __future__ import annotations

import functools
import io
import math
import os
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf

from stemkit.errors import OutputError

__all__ = [
    "BIT_DEPTHS",
    "CLIP_MODES",
    "DEFAULT_LOUDNESS_LUFS",
    "DEFAULT_MP3_BITRATE",
    "DEFAULT_PEAK_DBFS",
    "OUTPUT_FORMATS",
    "PART_NAME_RESERVE",
    "TEMPLATE_FIELDS",
    "Normalization",
    "OutputSettings",
    "check_directory",
    "check_encoder",
    "check_output",
    "check_template",
    "model_name",
    "mp3_bitrates",
    "output_format",
    "output_settings",
    "output_targets",
    "parse_normalization",
    "safe_field",
]

#: stemkit's output formats → soundfile's (major format, subtype): float WAV keeps the samples exactly.
OUTPUT_FORMATS: Mapping[str, tuple[str, str]] = {
    "wav": ("WAV", "FLOAT"),
    "flac": ("FLAC", "PCM_24"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
#: The fields a file name template may use.
TEMPLATE_FIELDS = frozenset({"stem", "ext", "provider", "model", "input"})
#: Bit depth → soundfile subtype, per format; the first is the format's default (WAV keeps float samples
#: exactly, above full scale too; FLAC holds integers of at most 24 bits).
BIT_DEPTHS: Mapping[str, Mapping[int, str]] = {
    "wav": {32: "FLOAT", 24: "PCM_24", 16: "PCM_16"},
    "flac": {24: "PCM_24", 16: "PCM_16"},
}
#: What to do with samples above full scale (demucs' semantics): ``rescale`` the whole set by one gain so that
#: its peak is at most 1/1.01, ``clamp`` each sample to ±0.99, or ``none``; ``auto`` (the default) rescales
#: for formats that would clip (FLAC, integer WAV, MP3) and leaves float WAV's samples exactly as they are.
CLIP_MODES = ("auto", "rescale", "clamp", "none")
#: MP3 at a constant 320 kbps unless a bit rate or a VBR quality is given (demucs' and audio-separator's default).
DEFAULT_MP3_BITRATE = 320
#: ``normalize="peak"`` puts the loudest sample of the set here (dBFS); ``"peak:-0.1"`` elsewhere.
DEFAULT_PEAK_DBFS = -1.0
#: ``normalize="loudness"`` puts the mixture's integrated loudness (ITU-R BS.1770) here (LUFS).
DEFAULT_LOUDNESS_LUFS = -14.0
# The bit rates MP3 frames can carry (kbps): MPEG-1 Layer III from 32 kHz, MPEG-2 from 16 kHz, MPEG-2.5 below;
# libsndfile's compression level spans each family's range linearly, from its highest (0.0) to its lowest.
_MP3_FAMILIES: tuple[tuple[int, tuple[int, ...]], ...] = (
    (32_000, (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)),
    (16_000, (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)),
    (0, (8, 16, 24, 32, 40, 48, 56, 64)),
)
#: Bytes a file name must leave free for the hidden temporary name it is first written under
#: (``.NAME.stemkit-PID-HOST-RANDOM.part``, see :mod:`stemkit._atomic`).
PART_NAME_RESERVE = 48

_DEFAULT_NAME_MAX = 255
_DEFAULT_PATH_MAX = 4096
# Characters no file name may hold: NUL and the C0 controls everywhere (POSIX allows all but NUL, but a name
# with a newline or an escape breaks every tool that lists it), and what Windows refuses there.
_CONTROL = frozenset(chr(c) for c in (*range(32), 127))
_WINDOWS_RESERVED = frozenset('<>:"|?*')
# In a field's *value* (a stem, input or provider name), a separator would create folders nobody asked for.
_SEPARATORS = frozenset({"/", "\\", os.sep, *([os.altsep] if os.altsep else [])})


def output_format(fmt: str) -> tuple[str, str]:
    """soundfile's (format, subtype) for one of stemkit's output formats; OutputError for any other."""
    key = str(fmt).lower().lstrip(".")
    try:
        return OUTPUT_FORMATS[key]
    except KeyError:
        raise OutputError(f"format: {fmt!r} is not supported; use one of {', '.join(OUTPUT_FORMATS)}") from None


def mp3_bitrates(sample_rate: int) -> tuple[int, ...]:
    """The constant bit rates (kbps) an MP3 at ``sample_rate`` can have."""
    return next(rates for floor, rates in _MP3_FAMILIES if sample_rate >= floor)


@dataclass(frozen=True)
class Normalization:
    """Scale a saved set by one gain so that its loudest sample (``peak``, dBFS) or its mixture's integrated
    loudness (``loudness``, LUFS, ITU-R BS.1770) reaches ``target``; the stems still sum to the (scaled)
    mixture."""

    kind: Literal["peak", "loudness"]
    target: float

    def __str__(self) -> str:
        unit = "dBFS" if self.kind == "peak" else "LUFS"
        return f"{self.kind} {self.target:g} {unit}"

    def spec(self) -> str:
        return f"{self.kind}:{self.target:g}"


def parse_normalization(value: str | Normalization | None) -> Normalization | None:
    """``"peak"``, ``"peak:-0.5"``, ``"loudness"``, ``"loudness:-23"`` (or None / ``"off"``); OutputError else."""
    if value is None or isinstance(value, Normalization):
        return value
    text = str(value).strip().lower()
    if text in ("", "off", "none"):
        return None
    kind, _, target_text = text.partition(":")
    usage = "use peak, peak:DBFS (e.g. peak:-1), loudness or loudness:LUFS (e.g. loudness:-14), or off"
    if kind not in ("peak", "loudness"):
        raise OutputError(f"normalize: {value!r} is not a normalization; {usage}")
    default = DEFAULT_PEAK_DBFS if kind == "peak" else DEFAULT_LOUDNESS_LUFS
    try:
        target = float(target_text) if target_text.strip() else default
    except ValueError:
        raise OutputError(f"normalize: {value!r} has no number after the colon; {usage}") from None
    low, high = (-60.0, 0.0) if kind == "peak" else (-70.0, 0.0)
    if not (math.isfinite(target) and low <= target <= high):
        unit = "dBFS" if kind == "peak" else "LUFS"
        raise OutputError(f"normalize: a {kind} target of {target:g} {unit} is outside {low:g} to {high:g} {unit}")
    return Normalization("peak" if kind == "peak" else "loudness", target)


@dataclass(frozen=True)
class OutputSettings:
    """How stems are encoded and levelled; make one with :func:`output_settings`, which checks it.

    ``bit_depth`` (16, 24 or 32 = float) is for WAV and FLAC; ``bitrate`` (constant, kbps) or ``vbr_quality``
    (LAME's -V scale, 0 best to 9 smallest) for MP3; ``clip`` is one of :data:`CLIP_MODES`; ``normalize`` a
    :class:`Normalization` or None; ``sample_rate`` the rate stems are written at (None: theirs, the input's).
    """

    format: str = "wav"
    bit_depth: int | None = None
    bitrate: int | None = None
    vbr_quality: float | None = None
    clip: str = "auto"
    normalize: Normalization | None = None
    sample_rate: int | None = None

    def save_options(self) -> dict[str, Any]:
        """:meth:`StemSet.save <stemkit.stemset.StemSet.save>`'s keywords for these settings."""
        return {"format": self.format, "bit_depth": self.bit_depth, "bitrate": self.bitrate,
                "vbr_quality": self.vbr_quality, "clip": self.clip, "normalize": self.normalize,
                "sample_rate": self.sample_rate}  # fmt: skip

    @property
    def major(self) -> str:
        return OUTPUT_FORMATS[self.format][0]

    @property
    def subtype(self) -> str:
        depths = BIT_DEPTHS.get(self.format)
        if depths is None:
            return OUTPUT_FORMATS[self.format][1]
        return depths[self.bit_depth] if self.bit_depth is not None else next(iter(depths.values()))

    @property
    def holds_overs(self) -> bool:
        """Whether a sample above full scale survives the format (float WAV) rather than clipping."""
        return self.subtype in ("FLOAT", "DOUBLE")

    @property
    def clip_mode(self) -> str:
        """The clip mode that applies: ``auto`` resolved for this format."""
        if self.clip != "auto":
            return self.clip
        return "none" if self.holds_overs else "rescale"

    def encoder_options(self, sample_rate: int) -> dict[str, Any]:
        """soundfile's ``compression_level`` and ``bitrate_mode`` for an MP3 at ``sample_rate``; {} otherwise."""
        if self.format != "mp3":
            return {}
        if self.vbr_quality is not None:
            return {"bitrate_mode": "VARIABLE", "compression_level": float(self.vbr_quality) / 10.0}
        rates = mp3_bitrates(sample_rate)
        wanted = self.bitrate if self.bitrate is not None else min(DEFAULT_MP3_BITRATE, rates[-1])
        low, high = rates[0], rates[-1]
        # libsndfile takes the bit rate as high - level * (high - low), truncated: aim half a kbps above it.
        level = min(1.0, max(0.0, (high - wanted - 0.5) / (high - low)))
        return {"bitrate_mode": "CONSTANT", "compression_level": level}

    def describe(self, sample_rate: int | None = None) -> str:
        """``flac 16-bit``, ``mp3 320 kbps``, ``mp3 VBR -V2``, ``wav 32-bit float``."""
        if self.format == "mp3":
            if self.vbr_quality is not None:
                return f"mp3 VBR -V{self.vbr_quality:g}"
            rate = self.sample_rate or sample_rate
            top = mp3_bitrates(rate)[-1] if rate else DEFAULT_MP3_BITRATE
            return f"mp3 {self.bitrate or min(DEFAULT_MP3_BITRATE, top)} kbps"
        depth = self.bit_depth or next(iter(BIT_DEPTHS[self.format]))
        return f"{self.format} {depth}-bit{' float' if self.holds_overs else ''}"


def output_settings(
    format: str = "wav",
    *,
    bit_depth: int | str | None = None,
    bitrate: int | str | None = None,
    vbr_quality: float | str | None = None,
    clip: str | None = "auto",
    normalize: str | Normalization | None = None,
    sample_rate: int | None = None,
) -> OutputSettings:
    """Checked :class:`OutputSettings`; an :class:`~stemkit.errors.OutputError` names the option and the fix.

    What depends on the sample rate (the MP3 bit rates and the encoder's rates) is checked here when
    ``sample_rate`` is given, else by :func:`check_encoder` once the rate is known.
    """
    ext = str(format).lower().lstrip(".")
    output_format(ext)
    depth = _whole("bit_depth", bit_depth)
    if depth is not None:
        allowed = BIT_DEPTHS.get(ext)
        if allowed is None:
            raise OutputError(f"bit_depth: {ext} has no bit depth; set its quality with bitrate= or vbr_quality=")
        if depth not in allowed:
            hint = "; for 32-bit float use wav" if ext == "flac" and depth == 32 else ""
            depths = [str(d) for d in sorted(allowed)]
            listed = f"{', '.join(depths[:-1])} or {depths[-1]}"
            raise OutputError(f"bit_depth: {ext} holds {listed}-bit samples, not {depth}-bit{hint}")
    rate = _whole("bitrate", bitrate.lower().removesuffix("k") if isinstance(bitrate, str) else bitrate)
    quality = _number("vbr_quality", vbr_quality)
    if (rate is not None or quality is not None) and ext != "mp3":
        name = "bitrate" if rate is not None else "vbr_quality"
        raise OutputError(f"{name}: only mp3 has a bit rate; for {ext} choose bit_depth= (16, 24 or 32)")
    if rate is not None and quality is not None:
        raise OutputError("bitrate and vbr_quality: give one, a constant bit rate or a variable one")
    if rate is not None and rate not in mp3_bitrates(32_000) + mp3_bitrates(0):
        known = sorted(set(mp3_bitrates(32_000) + mp3_bitrates(16_000)))
        raise OutputError(f"bitrate: {rate} kbps is not an MP3 bit rate; use one of {', '.join(map(str, known))}")
    if quality is not None and not 0 <= quality <= 9:
        raise OutputError(f"vbr_quality: {quality:g} is outside LAME's scale, 0 (best) to 9 (smallest)")
    mode = "none" if clip is None else str(clip).strip().lower()
    if mode not in CLIP_MODES:
        raise OutputError(f"clip: {clip!r} is not a clip mode; use {', '.join(CLIP_MODES)}")
    out_rate = _whole("sample_rate", sample_rate)
    if out_rate is not None and out_rate <= 0:
        raise OutputError(f"sample_rate: {sample_rate!r} is not a positive number of Hz")
    settings = OutputSettings(ext, depth, rate, quality, mode, parse_normalization(normalize), out_rate)
    if out_rate is not None:
        check_encoder(ext, out_rate, None, settings=settings)
    return settings


def _whole(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise OutputError(f"{name}: {value!r} is not a number")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise OutputError(f"{name}: {value!r} is not a whole number") from None
    if not number.is_integer():
        raise OutputError(f"{name}: {value!r} is not a whole number")
    return int(number)


def _number(name: str, value: object) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise OutputError(f"{name}: {value!r} is not a number") from None
    if not math.isfinite(number) or isinstance(value, bool):
        raise OutputError(f"{name}: {value!r} is not a number")
    return number


def check_encoder(
    fmt: str, sample_rate: int, channels: int | None = 2, *, settings: OutputSettings | None = None
) -> None:
    """Refuse, before anything is written, a sample rate, channel count or MP3 bit rate the encoder would refuse.

    libsndfile itself is asked (an empty file opened in memory, with ``settings``' bit depth), so the answer is
    exactly what the installed encoder accepts: MP3 takes only the MPEG rates (8 kHz to 48 kHz), FLAC up to
    655,350 Hz. An MP3 bit rate is checked against those its frames can carry at that rate.
    """
    key = str(fmt).lower().lstrip(".")
    output_format(key)
    chosen = settings if settings is not None and settings.format == key else OutputSettings(key)
    problem = _encoder_refuses(chosen.major, chosen.subtype, int(sample_rate), int(channels or 1))
    if problem is not None:
        other = "wav" if key != "wav" else "flac"
        what = f"{channels}-channel audio at {sample_rate} Hz" if channels is not None else f"{sample_rate} Hz"
        raise OutputError(
            f"format: the {key} encoder refuses {what} ({problem}); "
            f"save as {other}, or write at another rate (sample_rate=, e.g. 44100)"
        )
    if chosen.bitrate is not None and chosen.bitrate not in mp3_bitrates(int(sample_rate)):
        rates = mp3_bitrates(int(sample_rate))
        raise OutputError(
            f"bitrate: an MP3 at {sample_rate} Hz carries {rates[0]} to {rates[-1]} kbps "
            f"({', '.join(map(str, rates))}), not {chosen.bitrate}; choose one of those, or another sample rate"
        )


@functools.lru_cache(maxsize=256)
def _encoder_refuses(major: str, subtype: str, sample_rate: int, channels: int) -> str | None:
    if sample_rate <= 0 or channels <= 0:
        return "not a valid sample rate or channel count"
    try:
        with sf.SoundFile(
            io.BytesIO(), "w", samplerate=sample_rate, channels=channels, format=major, subtype=subtype
        ) as probe:
            probe.write(np.zeros((1, channels), dtype=np.float32))
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        text = str(getattr(exc, "error_string", "") or exc).strip()
        return text.removeprefix("Error : ").rstrip(".") or type(exc).__name__
    return None


def check_template(template: str) -> frozenset[str]:
    """The fields ``template`` uses; OutputError for a malformed template or an unknown field."""
    if not isinstance(template, str) or not template.strip():
        raise OutputError(f"template: {template!r} is empty; use e.g. '{{stem}}.{{ext}}'")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise OutputError(
            f"template: {template!r} is malformed ({exc}); write fields as {{stem}}, and a literal brace as {{{{"
        ) from None
    fields: set[str] = set()
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name or name.isdigit():
            raise OutputError(
                f"template: {template!r} has a positional field {{{name}}}; "
                f"name a field: {', '.join(sorted(TEMPLATE_FIELDS))}"
            )
        if name not in TEMPLATE_FIELDS:
            raise OutputError(
                f"template: unknown field {{{name}}} in {template!r}; use {', '.join(sorted(TEMPLATE_FIELDS))}"
            )
        if spec or conversion:
            raise OutputError(f"template: write {{{name}}} without a format spec or conversion in {template!r}")
        fields.add(name)
    return frozenset(fields)


def check_directory(directory: str | Path) -> Path:
    """The output folder as a Path, once it is known that stems can be written there.

    A folder that does not exist yet is fine when it can be created: every part of the path that exists must
    be a folder, and the deepest one must be writable.
    """
    root = Path(directory)
    if "\0" in str(root):
        raise OutputError(f"output folder {str(root)!r} contains a NUL character; choose another name", path=None)
    existing = root
    while not existing.exists():
        if existing.is_symlink():
            raise OutputError(
                f"{existing}: is a broken symbolic link; remove it or choose another output folder",
                path=str(existing),
            )
        parent = existing.parent
        if parent == existing:
            break
        existing = parent
    if existing.exists() and not existing.is_dir():
        where = "the output folder" if existing == root else f"part of the output folder {root}"
        raise OutputError(
            f"{existing}: is a file, not a folder ({where}); choose another output folder or move the file",
            path=str(existing),
        )
    if not _writable(existing):
        raise OutputError(
            f"{existing}: permission denied, stems cannot be written here; choose a folder you can write to",
            path=str(existing),
        )
    return root


def _writable(folder: Path) -> bool:
    mode = os.W_OK | os.X_OK
    if os.access in os.supports_effective_ids:
        return os.access(folder, mode, effective_ids=True)
    return os.access(folder, mode)


def _limits(folder: Path) -> tuple[int, int]:
    """(longest file name in bytes, longest path in bytes) of the file system ``folder`` is on."""
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
        path_max = os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):
        return _DEFAULT_NAME_MAX, _DEFAULT_PATH_MAX
    return (name_max if name_max > 0 else _DEFAULT_NAME_MAX, path_max if path_max > 0 else _DEFAULT_PATH_MAX)


def safe_field(value: str) -> str:
    """A field value (stem, input or provider name) as one file name component: a separator or a control
    character in a name a provider or an input chose cannot create folders or unreadable names."""
    text = "".join("_" if c in _SEPARATORS or c in _CONTROL else c for c in str(value))
    return "_" if text in ("", ".", "..") else text


def _check_name(relative: str, template: str, root: Path, name_max: int, path_max: int) -> Path:
    bad = sorted({c for c in relative if c in _CONTROL or (os.name == "nt" and c in _WINDOWS_RESERVED)})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise OutputError(
            f"template: {template!r} gives the file name {relative!r}, which has characters a file name cannot "
            f"have ({shown}); remove them from the template",
        )
    if not relative or relative.endswith(("/", os.sep)):
        raise OutputError(f"template: {template!r} gives {relative!r}, a folder and no file name; end it in a name")
    if Path(relative).is_absolute():
        raise OutputError(f"template: {template!r} gives the absolute path {relative!r}; keep paths inside {root}")
    target = root / relative
    try:
        parts = [os.fsencode(part) for part in Path(relative).parts]
        full = os.fsencode(str(target.absolute()))
    except UnicodeEncodeError:
        raise OutputError(
            f"template: {template!r} gives {relative!r}, which this file system's encoding cannot store; "
            "use plain characters"
        ) from None
    for index, part in enumerate(parts):
        limit = name_max - (PART_NAME_RESERVE if index == len(parts) - 1 else 0)
        if len(part) > limit:
            raise OutputError(
                f"template: {template!r} gives a file name of {len(part)} bytes ({os.fsdecode(part)[:40]}…); "
                f"this file system allows {name_max}, and stemkit needs {PART_NAME_RESERVE} of them for the "
                "temporary name, so shorten the template or the input's name",
                path=str(target),
            )
    if len(full) + PART_NAME_RESERVE > path_max:
        raise OutputError(
            f"template: the path {str(target)[:60]}… is {len(full)} bytes, too long for this file system "
            f"(at most {path_max - PART_NAME_RESERVE}); use a shorter output folder or template",
            path=str(target),
        )
    return target


def output_targets(
    directory: str | Path,
    fmt: str,
    template: str,
    *,
    stems: Sequence[str],
    provider: str = "provider",
    model: str = "model",
    input_name: str = "input",
    sample_rate: int | None = None,
    channels: int | None = None,
    settings: OutputSettings | None = None,
) -> dict[str, Path]:
    """stem name → the file it is written to, after every check that can be made before writing.

    Field values (stem, provider, model and input names) have separators and control characters replaced, so
    only the template itself decides the folder structure; every target must stay inside ``directory``.
    ``sample_rate`` is the stems' rate (``settings.sample_rate``, when set, is what is written).
    """
    ext = str(fmt).lower().lstrip(".")
    output_format(ext)
    rate = settings.sample_rate if settings is not None and settings.sample_rate else sample_rate
    if rate is not None:
        check_encoder(ext, rate, channels or 2, settings=settings)
    fields = check_template(template)
    root = check_directory(directory)
    name_max, path_max = _limits(root)
    values = {"ext": ext, "provider": safe_field(provider), "model": safe_field(model_name(model)),
              "input": safe_field(input_name)}  # fmt: skip
    targets: dict[str, Path] = {}
    for stem in stems:
        relative = template.format(**values, stem=safe_field(stem))
        targets[stem] = _check_name(relative, template, root, name_max, path_max)
    if len(set(targets.values())) != len(targets):
        hint = "include {stem}" if "stem" not in fields else "the stem names collide once made safe for files"
        raise OutputError(f"template: {template!r} gives several stems the same file name; {hint}")
    resolved_root = root.resolve()
    for target in targets.values():
        if not target.resolve().is_relative_to(resolved_root):
            raise OutputError(
                f"template: {template!r} writes {target} outside {root}; keep paths inside it", path=str(target)
            )
        if target.is_dir():
            raise OutputError(
                f"{target}: is a folder, so the stem cannot be written there; remove it or change the template",
                path=str(target),
            )
    for folder in {t.parent for t in targets.values()} - {root}:
        check_directory(folder)  # a subfolder the template names may exist as a file
    return targets


def model_name(model: str) -> str:
    """What ``{model}`` gives for a model: its name, or a model file's name without folders and suffix."""
    text = str(model)
    if "/" in text or "\\" in text or text.endswith(".onnx"):
        return Path(text.replace("\\", "/")).stem or text
    return text


def check_output(
    directory: str | Path,
    format: str = "wav",
    template: str = "{stem}.{ext}",
    *,
    sample_rate: int | None = None,
    channels: int | None = None,
    stems: Iterable[str] | None = None,
    inputs: Sequence[str] | None = None,
    provider: str = "provider",
    settings: OutputSettings | None = None,
) -> None:
    """Check, before any separation starts, that stems can be written as asked; OutputError if not.

    ``stems`` (default: every canonical stem) and ``inputs`` (the names ``{input}`` takes, e.g. from
    :func:`stemkit.inputs.output_names`) make the check exact where they are known; ``sample_rate`` and
    ``channels`` add the encoder's own limits (with ``settings``: its bit depth, MP3 bit rate and output
    rate). With several inputs the template must use ``{input}``, or their stems would overwrite each other.
    """
    from stemkit.stems import CANONICAL_STEMS

    fields = check_template(template)
    names = list(inputs) if inputs is not None else ["input"]
    if len(names) > 1 and "input" not in fields:
        raise OutputError(
            f"template: {template!r} has no {{input}}, so {len(names)} inputs would overwrite each other's stems"
        )
    stem_names = list(stems) if stems is not None else list(CANONICAL_STEMS)
    for name in names or ["input"]:
        output_targets(
            directory, format, template, stems=stem_names, provider=provider, input_name=name,
            sample_rate=sample_rate, channels=channels, settings=settings,
        )  # fmt: skip
