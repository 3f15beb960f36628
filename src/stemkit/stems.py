"""The stem vocabulary (canonical, and open to plugins), provider aliases, and planning: which of a
provider's combinations to run and how to derive every requested stem from what it produces.

Stems are modelled as sets of *atoms*. The canonical music family splits a mix into vocals, drums, bass,
piano, guitar and the rest (the atom behind ``other``). A plugin may refine an atom (``lead_vocals`` and
``backing_vocals`` partition ``vocals``; ``strings`` and ``keys`` are parts of ``other``) or declare another
way of splitting a whole mix (``dialogue``, ``music`` and ``effects`` of a film mix): a :class:`StemGroup`
registered under the entry-point group ``stemkit.stems``. A refined atom is replaced by its parts' atoms,
so ``vocals`` is then {lead_vocals, backing_vocals} and is derivable as their sum; a part that does not
exhaust its parent leaves a remainder atom that no name covers.

A combination a provider offers partitions the atoms; a requested stem is derivable from a combination when
it is a union of the combination's stems, because then it is their sum. ``instrumental`` is every music
atom but the vocals. ``other`` means "what the named stems beside it leave out": in a combination that
partitions the mixture (the usual case: vocals/drums/bass/other, or a custom vocals/drums/other model) it is
everything its siblings are not; in a *partial* combination (a specialist's lone ``other``) and in a
caller's request it is MUSDB18's "other" — never vocals, drums or bass — minus any instrument named beside
it. Whatever a combination leaves uncovered (everything but the vocals of a vocals-only run) is the
residual, mixture minus the produced stems. Families do not mix: a film split can never give ``vocals``.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from stemkit.errors import ConfigError

__all__ = [
    "ALIASES",
    "CANONICAL_STEMS",
    "MIXTURE",
    "STEMS_GROUP",
    "Derivation",
    "Plan",
    "StemGroup",
    "Vocabulary",
    "canonical_name",
    "normalize_request",
    "order_stems",
    "plan_stems",
    "vocabulary",
]

CANONICAL_STEMS: tuple[str, ...] = ("vocals", "drums", "bass", "other", "piano", "guitar", "instrumental")

#: The parent of a :class:`StemGroup` that splits a whole mix its own way (a film mix's dialogue/music/effects).
MIXTURE = "mixture"
#: Entry-point group under which plugins register :class:`StemGroup` objects (or sequences of them).
STEMS_GROUP = "stemkit.stems"

_INSTRUMENTS = ("vocals", "drums", "bass", "piano", "guitar")
_REST = "rest"  # the atom behind ``other``: what no named instrument covers
_MUSIC = "<music>"  # the root of the canonical family
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

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


def _key(name: str) -> str:
    """Case-, blank- and dash-insensitive form of a stem name."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


@dataclass(frozen=True)
class StemGroup:
    """Stems a plugin adds to the vocabulary, and how they relate to the ones stemkit knows.

    ``parent`` is the stem the parts split (``vocals``, ``other``, any atomic canonical stem or a stem
    another group registered), or :data:`MIXTURE` for a new way of splitting a whole mix, named by
    ``family``. ``exhaustive`` says whether the parts sum to the parent (lead + backing = vocals) or are
    only some of its parts (strings and keys are parts of other, which holds more). ``aliases`` maps other
    names (a provider's, a user's) to the parts.

    Register a group (or a sequence of them) under the entry-point group ``stemkit.stems``::

        [project.entry-points."stemkit.stems"]
        vocal-parts = "my_plugin.stems:GROUPS"
    """

    parent: str
    parts: tuple[str, ...]
    exhaustive: bool = True
    family: str | None = None
    aliases: Mapping[str, str] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(self.parts))
        object.__setattr__(self, "aliases", {_key(k): v for k, v in dict(self.aliases).items()})
        what = f"stem group {self.parent!r} -> {', '.join(map(str, self.parts))}"
        if not isinstance(self.parent, str) or not (self.parent == MIXTURE or _NAME.match(self.parent)):
            raise ConfigError(f"{what}: parent {self.parent!r} is not a stem name")
        if self.parent == "instrumental":
            raise ConfigError(f"{what}: instrumental is a sum of stems, not one part of the mix; split a part of it")
        if len(self.parts) < (2 if self.exhaustive else 1):
            raise ConfigError(f"{what}: an exhaustive split needs at least two parts (one part would be the parent)")
        for part in self.parts:
            if not isinstance(part, str) or not _NAME.match(part):
                raise ConfigError(f"{what}: {part!r} is not a stem name (lower-case letters, digits and _)")
            if part in CANONICAL_STEMS or part == MIXTURE:
                raise ConfigError(f"{what}: {part!r} is already a canonical stem; name the new stem differently")
        if len(set(self.parts)) != len(self.parts):
            raise ConfigError(f"{what}: a part is named twice")
        if self.parent == MIXTURE:
            if not self.family or not _NAME.match(self.family) or self.family == "music":
                raise ConfigError(f"{what}: a split of the whole mix needs family='name' (not 'music', stemkit's own)")
        elif self.family is not None:
            raise ConfigError(f"{what}: family= is only for a split of the whole mix (parent={MIXTURE!r})")
        for alias, part in self.aliases.items():
            if part not in self.parts:
                raise ConfigError(f"{what}: alias {alias!r} points to {part!r}, which is not one of the parts")

    @property
    def relation(self) -> str:
        joined = " + ".join(self.parts)
        if self.parent == MIXTURE:
            return f"{joined} {'=' if self.exhaustive else '⊂'} a mix ({self.family})"
        return f"{joined} {'=' if self.exhaustive else '⊂'} {self.parent}"


class Vocabulary:
    """Every stem stemkit knows: the canonical seven plus the registered groups, as a tree of atoms.

    Build one from groups to plan against a vocabulary of your own; :func:`vocabulary` is the installed one.
    A group that conflicts with an earlier one (the same stem split differently, a name taken twice) or whose
    parent is unknown is left out and recorded in :attr:`problems`, so one broken plugin cannot break every
    request; the problems are repeated in the error for an unknown stem name.
    """

    def __init__(self, groups: Iterable[StemGroup | tuple[str, StemGroup]] = ()) -> None:
        self._children: dict[str, tuple[tuple[str, ...], bool]] = {_MUSIC: ((*_INSTRUMENTS, _REST), True)}
        self._parent: dict[str, str] = {name: _MUSIC for name in (*_INSTRUMENTS, _REST)}
        self._family: dict[str, str] = {_MUSIC: "music"}
        self._aliases: dict[str, str] = {}
        self._groups: list[tuple[str, StemGroup]] = []
        self._registered: list[str] = []
        self.problems: list[str] = []
        pending = [g if isinstance(g, tuple) else ("", g) for g in groups]
        while pending:
            waiting = [(origin, group) for origin, group in pending if not self._add(origin, group)]
            if len(waiting) == len(pending):
                for origin, group in waiting:
                    self.problems.append(
                        f"{_from(origin)}{group.relation} is ignored: its parent {group.parent!r} is not a known stem"
                    )
                break
            pending = waiting
        self._leaves: dict[str, frozenset[str]] = {}

    # -- building ---------------------------------------------------------------------------------------
    def _add(self, origin: str, group: StemGroup) -> bool:
        """Add a group; False when its parent is not known (yet)."""
        if group.parent == MIXTURE:
            node = f"<{group.family}>"
            taken = node in self._children
        else:
            node = _REST if group.parent == "other" else group.parent
            if node not in self._parent:
                return False
            taken = node in self._children
        if taken:
            if any(existing == group for _, existing in self._groups):
                return True  # two plugins declaring the same split agree
            parts = ", ".join(self._children[node][0])
            self.problems.append(
                f"{_from(origin)}{group.relation} is ignored: {group.parent} is already split into {parts}"
            )
            return True
        clash = [p for p in group.parts if p in self._parent]
        if clash:
            self.problems.append(f"{_from(origin)}{group.relation} is ignored: {', '.join(clash)} already registered")
            return True
        self._children[node] = (group.parts, group.exhaustive)
        if group.parent == MIXTURE:
            assert group.family is not None
            self._family[node] = group.family
        for part in group.parts:
            self._parent[part] = node
            self._registered.append(part)
        for alias, part in group.aliases.items():
            if alias in CANONICAL_STEMS or alias in self._parent or alias in self._aliases:
                self.problems.append(f"{_from(origin)}alias {alias!r} is ignored: the name is taken")
                continue
            self._aliases[alias] = part
        self._groups.append((origin, group))
        return True

    # -- what it knows ----------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Canonical stems, then registered ones, in registration order."""
        return (*CANONICAL_STEMS, *self._registered)

    @property
    def registered(self) -> tuple[str, ...]:
        return tuple(self._registered)

    @property
    def groups(self) -> tuple[tuple[str, StemGroup], ...]:
        """(origin, group) for every group taken in; origin names the distribution and entry point."""
        return tuple(self._groups)

    def is_known(self, name: str) -> bool:
        return name in CANONICAL_STEMS or name in self._registered

    def lookup(self, name: str) -> str | None:
        """The vocabulary's name for ``name``: canonical, registered, a registered alias, a built-in alias.

        A registered name or alias wins over a built-in alias of the same spelling (a film plugin's
        ``music`` is the music bed, not the ``instrumental`` the alias table guesses).
        """
        key = _key(name)
        if key in CANONICAL_STEMS or key in self._registered:
            return key
        return self._aliases.get(key) or ALIASES.get(key)

    def parent(self, name: str) -> str | None:
        """The stem ``name`` is a part of (``mixture`` for a family's top level); None for canonical stems."""
        if name not in self._registered:
            return None
        node = self._parent[name]
        if node.startswith("<"):
            return MIXTURE
        return "other" if node == _REST else node

    def family(self, name: str) -> str:
        """Which way of splitting a mix ``name`` belongs to: ``music`` for the canonical stems."""
        return self._family[self._root(name)]

    def describe(self, name: str) -> str:
        """How ``name`` relates to the rest, in words (for error messages and ``stemkit stems``)."""
        if name in CANONICAL_STEMS:
            return f"{name} (canonical)"
        node = self._parent[name]
        siblings, exhaustive = self._children[node]
        whole = f"a {self._family[node]} mix" if node.startswith("<") else "other" if node == _REST else node
        if exhaustive:
            return f"{name} (with {', '.join(s for s in siblings if s != name)}, makes up {whole})"
        return f"{name} (a part of {whole})"

    def order(self, names: Iterable[str]) -> list[str]:
        """``names`` in vocabulary order (canonical first), unknown names last in their given order."""
        rank = {name: i for i, name in enumerate(self.names)}
        given = list(dict.fromkeys(names))
        return sorted(given, key=lambda n: (rank.get(n, len(rank)), given.index(n)))

    # -- atoms --------------------------------------------------------------------------------------------
    def _root(self, name: str) -> str:
        if name in ("other", "instrumental"):
            return _MUSIC
        node = name
        while node in self._parent:
            node = self._parent[node]
        return node if node in self._family else _MUSIC

    def leaves(self, node: str) -> frozenset[str]:
        cached = self._leaves.get(node)
        if cached is None:
            if node not in self._children:
                cached = frozenset({node})
            else:
                parts, exhaustive = self._children[node]
                cached = frozenset().union(*(self.leaves(p) for p in parts))
                if not exhaustive:
                    cached |= {f"{node}~rest"}
            self._leaves[node] = cached
        return cached

    def atoms(self, name: str, siblings: Sequence[str] = (), partition: bool = False) -> frozenset[str]:
        """Atoms of a stem, given the stems beside it; ``partition`` when they sum to the mixture."""
        everything = self.leaves(_MUSIC)
        if name == "instrumental":
            return everything - self.leaves("vocals")
        if name == "other":
            if partition:
                taken = frozenset().union(*(self.atoms(s) for s in siblings if s != "other"))
                return everything - taken
            musdb = self.leaves("piano") | self.leaves("guitar") | self.leaves(_REST)
            named = [self.atoms(s) for s in siblings if s not in ("other", "instrumental")]
            return musdb - frozenset().union(*(a for a in named if a <= musdb))
        return self.leaves(name)

    def universe(self, names: Iterable[str]) -> frozenset[str]:
        """Every atom of the family the stems belong to; empty when they mix families."""
        roots = {self._root(name) for name in names}
        return self.leaves(roots.pop()) if len(roots) == 1 else frozenset()

    def complement_of(self, atoms: frozenset[str]) -> tuple[str, ...]:
        """The named music stems an ``other`` stem excludes, for the record."""
        out: list[str] = []

        def walk(node: str) -> None:
            leaves = self.leaves(node)
            if not leaves & atoms:
                if node != _REST and not node.endswith("~rest"):
                    out.append(node)
            elif not leaves <= atoms and node in self._children:
                for child in self._children[node][0]:
                    walk(child)

        for child in self._children[_MUSIC][0]:
            walk(child)
        return tuple(out)

    def __repr__(self) -> str:
        return f"Vocabulary(registered={list(self._registered)})"


def _from(origin: str) -> str:
    return f"{origin}: " if origin else ""


BUILTIN = Vocabulary()
_INSTALLED: dict[str, tuple[object, Vocabulary]] = {}
_INSTALLED_LOCK = threading.Lock()


def _installed_key() -> object:
    """Changes when a distribution is installed (a site folder's mtime) or sys.path changes."""
    key: list[tuple[str, int | None]] = []
    for entry in sys.path:
        try:
            key.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            key.append((entry, None))
    return tuple(key)


def vocabulary() -> Vocabulary:
    """The installed vocabulary: the canonical stems plus every group registered under ``stemkit.stems``.

    Read once per set of installed distributions (a plugin installed later is seen on the next call).
    """
    key = _installed_key()
    with _INSTALLED_LOCK:
        cached = _INSTALLED.get("vocabulary")
        if cached is not None and cached[0] == key:
            return cached[1]
    groups, problems = _registered_groups()
    vocab = Vocabulary(groups)
    vocab.problems[:0] = problems
    for problem in vocab.problems:
        warnings.warn(f"stem vocabulary: {problem}", RuntimeWarning, stacklevel=2)
    with _INSTALLED_LOCK:
        _INSTALLED["vocabulary"] = (key, vocab)
    return vocab


def _registered_groups() -> tuple[list[tuple[str, StemGroup]], list[str]]:
    from stemkit.registry import entry_points

    groups: list[tuple[str, StemGroup]] = []
    problems: list[str] = []
    for ep in entry_points(STEMS_GROUP):
        dist = ep.dist.metadata["Name"] if ep.dist is not None else "?"
        origin = f"{dist} (stemkit.stems entry point {ep.name!r})"
        try:
            declared = ep.load()
        except Exception as exc:  # a broken plugin must not break every request: record it, name it
            problems.append(f"{origin} could not be loaded ({type(exc).__name__}: {exc}); reinstall it")
            continue
        items = [declared] if isinstance(declared, StemGroup) else declared
        try:
            items = list(items)
        except TypeError:
            items = [items]
        for item in items:
            if isinstance(item, StemGroup):
                groups.append((origin, item))
            else:
                problems.append(f"{origin} registers {type(item).__name__}, not a stemkit.stems.StemGroup")
    return groups, problems


def _vocabulary_for(names: Iterable[str]) -> Vocabulary:
    """The built-in vocabulary when every name is canonical (no plugin is looked at), else the installed one."""
    return BUILTIN if all(n in CANONICAL_STEMS for n in names) else vocabulary()


def canonical_name(name: str, extra_aliases: Mapping[str, str] | None = None) -> str | None:
    """Map a provider's or a user's stem name to the vocabulary, or ``None`` if it has no match.

    Matching ignores case, surrounding blanks, a file extension-like suffix is *not* stripped here (callers
    that identify stems by file name strip it first), and ``-``/spaces count as ``_``. A provider's own
    ``extra_aliases`` come first, then canonical names, then registered stems and their aliases, then the
    built-in alias table.
    """
    key = _key(name)
    if extra_aliases:
        lowered = {_key(k): v for k, v in extra_aliases.items()}
        if key in lowered:
            return lowered[key]
    if key in CANONICAL_STEMS:
        return key
    return vocabulary().lookup(key)


def order_stems(names: Iterable[str]) -> list[str]:
    """Stem names in vocabulary order: canonical first, then registered (for reports and tables)."""
    listed = list(names)
    return _vocabulary_for(listed).order(listed)


def _known_listing(vocab: Vocabulary) -> str:
    text = f"canonical stems are {', '.join(CANONICAL_STEMS)}"
    if vocab.registered:
        text += f"; registered by plugins: {', '.join(vocab.registered)}"
    if vocab.problems:
        text += " (" + "; ".join(vocab.problems) + ")"
    return text


def normalize_request(stems: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """Turn ``"vocals,drums"`` or ``["Vocals", "accompaniment"]`` into vocabulary names, in order, once each."""
    if stems is None:
        return None
    items = [s for s in stems.split(",")] if isinstance(stems, str) else list(stems)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"stems: {item!r} is not a stem name; {_known_listing(vocabulary())}")
        name = canonical_name(item)
        if name is None:
            raise ConfigError(f"stems: unknown stem {item.strip()!r}; {_known_listing(vocabulary())}")
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError(f"stems: no stem requested; use names from {', '.join(CANONICAL_STEMS)}")
    return tuple(out)


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
    combination: tuple[str, ...], requested: Sequence[str], partition: bool, vocab: Vocabulary
) -> tuple[Derivation, ...] | None:
    pieces = {name: vocab.atoms(name, combination, partition) for name in combination}
    covered: frozenset[str] = frozenset().union(*pieces.values()) if pieces else frozenset()
    # What a combination leaves out (e.g. everything but the vocals of a vocals-only run) is mixture − Σ stems.
    residual = vocab.universe(combination) - covered
    outputs: list[Derivation] = []
    for name in requested:
        want = vocab.atoms(name, requested)
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
        complement = vocab.complement_of(want) if name == "other" else None
        outputs.append(Derivation(name, sources, uses_residual, complement))
    return tuple(outputs)


def _why_not(requested: Sequence[str], combinations: Sequence[tuple[str, ...]], vocab: Vocabulary) -> str:
    """What a refusal should add for registered stems: how they relate, so the reason is plain."""
    offered = {s for combo in combinations for s in combo}
    families = {vocab.family(s) for s in offered}
    notes: list[str] = []
    for name in requested:
        family = vocab.family(name)
        if family not in families:
            splits = "/".join(sorted(families))
            notes.append(f"{name} is a stem of a {family} mix and this provider splits a {splits} mix")
        elif name in vocab.registered and name not in offered:
            notes.append(f"{vocab.describe(name)}: no combination here produces it or parts that add up to it")
    return f"; {'; '.join(notes)}" if notes else ""


def plan_stems(
    requested: Sequence[str] | None,
    combinations: Sequence[tuple[str, ...]],
    *,
    partial: Collection[tuple[str, ...]] = (),
    provider: str = "provider",
    default: int = 0,
    vocabulary: Vocabulary | None = None,
) -> Plan:
    """Pick the smallest combination that yields every requested stem.

    Deriving from the residual (mixture minus what the provider produced) is the last resort; then fewer
    stems to produce, then fewer derived stems, then the provider's own order. With no request, the
    provider's default combination is returned as produced. ``partial`` lists the combinations that do not
    partition the mixture (see the module docstring for what that changes). ``vocabulary`` defaults to the
    installed one (the built-in one when every name is canonical).
    """
    partial_sets = {frozenset(c) for c in partial}
    if not combinations:
        raise ConfigError(f"{provider}: offers no stem combination")
    vocab = vocabulary or _vocabulary_for([*(requested or ()), *(s for c in combinations for s in c)])
    if requested is None:
        combo = tuple(combinations[default])
        partition = frozenset(combo) not in partial_sets
        outputs = tuple(
            Derivation(
                name,
                (name,),
                complement_of=vocab.complement_of(vocab.atoms(name, combo, partition)) if name == "other" else None,
            )
            for name in combo
        )
        return Plan(combo, outputs)
    for combo in combinations:
        # Asking for exactly what a combination produces is always direct, whatever its ``other`` means.
        if set(combo) == set(requested):
            by_name = {d.name: d for d in plan_stems(None, [combo], partial=partial, vocabulary=vocab).outputs}
            return Plan(tuple(combo), tuple(by_name[name] for name in requested))
    best: tuple[tuple[int, int, int, int], Plan] | None = None
    for index, combo in enumerate(combinations):
        outputs_or_none = _plan_for(tuple(combo), requested, frozenset(combo) not in partial_sets, vocab)
        if outputs_or_none is None:
            continue
        residual = sum(d.uses_residual for d in outputs_or_none)
        derived = sum(not d.direct for d in outputs_or_none)
        key = (residual, len(combo), derived, index)
        if best is None or key < best[0]:
            best = (key, Plan(tuple(combo), outputs_or_none))
    if best is None:
        offered = "; ".join(", ".join(c) for c in combinations)
        culprits = _unplannable(requested, combinations, partial_sets, vocab)
        asked = f" (asked for {', '.join(requested)})" if culprits != list(requested) else ""
        raise ConfigError(
            f"{provider}: cannot produce or derive {', '.join(culprits)}{asked}; it offers [{offered}] "
            f"(instrumental and other can be derived from a full set){_why_not(culprits, combinations, vocab)}"
        )
    return best[1]


def _unplannable(
    requested: Sequence[str],
    combinations: Sequence[tuple[str, ...]],
    partial_sets: Collection[frozenset[str]],
    vocab: Vocabulary,
) -> list[str]:
    """The requested stems no combination yields even when asked for alone: what a refusal should name
    (``vocals, guitar`` from a provider without guitar: ``guitar``). When each one alone is possible and only
    the set is not, the whole request."""
    alone = [
        name
        for name in requested
        if all(_plan_for(tuple(c), [name], frozenset(c) not in partial_sets, vocab) is None for c in combinations)
    ]
    return alone or list(requested)
