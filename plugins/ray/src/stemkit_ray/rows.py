"""One song's row as it flows through the pipeline, and the error it may carry.

Every stage returns every column (Ray Data blocks want one schema), so a row that failed early passes the
later stages unchanged, its large columns emptied. Audio travels as raw float32 bytes with its shape beside it:
plain Arrow binary columns, whatever the song's length, and read back without a copy.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np

from stemkit.errors import StemkitError

__all__ = ["EMPTY", "audio_array", "carry_error", "error_of", "new_row", "stems_array"]

#: column → its value in a row that does not have it (yet)
EMPTY: Mapping[str, Any] = {
    "index": 0,
    "input": "",
    "name": "",
    "sha256": "",
    "size": 0,
    "data": b"",  # the input file's bytes (a hosted provider uploads them)
    "audio": b"",  # the decoded input, float32 (channels, frames) (a local provider separates it)
    "sample_rate": 0,
    "channels": 0,
    "frames": 0,
    "stems": b"",  # the separated stems, float32 (stems, channels, frames)
    "stem_info": "[]",  # JSON: per stem its name, the provider's name for it, derived, complement_of
    "provenance": "",  # JSON: Provenance.to_dict()
    "paths": "{}",  # JSON: stem → where it was written (a path or a URL)
    "worker": "",
    "seconds": 0.0,
    "error": b"",  # the pickled StemkitError
    "error_class": "",
    "error_message": "",
}


def new_row(index: int, item: str, name: str) -> dict[str, Any]:
    return {**EMPTY, "index": index, "input": item, "name": name}


def carry_error(row: dict[str, Any], exc: StemkitError) -> dict[str, Any]:
    """``row`` failed with ``exc``: its large columns emptied, the error kept (pickled, and as text)."""
    try:
        blob = pickle.dumps(exc)
    except Exception:  # an error holding something unpicklable: its class and message still travel
        blob = b""
    return {**row, "data": b"", "audio": b"", "stems": b"", "error": blob,
            "error_class": type(exc).__name__, "error_message": str(exc)}  # fmt: skip


def error_of(row: Mapping[str, Any]) -> StemkitError | None:
    """The error a row carries, as the exception the worker raised (a StemkitError, rebuilt by class name and
    message when it could not be pickled)."""
    if not row["error_class"]:
        return None
    blob = row["error"]
    if blob:
        try:
            exc = pickle.loads(bytes(blob))
        except Exception:
            exc = None
        if isinstance(exc, StemkitError):
            return exc
    import stemkit.errors

    cls = getattr(stemkit.errors, str(row["error_class"]), None)
    if isinstance(cls, type) and issubclass(cls, StemkitError):
        try:
            return cls(str(row["error_message"]))
        except TypeError:
            pass
    return StemkitError(f"{row['error_class']}: {row['error_message']}")


def audio_array(row: Mapping[str, Any]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The decoded input as a read-only float32 (channels, frames) view of the row's bytes."""
    array = np.frombuffer(row["audio"], dtype=np.float32).reshape(int(row["channels"]), int(row["frames"]))
    return array


def stems_array(row: Mapping[str, Any]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The stems as a read-only float32 (stems, channels, frames) view of the row's bytes."""
    count = len(json.loads(row["stem_info"]))
    return np.frombuffer(row["stems"], dtype=np.float32).reshape(count, int(row["channels"]), int(row["frames"]))
