"""Regenerate the help texts in docs/cli.md from the real ``stemkit`` command.

    .venv/bin/python docs/gen_cli.py           # rewrite docs/cli.md in place
    .venv/bin/python docs/gen_cli.py --check   # exit 1 (and show what differs) when the page is out of date

Each command has a section ``## stemkit COMMAND`` in the page; the first ``text`` block of the section is its
``--help``, rendered here at a fixed width without colour, exactly as ``stemkit COMMAND --help`` prints it.
Everything else on the page (the prose, the examples) is left as it is. A command without a section is an
error: write the section (a heading and an empty ``text`` block) and run this again. ``tests/test_docs_cli.py``
runs the check, so the page cannot drift from the command.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PAGE = Path(__file__).resolve().parent / "cli.md"
WIDTH = 100
_SECTION = re.compile(r"^## (?P<path>stemkit(?: [a-z-]+)*)\n", re.M)
_TEXT_BLOCK = re.compile(r"^```text\n.*?^```\n", re.M | re.S)


def commands(command: Any, path: tuple[str, ...] = ("stemkit",)) -> Iterator[tuple[str, ...]]:
    """Every command path of the tree, ``("stemkit",)`` first, in the order the page lists them."""
    yield path
    for name, sub in (getattr(command, "commands", None) or {}).items():
        if not getattr(sub, "hidden", False):
            yield from commands(sub, (*path, name))


def help_text(command: Any, path: tuple[str, ...]) -> str:
    """``stemkit … --help`` as a user sees it, at :data:`WIDTH` columns, without colour or trailing blanks."""
    import typer.rich_utils

    out = io.StringIO()
    before = getattr(typer.rich_utils, "MAX_WIDTH", None)
    typer.rich_utils.MAX_WIDTH = WIDTH  # typer reads it for every help it renders
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            command.main([*path[1:], "--help"], prog_name="stemkit", standalone_mode=False)
    finally:
        typer.rich_utils.MAX_WIDTH = before
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"


def render(page: str) -> str:
    """``page`` with every command's help block replaced by the current help; ValueError for a missing section."""
    from stemkit.cli import build_command

    command = build_command()
    paths = list(commands(command))
    sections = {m.group("path"): m for m in _SECTION.finditer(page)}
    missing = [" ".join(p) for p in paths if " ".join(p) not in sections]
    if missing:
        raise ValueError(f"docs/cli.md has no section for: {', '.join(missing)} (add '## <command>' and a text block)")
    out, cursor = [], 0
    ordered = sorted(sections.values(), key=lambda m: m.start())
    for index, match in enumerate(ordered):
        end = ordered[index + 1].start() if index + 1 < len(ordered) else len(page)
        block = _TEXT_BLOCK.search(page, match.end(), end)
        if block is None or tuple(match.group("path").split()) not in paths:
            continue
        fresh = "```text\n" + help_text(command, tuple(match.group("path").split())) + "```\n"
        out.append(page[cursor : block.start()])
        out.append(fresh)
        cursor = block.end()
    out.append(page[cursor:])
    return "".join(out)


def main(argv: list[str]) -> int:
    page = PAGE.read_text(encoding="utf-8")
    fresh = render(page)
    if "--check" in argv:
        if fresh != page:
            diff = difflib.unified_diff(
                page.splitlines(), fresh.splitlines(), "docs/cli.md", "stemkit --help", lineterm=""
            )
            print("\n".join(diff))
            print("docs/cli.md is out of date: run .venv/bin/python docs/gen_cli.py", file=sys.stderr)
            return 1
        return 0
    if fresh != page:
        PAGE.write_text(fresh, encoding="utf-8")
        print(f"updated {PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
