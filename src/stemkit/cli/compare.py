"""``stemkit compare INPUT... -p A -p B``: score providers against references (or each other)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import typer

from stemkit.cli._console import console, err_console, print_error
from stemkit.errors import ConfigError, StemkitError
from stemkit.protocol import ProgressEvent

# Where each stage of a separation sits on its bar (the rest of the bar is the stage's own fraction).
_STAGES = {
    "prepare": (0.0, 0.05),
    "upload": (0.05, 0.15),
    "queued": (0.15, 0.2),
    "processing": (0.2, 0.85),
    "separate": (0.05, 0.9),
    "download": (0.85, 0.95),
    "write": (0.9, 0.98),
    "done": (1.0, 1.0),
}


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)


def compare_command(
    inputs: list[str] = typer.Argument(
        None, help="Audio files or folders; with --musdb and no input, every track's mixture."
    ),
    providers: list[str] = typer.Option(
        ["dsp"], "-p", "--provider", help="A provider spec to compare (repeat: -p dsp -p 'ezstems?stems=4')."
    ),
    references: Path | None = typer.Option(
        None, "--references", help="Reference stems: a stem folder for one input, or a MUSDB18-HQ layout."
    ),
    musdb: Path | None = typer.Option(None, "--musdb", help="A MUSDB18-HQ root (train/ and test/ track folders)."),
    metrics: str | None = typer.Option(
        None, "--metrics", help="Comma-separated: sdr, si-sdr, bss, consistency, agreement."
    ),
    stems: str | None = typer.Option(None, "--stems", help="Stems to request and score, e.g. vocals,drums."),
    reports: list[Path] = typer.Option(
        [], "--report", help="Write the report: out.html, .png, .json, .csv or .md (repeatable)."
    ),
    cache: Path | None = typer.Option(
        None, "--cache", help="Keep separations in this folder, so a re-run bills no provider twice."
    ),
    no_baselines: bool = typer.Option(
        False, "--no-baselines", help="Leave out the mixture and oracle baselines added with references."
    ),
    fit_ensemble: bool = typer.Option(
        False, "--fit-ensemble",
        help="Also fit mean-ensemble weights of the providers on the references and print the spec that scores "
        "best (in-sample).",
    ),
) -> int:
    """Separate each input with every provider, score the stems, and print the table."""
    from stemkit.evaluate.comparison import compare

    if references is not None and musdb is not None:
        raise ConfigError("--references and --musdb both given; use one (both name the reference folder)")
    for target in reports:
        if target.suffix.lower() not in {".html", ".png", ".json", ".csv", ".md"}:
            raise ConfigError(f"--report {target}: unknown format; use .html, .png, .json, .csv or .md")
    members = [p for p in providers if p.strip() not in ("mixture", "oracle") and not p.strip().startswith("oracle?")]
    if fit_ensemble and ((references is None and musdb is None) or len(members) < 2):
        raise ConfigError("--fit-ensemble needs --references (or --musdb) and at least two providers (-p A -p B)")
    with _Bar() as bar:
        report = compare(
            inputs or None,
            providers,
            references=references if references is not None else musdb,
            metrics=metrics,
            stems=stems,
            baselines=not no_baselines,
            cache=cache,
            progress=bar.report,
        )
    console.print(report.table(width=max(80, console.width)), end="")
    for target in reports:
        written = report.save(target)
        err_console.print(f"report: {written}")
    for run in report.failures:
        print_error(StemkitError(f"{run.provider} failed on {run.track}: {run.error_class}: {run.error}"))
    if fit_ensemble:
        from stemkit.compose.fit_weights import fit_ensemble as fit

        reference_root = references if references is not None else musdb
        assert reference_root is not None
        fitted = fit(inputs or None, members, references=reference_root, stems=stems, cache=report.cache)
        console.print(fitted.table(), markup=False, highlight=False)
    return 1 if report.failures else 0


class _Bar:
    """A rich progress bar per (input, provider) on a terminal; nothing when stderr is not one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[tuple[str, str], object] = {}
        self._progress = None
        if sys.stderr.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[stage]}"),
                TimeElapsedColumn(),
                console=err_console,
                transient=True,
            )

    def __enter__(self) -> _Bar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def report(self, event: ProgressEvent) -> None:
        progress = self._progress
        if progress is None:
            return
        key = (event.input_name or "", event.provider)
        with self._lock:
            task = self._tasks.get(key)
            if task is None:
                task = progress.add_task(f"{key[0]} · {key[1]}", total=1.0, stage="")
                self._tasks[key] = task
        low, high = _STAGES.get(event.stage, (0.0, 0.0))
        value = low + (high - low) * (event.fraction or 0.0)
        stage = event.message if event.stage == "done" and event.message else event.stage
        progress.update(task, completed=value, stage=stage)  # type: ignore[arg-type]
