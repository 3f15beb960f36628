"""What is in the cache and what to remove: a scan of the entries (size, last use, completeness) and the
least-recently-used choice that brings the total under the size cap."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from stemkit.cache.backends import Backend

__all__ = ["ENTRIES", "MANIFEST", "USED", "EntryInfo", "entry_dir", "lru_victims", "scan"]

ENTRIES = "entries"
MANIFEST = "entry.json"
USED = "used"
#: an entry without a manifest younger than this may be a writer at work; older, a writer that died
STALE_SECONDS = 3600.0


def entry_dir(key: str) -> str:
    return f"{ENTRIES}/{key[:2]}/{key}"


@dataclass
class EntryInfo:
    """One entry as the scan sees it: its files' total size, when it was last used, whether it is complete."""

    key: str
    size: int = 0
    created: float = 0.0
    last_used: float = 0.0
    complete: bool = False
    files: dict[str, int] = field(default_factory=dict)

    def age(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.last_used


def scan(backend: Backend) -> list[EntryInfo]:
    """Every entry under ``entries/``, in one listing pass (no manifest is read)."""
    found: dict[str, EntryInfo] = {}
    for stat in backend.walk(ENTRIES):
        parts = stat.path.split("/")
        if len(parts) < 4 or parts[0] != ENTRIES:
            continue
        key = parts[2]
        info = found.setdefault(key, EntryInfo(key))
        info.size += stat.size
        rest = "/".join(parts[3:])
        info.files[rest] = stat.size
        info.last_used = max(info.last_used, stat.mtime)
        if rest == MANIFEST:
            info.complete = True
            info.created = stat.mtime
    return list(found.values())


def lru_victims(entries: Iterable[EntryInfo], max_size: int, *, keep: Iterable[str] = ()) -> list[EntryInfo]:
    """The least recently used complete entries to remove so the total fits in ``max_size`` bytes.

    Entries named in ``keep`` (the one just written) and incomplete entries (a writer may be at work) stay.
    """
    listed = list(entries)
    total = sum(e.size for e in listed)
    if total <= max_size:
        return []
    protected = set(keep)
    victims = []
    for entry in sorted((e for e in listed if e.complete and e.key not in protected), key=lambda e: e.last_used):
        if total <= max_size:
            break
        victims.append(entry)
        total -= entry.size
    return victims
