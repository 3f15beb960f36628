"""``stemkit jobs list``: the hosted jobs in the job ledger — pending, finished, failed — with their cost."""

from __future__ import annotations

import json
import time

import typer
from rich.table import Table

from stemkit.cli._console import console
from stemkit.cli._units import human_age
from stemkit.errors import ConfigError

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
