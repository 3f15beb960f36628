"""The job ledger: every hosted job stemkit submits, recorded before and after submission, so that work a
provider already holds (and bills for) is never lost and never submitted twice.

SQLite, in the cache folder (``$STEMKIT_CACHE_DIR/ledger.sqlite3``, else the user cache folder), in WAL mode
with a busy timeout: any number of processes on one machine share it, each change one short transaction.

A hosted job's lifecycle calls it at three points::

    entry = ledger.begin(request)              # before submitting: BEGIN IMMEDIATE, so two processes with
    if entry.resumable:                        # the same request get the same row
        poll(entry.job_id)                     # a job submitted before (the process died): resume it
    else:
        job = submit(idempotency_key=entry.idempotency_key)   # the same key as any earlier, unconfirmed try
        ledger.submitted(entry.id, job.id)
    ...
    ledger.finished(entry.id, cost)  /  ledger.failed(entry.id, error)  /  ledger.expired(entry.id, reason)

A request is identified like a cache entry (:func:`stemkit.cache.cache_key` of input hash, provider identity
and the stem combination submitted), except that the plugin's version is left out: the job a provider holds
does not change when the client is upgraded, and an upgrade between a crash and the re-run must not submit
(and bill) the job again. Beside it each entry keeps a :class:`ResumeInfo` — the provider's target and
validated options, the stems asked for, the input's shape and local path — so that ``stemkit jobs resume``
can finish the job without the caller (:mod:`stemkit.resuming`), and the provider's own notes (an upload
already made) so that a retried submission sends the same request. Nothing secret is stored: specs are
redacted, option values under secret-looking names are dropped, URLs lose their query strings.

Where: :func:`resolve_ledger` — ``ledger=`` on the API (``False`` turns it off), else ``$STEMKIT_LEDGER``
(``off``, or a file), else ``ledger.sqlite3`` in the cache folder. All methods block briefly on disk; async
code calls them through ``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stemkit.errors import ConfigError, StemkitError
from stemkit.provenance import Cost

if TYPE_CHECKING:
    from stemkit.audio import AudioSource

__all__ = [
    "ENV_LEDGER",
    "JobLedger",
    "JobRequest",
    "JobStatus",
    "LedgerEntry",
    "LedgerWarning",
    "ResumeInfo",
    "default_ledger_path",
    "fitted_piece",
    "resolve_ledger",
    "using_ledger",
]

LEDGER_FILE = "ledger.sqlite3"
ENV_LEDGER = "STEMKIT_LEDGER"
_SCHEMA_VERSION = 2
_OFF = ("off", "0", "false", "no", "none")
_URL = re.compile(r"https?://[^\s'\"<>]+")


class JobStatus(StrEnum):
    """Where a hosted job stands. ``preparing``: recorded, submission not confirmed (it may or may not have
    reached the provider: a retry reuses the idempotency key); ``submitted``: the provider holds it (job id
    known); then ``finished``, ``failed`` or ``expired`` (the provider no longer has its results)."""

    PREPARING = "preparing"
    SUBMITTED = "submitted"
    FINISHED = "finished"
    FAILED = "failed"
    EXPIRED = "expired"


OPEN = (JobStatus.PREPARING, JobStatus.SUBMITTED)
CLOSED = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.EXPIRED)


@dataclass(frozen=True)
class JobRequest:
    """What is about to be submitted: enough to recognise the identical request later."""

    provider: str
    spec: str
    input_sha256: str
    stems: tuple[str, ...] | None = None
    identity: Mapping[str, Any] | None = None
    input_name: str | None = None
    input_duration: float | None = None
    resume: ResumeInfo | None = None

    @property
    def key(self) -> str:
        """The cache key of (input, provider identity without its version, combination submitted)."""
        from stemkit.cache.key import cache_key

        identity = {k: v for k, v in (self.identity or {"spec": self.spec}).items() if k != "version"}
        return cache_key(self.input_sha256, identity, self.stems)

    @classmethod
    def for_separator(
        cls,
        separator: Any,
        *,
        input_sha256: str,
        stems: Iterable[str] | None,
        options: Mapping[str, Any] | None = None,
        input_name: str | None = None,
        input_duration: float | None = None,
        resume: ResumeInfo | None = None,
    ) -> JobRequest:
        """The request a separator is about to submit (``stems``: the combination sent to the provider)."""
        from stemkit.cache.key import separator_identity

        return cls(
            provider=str(separator.name),
            spec=str(separator.spec),
            input_sha256=input_sha256,
            stems=tuple(stems) if stems is not None else None,
            identity=separator_identity(separator, options),
            input_name=input_name,
            input_duration=input_duration,
            resume=resume,
        )


@dataclass(frozen=True)
class ResumeInfo:
    """What finishing a job needs besides the provider's job id, recorded when it is submitted.

    ``target`` and ``options`` rebuild the provider (validated options that differ from their defaults, no
    secret); ``requested`` are the stems the caller asked for (None: the provider's default set), from which
    the result is derived and cached under the original request's key. The input is described by its kind,
    local path (when it was a file), shape and size: the stems come from the provider, so a job can be
    finished without the input unless a requested stem is derived from the mixture. A job that carried one
    piece of a fitted input (``piece``/``pieces``) is finished by running the whole original request again
    (``parent_path``), whose other pieces are resumed or cached alike.
    """

    options: Mapping[str, Any] = field(default_factory=dict)
    target: str | None = None
    requested: tuple[str, ...] | None = None
    input_kind: str = "file"
    input_path: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    frames: int | None = None
    size_bytes: int | None = None
    suffix: str | None = None
    parent_path: str | None = None
    parent_sha256: str | None = None
    parent_name: str | None = None
    piece: int | None = None
    pieces: int | None = None
    fit: str | None = None

    @property
    def fitted(self) -> bool:
        """This job carried a piece (or a transcoded copy) of the caller's input, not the input itself."""
        return self.pieces is not None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if v is not None}
        out["options"] = dict(self.options)
        if self.requested is not None:
            out["requested"] = list(self.requested)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResumeInfo:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("requested") is not None:
            values["requested"] = tuple(values["requested"])
        values["options"] = dict(values.get("options") or {})
        return cls(**values)

    @classmethod
    def describe(
        cls,
        source: AudioSource,
        *,
        options: Mapping[str, Any],
        target: str | None,
        requested: Iterable[str] | None,
    ) -> ResumeInfo:
        """The record of a job about to be submitted for ``source`` (a fitted piece's parent, from the context
        :func:`fitted_piece` sets)."""
        from stemkit.config import is_secret_key

        local = not source.is_remote
        parent = _PIECE.get()
        return cls(
            options={k: v for k, v in options.items() if not is_secret_key(k)},
            target=target,
            requested=tuple(requested) if requested is not None else None,
            input_kind=source.kind,
            input_path=str(Path(source.path).resolve()) if source.kind == "file" and parent is None else None,
            sample_rate=source.sample_rate if local else None,
            channels=source.channels if local else None,
            frames=source.frames if local else None,
            size_bytes=source.size_bytes if local else None,
            suffix=source.suffix if local else None,
            parent_path=parent.path if parent else None,
            parent_sha256=parent.sha256 if parent else None,
            parent_name=parent.name if parent else None,
            piece=parent.index if parent else None,
            pieces=parent.count if parent else None,
            fit=parent.mode if parent else None,
        )


@dataclass(frozen=True)
class _Piece:
    path: str | None
    sha256: str
    name: str
    index: int
    count: int
    mode: str


_PIECE: ContextVar[_Piece | None] = ContextVar("stemkit_fitted_piece", default=None)


@contextlib.contextmanager
def fitted_piece(source: AudioSource, index: int, count: int, mode: str) -> Iterator[None]:
    """Within the block, hosted jobs carry piece ``index`` of ``count`` of ``source`` fitted (``mode``) to a
    provider — what :mod:`stemkit.compose.fit` says around each piece — so their ledger entries name the
    original input, which finishing any of them needs."""
    path = str(Path(source.path).resolve()) if source.kind == "file" else None
    token = _PIECE.set(_Piece(path, source.sha256, source.name, index, count, mode))
    try:
        yield
    finally:
        _PIECE.reset(token)


@dataclass(frozen=True)
class LedgerEntry:
    """One row: a request and what became of its job."""

    id: int
    request_key: str
    provider: str
    spec: str
    input_sha256: str
    input_name: str | None
    input_duration: float | None
    stems: tuple[str, ...] | None
    idempotency_key: str
    job_id: str | None
    status: JobStatus
    created: float
    updated: float
    submitted: float | None = None
    finished: float | None = None
    cost: Cost | None = None
    error: str | None = None
    error_class: str | None = None
    attempts: int = 1
    #: what finishing the job needs besides its id (None for entries written before stemkit recorded it)
    resume: ResumeInfo | None = None
    #: the provider's own notes from an earlier try (an upload already made), to send the same request again
    notes: Mapping[str, Any] = field(default_factory=dict)
    #: True when :meth:`JobLedger.begin` found this row from an earlier try rather than creating it
    reused: bool = False

    @property
    def resumable(self) -> bool:
        """The provider holds this job: poll it and download its stems instead of submitting again."""
        return self.status is JobStatus.SUBMITTED and self.job_id is not None

    @property
    def pending(self) -> bool:
        return self.status in OPEN

    def age(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.created

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "provider": self.provider,
            "spec": self.spec,
            "input": self.input_name,
            "input_sha256": self.input_sha256,
            "input_duration": self.input_duration,
            "stems": list(self.stems) if self.stems is not None else None,
            "job_id": self.job_id,
            "idempotency_key": self.idempotency_key,
            "created": self.created,
            "submitted": self.submitted,
            "finished": self.finished,
            "updated": self.updated,
            "cost": self.cost.to_dict() if self.cost else None,
            "error": self.error,
            "error_class": self.error_class,
            "attempts": self.attempts,
            "requested": list(self.resume.requested) if self.resume and self.resume.requested else None,
            "input_path": self.resume.input_path if self.resume else None,
        }


def default_ledger_path() -> Path:
    """``ledger.sqlite3`` in the cache folder; beside the user cache folder when the cache is remote."""
    from stemkit.cache.policy import default_location

    location = default_location()
    if "://" in location and not location.startswith("file://"):
        import platformdirs

        return Path(platformdirs.user_cache_dir("stemkit", appauthor=False)) / LEDGER_FILE
    return Path(location.removeprefix("file://")).expanduser() / LEDGER_FILE


_COLUMNS = (
    "id, request_key, provider, spec, input_sha256, input_name, input_duration, stems, idempotency_key, job_id, "
    "status, created, updated, submitted, finished, cost_amount, cost_unit, error, error_class, attempts, "
    "resume, notes"
)


class JobLedger:
    """The ledger in one SQLite file (``JobLedger()``: the default location). Safe across threads and
    processes: every call opens its own connection and commits one transaction."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path) if path is not None else default_ledger_path()
        self.busy_timeout = busy_timeout
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._prepare()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"job ledger: {self.path} is not a usable SQLite file ({exc}); move it aside") from exc
        except OSError as exc:
            raise ConfigError(f"job ledger: cannot create {self.path} ({exc.strerror}); set STEMKIT_CACHE_DIR") from exc

    def __repr__(self) -> str:
        return f"JobLedger({str(self.path)!r})"

    def _prepare(self) -> None:
        """WAL mode and the schema. Switching a new file to WAL can answer "database is locked" at once, without
        waiting for the busy timeout, while another process does the same: such an answer is tried again until
        the busy timeout has passed."""
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.005
        while True:
            try:
                with self._connect() as db:
                    db.execute("PRAGMA journal_mode=WAL")
                    self._migrate(db)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)  # another process holds the lock for a moment; nothing to wait on but time
            pause = min(pause * 2, 0.2)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            db.execute("PRAGMA synchronous=NORMAL")
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE): check-then-insert cannot interleave."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == _SCHEMA_VERSION:
            return
        if version > _SCHEMA_VERSION:
            raise ConfigError("job ledger: written by a newer stemkit; upgrade stemkit to read it")
        if version == 1:  # stemkit 0.1's first ledger: add what resuming needs (its entries have none of it)
            db.executescript(
                """
                BEGIN IMMEDIATE;
                ALTER TABLE jobs ADD COLUMN resume TEXT;
                ALTER TABLE jobs ADD COLUMN notes TEXT;
                PRAGMA user_version = 2;
                COMMIT;
                """
            )
            return
        db.executescript(
            """
            BEGIN IMMEDIATE;
            CREATE TABLE IF NOT EXISTS jobs (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                request_key TEXT NOT NULL,
                provider TEXT NOT NULL,
                spec TEXT NOT NULL,
                input_sha256 TEXT NOT NULL,
                input_name TEXT,
                input_duration REAL,
                stems TEXT,
                idempotency_key TEXT NOT NULL,
                job_id TEXT,
                status TEXT NOT NULL,
                created REAL NOT NULL,
                updated REAL NOT NULL,
                submitted REAL,
                finished REAL,
                cost_amount REAL,
                cost_unit TEXT,
                error TEXT,
                error_class TEXT,
                attempts INTEGER NOT NULL DEFAULT 1,
                resume TEXT,
                notes TEXT
            );
            CREATE INDEX IF NOT EXISTS jobs_request ON jobs (request_key, status);
            CREATE INDEX IF NOT EXISTS jobs_job_id ON jobs (provider, job_id);
            CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created);
            PRAGMA user_version = 2;
            COMMIT;
            """
        )

    # -- the three points of a hosted job's life ----------------------------------------------------------------
    def begin(self, request: JobRequest, *, resume_within: float | None = None) -> LedgerEntry:
        """Before submitting: the open entry of an identical earlier request (``reused``; resume it when
        ``resumable``, else submit again with its idempotency key), or a new entry with a fresh key.

        An open entry older than ``resume_within`` seconds (the provider's result retention, when it has one)
        is marked expired and a new one is made.
        """
        from stemkit.cache.entry import input_label

        now = time.time()
        key = request.key
        with self._write() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE request_key = ? AND status IN (?, ?) ORDER BY id DESC LIMIT 1",
                (key, *[s.value for s in OPEN]),
            ).fetchone()
            if row is not None:
                found = _entry(row)
                if resume_within is None or now - (found.submitted or found.created) <= resume_within:
                    db.execute("UPDATE jobs SET attempts = attempts + 1, updated = ? WHERE id = ?", (now, found.id))
                    return _replace(found, attempts=found.attempts + 1, updated=now, reused=True)
                db.execute(
                    "UPDATE jobs SET status = ?, error = ?, updated = ?, finished = ? WHERE id = ?",
                    (JobStatus.EXPIRED.value, f"not resumed: older than {resume_within:g} s", now, now, found.id),
                )
            resume = json.dumps(request.resume.to_dict(), default=str) if request.resume is not None else None
            cursor = db.execute(
                "INSERT INTO jobs (request_key, provider, spec, input_sha256, input_name, input_duration, stems, "
                "idempotency_key, status, created, updated, resume) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key, request.provider, request.spec, request.input_sha256, input_label(request.input_name),
                    request.input_duration, ",".join(request.stems) if request.stems is not None else None,
                    uuid.uuid4().hex, JobStatus.PREPARING.value, now, now, resume,
                ),
            )  # fmt: skip
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (cursor.lastrowid,)).fetchone()
        return _entry(row)

    def lookup(self, request: JobRequest) -> LedgerEntry | None:
        """The open entry :meth:`begin` would find for ``request``, without changing anything (a dry run)."""
        with self._connect() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE request_key = ? AND status IN (?, ?) ORDER BY id DESC LIMIT 1",
                (request.key, *[s.value for s in OPEN]),
            ).fetchone()
        return _entry(row) if row is not None else None

    def note(self, entry_id: int, **values: Any) -> LedgerEntry:
        """Keep the provider's own notes on the entry (merged with earlier ones), e.g. the key of an upload
        already made, so that a retried submission sends the same request. JSON values; nothing secret."""
        with self._write() as db:
            row = db.execute("SELECT notes FROM jobs WHERE id = ?", (entry_id,)).fetchone()
            if row is None:
                raise StemkitError(f"job ledger: no entry {entry_id} in {self.path}")
            merged = {**_json_object(row[0]), **values}
            db.execute("UPDATE jobs SET notes = ?, updated = ? WHERE id = ?",
                       (json.dumps(merged, default=str), time.time(), entry_id))  # fmt: skip
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (entry_id,)).fetchone()
        return _entry(row)

    def discard(self, entry_id: int) -> bool:
        """Remove an entry that never reached the provider (refused before submission: a budget, a bad key).
        Only a ``preparing`` entry created by this try can go; True when it went."""
        with self._write() as db:
            cursor = db.execute(
                "DELETE FROM jobs WHERE id = ? AND status = ? AND attempts = 1 AND job_id IS NULL",
                (entry_id, JobStatus.PREPARING.value),
            )
        return cursor.rowcount > 0

    def submitted(self, entry_id: int, job_id: str) -> LedgerEntry:
        """After the provider accepted the job: its id (what a later run resumes)."""
        now = time.time()
        return self._update(entry_id, status=JobStatus.SUBMITTED, job_id=str(job_id), submitted=now, updated=now)

    def finished(self, entry_id: int, cost: Cost | None = None) -> LedgerEntry:
        """The stems are downloaded: what the job cost, when the provider says."""
        now = time.time()
        return self._update(entry_id, status=JobStatus.FINISHED, cost_amount=cost.amount if cost else None,
                            cost_unit=cost.unit if cost else None, finished=now, updated=now)  # fmt: skip

    def failed(self, entry_id: int, error: BaseException | str) -> LedgerEntry:
        """The job failed at the provider (or could not be submitted): never resumed."""
        return self._close(entry_id, JobStatus.FAILED, error)

    def expired(self, entry_id: int, reason: BaseException | str = "the provider no longer has the job") -> LedgerEntry:
        """The provider dropped the job or its results: never resumed; the next identical request submits anew."""
        return self._close(entry_id, JobStatus.EXPIRED, reason)

    def _close(self, entry_id: int, status: JobStatus, error: BaseException | str) -> LedgerEntry:
        now = time.time()
        error_class = type(error).__name__ if isinstance(error, BaseException) else None
        return self._update(entry_id, status=status, error=_scrub_message(str(error)), error_class=error_class,
                            finished=now, updated=now)  # fmt: skip

    def _update(self, entry_id: int, **fields: Any) -> LedgerEntry:
        values = {k: (v.value if isinstance(v, JobStatus) else v) for k, v in fields.items()}
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self._write() as db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*values.values(), entry_id))
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            raise StemkitError(f"job ledger: no entry {entry_id} in {self.path}")
        return _entry(row)

    # -- reading --------------------------------------------------------------------------------------------
    def get(self, entry_id: int) -> LedgerEntry | None:
        with self._connect() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (entry_id,)).fetchone()
        return _entry(row) if row is not None else None

    def find(self, job_id: str, *, provider: str | None = None) -> LedgerEntry | None:
        """The entry of a provider's job id (e.g. from a ``SeparationTimeout``), newest first."""
        query = f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?"
        args: list[Any] = [job_id]
        if provider is not None:
            query += " AND provider = ?"
            args.append(provider)
        with self._connect() as db:
            row = db.execute(query + " ORDER BY id DESC LIMIT 1", args).fetchone()
        return _entry(row) if row is not None else None

    def entries(
        self,
        *,
        status: JobStatus | str | Iterable[JobStatus | str] | None = None,
        provider: str | None = None,
        limit: int | None = None,
    ) -> list[LedgerEntry]:
        """Entries, newest first, optionally of some statuses and one provider."""
        query = f"SELECT {_COLUMNS} FROM jobs"
        clauses: list[str] = []
        args: list[Any] = []
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            names = [JobStatus(s).value for s in wanted]
            clauses.append(f"status IN ({', '.join('?' for _ in names)})")
            args.extend(names)
        if provider is not None:
            clauses.append("provider = ?")
            args.append(provider)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY id DESC"
        if limit is not None:
            query += " LIMIT ?"
            args.append(int(limit))
        with self._connect() as db:
            return [_entry(row) for row in db.execute(query, args).fetchall()]

    def pending(self, *, provider: str | None = None) -> list[LedgerEntry]:
        """Jobs not finished, failed or expired: what ``stemkit jobs resume`` would pick up."""
        return self.entries(status=OPEN, provider=provider)


def _replace(entry: LedgerEntry, **changes: Any) -> LedgerEntry:
    from dataclasses import replace

    return replace(entry, **changes)


def _json_object(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _entry(row: tuple[Any, ...]) -> LedgerEntry:
    (id_, key, provider, spec, sha, name, duration, stems, idem, job_id, status, created, updated, submitted,
     finished, cost_amount, cost_unit, error, error_class, attempts, resume, notes) = row  # fmt: skip
    record = _json_object(resume)
    return LedgerEntry(
        id=int(id_),
        request_key=key,
        provider=provider,
        spec=spec,
        input_sha256=sha,
        input_name=name,
        input_duration=duration,
        stems=tuple(stems.split(",")) if stems else None,
        idempotency_key=idem,
        job_id=job_id,
        status=JobStatus(status),
        created=created,
        updated=updated,
        submitted=submitted,
        finished=finished,
        cost=Cost(cost_amount, cost_unit) if cost_amount is not None and cost_unit is not None else None,
        error=error,
        error_class=error_class,
        attempts=int(attempts),
        resume=ResumeInfo.from_dict(record) if record else None,
        notes=_json_object(notes),
    )


def _scrub_message(text: str) -> str:
    from stemkit.cache.entry import scrub_text

    return _URL.sub(lambda m: scrub_text(m.group(0)), text)[:2000]


# -- which ledger: the ``ledger=`` setting ------------------------------------------------------------------------
class LedgerWarning(UserWarning):
    """The job ledger could not be used (an unwritable cache folder, a damaged file): the separation goes on
    without it, so a job in flight is not protected against being submitted again if the process dies."""


_SETTING: ContextVar[Any] = ContextVar("stemkit_ledger", default=None)
_OPENED: dict[Path, JobLedger] = {}
_OPENED_LOCK = threading.Lock()


@contextlib.contextmanager
def using_ledger(setting: Any) -> Iterator[None]:
    """Within the block (and the tasks it starts), hosted jobs use the ledger ``setting`` names (see
    :func:`resolve_ledger`; ``None`` leaves the choice to the environment). What ``ledger=`` on
    ``separate``/``separate_many``/``resume`` sets, on the event loop that runs the call."""
    token = _SETTING.set(setting)
    try:
        yield
    finally:
        _SETTING.reset(token)


def current_setting() -> Any:
    return _SETTING.get()


def resolve_ledger(setting: Any = None) -> JobLedger | None:
    """The ledger a hosted job records itself in, or None (turned off, or unusable: a :class:`LedgerWarning`).

    ``setting``: ``False`` (off), a :class:`JobLedger`, a file path, or ``None``/``True`` — then
    ``$STEMKIT_LEDGER`` (``off``, or a file), else ``ledger.sqlite3`` in the cache folder. A ledger asked for
    by name that cannot be opened is a :class:`~stemkit.errors.ConfigError`; the default one only warns: the
    ledger must never be why a separation fails.
    """
    if setting is False:
        return None
    if isinstance(setting, JobLedger):
        return setting
    if isinstance(setting, str | os.PathLike):
        return _open(Path(setting), explicit=True)
    if setting not in (None, True):
        raise ConfigError(f"ledger: {setting!r} is not a ledger setting; use False, a file path or a JobLedger")
    configured = os.environ.get(ENV_LEDGER, "").strip()
    if configured.lower() in _OFF:
        return None
    if configured:
        return _open(Path(configured).expanduser(), explicit=True)
    try:
        path = default_ledger_path()
    except ConfigError as exc:
        warnings.warn(f"stemkit job ledger: {exc}; hosted jobs are not recorded", LedgerWarning, stacklevel=3)
        return None
    return _open(path, explicit=False)


def _open(path: Path, *, explicit: bool) -> JobLedger | None:
    with _OPENED_LOCK:  # held while opening: two threads of this process never prepare one file at once
        found = _OPENED.get(path)
        if found is not None and found.path.exists():
            return found
        try:
            ledger = JobLedger(path)
        except ConfigError as exc:
            if explicit:
                raise
            warnings.warn(f"stemkit {exc}; hosted jobs are not recorded", LedgerWarning, stacklevel=4)
            return None
        _OPENED[path] = ledger
    return ledger
