"""The archives the emulator serves: the real stems ZIP, and damaged or hostile variants of it on request.

Everything streams member by member, so a long song's ZIP never sits in memory.
"""

from __future__ import annotations

import shutil
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

__all__ = ["CORRUPT_VARIANTS", "HOSTILE_VARIANTS", "corrupt_copy", "hostile_copy", "write_zip"]

#: Hostile archives the emulator serves on ``--fault hostile-zip:variant=...``.
HOSTILE_VARIANTS: tuple[str, ...] = (
    "zip-slip",  # an extra entry ../ezstems-escape.wav
    "absolute",  # an extra entry /tmp/ezstems-absolute.wav
    "symlink",  # the vocals entry is a symbolic link to /etc/passwd
    "bomb",  # the other (or accompaniment) entry is 32 MiB of zeros deflated to ~32 KiB
    "bomb-declared",  # that entry declares 3.5 GiB in the central directory
    "bomb-actual",  # that entry declares 1 KiB but inflates to 32 MiB
    "missing-stem",  # the vocals entry is left out
    "not-audio",  # the vocals entry is not audio at all
    "extra-files",  # harmless non-audio members beside the stems (readme.txt, cover.jpg, __MACOSX/)
)
#: Damaged archives (``--fault corrupt-zip:variant=...``): bytes flipped inside a member's data, or the
#: archive cut at 60 % (no central directory), each delivered intact over HTTP.
CORRUPT_VARIANTS: tuple[str, ...] = ("damaged", "cut")

_MIB = 1024 * 1024
_BOMB_BYTES = 32 * _MIB
#: A WAV header, so that a bomb member passes a format sniff and is refused for its size alone.
_WAV_HEAD = b"RIFF\xff\xff\xff\xffWAVEfmt "


def write_zip(path: Path, members: Sequence[tuple[str, Path]]) -> None:
    """Write ``members`` (arcname, file) deflated, as PHP's ZipArchive would."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for arcname, file in members:
            archive.write(file, arcname)


def _copy_members(src: zipfile.ZipFile, dst: zipfile.ZipFile, skip: str | None = None) -> None:
    for info in src.infolist():
        if skip is not None and PurePosixPath(info.filename).stem == skip:
            continue
        copy = zipfile.ZipInfo(info.filename, info.date_time)
        copy.compress_type = info.compress_type
        copy.external_attr = info.external_attr
        with src.open(info) as reader, dst.open(copy, "w") as writer:
            shutil.copyfileobj(reader, writer, _MIB)


def _member_name(src: zipfile.ZipFile, stem: str) -> str:
    for info in src.infolist():
        if PurePosixPath(info.filename).stem == stem:
            return info.filename
    return f"{stem}.wav"


def _write_zeros(dst: zipfile.ZipFile, arcname: str) -> None:
    info = zipfile.ZipInfo(arcname)
    info.compress_type = zipfile.ZIP_DEFLATED
    with dst.open(info, "w") as writer:
        writer.write(_WAV_HEAD)
        zeros = bytes(_MIB)
        for _ in range(_BOMB_BYTES // _MIB):
            writer.write(zeros)


def _patch_declared_size(path: Path, arcname: str, size: int) -> None:
    """Rewrite an entry's uncompressed size in the central directory (where readers take it from)."""
    data = bytearray(path.read_bytes())
    name = arcname.encode()
    offset = data.find(b"PK\x01\x02")
    while offset != -1:
        name_len = struct.unpack_from("<H", data, offset + 28)[0]
        if bytes(data[offset + 46 : offset + 46 + name_len]) == name:
            struct.pack_into("<I", data, offset + 24, size)
            path.write_bytes(bytes(data))
            return
        offset = data.find(b"PK\x01\x02", offset + 4)
    raise ValueError(f"no central directory entry {arcname!r}")


def hostile_copy(src_path: Path, dst_path: Path, variant: str) -> None:
    """A copy of the stems ZIP at ``src_path`` with the hostile ``variant`` (see HOSTILE_VARIANTS)."""
    with zipfile.ZipFile(src_path) as src:
        vocals = _member_name(src, "vocals")
        other = (
            _member_name(src, "other")
            if any(PurePosixPath(i.filename).stem == "other" for i in src.infolist())
            else _member_name(src, "accompaniment")
        )
        skip = {"symlink": "vocals", "missing-stem": "vocals", "not-audio": "vocals"}.get(variant)
        if variant.startswith("bomb"):
            skip = PurePosixPath(other).stem
        with zipfile.ZipFile(dst_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as dst:
            _copy_members(src, dst, skip)
            payload = src.read(vocals) if variant in ("zip-slip", "absolute") else b""
            if variant == "zip-slip":
                dst.writestr("../ezstems-escape.wav", payload)
            elif variant == "absolute":
                dst.writestr("/tmp/ezstems-absolute.wav", payload)
            elif variant == "symlink":
                link = zipfile.ZipInfo(vocals)
                link.create_system = 3
                link.external_attr = 0o120777 << 16
                dst.writestr(link, "/etc/passwd")
            elif variant == "not-audio":
                dst.writestr(vocals, b"<html>502 Bad Gateway</html>" * 64)
            elif variant == "extra-files":
                folder = str(PurePosixPath(vocals).parent)
                dst.writestr(f"{folder}/readme.txt", "Separated with Spleeter by EzStems.\n")
                dst.writestr(f"{folder}/cover.jpg", b"\xff\xd8\xff\xe0" + bytes(256))
                dst.writestr(f"__MACOSX/{folder}/._vocals.wav", bytes(64))
            elif variant in ("bomb", "bomb-actual"):
                _write_zeros(dst, other)
            elif variant == "bomb-declared":
                dst.writestr(other, _WAV_HEAD + bytes(4096))
    if variant == "bomb-declared":
        _patch_declared_size(dst_path, other, 0xE000_0000)
    elif variant == "bomb-actual":
        _patch_declared_size(dst_path, other, 1024)


def corrupt_copy(src_path: Path, dst_path: Path, variant: str) -> None:
    """``damaged``: bytes flipped inside the first member's data; ``cut``: the archive cut at 60 %."""
    data = bytearray(src_path.read_bytes())
    if variant == "cut":
        del data[int(len(data) * 0.6) :]
    else:
        with zipfile.ZipFile(src_path) as src:
            first = src.infolist()[0]
        name_len, extra_len = struct.unpack_from("<HH", data, first.header_offset + 26)
        start = first.header_offset + 30 + name_len + extra_len
        middle = start + first.compress_size // 2
        for i in range(middle, min(middle + 64, start + first.compress_size)):
            data[i] ^= 0x5A
    dst_path.write_bytes(bytes(data))
