"""``stemkit models``: every model the onnx provider knows (HT-Demucs, UVR's MDX-Net), its published quality, its cache.

Pulling ahead of time is how a machine that runs offline (``STEMKIT_OFFLINE=1``, ``HF_HUB_OFFLINE=1``,
CI, a server without egress) gets its models: pull where there is network, copy the cache, run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from stemkit.cli._console import console, err_console
from stemkit.errors import ConfigError

if TYPE_CHECKING:
    from rich.progress import Progress

    from stemkit_onnx import catalog
    from stemkit_onnx.hub import Precision

Reporter = Callable[[str, int, int | None], None]

app = typer.Typer(
    name="models",
    help="Models of the onnx provider (HT-Demucs and UVR's MDX-Net): list them with their quality, pull one.",
    no_args_is_help=True,
    add_completion=False,
)

PrecisionOpt = Annotated[
    str, typer.Option("--precision", help="HT-Demucs download: fp32 or fp16weights (a ~1.9x smaller download).")
]
CacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        help="Model cache folder (default: the Hugging Face cache for HT-Demucs, ~/.cache/stemkit/uvr-models for "
        "MDX-Net).",
    ),
]


def _precision(value: str) -> Precision:
    if value == "fp32":
        return "fp32"
    if value == "fp16weights":
        return "fp16weights"
    raise ConfigError(f"--precision: {value!r} is not one of fp32, fp16weights")


def _mb(size: int) -> str:
    return f"{size / 1e6:.0f} MB"


def _stems(model: catalog.ModelInfo) -> list[str]:
    sdr = model.score.sdr if model.score else {}
    parts = []
    for stem in model.stems:
        mark = "*" if stem == model.primary else ""
        parts.append(f"{stem}{mark} {sdr[stem]:.1f}" if stem in sdr else f"{stem}{mark}")
    return parts


def _wrap(parts: list[str], width: int) -> str:
    """Join ``parts`` with commas into lines of at most ``width``, breaking only between parts."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += ", " + part
        else:
            if lines:
                lines[-1] += ","
            lines.append(part)
    return "\n".join(lines)


def _size(model: catalog.ModelInfo) -> str:
    size = model.size_bytes
    if size is None:
        return "?"
    return _mb(size) if model.cached else f"~{_mb(size)}"


def _cached(model: catalog.ModelInfo) -> str:
    if model.cached:
        return "yes"
    return "no" if model.cached_files == 0 else f"{model.cached_files}/{len(model.files)}"


@app.command("list")
def list_models(
    precision: PrecisionOpt = "fp32",
    cache_dir: CacheOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every model: its stems with their published SDR, its size, whether it is cached (no network)."""
    from stemkit_onnx import catalog, hub, quality, uvr

    prec = _precision(precision)
    models = catalog.models(precision=prec, cache_dir=cache_dir)
    caches = {"htdemucs": str(hub.cache_root(cache_dir)), "mdx-net": str(uvr.cache_folder(cache_dir))}
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "precision": prec,
                    "caches": caches,
                    "sdr_sources": {key: s.to_dict() for key, s in quality.SOURCES.items()},
                    "models": [m.to_dict() for m in models],
                },
                indent=2,
            )
        )
        return
    rows = [(m.name, _stems(m), _size(m), _cached(m)) for m in models]
    # Fit the terminal: the other columns keep their width, the stems wrap between stems (cell padding: 8).
    fixed = max(len(r[0]) for r in rows) + max(len(r[2]) for r in rows) + len("CACHED") + 8
    longest = max(len(part) for r in rows for part in r[1])
    width = max(longest, console.width - fixed)
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", expand=False)
    table.add_column("MODEL", no_wrap=True)
    table.add_column("STEMS, SDR dB", no_wrap=True)
    table.add_column("SIZE", no_wrap=True, justify="right")
    table.add_column("CACHED", no_wrap=True)
    for name, stems, size, cached in rows:
        table.add_row(name, _wrap(stems, width), size, cached)
    console.print(table)
    tracks = sorted({m.score.tracks for m in models if m.score})
    notes = [
        "* the stem an MDX-Net model estimates; the other is the mixture minus it.",
        f"SDR: median over {tracks[0]}-{tracks[-1]} MUSDB18-HQ tracks, as published in python-audio-separator's "
        "models-scores.json (--json gives each figure's source; none is shown where none is published).",
        f"Caches: HT-Demucs {caches['htdemucs']} (precision {prec}), MDX-Net {caches['mdx-net']}.",
        "Use: stemkit separate song.wav -p onnx:NAME; stemkit models pull NAME fetches one ahead of time.",
    ]
    for line in notes:
        console.print(Text(line, style="dim"), soft_wrap=False)


@app.command("pull")
def pull(
    name: Annotated[str, typer.Argument(help="A model from `stemkit models list`, e.g. htdemucs_ft or Kim_Vocal_2.")],
    precision: PrecisionOpt = "fp32",
    cache_dir: CacheOpt = None,
) -> None:
    """Download a model into the cache (refreshing it), so later runs, even offline, find it."""
    from stemkit_onnx import catalog

    prec = _precision(precision)
    progress = _progress() if err_console.is_terminal else None
    try:
        done = catalog.pull(name, precision=prec, cache_dir=cache_dir, progress=progress[1] if progress else None)
    finally:
        if progress:
            progress[0].stop()
    model = catalog.find(name)
    assert model is not None
    for url, path in done:
        console.print(f"{model.name}: {url} -> {path} ({_mb(path.stat().st_size)})", soft_wrap=True)


def _progress() -> tuple[Progress, Reporter]:
    """A transfer bar on stderr (terminals only) and the callback that feeds it."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   console=err_console, transient=True)
    tasks: dict[str, TaskID] = {}

    def update(filename: str, done: int, total: int | None) -> None:
        if filename not in tasks:
            bar.start()
            tasks[filename] = bar.add_task(filename, total=total)
        bar.update(tasks[filename], completed=done, total=total)

    return bar, update
