"""Many inputs at once: folders expanded to the audio files in them, and output names that never collide."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from stemkit.errors import InputError

__all__ = ["AUDIO_SUFFIXES", "expand_inputs", "output_names"]

AUDIO_SUFFIXES = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".oga", ".aiff", ".aif", ".m4a", ".aac", ".opus", ".webm", ".mp4", ".wv"}
)


_UNSAFE = frozenset('<>:"/\\|?*')


def expand_inputs(inputs: Iterable[str | Path], *, unique: bool = False) -> list[str | Path]:
    """Keep files and URLs as given; replace each folder by the audio files in it (recursively, sorted).

    With ``unique`` (what a batch asks for), an input named twice — directly and through its folder, or by two
    paths to the same file (``./a.wav`` and ``a.wav``, a symbolic link) — is kept once, where it first
    appears: it is separated (and billed) once.
    """
    out: list[str | Path] = []
    seen: set[str] = set()

    def add(item: str | Path, key: str) -> None:
        if key not in seen or not unique:
            seen.add(key)
            out.append(item)

    for item in inputs:
        if isinstance(item, str) and item.startswith(("http://", "https://")):
            add(item, item)
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise InputError(f"{path}: folder holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
            for file in found:
                add(file, _identity(file))
        else:
            add(path, _identity(path))
    if not out:
        raise InputError("no input given; name audio files or folders")
    return out


def _identity(path: Path) -> str:
    """One name per file, however it is reached (a missing file keeps its own, so its error says what was typed)."""
    try:
        return str(path.resolve(strict=True))
    except (OSError, RuntimeError):
        return str(path.absolute())


def output_names(items: Sequence[str | Path]) -> list[str]:
    """A distinct, file-system-safe name per input (its file stem; ``-2``, ``-3``… where they repeat)."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for item in items:
        text = str(item)
        base = Path(text.split("?", maxsplit=1)[0].rstrip("/")).stem if text.startswith("http") else Path(text).stem
        # Keep the name as the user knows it; replace only what some file system refuses.
        base = "".join("_" if c in _UNSAFE or ord(c) < 32 else c for c in base).strip(" .") or "input"
        count = seen.get(base, 0) + 1
        seen[base] = count
        names.append(base if count == 1 else f"{base}-{count}")
    return names
