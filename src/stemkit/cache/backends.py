"""Where cache entries live: a local folder, or any fsspec filesystem (``s3://``, ``gs://``, ``memory://``…).

Both speak the few operations the entry format needs, with the guarantees it relies on:

* ``write_bytes`` replaces a small file atomically (a reader sees the old or the new content, never a mix):
  ``os.replace`` locally; one object PUT on an object store; one buffered write on fsspec's memory filesystem.
* ``put_file`` places a finished local file under a name no other writer uses, so it needs no atomicity.
* ``fetch`` gives the reader a private local copy: a hard link for a local folder (instant, and immune to the
  entry being evicted afterwards), a download otherwise.

``file://`` URLs are served by the local backend: renames there are atomic, fsspec's local writes are not.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stemkit.errors import ConfigError

__all__ = ["Backend", "FileStat", "FsspecBackend", "LocalBackend", "open_backend"]

FSSPEC_HINT = 'install the optional fsspec support with: pip install "stemkit[fsspec]"'


@dataclass(frozen=True)
class FileStat:
    """One stored file: path relative to the cache root (POSIX separators), size in bytes, modification time."""

    path: str
    size: int
    mtime: float


class Backend(abc.ABC):
    """The storage operations an entry needs; paths are relative to the cache root, with ``/``."""

    #: shown to people: a folder path or a URL
    location: str
    #: whether entries persist on their own (False: a throwaway folder removed with the cache)
    local: bool

    @abc.abstractmethod
    def read_bytes(self, rel: str) -> bytes | None:
        """The file's content, or None when it does not exist."""

    @abc.abstractmethod
    def write_bytes(self, rel: str, data: bytes) -> None:
        """Create or replace ``rel`` atomically."""

    @abc.abstractmethod
    def put_file(self, local: Path, rel: str) -> None:
        """Move or upload a finished local file to ``rel`` (a name no other writer uses)."""

    @abc.abstractmethod
    def fetch(self, rel: str, local: Path) -> None:
        """A private local copy of ``rel`` at ``local``; FileNotFoundError when it is gone."""

    @abc.abstractmethod
    def touch(self, rel: str) -> None:
        """Create ``rel`` or bump its modification time (the entry's last use)."""

    @abc.abstractmethod
    def remove(self, rel: str) -> None:
        """Remove a file or a folder tree; nothing there is fine."""

    @abc.abstractmethod
    def walk(self, rel: str) -> Iterator[FileStat]:
        """Every file below ``rel``, recursively."""

    @abc.abstractmethod
    def scratch(self, prefix: str) -> Path:
        """A fresh local folder for staging or reading, on the same file system as the entries when local."""

    def ledger_path(self) -> Path | None:
        """Where the job ledger's SQLite file goes, when the cache is a local folder."""
        return None


def owner_tag() -> str:
    """``host-pid``: who made a scratch folder, so a later prune removes only those of dead processes."""
    host = socket.gethostname().replace("-", "_")[:40] or "host"
    return f"{host}-{os.getpid()}"


def owner_alive(name: str) -> bool | None:
    """For a scratch folder named ``<kind>-<host>-<pid>-<token>``: is its process alive (None: another host)."""
    parts = name.split("-")
    if len(parts) < 4 or not parts[2].isdigit():
        return False
    if parts[1] != socket.gethostname().replace("-", "_")[:40]:
        return None
    try:
        os.kill(int(parts[2]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalBackend(Backend):
    """A folder on this machine (or a mounted network file system)."""

    local = True

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser()
        self.location = str(self.root)
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"cache: {self.root} exists and is not a folder; name a folder for the cache")
        try:
            (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cache: cannot create the cache folder {self.root} ({exc.strerror}); "
                "set STEMKIT_CACHE_DIR or pass cache= a writable folder"
            ) from exc
        tag = self.root / "CACHEDIR.TAG"
        if not tag.exists():
            # The standard marker (https://bford.info/cachedir/) that tells backup tools to skip this folder.
            with contextlib.suppress(OSError):
                tag.write_text(
                    "Signature: 8a477f597d28d172789f06886806bc55\n# stemkit result cache: safe to delete\n",
                    encoding="ascii",
                )

    def _path(self, rel: str) -> Path:
        return self.root.joinpath(*rel.split("/"))

    def read_bytes(self, rel: str) -> bytes | None:
        try:
            return self._path(rel).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def write_bytes(self, rel: str, data: bytes) -> None:
        target = self._path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            with tmp.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    def put_file(self, local: Path, rel: str) -> None:
        target = self._path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(local, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.copyfile(local, target)

    def fetch(self, rel: str, local: Path) -> None:
        source = self._path(rel)
        try:
            os.link(source, local)
        except FileNotFoundError:
            raise
        except OSError:
            shutil.copyfile(source, local)  # a file system without hard links

    def touch(self, rel: str) -> None:
        path = self._path(rel)
        try:
            os.utime(path)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()

    def remove(self, rel: str) -> None:
        path = self._path(rel)
        if path.is_dir() and not path.is_symlink():
            # Rename first so the tree disappears from its name at once; then delete at leisure.
            trash = self.root / "tmp" / f"trash-{owner_tag()}-{uuid.uuid4().hex}"
            try:
                os.rename(path, trash)
            except FileNotFoundError:
                return
            shutil.rmtree(trash, ignore_errors=True)
            return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def walk(self, rel: str) -> Iterator[FileStat]:
        base = self._path(rel)
        stack = [base]
        while stack:
            folder = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for item in entries:
                try:
                    if item.is_dir(follow_symlinks=False):
                        stack.append(Path(item.path))
                        continue
                    st = item.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                relative = Path(item.path).relative_to(self.root).as_posix()
                yield FileStat(relative, st.st_size, st.st_mtime)

    def scratch(self, prefix: str) -> Path:
        folder = self.root / "tmp" / f"{prefix}-{owner_tag()}-{uuid.uuid4().hex}"
        folder.mkdir(parents=True)
        return folder

    def ledger_path(self) -> Path:
        return self.root / "ledger.sqlite3"

    def scratch_folders(self) -> list[tuple[Path, float]]:
        """The staging, reading and trash folders under ``tmp/`` with their modification times."""
        out = []
        with contextlib.suppress(FileNotFoundError):
            for item in os.scandir(self.root / "tmp"):
                if item.is_dir(follow_symlinks=False):
                    with contextlib.suppress(FileNotFoundError):
                        out.append((Path(item.path), item.stat().st_mtime))
        return out


class FsspecBackend(Backend):
    """Any fsspec filesystem, named by URL: a team or a cluster shares one cache (``s3://bucket/stemkit``)."""

    local = False

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        try:
            import fsspec
        except ImportError as exc:
            raise ConfigError(f"cache: {url} is an fsspec URL; {FSSPEC_HINT}") from exc
        try:
            fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"cache: cannot open {url} ({exc}); install the filesystem's fsspec package") from exc
        self.fs: Any = fs
        self.root = str(root).rstrip("/")
        self.location = url

    def _path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def read_bytes(self, rel: str) -> bytes | None:
        try:
            data = self.fs.cat_file(self._path(rel))
        except FileNotFoundError:
            return None
        return bytes(data)

    def write_bytes(self, rel: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(rel), data)

    def put_file(self, local: Path, rel: str) -> None:
        self.fs.put_file(str(local), self._path(rel))

    def fetch(self, rel: str, local: Path) -> None:
        path = self._path(rel)
        if not self.fs.exists(path):
            raise FileNotFoundError(path)
        self.fs.get_file(path, str(local))

    def touch(self, rel: str) -> None:
        self.fs.pipe_file(self._path(rel), str(time.time()).encode())

    def remove(self, rel: str) -> None:
        path = self._path(rel)
        with contextlib.suppress(FileNotFoundError):
            if self.fs.isdir(path):
                self.fs.rm(path, recursive=True)
            elif self.fs.exists(path):
                self.fs.rm_file(path)

    def walk(self, rel: str) -> Iterator[FileStat]:
        base = self._path(rel)
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return
        for path, info in found.items():
            if info.get("type") == "directory":
                continue
            relative = str(path)[len(self.root) :].lstrip("/")
            yield FileStat(relative, int(info.get("size") or 0), _mtime(info))

    def scratch(self, prefix: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"stemkit-cache-{prefix}-"))


def _mtime(info: Mapping[str, Any]) -> float:
    """A file's modification time from fsspec's listing, whatever the filesystem calls it."""
    for name in ("mtime", "LastModified", "last_modified", "updated", "created", "modified"):
        value = info.get(name)
        if value is None:
            continue
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    return 0.0


def open_backend(location: str | Path, storage_options: Mapping[str, Any] | None = None) -> Backend:
    """A backend for a folder, a ``file://`` URL, or any other fsspec URL."""
    if isinstance(location, Path):
        return LocalBackend(location)
    text = location.strip()
    if not text:
        raise ConfigError("cache: the location is empty; name a folder or an fsspec URL")
    scheme = urlsplit(text).scheme
    if len(scheme) > 1 and "://" in text:  # one letter is a Windows drive, not a scheme
        if scheme == "file":
            return LocalBackend(Path(urlsplit(text).path))
        return FsspecBackend(text, storage_options)
    return LocalBackend(Path(text))
