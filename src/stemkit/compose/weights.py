"""Per-member, per-stem ensemble weights: how a user writes them, how they are checked, how a spec shows them.

Written in Python as one entry per member (a number for every stem, or a mapping of stem to number, stems
not named weighing 1), or as a mapping of stem to one number per member; in a spec string as
``weights=2,1`` (every stem) and ``weights.vocals=0.7,0.3`` (one stem). Weights are relative: a weighted
mean divides by their sum over the members that produced the stem.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from stemkit.errors import ConfigError
from stemkit.stems import normalize_request

__all__ = ["Weights", "WeightsArg"]

WeightsArg = Sequence[float | Mapping[str, float]] | Mapping[str, Sequence[float]] | None


def _number(value: object, where: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"weights: {where} = {value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise ConfigError(f"weights: {where} = {value!r} must be a finite number ≥ 0")
    return number


def _stem(name: str) -> str:
    names = normalize_request([name])
    assert names is not None
    return names[0]


def _format(weight: float) -> str:
    text = repr(float(weight))
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True)
class Weights:
    """One weight per member for every stem (``default``), overridden for some stems (``per_stem``)."""

    default: tuple[float, ...]
    per_stem: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    @classmethod
    def equal(cls, members: int) -> Weights:
        return cls((1.0,) * members)

    @classmethod
    def parse(cls, value: WeightsArg, members: int) -> Weights:
        """Check a Python ``weights=`` argument against the number of members."""
        if value is None:
            return cls.equal(members)
        if isinstance(value, Mapping):
            per_stem = {_stem(str(stem)): cls._row(row, members, f"[{stem!r}]") for stem, row in value.items()}
            return cls((1.0,) * members, per_stem)
        if not isinstance(value, Sequence) or isinstance(value, str):  # type: ignore[unreachable]
            raise ConfigError(
                "weights: give one weight per member (e.g. [2, 1]), per member a mapping of stem to weight, "
                "or a mapping of stem to one weight per member (e.g. {'vocals': [0.7, 0.3]})"
            )
        if len(value) != members:
            raise ConfigError(f"weights: {len(value)} weight(s) for {members} member(s); give one per member")
        default: list[float] = []
        named: dict[str, dict[int, float]] = {}
        for index, entry in enumerate(value):
            if isinstance(entry, Mapping):
                default.append(1.0)
                for stem, weight in entry.items():
                    named.setdefault(_stem(str(stem)), {})[index] = _number(weight, f"[{index}][{stem!r}]")
            else:
                default.append(_number(entry, f"[{index}]"))
        per_stem = {
            stem: tuple(row.get(i, default[i]) for i in range(members)) for stem, row in named.items()
        }
        return cls(tuple(default), per_stem)

    @staticmethod
    def _row(row: object, members: int, where: str) -> tuple[float, ...]:
        if isinstance(row, str) or not isinstance(row, Sequence):
            raise ConfigError(f"weights: {where} must be one weight per member, e.g. [0.7, 0.3]")
        if len(row) != members:
            raise ConfigError(f"weights: {where} has {len(row)} weight(s) for {members} member(s)")
        return tuple(_number(w, f"{where}[{i}]") for i, w in enumerate(row))

    @classmethod
    def from_options(cls, options: Mapping[str, str], members: int) -> Weights:
        """``weights=2,1`` and ``weights.vocals=0.7,0.3`` from a spec string."""
        def row(text: str, key: str) -> tuple[float, ...]:
            parts = [p.strip() for p in text.split(",")]
            if len(parts) != members:
                raise ConfigError(
                    f"ensemble: {key}={text} has {len(parts)} weight(s) for {members} member(s); "
                    "give one per member, comma-separated"
                )
            return tuple(_number(p, f"{key}[{i}]") for i, p in enumerate(parts))

        default = row(options["weights"], "weights") if "weights" in options else (1.0,) * members
        per_stem: dict[str, tuple[float, ...]] = {}
        for key, text in options.items():
            if key.startswith("weights."):
                per_stem[_stem(key.split(".", 1)[1])] = row(text, key)
        return cls(default, per_stem)

    def for_stem(self, stem: str) -> tuple[float, ...]:
        return self.per_stem.get(stem, self.default)

    @property
    def is_equal(self) -> bool:
        rows = [self.default, *self.per_stem.values()]
        return all(len(set(row)) == 1 and row[0] > 0 for row in rows) and len({r[0] for r in rows}) == 1

    def options(self) -> dict[str, str]:
        """The spec-string options that give these weights back (none for equal weights)."""
        if self.is_equal:
            return {}
        out: dict[str, str] = {}
        if any(w != 1.0 for w in self.default):
            out["weights"] = ",".join(_format(w) for w in self.default)
        for stem, row in self.per_stem.items():
            out[f"weights.{stem}"] = ",".join(_format(w) for w in row)
        return out

    def describe(self) -> dict[str, list[float]]:
        """JSON-ready: the default row under ``"*"``, then each stem's own."""
        return {"*": list(self.default), **{stem: list(row) for stem, row in self.per_stem.items()}}
