"""``stemkit separate INPUT...``: separate files into stems on disk, several at a time."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from stemkit.cli._console import console, err_console, print_error
from stemkit.protocol import ProgressCallback, ProgressEvent

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
    output: str = typer.Option(
        "separated", "-o", "--output", help="Output folder (with --engine ray, also an fsspec URL: s3://…)."
    ),
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
    engine: str = typer.Option(
        "local", "--engine", help="Where the batch runs: local (this process) or an engine plugin, e.g. ray."
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", metavar="ADDR", help="With --engine ray: the cluster ('auto', 'ray://head:10001')."
    ),
) -> int:
    """Separate each input into stems under the output folder; exit 1 if any input failed.

    Results of providers that cost money are cached (see `stemkit cache info`): a re-run pays nothing twice.

    \f
    Where and how the stems will be written is checked first: a template typo or an unwritable folder is
    exit 2 before anything is separated (or billed).
    """
    from stemkit.batch import separate_many
    from stemkit.cache.policy import cli_cache

    cache = cli_cache(cache_dir, no_cache)
    engine_options = _engine_options(engine, ray_address)

    bar = _bar() if engine == "local" else None  # an engine shows its own progress (one bar for the run)
    rows: list[tuple[str, str, str, str]] = []
    failures = 0
    with bar if bar is not None else _Quiet():
        outcomes = separate_many(
            inputs, provider, stems=stems, concurrency=jobs, output_dir=output, format=fmt, template=template,
            progress=_reporter(bar), timeout=timeout, cache=cache, engine=engine, engine_options=engine_options,
        )
        for item in outcomes:
            if item.error is not None:
                failures += 1
                print_error(item.error, about=str(item.input))
                rows.append((str(item.input), "-", f"{item.seconds:.1f}", f"failed: {item.error}"))
                continue
            for folder in sorted({p.parent for p in item.paths.values()}):
                files = ", ".join(p.name for p in item.paths.values() if p.parent == folder)
                console.print(f"{item.input} -> {folder}/ ({files})")
            cached = item.result is not None and item.result.provenance.cache is not None
            outcome = "ok (cached)" if cached else "ok"
            rows.append((str(item.input), item.provider or "-", f"{item.seconds:.1f}", outcome))
    if len(rows) > 1:
        table = Table("file", "provider", "seconds", "result")
        for row in rows:
            table.add_row(*row)
        err_console.print(table)
    return 1 if failures else 0


def _engine_options(engine: str, ray_address: str | None) -> dict[str, str] | None:
    from stemkit.errors import ConfigError

    if ray_address is None:
        return None
    if engine != "ray":
        raise ConfigError(f"--ray-address is for --engine ray (this run uses --engine {engine})")
    return {"address": ray_address}


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
