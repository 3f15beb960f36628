"""``stemkit cache info|prune|clear``: the result cache — what is in it, trimming it, emptying it."""

from __future__ import annotations

import json
import sys
import time

import typer

from stemkit.cli._console import console, err_console
from stemkit.cli._units import human_age, human_size
from stemkit.errors import ConfigError

cache_app = typer.Typer(no_args_is_help=True, help="The result cache: separations kept so that none is paid twice.")

_DIR_HELP = "The cache folder or fsspec URL (default: $STEMKIT_CACHE_DIR, else the user cache folder)."


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")


@cache_app.command("info")
def info_command(
    directory: str | None = typer.Option(None, "--dir", metavar="DIR", help=_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Where the cache is, how many results it holds and how much space they take."""
    from stemkit.cache import ResultCache

    cache = ResultCache(directory)
    found = cache.info()
    if as_json:
        console.print_json(json.dumps(found.to_dict()))
        return
    now = time.time()
    console.print(f"location:  {found.location}")
    console.print(f"entries:   {found.entries}" + (f" (+{found.incomplete} incomplete)" if found.incomplete else ""))
    console.print(f"size:      {human_size(found.size)} of {human_size(found.max_size)}")
    if found.oldest_use is not None and found.newest_use is not None:
        console.print(f"last used: {human_age(now - found.newest_use)} ago (least recent: "
                      f"{human_age(now - found.oldest_use)} ago)")  # fmt: skip


@cache_app.command("prune")
def prune_command(
    directory: str | None = typer.Option(None, "--dir", metavar="DIR", help=_DIR_HELP),
    max_size: str | None = typer.Option(
        None, "--max-size", metavar="SIZE", help="Remove least recently used results until the cache fits, e.g. 10GB."
    ),
    older_than: float | None = typer.Option(
        None, "--older-than", metavar="DAYS", help="Remove results not used for this many days."
    ),
) -> None:
    """Trim the cache to its size cap (or --max-size), and remove what dead processes left behind."""
    from stemkit.cache import ResultCache

    if older_than is not None and older_than < 0:
        raise ConfigError(f"--older-than: {older_than} is negative; give a number of days")
    cache = ResultCache(directory)
    result = cache.prune(max_size=max_size, older_than=None if older_than is None else older_than * 86400)
    console.print(f"removed {result.entries} result(s), {human_size(result.bytes)}"
                  + (f"; cleaned {result.leftovers} leftover(s)" if result.leftovers else ""))  # fmt: skip


@cache_app.command("clear")
def clear_command(
    directory: str | None = typer.Option(None, "--dir", metavar="DIR", help=_DIR_HELP),
    yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask for confirmation."),
) -> None:
    """Remove every cached result (the job ledger is kept)."""
    from stemkit.cache import ResultCache

    cache = ResultCache(directory)
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"cache clear: this removes every result in {cache.location}; pass --yes to confirm")
        found = cache.info()
        typer.confirm(f"Remove {found.entries} result(s), {human_size(found.size)}, from {cache.location}?",
                      abort=True, err=True)  # fmt: skip
    result = cache.clear()
    err_console.print(f"removed {result.entries} result(s), {human_size(result.bytes)}, from {cache.location}")
