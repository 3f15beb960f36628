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
    "bomb",  # every stem is 6 MiB of zeros: 36 MiB deflated ~900-fold (refused by the ratio bound)
    "bomb-declared",  # the last stem declares 4 GiB in the central directory
    "bomb-actual",  # the bomb's entries declare 1 KiB each but inflate to 6 MiB
    "missing-stem",  # the vocals entry is left out
    "not-audio",  # the vocals entry is not audio at all
    "extra-files",  # harmless non-audio members beside the stems (readme.txt, cover.jpg, __MACOSX/)
)
#: Damaged archives (``--fault corrupt-zip:variant=...``): bytes flipped inside a member's data, or the
#: archive cut at 60 % (no central directory), each delivered intact over HTTP.
CORRUPT_VARIANTS: tuple[str, ...] = ("damaged", "cut")

_MIB = 1024 * 1024
_BOMB_BYTES = 6 * _MIB
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


def _bomb_template(folder: Path) -> Path:
    """Every Spleeter stem name as 6 MiB of zeros (36 MiB deflated to ~40 KiB), built once per folder."""
    path = folder / "bomb-template.zip"
    if not path.exists():
        partial = folder / "bomb-template.zip.part"
        with zipfile.ZipFile(partial, "w") as dst:
            for name in ("vocals", "accompaniment", "drums", "bass", "piano", "other"):
                info = zipfile.ZipInfo(f"bomb/{name}.wav")
                info.compress_type = zipfile.ZIP_DEFLATED
                with dst.open(info, "w") as writer:
                    writer.write(_WAV_HEAD)
                    for _ in range(_BOMB_BYTES // _MIB):
                        writer.write(bytes(_MIB))
        partial.replace(path)
    return path


def _patch_declared_size(path: Path, arcname: str | None, size: int) -> None:
    """Rewrite the uncompressed size of entry ``arcname`` (every entry: ``None``) in the central directory,
    where readers take it from."""
    data = bytearray(path.read_bytes())
    offset = data.find(b"PK\x01\x02")
    while offset != -1:
        name_len = struct.unpack_from("<H", data, offset + 28)[0]
        if arcname is None or bytes(data[offset + 46 : offset + 46 + name_len]) == arcname.encode():
            struct.pack_into("<I", data, offset + 24, size)
        offset = data.find(b"PK\x01\x02", offset + 4)
    path.write_bytes(bytes(data))


def hostile_copy(src_path: Path, dst_path: Path, variant: str) -> None:
    """A copy of the stems ZIP at ``src_path`` with the hostile ``variant`` (see HOSTILE_VARIANTS)."""
    if variant in ("bomb", "bomb-actual"):
        shutil.copyfile(_bomb_template(dst_path.parent), dst_path)
        if variant == "bomb-actual":
            _patch_declared_size(dst_path, None, 1024)
        return
    with zipfile.ZipFile(src_path) as src:
        vocals = _member_name(src, "vocals")
        skip = {"symlink": "vocals", "missing-stem": "vocals", "not-audio": "vocals"}.get(variant)
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
    if variant == "bomb-declared":
        with zipfile.ZipFile(dst_path) as done:
            last = done.infolist()[-1].filename
        _patch_declared_size(dst_path, last, 0xFFFF_0000)


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
