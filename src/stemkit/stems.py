"""The canonical stem vocabulary, provider aliases, and planning: which of a provider's combinations to run
and how to derive every requested stem from what it produces.

Stems are modelled as sets of *atoms* (vocals, drums, bass, piano, guitar and the rest of the mix). A
combination a provider offers partitions the atoms; a requested stem is derivable from a combination when it
is a union of the combination's stems, because then it is their sum. ``instrumental`` is every atom but the
vocals. ``other`` means "what the named stems beside it leave out": in a combination that partitions the
mixture (the usual case: vocals/drums/bass/other, or a custom vocals/drums/other model) it is everything its
siblings are not; in a *partial* combination (a specialist's lone ``other``) and in a caller's request it is
MUSDB18's "other" — never vocals, drums or bass — minus any instrument named beside it. Whatever a
combination leaves uncovered (everything but the vocals of a vocals-only run) is the residual, mixture
minus the produced stems.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from stemkit.errors import ConfigError

__all__ = [
    "CANONICAL_STEMS",
    "Derivation",
    "Plan",
    "canonical_name",
    "normalize_request",
    "plan_stems",
]

CANONICAL_STEMS: tuple[str, ...] = ("vocals", "drums", "bass", "other", "piano", "guitar", "instrumental")

_ATOMS = frozenset({"vocals", "drums", "bass", "piano", "guitar", "rest"})
_INSTRUMENTS = ("vocals", "drums", "bass", "piano", "guitar")
_MUSDB_OTHER = frozenset({"piano", "guitar", "rest"})

ALIASES: Mapping[str, str] = {
    "accompaniment": "instrumental",
    "no_vocals": "instrumental",
    "novocals": "instrumental",
    "karaoke": "instrumental",
    "instrumentals": "instrumental",
    "backing": "instrumental",
    "backing_track": "instrumental",
    "music": "instrumental",
    "drum": "drums",
    "percussion": "drums",
    "vocal": "vocals",
    "voice": "vocals",
    "voices": "vocals",
    "acapella": "vocals",
    "a_cappella": "vocals",
    "acappella": "vocals",
    "pianos": "piano",
    "keys_piano": "piano",
    "guitars": "guitar",
    "others": "other",
    "rest": "other",
    "remainder": "other",
    "residual": "other",
    "melody": "other",
}


def canonical_name(name: str, extra_aliases: Mapping[str, str] | None = None) -> str | None:
    """Map a provider's or a user's stem name to the canonical vocabulary, or ``None`` if it has no match.

    Matching ignores case, surrounding blanks, a file extension-like suffix is *not* stripped here (callers
    that identify stems by file name strip it first), and ``-``/spaces count as ``_``.
    """
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    if extra_aliases:
        lowered = {re.sub(r"[\s\-]+", "_", k.lower()): v for k, v in extra_aliases.items()}
        if key in lowered:
            return lowered[key]
    if key in CANONICAL_STEMS:
        return key
    return ALIASES.get(key)


def normalize_request(stems: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """Turn ``"vocals,drums"`` or ``["Vocals", "accompaniment"]`` into canonical names, in order, once each."""
    if stems is None:
        return None
    items = [s for s in stems.split(",")] if isinstance(stems, str) else list(stems)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"stems: {item!r} is not a stem name; use names from {', '.join(CANONICAL_STEMS)}")
        name = canonical_name(item)
        if name is None:
            raise ConfigError(
                f"stems: unknown stem {item.strip()!r}; canonical stems are {', '.join(CANONICAL_STEMS)}"
            )
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError(f"stems: no stem requested; use names from {', '.join(CANONICAL_STEMS)}")
    return tuple(out)


def _atoms(name: str, siblings: Sequence[str], partition: bool = False) -> frozenset[str]:
    """Atoms of a stem, given the stems beside it; ``partition`` when they sum to the mixture."""
    if name == "instrumental":
        return _ATOMS - {"vocals"}
    if name == "other":
        if partition:
            taken = frozenset().union(*(_atoms(s, ()) for s in siblings if s != "other"))
            return _ATOMS - taken
        return _MUSDB_OTHER - {s for s in siblings if s in _INSTRUMENTS}
    return frozenset({name})


def _complement_of(atoms: frozenset[str]) -> tuple[str, ...]:
    """The named instruments an ``other`` stem excludes, for the record."""
    return tuple(s for s in _INSTRUMENTS if s not in atoms)


@dataclass(frozen=True)
class Derivation:
    """How one requested stem is obtained: directly, as a sum of produced stems, and/or from the residual."""

    name: str
    sources: tuple[str, ...]
    uses_residual: bool = False
    complement_of: tuple[str, ...] | None = None

    @property
    def direct(self) -> bool:
        return len(self.sources) == 1 and not self.uses_residual and self.sources[0] == self.name


@dataclass(frozen=True)
class Plan:
    """Which combination to ask the provider for, and how to build each requested stem from it."""

    combination: tuple[str, ...]
    outputs: tuple[Derivation, ...]

    @property
    def needs_mixture(self) -> bool:
        return any(d.uses_residual for d in self.outputs)


def _plan_for(
    combination: tuple[str, ...], requested: Sequence[str], partition: bool
) -> tuple[Derivation, ...] | None:
    pieces = {name: _atoms(name, combination, partition) for name in combination}
    covered: frozenset[str] = frozenset().union(*pieces.values()) if pieces else frozenset()
    # What a combination leaves out (e.g. everything but the vocals of a vocals-only run) is mixture − Σ stems.
    residual = _ATOMS - covered
    outputs: list[Derivation] = []
    for name in requested:
        want = _atoms(name, requested)
        if not want:
            return None
        sources = tuple(p for p, atoms in pieces.items() if atoms <= want)
        if any(atoms & want and not atoms <= want for atoms in pieces.values()):
            return None
        got: frozenset[str] = frozenset().union(*(pieces[s] for s in sources)) if sources else frozenset()
        uses_residual = False
        if got != want:
            if residual and residual <= want and got | residual == want:
                uses_residual = True
            else:
                return None
        complement = _complement_of(want) if name == "other" else None
        outputs.append(Derivation(name, sources, uses_residual, complement))
    return tuple(outputs)


def plan_stems(
    requested: Sequence[str] | None,
    combinations: Sequence[tuple[str, ...]],
    *,
    partial: Collection[tuple[str, ...]] = (),
    provider: str = "provider",
    default: int = 0,
) -> Plan:
    """Pick the smallest combination that yields every requested stem.

    Deriving from the residual (mixture minus what the provider produced) is the last resort; then fewer
    stems to produce, then fewer derived stems, then the provider's own order. With no request, the
    provider's default combination is returned as produced. ``partial`` lists the combinations that do not
    partition the mixture (see the module docstring for what that changes).
    """
    partial_sets = {frozenset(c) for c in partial}
    if not combinations:
        raise ConfigError(f"{provider}: offers no stem combination")
    if requested is None:
        combo = tuple(combinations[default])
        partition = frozenset(combo) not in partial_sets
        outputs = tuple(
            Derivation(
                name,
                (name,),
                complement_of=_complement_of(_atoms(name, combo, partition)) if name == "other" else None,
            )
            for name in combo
        )
        return Plan(combo, outputs)
    for combo in combinations:
        # Asking for exactly what a combination produces is always direct, whatever its ``other`` means.
        if set(combo) == set(requested):
            by_name = {d.name: d for d in plan_stems(None, [combo], partial=partial).outputs}
            return Plan(tuple(combo), tuple(by_name[name] for name in requested))
    best: tuple[tuple[int, int, int, int], Plan] | None = None
    for index, combo in enumerate(combinations):
        outputs_or_none = _plan_for(tuple(combo), requested, frozenset(combo) not in partial_sets)
        if outputs_or_none is None:
            continue
        residual = sum(d.uses_residual for d in outputs_or_none)
        derived = sum(not d.direct for d in outputs_or_none)
        key = (residual, len(combo), derived, index)
        if best is None or key < best[0]:
            best = (key, Plan(tuple(combo), outputs_or_none))
    if best is None:
        offered = "; ".join(", ".join(c) for c in combinations)
        raise ConfigError(
            f"{provider}: cannot produce or derive {', '.join(requested)}; it offers [{offered}] "
            "(instrumental and other can be derived from a full set)"
        )
    return best[1]
