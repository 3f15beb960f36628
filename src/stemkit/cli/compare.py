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


def _labelled(providers: list[str] | None, labels: list[str]) -> dict[str, str] | list[str]:
    """``-p`` specs plus ``--label NAME=SPEC``: a label names the listed provider with that spec, or adds it."""
    specs = list(providers or [])
    if not labels:
        return specs or ["dsp"]
    from stemkit.config import parse_chain, render_chain

    def canonical(spec: str) -> str:
        return render_chain(parse_chain(spec))

    named: dict[str, str] = {}
    for item in labels:
        name, sep, spec = item.partition("=")
        if not sep or not name.strip() or not spec.strip():
            raise ConfigError(f"--label {item}: write NAME=SPEC, e.g. --label fast=dsp")
        if name.strip() in named:
            raise ConfigError(f"--label {item}: the label {name.strip()!r} is given twice")
        named[name.strip()] = spec.strip()
    by_spec = {canonical(spec): label for label, spec in named.items()}
    out: dict[str, str] = {}
    from stemkit.evaluate.labels import short_labels

    automatic = short_labels(specs)
    for spec, auto in zip(specs, automatic, strict=True):
        label = by_spec.pop(canonical(spec), auto)
        out[label] = spec
    for spec, label in by_spec.items():
        out[label] = spec
    return out


def compare_command(
    inputs: list[str] = typer.Argument(
        None, metavar="INPUT...", help="Audio files or folders; with --musdb and no input, every track's mixture."
    ),
    providers: list[str] = typer.Option(
        None, "-p", "--provider", metavar="SPEC",
        help="A provider spec to compare (repeat: -p dsp -p 'ezstems?stems=4'). Default: dsp."
    ),
    labels: list[str] = typer.Option(
        [], "--label", metavar="NAME=SPEC",
        help="NAME=SPEC: show the provider SPEC as NAME (adds it if not given with -p); repeatable."
    ),
    references: Path | None = typer.Option(
        None, "--references", metavar="DIR",
        help="Reference stems: a stem folder for one input, or a MUSDB18-HQ layout."
    ),
    musdb: Path | None = typer.Option(
        None, "--musdb", metavar="DIR", help="A MUSDB18-HQ root (train/ and test/ track folders)."
    ),
    metrics: str | None = typer.Option(
        None,
        "--metrics",
        metavar="METRICS",
        help="Comma-separated: sdr, si-sdr, bss (against references); consistency, agreement, consensus, leakage, "
        "peak, clipped, loudness, activity, or indicators for all of these (no references needed).",
    ),
    stems: str | None = typer.Option(
        None, "--stems", metavar="STEMS", help="Stems to score, e.g. vocals,drums (default: all it can)."
    ),
    reports: list[Path] = typer.Option(
        [], "--report", metavar="FILE",
        help="Write the report: out.html (with players), .png, .json, .csv or .md (repeatable)."
    ),
    excerpt: str | None = typer.Option(
        None, "--excerpt", metavar="START:END",
        help="START:END seconds the HTML report plays (default: the busiest 20 s)."
    ),
    cache: Path | None = typer.Option(
        None, "--cache", metavar="DIR", help="Keep separations in this folder, so a re-run bills no provider twice."
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
    from stemkit.evaluate.listening import parse_excerpt

    if references is not None and musdb is not None:
        raise ConfigError("--references and --musdb both given; use one (both name the reference folder)")
    for target in reports:
        if target.suffix.lower() not in {".html", ".png", ".json", ".csv", ".md"}:
            raise ConfigError(f"--report {target}: unknown format; use .html, .png, .json, .csv or .md")
    html = any(t.suffix.lower() == ".html" for t in reports)
    if excerpt is not None:
        parse_excerpt(excerpt)  # a bad range fails before any separation
        if not html:
            raise ConfigError("--excerpt: only the HTML report plays an excerpt; add --report NAME.html")
    given = list(providers or []) + [label.partition("=")[2] for label in labels]
    members = [p for p in given if p.strip() not in ("mixture", "oracle") and not p.strip().startswith("oracle?")]
    if fit_ensemble and ((references is None and musdb is None) or len(members) < 2):
        raise ConfigError("--fit-ensemble needs --references (or --musdb) and at least two providers (-p A -p B)")
    with _Bar() as bar:
        report = compare(
            inputs or None,
            _labelled(providers, labels),
            references=references if references is not None else musdb,
            metrics=metrics,
            stems=stems,
            baselines=not no_baselines,
            cache=cache,
            progress=bar.report,
            excerpt=(excerpt or "auto") if html else None,
        )
    console.print(report.table(width=max(80, console.width)), end="")
    for target in reports:
        written = report.save(target)
        size = written.stat().st_size
        err_console.print(f"report: {written} ({size / 1e6:.1f} MB)" if size > 1e5 else f"report: {written}")
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
