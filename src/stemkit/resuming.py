"""Finishing hosted jobs from the job ledger: ``stemkit.resume(job_id)`` and ``stemkit jobs resume``.

A job a provider holds — one a :class:`~stemkit.errors.SeparationTimeout` named, one a killed process left
behind — is finished by running its original request again, through the same code as any separation, with
the hosted lifecycle told which ledger entry to finish (:func:`stemkit.hosted.tracking.resuming`): the job is
polled and its stems downloaded, never submitted again, and the result is normalized, derived and stored in
the result cache under the original request's key, so the same ``separate`` call later is a cache hit.

What it needs, from the entry's :class:`~stemkit.ledger.ResumeInfo`:

* **the provider**: rebuilt from the recorded name, target and options (the API key from the environment or
  ``api_key=``), or the Separator the caller passes;
* **the input — only where the provider needs it.** The stems come from the provider, so a submitted job is
  finished from the recorded hash, name and shape alone (:class:`RecordedInput`: sample rate, channels and
  length, which normalization needs). The input itself is read — from the recorded path when the file is
  still there with the same content, or ``audio=`` — when a requested stem is derived from the mixture, when
  the job was never confirmed submitted (it must be sent again, under the same idempotency key), and when the
  job carried one piece of a fitted input (the whole request is run again; its other pieces are resumed or
  cached alike).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from stemkit._boundary import error_boundary
from stemkit._portal import sync_function
from stemkit.audio import AudioSource, _Info, open_source
from stemkit.config import ProviderSpec
from stemkit.errors import ConfigError, InputError, JobExpiredError, JobFailedError, StemkitError
from stemkit.ledger import JobLedger, JobStatus, LedgerEntry, ResumeInfo, resolve_ledger, using_ledger
from stemkit.protocol import ProgressCallback, Separator
from stemkit.stemset import StemSet

__all__ = ["RecordedInput", "aresume", "find_entry", "resume"]

_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".mp3": "MP3", ".ogg": "OGG", ".aiff": "AIFF", ".aif": "AIFF"}


class RecordedInput(AudioSource):
    """An input known only from its ledger entry: its content hash, name and shape — not its audio.

    Enough to finish a job whose stems come from the provider: normalization needs the input's rate, length
    and channel count, the cache key its hash. Reading its audio (a stem derived from the mixture, a job that
    must be sent again) is an :class:`~stemkit.errors.InputError` saying which file to give.
    """

    def __init__(self, entry: LedgerEntry) -> None:
        info = entry.resume or ResumeInfo()
        super().__init__(info.input_kind if info.input_kind in ("url", "youtube") else "file",  # type: ignore[arg-type]
                         name=entry.input_name or f"input {entry.input_sha256[:12]}")  # fmt: skip
        self._sha256 = entry.input_sha256
        self._entry = entry
        self._size = info.size_bytes
        self._recorded_suffix = info.suffix
        if not self.is_remote:
            if info.sample_rate is None or info.channels is None or info.frames is None:
                raise ConfigError(
                    f"job ledger entry {entry.id} does not record its input's shape; give the input (audio=, or "
                    "--input), or run the same separation again: it resumes the job"
                )
            self._info = _Info(info.sample_rate, info.channels, info.frames, _FORMATS.get(info.suffix or "", "WAV"))

    def _missing(self, why: str) -> InputError:
        entry = self._entry
        where = entry.resume.input_path if entry.resume and entry.resume.input_path else None
        found = f" (it was {where}, which is gone or has changed)" if where else ""
        return InputError(
            f"{self.name}: {why}, and the input is not available{found}; give the original file "
            f"(stemkit.resume(..., audio=FILE), or `stemkit jobs resume {entry.id} --input FILE`)"
        )

    @property
    def path(self) -> Path:
        raise self._missing("the job must be sent to the provider again (its submission was never confirmed)")

    def read(self) -> Any:
        raise self._missing("a requested stem is derived from the mixture")

    def iter_blocks(self, blocksize: int) -> Any:
        raise self._missing("a requested stem is derived from the mixture")

    @property
    def size_bytes(self) -> int:
        return int(self._size or 0)

    @property
    def suffix(self) -> str:
        return self._recorded_suffix or ".wav"

    def __repr__(self) -> str:
        return f"RecordedInput({self.name!r}, entry {self._entry.id})"


def find_entry(ledger: JobLedger, job: str | int | LedgerEntry, *, provider: str | None = None) -> LedgerEntry:
    """The ledger entry of ``job``: a provider's job id (as a SeparationTimeout names it), an entry id (an int,
    or ``#12`` / ``12`` as ``stemkit jobs list`` shows it), or an entry itself."""
    if isinstance(job, LedgerEntry):
        return job
    found: LedgerEntry | None = None
    if isinstance(job, int) and not isinstance(job, bool):
        found = ledger.get(job)
    elif isinstance(job, str) and job.strip():
        text = job.strip()
        found = ledger.find(text, provider=provider)
        if found is None and text.lstrip("#").isdigit():
            found = ledger.get(int(text.lstrip("#")))
    else:
        raise ConfigError(f"resume: {job!r} is not a job id; give the provider's job id or a ledger entry number")
    if found is None or (provider is not None and found.provider != provider):
        raise ConfigError(
            f"resume: no job {job} in the job ledger {ledger.path}; `stemkit jobs list` shows the jobs it records"
        )
    return found


async def aresume(
    job: str | int | LedgerEntry,
    *,
    provider: Any = None,
    audio: Any = None,
    progress: ProgressCallback | None = None,
    timeout: float | None = None,
    cache: Any = None,
    ledger: Any = None,
    api_key: str | None = None,
    **provider_kwargs: Any,
) -> StemSet:
    """Finish a hosted job that stemkit submitted and return its StemSet (see the module docstring).

    ``job`` is the provider's job id (``SeparationTimeout.job_id``) or a ledger entry number. ``provider``
    (optional) is the Separator or spec to finish it with; by default the recorded provider and options are
    loaded, with ``api_key`` or its environment variable and ``provider_kwargs`` for its constructor.
    ``audio`` is the original input, needed only in the cases the module docstring lists. ``cache`` is the
    result cache the result is stored in (as ``cache=`` on ``separate``), ``ledger`` the job ledger to read.

    A job that failed or expired at the provider is not resumable: separate the input again.
    """
    with error_boundary():
        journal = await anyio.to_thread.run_sync(resolve_ledger, ledger)
        if journal is None:
            raise ConfigError("resume: the job ledger is turned off (ledger=False or STEMKIT_LEDGER=off); resuming "
                              "reads it")  # fmt: skip
        named = getattr(getattr(provider, "inner", provider), "name", None) if provider is not None else None
        entry = await anyio.to_thread.run_sync(lambda: find_entry(journal, job, provider=named))
        info = _resumable(entry)
        separator, owned = await anyio.to_thread.run_sync(lambda: _separator(entry, info, provider, cache, api_key,
                                                                            provider_kwargs))  # fmt: skip
        try:
            from stemkit.hosted.tracking import resuming

            given = await anyio.to_thread.run_sync(lambda: _input(entry, info, audio))
            extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
            with using_ledger(journal), resuming(journal, entry):
                result = await separator.aseparate(given, stems=info.requested, progress=progress, **extra)
            if result.provenance.cache is not None:  # finished and cached meanwhile (another process): done
                await anyio.to_thread.run_sync(lambda: journal.finished(entry.id))
            return result
        finally:
            if owned:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(separator.close)


resume = sync_function(
    aresume,
    """Finish a hosted job from the job ledger (by its job id or entry number) and return its StemSet, stored
    in the result cache under the original request's key. This is :func:`aresume`, run from synchronous code.
    """,
)


def _resumable(entry: LedgerEntry) -> ResumeInfo:
    label = entry.job_id or f"entry {entry.id}"
    if entry.status is JobStatus.FAILED:
        raise JobFailedError(f"job {label} failed at {entry.provider} ({entry.error or 'no reason recorded'}); it "
                             "cannot be resumed: separate the input again", job_id=entry.job_id,
                             provider=entry.provider)  # fmt: skip
    if entry.status is JobStatus.EXPIRED:
        raise JobExpiredError(f"job {label} expired ({entry.error or 'the provider no longer has it'}); it cannot "
                              "be resumed: separate the input again", job_id=entry.job_id,
                              provider=entry.provider)  # fmt: skip
    if entry.status is JobStatus.FINISHED:
        raise ConfigError(f"job {label} is finished already; its result is in the result cache (the same separate "
                          "call answers from it)")  # fmt: skip
    if entry.resume is None:
        raise ConfigError(f"job {label} was recorded by an older stemkit, without what resuming needs; run the same "
                          "separation again: it finds and resumes the job")  # fmt: skip
    return entry.resume


def _separator(
    entry: LedgerEntry, info: ResumeInfo, provider: Any, cache: Any, api_key: str | None, kwargs: dict[str, Any]
) -> tuple[Separator, bool]:
    """(the separator to finish the job with, whether it is ours to close)."""
    from stemkit.api import load, load_one
    from stemkit.cache import apply_cache

    if provider is not None and not isinstance(provider, str | ProviderSpec):
        return apply_cache(provider, cache, owned=False), False
    if provider is not None:
        loaded = load(provider, cache=cache, **({"api_key": api_key} if api_key else {}), **kwargs)
        return loaded, True
    options = dict(info.options)
    if info.fitted and info.fit is not None:
        options["fit"] = info.fit
    spec = ProviderSpec(entry.provider, info.target, options)
    if api_key is not None:
        kwargs = {**kwargs, "api_key": api_key}
    return load_one(spec, cache=cache, **kwargs), True


def _input(entry: LedgerEntry, info: ResumeInfo, audio: Any) -> Any:
    """The input to finish ``entry`` with: the caller's, the recorded file (when unchanged), or its record."""
    expected = info.parent_sha256 if info.fitted else entry.input_sha256
    if audio is not None:
        source = open_source(audio)
        if source.sha256 != expected:
            if source is not audio:
                source.close()
            raise InputError(
                f"{source.name}: not the input job {entry.job_id or entry.id} was submitted for (its content "
                f"differs from {info.parent_name if info.fitted else entry.input_name}); give the original file"
            )
        return source
    recorded = info.parent_path if info.fitted else info.input_path
    if recorded is not None and os.path.isfile(recorded):
        try:
            source = open_source(recorded)
            if source.sha256 == expected:
                return source
            source.close()
        except StemkitError:
            pass
    if info.fitted:
        raise InputError(
            f"{info.parent_name or entry.input_name}: job {entry.job_id or entry.id} carried piece "
            f"{(info.piece or 0) + 1} of {info.pieces} of this input fitted to {entry.provider}, and finishing it "
            "runs the whole request again, which needs the input; it is not at its recorded path any more. Give the "
            f"original file: `stemkit jobs resume {entry.id} --input FILE` (or separate it again: every piece "
            "already submitted is resumed)"
        )
    return RecordedInput(entry)
