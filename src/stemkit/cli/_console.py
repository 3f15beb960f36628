"""Where the CLI writes: data to stdout, messages and progress to stderr."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape

from stemkit.errors import StemkitError

__all__ = ["console", "err_console", "print_error"]

# No console markup by default: file names like "Song [Live].mp3" must print as they are.
console = Console(highlight=False, soft_wrap=True, markup=False)
debug = {"traceback": False}  # set by the CLI's --debug
err_console = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


def print_error(exc: BaseException, *, about: str | None = None) -> None:
    """One readable error (its message may span lines, e.g. a fallback trail), never a traceback.

    ``about`` (the input file) is prefixed unless the message already names it.
    """
    if debug["traceback"]:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    kind = "error" if isinstance(exc, StemkitError) else type(exc).__name__
    text = str(exc)
    if about and about not in text:
        text = f"{about}: {text}"
    err_console.print(f"[bold red]{kind}:[/] {escape(text)}", markup=True, highlight=False)
