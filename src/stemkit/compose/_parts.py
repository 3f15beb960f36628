"""How stems relate — is one part of another, do some parts make up a whole — answered by the core planner.

A pipeline stage splits one stem into parts of it; whether ``drums`` is part of ``instrumental`` or
``lead_vocals`` and ``backing_vocals`` make up ``vocals`` is knowledge of the stem vocabulary, and the planner
(:func:`stemkit.stems.plan_stems`) is where that knowledge lives. These questions are put to it in its own
terms, so stems a plugin registers (and the relations it declares) are understood here without a second
copy of the rules.
"""

from __future__ import annotations

from collections.abc import Sequence

from stemkit.errors import ConfigError
from stemkit.stems import plan_stems

__all__ = ["covers", "covers_mixture", "is_part"]


def is_part(part: str, whole: str) -> bool:
    """Whether ``part`` lies inside ``whole`` (and is not all of it): drums in instrumental, piano in other.

    Asked as: offered ``part`` and ``whole`` side by side (not as a partition), is ``whole`` made of stems that
    include ``part``? It is exactly when ``part`` is contained in ``whole``.
    """
    if part == whole:
        return False
    combination = (part, whole)
    try:
        plan = plan_stems([whole], [combination], partial=[combination])
    except ConfigError:
        return False
    (derivation,) = plan.outputs
    return part in derivation.sources and not derivation.uses_residual


def covers(whole: str, parts: Sequence[str]) -> bool:
    """Whether ``parts`` together make up ``whole`` exactly: drums, bass, piano, guitar and other make up the
    instrumental; drums and bass alone do not."""
    combination = tuple(parts)
    if not combination:
        return False
    try:
        plan = plan_stems([whole], [combination], partial=[combination])
    except ConfigError:
        return False
    (derivation,) = plan.outputs
    return not derivation.uses_residual and set(derivation.sources) == set(combination)


def covers_mixture(parts: Sequence[str]) -> bool:
    """Whether ``parts`` make up the whole mixture (which is vocals plus instrumental)."""
    combination = tuple(parts)
    if not combination:
        return False
    try:
        plan = plan_stems(["vocals", "instrumental"], [combination], partial=[combination])
    except ConfigError:
        return False
    used = [s for d in plan.outputs for s in d.sources]
    return not plan.needs_mixture and sorted(used) == sorted(combination)
