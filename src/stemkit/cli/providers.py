"""``stemkit providers``: what is installed, from package metadata alone (no plugin is imported)."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from stemkit.cli._console import console
from stemkit.registry import providers


def register(app: typer.Typer) -> None:
    app.command("providers")(providers_command)


def providers_command(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the installed provider plugins."""
    found = providers()
    if as_json:
        console.print_json(json.dumps([p.to_dict() for p in found]))
        return
    table = Table("provider", "distribution", "version", "summary")
    for info in found:
        table.add_row(info.name, info.distribution, info.version, info.summary)
    console.print(table)
