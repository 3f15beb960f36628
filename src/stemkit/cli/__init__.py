"""The ``stemkit`` command.

Each subcommand lives in its own module here exposing ``register(app)``; plugins add command groups through
the entry-point group ``stemkit.commands`` (a ``typer.Typer`` added under the entry point's name).
Exit status: 0 success, 2 usage or configuration error, 1 a separation (or other operation) failed.
An expected error prints one line and no traceback, unless ``--debug``.
"""

from __future__ import annotations

import sys
from importlib import import_module

import typer

from stemkit.cli._console import debug as _debug
from stemkit.cli._console import err_console, print_error
from stemkit.errors import ConfigError, StemkitError

__all__ = ["COMMAND_MODULES", "build_app", "build_command", "main"]

COMMAND_MODULES: tuple[str, ...] = ("separate", "providers", "demo", "emulate", "compare", "cache", "jobs", "doctor")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# Typer may bundle its own copy of click; reach its exception types through Typer's public names.
_ClickException: type[Exception] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"
)


def _show_version(value: bool) -> None:
    if value:
        from stemkit import __version__

        typer.echo(f"stemkit {__version__}")
        raise typer.Exit(EXIT_OK)


def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors (here or after a command)."),
    version: bool = typer.Option(
        False, "--version", is_eager=True, expose_value=False, callback=_show_version,
        help="Print stemkit's version and exit.",
    ),
) -> None:
    """stemkit: one API for every music stem separation service and model."""
    _debug["traceback"] = debug


def _debug_on() -> None:
    _debug["traceback"] = True


def build_app() -> typer.Typer:
    app = typer.Typer(
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        callback=_root,
    )
    for name in COMMAND_MODULES:
        import_module(f"stemkit.cli.{name}").register(app)
    _add_plugin_commands(app)
    return app


def build_command() -> typer.core.TyperGroup:
    """The ``stemkit`` command as click runs it: every subcommand, plugins' included, with readable help
    (see :mod:`stemkit.cli._help`)."""
    import typer.main

    from stemkit.cli._help import polish

    command = typer.main.get_command(build_app())
    polished: typer.core.TyperGroup = polish(command, on_debug=_debug_on)
    return polished


def _add_plugin_commands(app: typer.Typer) -> None:
    from stemkit.registry import COMMAND_GROUP, entry_points

    for ep in entry_points(COMMAND_GROUP):
        try:
            group = ep.load()
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            err_console.print(f"warning: plugin command {ep.name!r} could not be loaded: {exc}")
            continue
        if isinstance(group, typer.Typer):
            app.add_typer(group, name=ep.name)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and, as a console script, exits with) the status code."""
    args = sys.argv[1:] if argv is None else argv
    _debug["traceback"] = "--debug" in args
    try:
        command = build_command()
        result = command.main(args=args, prog_name="stemkit", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        return EXIT_FAILED
    except _ClickException as exc:
        exc.show(file=sys.stderr)  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", EXIT_USAGE))
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except StemkitError as exc:
        if _debug["traceback"]:
            raise
        print_error(exc)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED
    return int(result) if isinstance(result, int) else EXIT_OK
