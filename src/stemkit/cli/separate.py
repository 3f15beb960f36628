"""``stemkit separate INPUT...``: separate files into stems on disk, several at a time."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
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
    inputs: list[str] = typer.Argument(
        ..., metavar="INPUT...", help="Audio files, folders of audio files, or http(s) URLs."
    ),
    provider: str | None = typer.Option(
        None, "-p", "--provider", metavar="SPEC",
        help="Provider spec or chain, e.g. 'dsp' or 'stemsplit?quality=best | dsp'.",
    ),
    stems: str | None = typer.Option(
        None, "--stems", metavar="STEMS", help="Comma-separated stems, e.g. vocals,instrumental."
    ),
    output: str = typer.Option(
        "separated", "-o", "--output", metavar="DIR",
        help="Output folder (with --engine ray, also an fsspec URL: s3://…).",
    ),
    fmt: str = typer.Option("wav", "--format", metavar="wav|flac|mp3", help="Output format."),
    template: str = typer.Option(
        "{input}/{stem}.{ext}", "--template", metavar="TEMPLATE",
        help="File name template: {input} {stem} {ext} {provider} {model}.",
    ),
    bit_depth: int | None = typer.Option(
        None, "--bit-depth", metavar="16|24|32",
        help="wav: 16, 24 or 32 (float, the default); flac: 16 or 24 (the default).",
    ),
    bitrate: int | None = typer.Option(
        None, "--bitrate", metavar="KBPS", help="mp3: a constant bit rate in kbps (default 320)."
    ),
    vbr_quality: float | None = typer.Option(
        None, "--vbr-quality", metavar="0-9", help="mp3: a variable bit rate, LAME's -V (0 best, 9 smallest)."
    ),
    clip: str = typer.Option(
        "auto", "--clip", metavar="MODE",
        help="Samples above full scale: rescale (the whole set by one gain), clamp, none, or auto (rescale for "
        "formats that would clip; float wav is kept exact).",
    ),
    normalize: str | None = typer.Option(
        None, "--normalize", metavar="MODE",
        help="Scale each set by one gain: peak (to -1 dBFS), peak:DBFS, loudness (the mixture to -14 LUFS) or "
        "loudness:LUFS.",
    ),
    sample_rate: int | None = typer.Option(
        None, "--sample-rate", metavar="HZ", help="Write the stems at this sample rate (default: the input's)."
    ),
    offset: str | None = typer.Option(
        None, "--offset", metavar="TIME", help="Separate from this point: seconds or [HH:]MM:SS."
    ),
    duration: str | None = typer.Option(
        None, "--duration", metavar="TIME", help="Separate only this long: seconds or [HH:]MM:SS."
    ),
    jobs: int = typer.Option(1, "-j", "--jobs", metavar="N", min=1, help="How many inputs to separate at once."),
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
    engine: str = typer.Option(
        "local", "--engine", metavar="NAME",
        help="Where the batch runs: local (this process) or an engine plugin, e.g. ray.",
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", metavar="ADDR", help="With --engine ray: the cluster ('auto', 'ray://head:10001')."
    ),
) -> int:
    """Separate each input into stems under the output folder; exit 1 if any input failed.

    Results of providers that cost money are cached (see `stemkit cache info`) and hosted jobs are
    recorded in the job ledger (`stemkit jobs list`): a re-run pays nothing twice, and a killed run
    started again redoes only what is unfinished. --dry-run prints the plan and its estimated cost;
    --max-cost refuses a run over budget.

    \f
    Where and how the stems will be written is checked first: a template typo, an unwritable folder or an
    output setting the encoder refuses is exit 2 before anything is separated (or billed).
    """
    from stemkit.batch import separate_many
    from stemkit.cache.policy import cli_cache
    from stemkit.cli._plan import print_summary

    cache = cli_cache(cache_dir, no_cache)
    ledger = False if no_ledger else None
    engine_options = _engine_options(engine, ray_address)
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

    bar = _bar() if engine == "local" else None  # an engine shows its own progress (one bar for the run)
    say = _results_printer(bar)
    rows: list[tuple[str, str, str, str]] = []
    done: list[BatchItem] = []
    failures = 0
    with bar if bar is not None else _Quiet():
        outcomes = separate_many(
            inputs, provider, stems=stems, concurrency=jobs, output_dir=output, format=fmt, template=template,
            bit_depth=bit_depth, bitrate=bitrate, vbr_quality=vbr_quality, clip=clip, normalize=normalize,
            output_sample_rate=sample_rate, offset=offset, duration=duration, progress=_reporter(bar),
            timeout=timeout, cache=cache, max_cost=max_cost, ledger=ledger, engine=engine,
            engine_options=engine_options,
        )  # fmt: skip
        for item in outcomes:
            done.append(item)
            if item.error is not None:
                failures += 1
                print_error(item.error, about=str(item.input))
                rows.append((str(item.input), "-", f"{item.seconds:.1f}", f"failed: {item.error}"))
                continue
            for line in _success_lines(item):
                say(line)
            outcome = {"cached": "ok (cached)", "resumed": "ok (resumed)"}.get(item.origin or "", "ok")
            rows.append((str(item.input), item.provider or "-", f"{item.seconds:.1f}", outcome))
    if len(rows) > 1:
        table = Table("file", "provider", "seconds", "result")
        for row in rows:
            table.add_row(*row)
        err_console.print(table)
    print_summary(done)
    return 1 if failures else 0


def _success_lines(item: BatchItem) -> list[str]:
    """``song.wav -> out/song/ (vocals.wav, drums.wav) by dsp (stemsplit failed)``: where the stems are, which
    provider made them (a fallback is visible), and what saving did to their level."""
    result = item.result
    by = ""
    if result is not None:
        detours = [f"{a.provider} {a.outcome}" for a in result.provenance.attempts if a.outcome != "ok"]
        notes = [*detours, *(["cached"] if result.provenance.cache is not None else [])]
        by = f" by {result.provenance.spec or result.provider}" + (f" ({', '.join(notes)})" if notes else "")
    levels = getattr(item.paths, "levels", None)
    if levels is not None and levels.gain != 1.0:
        by += f"; {', '.join(levels.reasons)} ({levels.gain_db:+.1f} dB)"
    lines = []
    for folder in sorted({p.parent for p in item.paths.values()}):
        files = ", ".join(p.name for p in item.paths.values() if p.parent == folder)
        lines.append(f"{item.input} -> {folder}/ ({files}){by}")
    return lines


def _results_printer(bar: Progress | None) -> Callable[[str], None]:
    """Where a result line goes. On a terminal that also shows the progress bars, through the bars' own
    console: it prints above them, never glued to a bar nor erased by the next redraw. Otherwise (stdout
    redirected, or no bars) plainly to stdout, where scripts read it."""
    if bar is not None and sys.stdout.isatty():
        return lambda line: bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
    return lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True)


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
        console=err_console, redirect_stdout=False, redirect_stderr=False,
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
