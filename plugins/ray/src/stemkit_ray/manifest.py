"""The run's manifest: one row per input (what ran, what was written, what it cost, what went wrong, where),
written by the driver as songs finish and put in place, whole, when the run ends.

JSON Lines (``manifest.jsonl``, one object per line) or Parquet (``manifest.parquet``, row groups of
:data:`ROW_GROUP` rows), chosen by the name's suffix. Rows are streamed to a hidden temporary file beside the
target (a local folder) or in a scratch folder (an fsspec URL), flushed as they come, so a run of any length
holds a row group at most; the finished file is renamed (or put) into place. A run that stops early leaves no
manifest and removes its temporary file.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from stemkit.errors import ConfigError, OutputError
from stemkit_ray.locations import is_url, put_files, scratch_folder

__all__ = ["FIELDS", "ROW_GROUP", "ManifestWriter"]

#: The columns, in order: the input, the outcome, the provider that ran, the stems written (stem → path or
#: URL), the cost and its unit, seconds of work, the error's class and message, the worker, the content hash.
FIELDS = ("input", "name", "status", "provider", "stems", "cost", "cost_unit", "seconds", "error_class",
          "error_message", "worker", "sha256")  # fmt: skip
ROW_GROUP = 1000
_SUFFIXES = (".jsonl", ".parquet")


class ManifestWriter:
    """Streams rows to ``target`` (a local path or an fsspec URL): :meth:`add` each, then :meth:`commit`."""

    def __init__(self, target: str | Path) -> None:
        text = str(target)
        suffix = Path(text.split("?", 1)[0]).suffix.lower()
        if suffix not in _SUFFIXES:
            raise ConfigError(f"manifest: {text} must end in .jsonl or .parquet (the format is chosen by it)")
        self.target = text
        self.parquet = suffix == ".parquet"
        self._remote = isinstance(target, str) and is_url(target)
        self._scratch = scratch_folder("manifest") if self._remote else None
        if self._scratch is not None:
            folder = self._scratch.__enter__()
            self._part = folder / Path(text).name
        else:
            local = Path(text)
            try:
                local.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"{local.parent}: the manifest cannot be written there ({exc})") from exc
            self._part = local.parent / f".{local.name}.stemkit-{os.getpid()}-{uuid.uuid4().hex[:8]}.part"
        self._rows: list[dict[str, Any]] = []
        self._writer: Any = None
        self._file: IO[str] | None = None
        self.count = 0
        try:
            if not self.parquet:
                self._file = self._part.open("w", encoding="utf-8")
        except OSError as exc:
            self._cleanup()
            raise OutputError(f"{self.target}: the manifest cannot be written ({exc})", path=self.target) from exc

    def add(self, row: Mapping[str, Any]) -> None:
        record = {name: row.get(name) for name in FIELDS}
        self.count += 1
        try:
            if self._file is not None:
                self._file.write(json.dumps(record, default=str) + "\n")
                self._file.flush()
            else:
                self._rows.append(record)
                if len(self._rows) >= ROW_GROUP:
                    self._flush_parquet()
        except OSError as exc:
            raise OutputError(f"{self.target}: the manifest could not be written ({exc})", path=self.target) from exc

    def _flush_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [{**row, "stems": json.dumps(row["stems"] or {})} for row in self._rows]
        table = pa.Table.from_pylist(rows, schema=_schema())
        if self._writer is None:
            self._writer = pq.ParquetWriter(str(self._part), _schema())
        self._writer.write_table(table)
        self._rows.clear()

    def commit(self) -> str:
        """Close the file and put it in place; returns where it is."""
        try:
            if self._file is not None:
                self._file.close()
                self._file = None
            else:
                if self._rows or self._writer is None:
                    self._flush_parquet()
                self._writer.close()
                self._writer = None
            if self._remote:
                put_files([(self._part, self.target)], what="manifest")
            else:
                os.replace(self._part, self.target)
        except OSError as exc:
            raise OutputError(f"{self.target}: the manifest could not be written ({exc})", path=self.target) from exc
        finally:
            self._cleanup()
        return self.target

    def abort(self) -> None:
        """Stop without a manifest (the run did not finish): the temporary file goes."""
        with contextlib.suppress(Exception):
            if self._file is not None:
                self._file.close()
            if self._writer is not None:
                self._writer.close()
        self._cleanup()

    def _cleanup(self) -> None:
        self._file = None
        self._writer = None
        if self._scratch is not None:
            self._scratch.__exit__(None, None, None)
            self._scratch = None
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._part)


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        ("input", pa.string()), ("name", pa.string()), ("status", pa.string()), ("provider", pa.string()),
        ("stems", pa.string()), ("cost", pa.float64()), ("cost_unit", pa.string()), ("seconds", pa.float64()),
        ("error_class", pa.string()), ("error_message", pa.string()), ("worker", pa.string()),
        ("sha256", pa.string()),
    ])  # fmt: skip
