"""``stemkit jobs list|resume``: the hosted jobs in the job ledger — pending, finished, failed — with their cost,
and finishing the pending ones."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from stemkit.cli._console import console, err_console, print_error
from stemkit.cli._units import human_age
from stemkit.errors import ConfigError, StemkitError

if TYPE_CHECKING:
    from stemkit.ledger import JobLedger, LedgerEntry

jobs_app = typer.Typer(no_args_is_help=True, help="Hosted jobs stemkit submitted (the job ledger).")

_GROUPS = {
    "pending": ("preparing", "submitted"),
    "finished": ("finished",),
    "failed": ("failed", "expired"),
}


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")


@jobs_app.command("list")
def list_command(
    status: str | None = typer.Option(
        None, "--status", metavar="STATUS",
        help="Only pending (not finished yet), finished or failed (failed or expired) jobs."
    ),
    provider: str | None = typer.Option(None, "-p", "--provider", metavar="NAME", help="Only this provider's jobs."),
    limit: int = typer.Option(50, "-n", "--limit", metavar="N", help="At most this many, newest first (0: all)."),
    ledger_path: str | None = typer.Option(
        None, "--ledger", metavar="FILE", help="The ledger file (default: ledger.sqlite3 in the cache folder)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Hosted jobs with provider, input, age, status and cost."""
    from stemkit.ledger import JobLedger

    if status is not None and status not in _GROUPS:
        raise ConfigError(f"--status: {status!r} is not one of {', '.join(_GROUPS)}")
    if limit < 0:
        raise ConfigError(f"--limit: {limit} is negative; give a number of jobs, or 0 for all")
    ledger = JobLedger(ledger_path)
    found = ledger.entries(status=_GROUPS[status] if status else None, provider=provider, limit=limit or None)
    if as_json:
        console.print_json(json.dumps([entry.to_dict() for entry in found]))
        return
    if not found:
        console.print(f"no {status + ' ' if status else ''}jobs in {ledger.path}")
        return
    now = time.time()
    table = Table("id", "status", "provider", "input", "age", "cost", "job id")
    for entry in found:
        table.add_row(
            str(entry.id),
            entry.status.value,
            entry.provider,
            entry.input_name or entry.input_sha256[:12],
            human_age(entry.age(now)),
            str(entry.cost) if entry.cost else "-",
            entry.job_id or "-",
        )
    console.print(table)


@jobs_app.command("resume")
def resume_command(
    job: str | None = typer.Argument(
        None, help="A job id (as an error or `stemkit jobs list` names it) or a ledger entry number; default: every "
        "pending job."
    ),
    input_file: Path | None = typer.Option(
        None, "--input", metavar="FILE",
        help="The original input, when the job needs it (never confirmed submitted, a stem derived from the "
        "mixture, a piece of a fitted input) and it is no longer at its recorded path. Only with a JOB.",
    ),
    output: Path | None = typer.Option(None, "-o", "--output", help="Also write the stems under this folder."),
    fmt: str = typer.Option("wav", "--format", help="wav, flac or mp3 (with --output)."),
    template: str = typer.Option(
        "{input}/{stem}.{ext}", "--template", help="File name template (with --output): {input} {stem} {ext}."
    ),
    parallel: int = typer.Option(4, "-j", "--jobs", help="How many jobs to finish at once."),
    timeout: float | None = typer.Option(
        None, "--timeout", metavar="SECONDS", help="Give up on a job after this long."
    ),
    ledger_path: str | None = typer.Option(
        None, "--ledger", metavar="FILE", help="The ledger file (default: ledger.sqlite3 in the cache folder)."
    ),
    cache_dir: str | None = typer.Option(
        None, "--cache", metavar="DIR", help="Store the results in this result cache (default: the default one)."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not store the results in the result cache."),
) -> int:
    """Finish pending hosted jobs: poll each, download its stems and keep them in the result cache.

    The same `stemkit separate` run is then answered from the cache. Exit 1 if any job failed.

    \f
    A job is finished from its ledger record (provider, options, the input's shape): the input file is read
    only when the job needs it.
    """
    from stemkit._portal import run_sync
    from stemkit.cache.policy import cli_cache
    from stemkit.ledger import JobLedger, resolve_ledger
    from stemkit.output import check_output, output_format

    if input_file is not None and job is None:
        raise ConfigError("--input: name the JOB it belongs to (stemkit jobs resume JOB --input FILE)")
    if parallel < 1:
        raise ConfigError(f"--jobs: {parallel} is not a positive number of jobs to finish at once")
    cache = cli_cache(cache_dir, no_cache)
    journal = JobLedger(ledger_path) if ledger_path is not None else resolve_ledger(None)
    if journal is None:
        raise ConfigError("the job ledger is turned off (STEMKIT_LEDGER=off); point --ledger at its file")
    entries = _chosen(journal, job)
    if not entries:
        console.print(f"no pending jobs in {journal.path}")
        return 0
    if output is None:
        output_format(fmt)
    else:
        check_output(output, fmt, template, inputs=[_name(e) for e in entries])
    outcomes = run_sync(_finish_all, journal, entries, input_file, cache, timeout, parallel, output, fmt, template)
    failed = 0
    for entry, outcome in zip(entries, outcomes, strict=True):
        label = f"#{entry.id} {entry.provider} job {entry.job_id or '(unconfirmed)'} {entry.input_name or ''}".rstrip()
        if isinstance(outcome, BaseException):
            failed += 1
            print_error(outcome, about=label)
        else:
            console.print(f"{label}: {outcome}")
    err_console.print(f"{len(entries) - failed} of {len(entries)} job(s) finished")
    return 1 if failed else 0


def _chosen(journal: JobLedger, job: str | None) -> list[LedgerEntry]:
    from stemkit.resuming import find_entry

    if job is not None:
        return [find_entry(journal, job)]
    return list(reversed(journal.pending()))  # oldest first: the order they were submitted in


def _name(entry: LedgerEntry) -> str:
    info = entry.resume
    name = (info.parent_name if info is not None and info.fitted else None) or entry.input_name or str(entry.id)
    return Path(name.split("?", 1)[0]).stem or str(entry.id)


def _group(entry: LedgerEntry) -> tuple[Any, ...] | None:
    """Pieces of one fitted input are finished together (by one run of the whole request)."""
    info = entry.resume
    if info is None or not info.fitted:
        return None
    return (entry.provider, info.parent_sha256, info.requested, json.dumps(dict(info.options), sort_keys=True))


async def _finish_all(
    journal: JobLedger, entries: list[LedgerEntry], input_file: Path | None, cache: Any, timeout: float | None,
    parallel: int, output: Path | None, fmt: str, template: str,
) -> list[str | BaseException]:  # fmt: skip
    import anyio
    import anyio.to_thread

    from stemkit.resuming import aresume

    results: list[str | BaseException] = [""] * len(entries)
    first_of: dict[tuple[Any, ...], int] = {}
    limiter = anyio.CapacityLimiter(parallel)

    async def finish(index: int, entry: LedgerEntry) -> None:
        async with limiter:
            try:
                result = await aresume(entry, audio=input_file, cache=cache, ledger=journal, timeout=timeout)
                try:
                    where = "stored in the result cache" if cache is not False else "done"
                    if output is not None:
                        done = result
                        paths = await anyio.to_thread.run_sync(
                            lambda: done.save(output, format=fmt, template=template, input_name=_name(entry))
                        )
                        where = ", ".join(str(p) for p in paths.values())
                finally:
                    await anyio.to_thread.run_sync(result.close)
                results[index] = f"finished ({where})"
            except StemkitError as exc:
                results[index] = exc

    async with anyio.create_task_group() as group:
        for index, entry in enumerate(entries):
            key = _group(entry)
            if key is not None and key in first_of:
                continue
            if key is not None:
                first_of[key] = index
            group.start_soon(finish, index, entry)
    for index, entry in enumerate(entries):
        key = _group(entry)
        if key is not None and first_of.get(key) != index:
            leader = entries[first_of[key]]
            outcome = results[first_of[key]]
            results[index] = outcome if isinstance(outcome, BaseException) else f"finished with #{leader.id}"
    return results
