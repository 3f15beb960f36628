"""``stemkit providers``: what is installed, from package metadata alone (no plugin is imported), and which of
the project's providers are not, with the command that installs each."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from stemkit.cli._console import console
from stemkit.registry import missing_providers, providers


def register(app: typer.Typer) -> None:
    app.command("providers")(providers_command)


def providers_command(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the installed providers, and how to install the others.

    \f
    ``--json`` gives one object per provider, installed ones first: ``name``, ``distribution``, ``version``
    (None when not installed), ``summary``, ``target`` (the entry point), ``installed`` and ``install`` (the
    pip command for a provider of the project that is not installed).
    """
    found = providers()
    missing = missing_providers()
    if as_json:
        rows: list[dict[str, Any]] = [{**p.to_dict(), "installed": True, "install": None} for p in found]
        rows += [
            {"name": m.name, "distribution": m.distribution, "version": None, "summary": m.summary,
             "target": None, "installed": False, "install": m.install}
            for m in missing
        ]  # fmt: skip
        console.print_json(json.dumps(rows))
        return
    table = Table("provider", "distribution", "version", "what it is")
    for info in found:
        table.add_row(info.name, info.distribution, info.version, info.summary)
    console.print(table)
    if missing:
        console.print("Not installed:")
        width = max(len(m.name) for m in missing)
        for known in missing:
            console.print(f"  {known.name:<{width}}  {known.summary}: {known.install}", soft_wrap=True)
