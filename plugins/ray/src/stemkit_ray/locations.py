"""Where inputs, outputs and the manifest live: local paths (seen by every node: a shared file system) or
fsspec URLs (``s3://``, ``gs://``, ``file://``, …), read and written the same way by the driver and workers.

Everything here keeps stemkit's rules: a missing, empty or unreadable input is an :class:`InputError` naming
it; a file is written under a temporary name and renamed (or, on an object store, put whole: an object is
never visible half-written), so no reader ever sees half a stem.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stemkit.audio import max_input_bytes
from stemkit.errors import ConfigError, InputError, OutputError
from stemkit.inputs import AUDIO_SUFFIXES, expand_inputs

__all__ = [
    "is_http",
    "is_url",
    "list_inputs",
    "put_files",
    "read_input",
    "remote_join",
    "url_fs",
]

#: Filesystems whose objects appear whole when a put finishes: no temporary name needed.
_OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "r2"})
#: Filesystems that live inside one process: a Ray worker would see an empty one.
_PROCESS_LOCAL = frozenset({"memory"})


def is_http(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def is_url(item: str | Path) -> bool:
    """An fsspec URL (``scheme://…``, not http(s), not a Windows drive letter)."""
    if isinstance(item, Path):
        return False
    scheme = urlsplit(item).scheme
    return len(scheme) > 1 and "://" in item and not is_http(item)


def url_fs(url: str, *, what: str) -> tuple[Any, str]:
    """(fsspec filesystem, path in it) for ``url``; ConfigError naming ``what`` when it cannot be opened."""
    scheme = urlsplit(url).scheme
    if scheme in _PROCESS_LOCAL:
        raise ConfigError(
            f"{what}: {url} is a {scheme}:// filesystem, private to each process, so Ray's workers cannot see it; "
            "use a shared location (s3://, gs://, a file:// path every node mounts)"
        )
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise ConfigError(f"{what}: {url} needs its fsspec filesystem package ({exc}); install it") from exc
    except ValueError as exc:
        raise ConfigError(f"{what}: {url} cannot be opened ({exc})") from exc
    return fs, str(path)


def remote_join(base: str, relative: str) -> str:
    return f"{base.rstrip('/')}/{relative.lstrip('/')}"


def list_inputs(given: Sequence[str | Path]) -> list[str | Path]:
    """Files, folders and URLs → one entry per audio file: local ones as ``expand_inputs`` gives them (Paths),
    http(s) URLs as given, and fsspec URLs with folders listed (recursively, sorted, audio suffixes only)."""
    out: list[str | Path] = []
    local: list[str | Path] = []

    def flush() -> None:
        if local:
            out.extend(expand_inputs(local))
            local.clear()

    for item in given:
        if isinstance(item, str) and is_url(item):
            flush()
            out.extend(_list_url(item))
        else:
            local.append(item)
    flush()
    if not out:
        raise InputError("no input given; name audio files or folders")
    return out


def _list_url(url: str) -> list[str]:
    fs, path = url_fs(url, what="input")
    scheme = urlsplit(url).scheme
    try:
        if not fs.exists(path):
            raise InputError(f"{url}: no such file or folder; check the URL")
        if not fs.isdir(path):
            return [url]
        found = sorted(p for p in fs.find(path) if Path(p).suffix.lower() in AUDIO_SUFFIXES)
    except OSError as exc:
        raise InputError(f"{url}: cannot be listed ({exc}); check the URL and your credentials") from exc
    if not found:
        raise InputError(f"{url}: folder holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
    return [fs.unstrip_protocol(p) if scheme != "file" else f"file://{p}" for p in found]


def read_input(item: str) -> bytes:
    """The bytes of one input file (a local path or an fsspec URL), bounded by stemkit's input size limit."""
    limit = max_input_bytes()
    if is_url(item):
        fs, path = url_fs(item, what="input")
        try:
            size = fs.size(path)
            if size is not None and size > limit:
                raise InputError(f"{item}: {size} bytes is over stemkit's input limit of {limit} bytes")
            data = bytes(fs.cat_file(path))
        except FileNotFoundError:
            raise InputError(f"{item}: no such file; check the URL") from None
        except IsADirectoryError:
            raise InputError(f"{item}: is a directory; give an audio file") from None
        except PermissionError:
            raise InputError(f"{item}: permission denied; check your credentials for it") from None
        except OSError as exc:
            raise InputError(f"{item}: cannot be read ({exc})") from exc
    else:
        local = Path(item)
        try:
            if local.is_dir():
                raise InputError(f"{local}: is a directory; give an audio file")
            size = local.stat().st_size
            if size > limit:
                raise InputError(f"{local}: {size} bytes is over stemkit's input limit of {limit} bytes")
            data = local.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{local}: no such file; check the path") from None
        except PermissionError:
            raise InputError(f"{local}: permission denied; check the file's permissions") from None
        except OSError as exc:
            raise InputError(f"{local}: cannot be read ({exc.strerror or exc})") from exc
    if not data:
        raise InputError(f"{item}: the file is empty (0 bytes)")
    return data


@contextlib.contextmanager
def scratch_folder(prefix: str) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix=f"stemkit-ray-{prefix}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def put_files(files: Iterable[tuple[Path, str]], *, what: str) -> None:
    """Copy local files to fsspec URLs, each appearing whole or not at all: an object store's put is atomic;
    anywhere else the file goes to a hidden temporary name and is then moved into place."""
    for local, url in files:
        fs, path = url_fs(url, what=what)
        scheme = urlsplit(url).scheme
        try:
            parent = path.rsplit("/", 1)[0]
            if scheme not in _OBJECT_STORES:
                fs.makedirs(parent, exist_ok=True)
                name = path.rsplit("/", 1)[-1]
                part = f"{parent}/.{name}.stemkit-{os.getpid()}-{uuid.uuid4().hex[:8]}.part"
                try:
                    fs.put_file(str(local), part)
                    fs.mv(part, path)
                finally:
                    with contextlib.suppress(OSError):
                        if fs.exists(part):
                            fs.rm_file(part)
            else:
                fs.put_file(str(local), path)
        except OSError as exc:
            raise OutputError(f"{url}: could not be written ({exc}); check the location and your credentials",
                              path=url) from exc  # fmt: skip
