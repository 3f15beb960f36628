"""Finding the reference stems for each input.

Two layouts are understood:

- **a stem folder** for one input: ``DIR/vocals.wav``, ``DIR/drums.flac``… and optionally ``DIR/mixture.wav``;
- **MUSDB18-HQ**: a folder per track (``ROOT/<track>/mixture.wav`` + one file per stem), directly under the
  root or under ``ROOT/train`` and ``ROOT/test``. An input is matched to its track by its folder (the
  track's own ``mixture.wav``) or by its file name (``<track>.wav`` anywhere).

File names are mapped to stem names with stemkit's aliases (``accompaniment.wav`` → instrumental) and the
stems plugins register (``lead_vocals.wav``);
an audio file whose name is neither a stem nor ``mixture`` is an error, because silently leaving it out
would change what "other" means.

Stems the files do not hold directly are **derived the way a provider's are** (:func:`stemkit.stems.plan_stems`
with the reference files as the one combination): ``instrumental`` of a MUSDB18 track is drums + bass +
other, and with a ``mixture`` file, what the stems leave out of it (mixture − Σ stems) is available too, so a
folder of vocals + mixture gives an instrumental reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stemkit.audio import FloatArray, open_source
from stemkit.errors import ConfigError, InputError
from stemkit.inputs import AUDIO_SUFFIXES
from stemkit.stems import CANONICAL_STEMS, Plan, canonical_name, order_stems, plan_stems, vocabulary

__all__ = ["LoadedReferences", "ReferenceSet", "derivable", "derive", "find_reference_sets", "match_references"]

_MIXTURE_NAMES = frozenset({"mixture", "mix"})


@dataclass(frozen=True)
class LoadedReferences:
    """Reference audio of one track, all at one rate and shape; ``mixture`` is the file or the stems' sum."""

    stems: dict[str, FloatArray]
    mixture: FloatArray
    sample_rate: int
    mixture_is_sum: bool


@dataclass(frozen=True)
class ReferenceSet:
    """The reference files of one track."""

    name: str
    folder: Path
    stems: dict[str, Path] = field(default_factory=dict)
    mixture: Path | None = None

    def load(self) -> LoadedReferences:
        arrays: dict[str, FloatArray] = {}
        shapes: dict[str, tuple[int, int, int]] = {}
        for name, path in self.stems.items():
            audio, rate = _read(path)
            arrays[name] = audio
            shapes[path.name] = (rate, *audio.shape)
        mixture: FloatArray | None = None
        if self.mixture is not None:
            mixture, rate = _read(self.mixture)
            shapes[self.mixture.name] = (rate, *mixture.shape)
        if len(set(shapes.values())) != 1:
            listing = ", ".join(f"{f}: {r} Hz, {c} ch, {n} frames" for f, (r, c, n) in shapes.items())
            raise InputError(
                f"{self.folder}: the reference files differ in rate, channels or length ({listing}); "
                "references of one track must be sample-aligned files of one shape"
            )
        rate = next(iter(shapes.values()))[0]
        is_sum = mixture is None
        if mixture is None:
            mixture = np.zeros_like(next(iter(arrays.values())))
            for audio in arrays.values():
                mixture += audio
        return LoadedReferences(arrays, mixture, rate, is_sum)


def _reference_plan(files: Sequence[str], stems: Sequence[str], has_mixture: bool) -> Plan | None:
    try:
        plan = plan_stems(list(stems), [tuple(files)], provider="references")
    except ConfigError:
        return None
    if plan.needs_mixture and not has_mixture:
        return None  # the residual of stems summed into a mixture is zero, not what the stem means
    return plan


def derivable(references: ReferenceSet) -> tuple[str, ...]:
    """Every stem the reference files give, directly or by derivation, in vocabulary order."""
    files = tuple(references.stems)
    has_mixture = references.mixture is not None
    names = vocabulary().names if any(f not in CANONICAL_STEMS for f in files) else CANONICAL_STEMS
    return tuple(s for s in names if _reference_plan(files, [s], has_mixture) is not None)


def derive(references: LoadedReferences, stems: Sequence[str]) -> dict[str, FloatArray]:
    """Reference audio for ``stems``, derived stems computed as sums (and the mixture's residual) of the files."""
    files = tuple(references.stems)
    plan = _reference_plan(files, stems, not references.mixture_is_sum)
    if plan is None:
        raise ConfigError(f"references: cannot derive {', '.join(stems)} from the reference stems {', '.join(files)}")
    out: dict[str, FloatArray] = {}
    residual: FloatArray | None = None
    for derivation in plan.outputs:
        if derivation.direct:
            out[derivation.name] = references.stems[derivation.name]
            continue
        total = np.zeros_like(references.mixture)
        for source in derivation.sources:
            total += references.stems[source]
        if derivation.uses_residual:
            if residual is None:
                residual = references.mixture - np.sum([references.stems[f] for f in files], axis=0, dtype=np.float32)
            total += residual
        out[derivation.name] = total
    return out


def _read(path: Path) -> tuple[FloatArray, int]:
    source = open_source(path)
    try:
        return source.read(), source.sample_rate
    finally:
        source.close()


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def _stem_set(folder: Path, ignore: frozenset[Path] = frozenset()) -> ReferenceSet | None:
    """The references in ``folder`` itself, or None when it holds no stem file (inputs are not references)."""
    stems: dict[str, Path] = {}
    mixture: Path | None = None
    unknown: list[str] = []
    for path in _audio_files(folder):
        if path.resolve() in ignore:
            continue
        base = path.stem
        if base.lower() in _MIXTURE_NAMES:
            mixture = path
            continue
        name = canonical_name(base)
        if name is None:
            unknown.append(path.name)
            continue
        if name in stems:
            raise ConfigError(
                f"references: {folder} has two files for the stem {name!r} ({stems[name].name}, {path.name}); keep one"
            )
        stems[name] = path
    if not stems:
        return None
    if unknown:
        raise ConfigError(
            f"references: {folder} has audio file(s) that are neither a stem nor the mixture: "
            f"{', '.join(unknown)}; rename them to stem names ({', '.join(vocabulary().names)}) or move them out"
        )
    ordered = {name: stems[name] for name in order_stems(stems)}
    return ReferenceSet(folder.name, folder, ordered, mixture)


def find_reference_sets(root: str | Path, inputs: Sequence[Path] = ()) -> tuple[bool, list[ReferenceSet]]:
    """``(is_single_folder, sets)``: the stem folder ``root`` itself, or every MUSDB18-HQ track under it."""
    base = Path(root)
    if not base.is_dir():
        raise ConfigError(f"references: {base} is not a folder; pass a stem folder or a MUSDB18-HQ root")
    ignore = frozenset(p.resolve() for p in inputs)
    direct = _stem_set(base, ignore)
    if direct is not None:
        return True, [direct]
    sets: list[ReferenceSet] = []
    for parent in (base, base / "train", base / "test"):
        if not parent.is_dir():
            continue
        for folder in sorted(p for p in parent.iterdir() if p.is_dir()):
            found = _stem_set(folder, ignore)
            if found is not None:
                sets.append(found)
    if not sets:
        raise ConfigError(
            f"references: {base} holds no reference stems: expected stem files (vocals.wav, drums.wav, ...) "
            "in it, or MUSDB18-HQ track folders (<track>/mixture.wav + stems, optionally under train/ and test/)"
        )
    return False, sets


def match_references(inputs: Sequence[Path], root: str | Path) -> list[tuple[Path, ReferenceSet]]:
    """Pair every input with its references; with no inputs, every track's ``mixture`` file is an input."""
    single, sets = find_reference_sets(root, inputs)
    if not inputs:
        pairs = []
        for ref in sets:
            if ref.mixture is None:
                raise ConfigError(
                    f"references: {ref.folder} has no mixture file to separate; name the input explicitly "
                    "or add mixture.wav"
                )
            pairs.append((ref.mixture, ref))
        return pairs
    if single:
        if len(inputs) != 1:
            raise ConfigError(
                f"references: {root} is a stem folder for one input, but {len(inputs)} inputs were given; "
                "compare one input against it, or use a MUSDB18-HQ layout (a folder per track)"
            )
        return [(inputs[0], sets[0])]
    by_folder = {ref.folder.resolve(): ref for ref in sets}
    by_name: dict[str, ReferenceSet] = {}
    for ref in sets:
        by_name.setdefault(ref.name.lower(), ref)
    pairs = []
    for item in inputs:
        ref_or_none = by_folder.get(item.resolve().parent) or by_name.get(item.stem.lower())
        if ref_or_none is None:
            raise ConfigError(
                f"references: no track under {root} matches the input {item}; put the input in its track's folder "
                f"or name it after the track (e.g. {sets[0].name!r}.wav)"
            )
        pairs.append((item, ref_or_none))
    return pairs
