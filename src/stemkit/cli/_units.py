"""Sizes and ages as people read them (``1.2 GB``, ``3 min``), for the cache and jobs commands."""

from __future__ import annotations

__all__ = ["human_age", "human_size"]


def human_size(size: int | None) -> str:
    if size is None:
        return "no cap"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def human_age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for limit, unit, div in ((90, "s", 1), (90 * 60, "min", 60), (48 * 3600, "h", 3600)):
        if seconds < limit:
            return f"{seconds / div:.0f} {unit}"
    return f"{seconds / 86400:.0f} d"
