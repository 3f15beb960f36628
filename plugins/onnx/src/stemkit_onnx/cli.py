"""``stemkit models``: list demucs-onnx's registry with what is cached, and pull a model ahead of time.

Pulling ahead of time is how a machine that runs offline (``HF_HUB_OFFLINE=1``, CI, a server
without egress) gets its models: pull where there is network, copy the hub cache, run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from stemkit.errors import ConfigError
from stemkit_onnx import hub

app = typer.Typer(
    name="models",
    help="HT-Demucs ONNX models for the onnx provider: list them, pull one into the cache.",
    no_args_is_help=True,
    add_completion=False,
)

PrecisionOpt = Annotated[str, typer.Option("--precision", help="fp32 or fp16weights (a ~1.9x smaller download).")]
CacheOpt = Annotated[
    Path | None, typer.Option("--cache-dir", help="Hugging Face cache folder (default: the hub's own).")
]


def _precision(value: str) -> hub.Precision:
    if value == "fp32":
        return "fp32"
    if value == "fp16weights":
        return "fp16weights"
    raise ConfigError(f"--precision: {value!r} is not one of {', '.join(hub.PRECISIONS)}")


def _mb(size: int) -> str:
    return f"{size / 1e6:.0f} MB"


@app.command("list")
def list_models(
    precision: PrecisionOpt = "fp32",
    cache_dir: CacheOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every model in the registry: name, stems, download size, whether it is cached."""
    prec = _precision(precision)
    rows = []
    for model in hub.registry().values():
        files = model.files(prec)
        paths = [hub.cached_path(f, cache_dir) for f in files]
        cached = sum(p is not None for p in paths)
        size = (
            _mb(sum(p.stat().st_size for p in paths if p is not None))
            if cached == len(files)
            else f"~{model.approx_mb(prec)} MB"
        )
        rows.append(
            {
                "name": model.name,
                "kind": model.kind,
                "stems": ",".join(model.sources),
                "size": size,
                "cached": "yes" if cached == len(files) else ("no" if cached == 0 else f"{cached}/{len(files)} files"),
                "repository": ",".join(model.repos),
            }
        )
    if as_json:
        typer.echo(json.dumps({"cache": str(hub.cache_root(cache_dir)), "precision": prec, "models": rows}, indent=2))
        return
    headers = ["name", "stems", "size", "cached", "repository"]
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in headers}
    typer.echo("  ".join(h.upper().ljust(widths[h]) for h in headers).rstrip())
    for row in rows:
        typer.echo("  ".join(row[h].ljust(widths[h]) for h in headers).rstrip())
    typer.echo(f"\ncache: {hub.cache_root(cache_dir)}  precision: {prec}  (use: onnx:NAME, e.g. onnx:htdemucs_ft)")


@app.command("pull")
def pull(
    name: Annotated[str, typer.Argument(help="A model from `stemkit models list`, e.g. htdemucs_ft.")],
    precision: PrecisionOpt = "fp32",
    cache_dir: CacheOpt = None,
) -> None:
    """Download a model into the cache, so later runs (even offline) find it."""
    prec = _precision(precision)
    model = hub.resolve(name)
    if model is None:
        raise ConfigError(f"models pull: unknown model {name!r}; known models: {', '.join(hub.registry())}")
    for file in model.files(prec):
        path = hub.fetch(model, file, precision=prec, cache_dir=cache_dir)
        typer.echo(f"{model.name}: {file.repo}/{file.filename} -> {path} ({_mb(path.stat().st_size)})")
