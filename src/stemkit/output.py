"""Where and how stems are written: output formats, file name templates, and the output folder.

Everything that can be known about an output before any separation runs is checked here, once, and raised as
an :class:`~stemkit.errors.OutputError` naming the path or option and what to do: an unknown format, a sample
rate or channel count the encoder refuses, a template with a typo, an unknown field, characters no file can
have, or names too long for the file system, and an output folder that is a file or cannot be written.
:func:`check_output` runs these checks for a whole batch (``separate_many`` and ``stemkit separate`` call it
before they start, so a typo never costs a billed separation); :func:`output_targets` is the same checks plus
the real file names, and is what :meth:`StemSet.save <stemkit.stemset.StemSet.save>` writes to.
"""

from __future__ import annotations

import functools
import io
import os
import string
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from stemkit.errors import OutputError

__all__ = [
    "OUTPUT_FORMATS",
    "PART_NAME_RESERVE",
    "TEMPLATE_FIELDS",
    "check_directory",
    "check_encoder",
    "check_output",
    "check_template",
    "output_format",
    "output_targets",
    "safe_field",
]

#: stemkit's output formats → soundfile's (major format, subtype): float WAV keeps the samples exactly.
OUTPUT_FORMATS: Mapping[str, tuple[str, str]] = {
    "wav": ("WAV", "FLOAT"),
    "flac": ("FLAC", "PCM_24"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
#: The fields a file name template may use.
TEMPLATE_FIELDS = frozenset({"stem", "ext", "provider", "input"})
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


def check_encoder(fmt: str, sample_rate: int, channels: int = 2) -> None:
    """Refuse, before anything is written, a sample rate or channel count the encoder would refuse.

    libsndfile itself is asked (an empty file opened in memory), so the answer is exactly what the installed
    encoder accepts: MP3 takes only the MPEG rates (8 kHz to 48 kHz), FLAC up to 655,350 Hz.
    """
    key = str(fmt).lower().lstrip(".")
    major, subtype = output_format(key)
    problem = _encoder_refuses(major, subtype, int(sample_rate), int(channels))
    if problem is not None:
        other = "wav" if key != "wav" else "flac"
        raise OutputError(
            f"format: the {key} encoder refuses {channels}-channel audio at {sample_rate} Hz ({problem}); "
            f"save as {other}, or resample the stems first"
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
    input_name: str = "input",
    sample_rate: int | None = None,
    channels: int | None = None,
) -> dict[str, Path]:
    """stem name → the file it is written to, after every check that can be made before writing.

    Field values (stem, provider and input names) have separators and control characters replaced, so only
    the template itself decides the folder structure; every target must stay inside ``directory``.
    """
    ext = str(fmt).lower().lstrip(".")
    output_format(ext)
    if sample_rate is not None:
        check_encoder(ext, sample_rate, channels or 2)
    fields = check_template(template)
    root = check_directory(directory)
    name_max, path_max = _limits(root)
    values = {"ext": ext, "provider": safe_field(provider), "input": safe_field(input_name)}
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
) -> None:
    """Check, before any separation starts, that stems can be written as asked; OutputError if not.

    ``stems`` (default: every canonical stem) and ``inputs`` (the names ``{input}`` takes, e.g. from
    :func:`stemkit.inputs.output_names`) make the check exact where they are known; ``sample_rate`` and
    ``channels`` add the encoder's own limits. With several inputs the template must use ``{input}``, or their
    stems would overwrite each other.
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
            sample_rate=sample_rate, channels=channels,
        )  # fmt: skip
