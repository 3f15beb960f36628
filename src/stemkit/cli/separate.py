"""``stemkit separate INPUT...``: separate files into stems on disk, several at a time."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from stemkit.cli._console import console, err_console, print_error
from stemkit.protocol import ProgressCallback, ProgressEvent

if TYPE_CHECKING:
    from stemkit.batch import BatchItem

# Where each stage sits on a file's bar, so hosted (upload/queue/download) and local runs both move smoothly.
_STAGE_SPAN = {
    "prepare": (0.0, 0.02), "upload": (0.02, 0.15), "queued": (0.15, 0.2), "processing": (0.2, 0.85),
    "separate": (0.05, 0.95), "download": (0.85, 0.95), "write": (0.95, 1.0), "done": (1.0, 1.0),
}


def register(app: typer.Typer) -> None:
    app.command("separate")(separate_command)


def separate_command(
    inputs: list[str] = typer.Argument(..., help="Audio files, folders of audio files, or http(s) URLs."),
    provider: str | None = typer.Option(
        None, "-p", "--provider", help="Provider spec or chain, e.g. 'dsp' or 'stemsplit?quality=best | dsp'."
    ),
    stems: str | None = typer.Option(None, "--stems", help="Comma-separated stems, e.g. vocals,instrumental."),
    output: Path = typer.Option(Path("separated"), "-o", "--output", help="Output folder."),
    fmt: str = typer.Option("wav", "--format", help="wav, flac or mp3."),
    template: str = typer.Option(
        "{input}/{stem}.{ext}", "--template", help="File name template: {input} {stem} {ext} {provider}."
    ),
    jobs: int = typer.Option(1, "-j", "--jobs", help="How many inputs to separate at once."),
    timeout: float | None = typer.Option(
        None, "--timeout", metavar="SECONDS",
        help="Give up on an input after this many seconds (hosted providers default to 30 min + 2x its length).",
    ),
    cache_dir: str | None = typer.Option(
        None, "--cache", metavar="DIR", help="Cache every provider's results in this folder or fsspec URL."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Use no result cache (not even for paid providers)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the plan and estimated cost per input; separate nothing, bill nothing."
    ),
    max_cost: str | None = typer.Option(
        None, "--max-cost", metavar="AMOUNT",
        help="Refuse the run if its estimated cost exceeds this, e.g. 600 (in the provider's unit), "
        "'600 seconds' or '10 jobs'.",
    ),
    no_ledger: bool = typer.Option(
        False, "--no-ledger", help="Do not record hosted jobs in the job ledger (a killed run then cannot resume them)."
    ),
) -> int:
    """Separate each input into stems under the output folder; exit 1 if any input failed.

    Results of providers that cost money are cached (see `stemkit cache info`) and hosted jobs are
    recorded in the job ledger (`stemkit jobs list`): a re-run pays nothing twice, and a killed run
    started again redoes only what is unfinished. --dry-run prints the plan and its estimated cost;
    --max-cost refuses a run over budget.

    \f
    Where and how the stems will be written is checked first: a template typo or an unwritable folder is
    exit 2 before anything is separated (or billed).
    """
    from stemkit.batch import separate_many
    from stemkit.cache.policy import cli_cache
    from stemkit.cli._plan import print_summary

    cache = cli_cache(cache_dir, no_cache)
    ledger = False if no_ledger else None
    if dry_run:
        from stemkit.budget import Budget
        from stemkit.cli._plan import print_plan
        from stemkit.cost import estimate

        plan = estimate(inputs, provider, stems=stems, cache=cache, ledger=ledger)
        print_plan(plan)
        budget = Budget.parse(max_cost)
        if budget is not None:
            budget.check(plan, what=f"separating these {len(plan)} input(s)")
        return 0

    bar = _bar()
    rows: list[tuple[str, str, str, str]] = []
    done: list[BatchItem] = []
    failures = 0
    with bar if bar is not None else _Quiet():
        outcomes = separate_many(
            inputs, provider, stems=stems, concurrency=jobs, output_dir=output, format=fmt, template=template,
            progress=_reporter(bar), timeout=timeout, cache=cache, max_cost=max_cost, ledger=ledger,
        )
        for item in outcomes:
            done.append(item)
            if item.error is not None:
                failures += 1
                print_error(item.error, about=str(item.input))
                rows.append((str(item.input), "-", f"{item.seconds:.1f}", f"failed: {item.error}"))
                continue
            for folder in sorted({p.parent for p in item.paths.values()}):
                files = ", ".join(p.name for p in item.paths.values() if p.parent == folder)
                console.print(f"{item.input} -> {folder}/ ({files})")
            outcome = {"cached": "ok (cached)", "resumed": "ok (resumed)"}.get(item.origin or "", "ok")
            rows.append((str(item.input), item.provider or "-", f"{item.seconds:.1f}", outcome))
    if len(rows) > 1:
        table = Table("file", "provider", "seconds", "result")
        for row in rows:
            table.add_row(*row)
        err_console.print(table)
    print_summary(done)
    return 1 if failures else 0


class _Quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _bar() -> Progress | None:
    """A bar per file on a terminal; nothing when stderr is a pipe or a file."""
    if not sys.stderr.isatty():
        return None
    return Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[stage]}"), TimeElapsedColumn(),
        console=err_console,
    )


def _reporter(bar: Progress | None) -> ProgressCallback | None:
    if bar is None:
        return None
    tasks: dict[str, TaskID] = {}
    lock = threading.Lock()

    def report(event: ProgressEvent) -> None:
        key = event.input_name or "?"
        with lock:
            if key not in tasks:
                tasks[key] = bar.add_task(Path(key).name, total=1.0, stage="")
        start, end = _STAGE_SPAN.get(event.stage, (0.0, 0.0))
        done = start + (end - start) * (event.fraction if event.fraction is not None else 0.0)
        label = event.stage if event.queue_position is None else f"queued #{event.queue_position}"
        bar.update(tasks[key], completed=done, stage=label)

    return report
