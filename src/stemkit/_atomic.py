"""Atomic audio files: written under a hidden temporary name in the target's folder, then renamed into place.

A reader never sees a half-written stem, and a failed write leaves nothing behind. A writer killed outright
(``kill -9``, a power cut) cannot remove its temporary file, so the name records who wrote it —
``.NAME.stemkit-PID-HOST-RANDOM.part``, HOST being a short hash of the host name and PID namespace — and the
next write into that folder removes the temporary files of writers on this host whose process is gone. A file
of a live process (another save running at the same time), of another host (a shared network folder) or
not named by stemkit is never touched.

Writes go through a Python file object so that the operating system's own reason for a failure (no space
left, quota, file size limit, read-only file system) reaches the caller as an :class:`OutputError` naming
the file, instead of libsndfile's bare "system error".
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import re
import secrets
import socket
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf

from stemkit.errors import OutputError
from stemkit.output import OutputSettings, output_format

__all__ = ["NonFiniteAudioError", "part_path", "remove_stale_parts", "write_audio_atomic", "write_blocks_atomic"]

FloatArray = npt.NDArray[np.float32]

_PART = re.compile(r"^\..+\.stemkit-(?P<pid>\d+)-(?P<host>[0-9a-f]{8})-[0-9a-f]{8}\.part$")


class NonFiniteAudioError(ValueError):
    """A block to be written holds NaN or infinite samples; the write was abandoned and nothing written."""

    def __init__(self, path: Path, count: int) -> None:
        self.path = path
        self.count = count
        super().__init__(f"{path.name}: {count} NaN or infinite sample(s); nothing was written")


@functools.cache
def _host_tag() -> str:
    """Who "this host" is for liveness checks: a PID means something only within one PID namespace."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return hashlib.sha256(f"{socket.gethostname()}|{namespace}".encode()).hexdigest()[:8]


def part_path(path: Path) -> Path:
    """The temporary name ``path`` is written under: hidden, in the same folder (so the rename is atomic),
    and carrying this process's PID and host so that a later writer can tell when it was abandoned."""
    return path.with_name(f".{path.name}.stemkit-{os.getpid()}-{_host_tag()}-{secrets.token_hex(4)}.part")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OSError:
        return True  # unknown: never remove what might be live
    return True


def remove_stale_parts(folder: Path) -> list[Path]:
    """Remove temporary files in ``folder`` left by stemkit writers on this host that no longer run.

    Returns what was removed. Anything else — a live writer's file, another host's, a file stemkit did not
    name — is left alone, and a file that vanishes meanwhile (another process cleaning up) is no error.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    tag = _host_tag()
    for entry in entries:
        match = _PART.match(entry.name)
        if match is None or match["host"] != tag or _alive(int(match["pid"])):
            continue
        with contextlib.suppress(FileNotFoundError, PermissionError, IsADirectoryError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


class _GuardedFile:
    """The file object libsndfile writes through: keeps the OSError of a failed write for the caller.

    An exception cannot cross libsndfile's C callbacks; a short write is returned instead (libsndfile then
    fails with a "system error"), and :meth:`failure` gives the real reason.
    """

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        done = 0
        while done < len(view):
            try:
                written = self._raw.write(view[done:])
            except OSError as exc:
                self.error = self.error or exc
                return done
            if not written:
                return done
            done += written
        return done

    def read(self, size: int = -1) -> bytes:
        try:
            return bytes(self._raw.read(size))
        except OSError as exc:
            self.error = self.error or exc
            return b""

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        try:
            return int(self._raw.seek(offset, whence))
        except OSError as exc:
            self.error = self.error or exc
            return int(self._raw.tell())

    def tell(self) -> int:
        return int(self._raw.tell())


def _output_error(exc: OSError, path: Path) -> OutputError:
    """The operating system's reason for a failed write, as a message that says what to do."""
    code = exc.errno
    folder = path.parent
    if code == errno.ENOSPC:
        text = f"{path}: the disk is full (no space left on device); free some space or write to another folder"
    elif code == errno.EDQUOT:
        text = f"{path}: the disk quota is exceeded; free some space or write to another folder"
    elif code == errno.EFBIG:
        text = (
            f"{path}: the file is larger than this file system or a size limit allows; write to another "
            "folder or choose a smaller format (flac, mp3)"
        )
    elif code in (errno.EACCES, errno.EPERM):
        text = f"{folder}: permission denied, stems cannot be written here; choose a folder you can write to"
    elif code == errno.EROFS:
        text = f"{folder}: is on a read-only file system; choose another output folder"
    elif code in (errno.ENOTDIR, errno.EEXIST):
        text = f"{folder}: a part of this path is a file, not a folder; move the file or choose another folder"
    elif code == errno.EISDIR:
        text = f"{path}: is a folder, so the stem cannot be written there; remove it or change the template"
    elif code == errno.ENAMETOOLONG:
        text = f"{path}: the file name is too long for this file system; shorten the template or the folder"
    else:
        reason = exc.strerror or type(exc).__name__
        text = f"{path}: could not be written ({reason}); check the folder and the disk"
    return OutputError(text, path=str(path))


def write_audio_atomic(
    path: Path, array: FloatArray, sample_rate: int, fmt: str = "wav", *, settings: OutputSettings | None = None
) -> Path:
    """Write (channels, frames) audio to ``path`` atomically (one block)."""
    return write_blocks_atomic(path, [array], sample_rate, array.shape[0], fmt, settings=settings)


def write_blocks_atomic(
    path: Path,
    blocks: Iterable[FloatArray],
    sample_rate: int,
    channels: int,
    fmt: str = "wav",
    *,
    settings: OutputSettings | None = None,
) -> Path:
    """Write audio that arrives as (channels, n) blocks to ``path`` atomically, one block in memory at a time.

    ``settings`` (of format ``fmt``) choose the bit depth or the MP3 bit rate; the blocks are written as they
    come (at ``sample_rate``: resampling, gain and clip handling are the caller's). A block with NaN or
    infinite samples abandons the write (:class:`NonFiniteAudioError`: nothing is written); a file-system
    failure is an :class:`OutputError` naming the file, with nothing left behind either.
    """
    from stemkit.output import check_encoder

    ext = str(fmt).lower().lstrip(".")
    output_format(ext)
    chosen = settings if settings is not None and settings.format == ext else OutputSettings(ext)
    check_encoder(ext, sample_rate, channels, settings=chosen)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _output_error(exc, path) from exc
    remove_stale_parts(path.parent)
    tmp = part_path(path)
    guard: _GuardedFile | None = None
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        with os.fdopen(fd, "w+b", buffering=0) as raw:
            guard = _GuardedFile(raw)
            with sf.SoundFile(
                guard, "w", samplerate=sample_rate, channels=channels, format=chosen.major, subtype=chosen.subtype,
                **chosen.encoder_options(sample_rate),
            ) as fh:  # fmt: skip
                _write(fh, blocks, path, ext, warn=not chosen.holds_overs)
            if guard.error is not None:  # a failure while libsndfile finished the header on close
                raise guard.error
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if not isinstance(exc, Exception):
            raise  # interrupted or cancelled: nothing to explain
        # libsndfile reports a failed write as a bare "system error"; the file object kept the real one.
        reason = guard.error if guard is not None and guard.error is not None else exc
        if isinstance(reason, OSError):
            raise _output_error(reason, path) from exc
        if isinstance(exc, sf.LibsndfileError):
            reason_text = exc.error_string or str(exc)
            raise OutputError(f"{path}: the {ext} encoder failed ({reason_text}); try wav", path=str(path)) from exc
        raise
    return path


def _write(fh: sf.SoundFile, blocks: Iterable[FloatArray], path: Path, fmt: str, *, warn: bool) -> None:
    """Write the blocks; ``warn`` once when a sample above full scale reaches a format that clips it (only
    with ``clip="none"``: the other clip modes never let one through)."""
    warned = not warn
    for block in blocks:
        finite = np.isfinite(block)
        if not finite.all():
            raise NonFiniteAudioError(path, int(finite.size - np.count_nonzero(finite)))
        data = np.ascontiguousarray(block.T)
        if not warned and data.size:
            peak = float(np.max(np.abs(data)))
            if peak > 1.0:
                warned = True
                warnings.warn(
                    f"{path.name}: peak {peak:.2f} exceeds full scale and will clip in {fmt}; "
                    "save with clip='rescale' (or 'clamp'), or as 32-bit float wav to keep it",
                    stacklevel=4,
                )
        fh.write(data)
