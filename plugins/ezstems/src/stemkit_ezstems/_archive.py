"""Safe extraction of a stems ZIP: the archive is untrusted input from the network.

The whole archive is vetted before a byte is written: an entry with an absolute path, a drive, a ``..``
component or a NUL (zip-slip), a link or another non-regular file, an encrypted entry, a declared size past
the bound, a total past the bound, or an archive-wide compression ratio past the bound (a bomb) refuses the
archive with a :class:`~stemkit.errors.ProtocolError`, whatever member it is in. While extracting, the bytes
actually produced are counted, so an entry that inflates past its declared size is refused too.

Only members identified as expected stems are written, under names stemkit chooses (``<stem>.<ext>``), so no
name from the archive ever reaches the file system. They are written into a hidden staging directory inside
the destination and renamed into place only when every stem is complete: a failure leaves the destination as
it was, with no partial stem.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from stemkit.errors import ProtocolError
from stemkit.stems import canonical_name

__all__ = ["ArchiveWarning", "ZipLimits", "extract_stems"]

_MIB = 1024 * 1024
_CHUNK = _MIB
#: Formats a stem may come in, by file suffix.
AUDIO_SUFFIXES: Mapping[str, str] = {".wav": "WAV", ".mp3": "MP3"}
#: Highest byte rate a stem may plausibly have: 192 kHz, stereo, 32-bit samples.
_MAX_STEM_BYTES_PER_SECOND = 192_000 * 2 * 4


class ArchiveWarning(UserWarning):
    """A member of a stems archive was ignored (not audio, or not a stem this job produces)."""


@dataclass(frozen=True)
class ZipLimits:
    """Bounds past which an archive is treated as a bomb.

    ``max_ratio`` applies to the whole archive (uncompressed / compressed) once it holds more than
    ``ratio_floor_bytes``: a single silent stem deflates a thousandfold legitimately, a set of stems does not.
    """

    max_member_bytes: int = 1024 * _MIB
    max_total_bytes: int = 4096 * _MIB
    max_ratio: float = 100.0
    ratio_floor_bytes: int = 16 * _MIB
    max_members: int = 1000

    @classmethod
    def for_duration(cls, seconds: float | None, stems: int) -> ZipLimits:
        """Bounds for the stems of ``seconds`` of audio: generous for any real encoding, tight for a bomb."""
        if seconds is None or seconds <= 0:
            return cls()
        member = 16 * _MIB + int(seconds * _MAX_STEM_BYTES_PER_SECOND)
        return cls(max_member_bytes=member, max_total_bytes=member * max(stems, 1))


def _refuse(message: str) -> ProtocolError:
    return ProtocolError(
        f"the stems archive was refused: {message}; nothing was extracted. "
        "Retry the job, and report it to EzStems if it persists",
        provider="ezstems",
    )


def _safe_parts(name: str) -> tuple[str, ...]:
    """The path components of an entry name, or a ProtocolError if the name could escape the destination."""
    if "\x00" in name:
        raise _refuse(f"entry {name!r} has a NUL in its name")
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or re.match(r"^[A-Za-z]:", normalized):
        raise _refuse(f"entry {name!r} has an absolute path")
    parts = tuple(p for p in PurePosixPath(normalized).parts if p not in ("", "."))
    if ".." in parts:
        raise _refuse(f"entry {name!r} points outside the archive (zip-slip)")
    return parts


def _vet(info: zipfile.ZipInfo, limits: ZipLimits) -> tuple[str, ...]:
    parts = _safe_parts(info.filename)
    kind_bits = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver recorded no file type
    if kind_bits not in (0, stat.S_IFREG, stat.S_IFDIR):
        kind = "a symbolic link" if kind_bits == stat.S_IFLNK else "not a regular file"
        raise _refuse(f"entry {info.filename!r} is {kind}")
    if info.flag_bits & 0x1:
        raise _refuse(f"entry {info.filename!r} is encrypted")
    if info.file_size > limits.max_member_bytes:
        raise _refuse(
            f"entry {info.filename!r} declares {info.file_size} bytes, past the bound of "
            f"{limits.max_member_bytes} for this audio (zip bomb)"
        )
    return parts


def _stem_of(stem_name: str, expected: Sequence[str], aliases: Mapping[str, str] | None) -> str | None:
    """Which expected stem a member's file name (without suffix) is, if any."""
    lowered = stem_name.strip().lower()
    candidates = [lowered, *reversed(re.split(r"[_\-\s.]+", lowered))]
    by_canonical = {canonical_name(e, aliases) or e: e for e in expected}
    for candidate in candidates:
        if candidate in expected:
            return candidate
        canonical = canonical_name(candidate, aliases)
        if canonical is not None and canonical in by_canonical:
            return by_canonical[canonical]
    return None


def _looks_like(fmt: str, head: bytes) -> bool:
    if fmt == "WAV":
        return head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE"
    return head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


def _select(
    infos: Sequence[zipfile.ZipInfo],
    expected: Sequence[str],
    aliases: Mapping[str, str] | None,
    limits: ZipLimits,
) -> tuple[dict[str, zipfile.ZipInfo], list[str]]:
    """The member of each expected stem, and the names of the members ignored; refuses a hostile archive."""
    if len(infos) > limits.max_members:
        raise _refuse(f"it has {len(infos)} entries, more than {limits.max_members}")
    chosen: dict[str, zipfile.ZipInfo] = {}
    ignored: list[str] = []
    declared = compressed = 0
    for info in infos:
        parts = _vet(info, limits)
        declared += info.file_size
        compressed += info.compress_size
        if info.is_dir() or not parts:
            continue
        leaf = PurePosixPath(parts[-1])
        if parts[0] == "__MACOSX" or leaf.name.startswith("."):
            ignored.append(info.filename)
            continue
        suffix = leaf.suffix.lower()
        stem = _stem_of(leaf.stem, expected, aliases) if suffix in AUDIO_SUFFIXES else None
        if stem is None:
            ignored.append(info.filename)
            continue
        if stem in chosen:
            raise _refuse(f"entries {chosen[stem].filename!r} and {info.filename!r} are both the {stem} stem")
        chosen[stem] = info
    if declared > limits.max_total_bytes:
        raise _refuse(f"its entries declare {declared} bytes in all, past the bound of {limits.max_total_bytes}")
    if declared > limits.ratio_floor_bytes and declared > limits.max_ratio * max(compressed, 1):
        raise _refuse(
            f"it inflates {declared / max(compressed, 1):.0f}-fold, past the bound of {limits.max_ratio:.0f} (zip bomb)"
        )
    missing = [name for name in expected if name not in chosen]
    if missing:
        had = ", ".join(i.filename for i in infos if not i.is_dir()) or "nothing"
        raise ProtocolError(
            f"the stems archive has no {' or '.join(missing)} stem (it holds: {had}); the service "
            "returned an incomplete result. Retry the job",
            provider="ezstems",
        )
    return chosen, ignored


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limits: ZipLimits, written: int) -> int:
    fmt = AUDIO_SUFFIXES[PurePosixPath(info.filename).suffix.lower()]
    size = 0
    with archive.open(info) as source, open(target, "xb") as sink:
        while chunk := source.read(_CHUNK):
            if size == 0 and not _looks_like(fmt, chunk[:12]):
                raise _refuse(f"entry {info.filename!r} is not a {fmt} file")
            size += len(chunk)
            if size > info.file_size or size > limits.max_member_bytes:
                raise _refuse(f"entry {info.filename!r} inflates past its declared {info.file_size} bytes")
            if written + size > limits.max_total_bytes:
                raise _refuse(f"its entries inflate past the bound of {limits.max_total_bytes} bytes in all")
            sink.write(chunk)
    if size == 0:
        raise _refuse(f"entry {info.filename!r} is empty")
    return size


def extract_stems(
    archive_path: Path,
    dest: Path,
    expected: Sequence[str],
    *,
    limits: ZipLimits | None = None,
    aliases: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Extract the ``expected`` stems (provider names) of ``archive_path`` into ``dest``.

    Returns ``{stem: dest/"<stem>.<ext>"}``. Raises :class:`ProtocolError` for a corrupt or hostile archive or
    a missing stem; ``dest`` then holds exactly what it held before.
    """
    limits = limits or ZipLimits()
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ezstems-partial-", dir=dest))
    placed: list[Path] = []
    try:
        with zipfile.ZipFile(archive_path) as archive:
            chosen, ignored = _select(archive.infolist(), expected, aliases, limits)
            staged: dict[str, Path] = {}
            written = 0
            for stem, info in chosen.items():
                target = staging / f"{stem}{PurePosixPath(info.filename).suffix.lower()}"
                written += _copy_member(archive, info, target, limits, written)
                staged[stem] = target
        result: dict[str, Path] = {}
        for stem, path in staged.items():
            final = dest / path.name
            os.replace(path, final)
            placed.append(final)
            result[stem] = final
        if ignored:
            warnings.warn(
                f"ezstems: ignored {len(ignored)} archive member(s) that are not expected stems: {', '.join(ignored)}",
                ArchiveWarning,
                stacklevel=2,
            )
        return result
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as exc:
        for path in placed:
            path.unlink(missing_ok=True)
        raise ProtocolError(
            f"the stems archive is corrupt or truncated ({exc}); nothing was extracted. Retry the job",
            provider="ezstems",
        ) from exc
    except BaseException:
        for path in placed:
            path.unlink(missing_ok=True)
        raise
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
