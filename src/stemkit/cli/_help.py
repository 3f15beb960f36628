"""Help a user can read: the command tree Typer builds, polished once before it runs.

Recent Typer releases print Python type names in help (``<bool>`` beside every flag, ``<list[str]>``,
``{inputs}...`` in the usage line). Every command — stemkit's own and the groups plugins add through
``stemkit.commands`` — goes through :func:`polish`, which gives

- a flag no type at all (``--json``, ``--help``);
- an option its metavar: the one its command names (``SPEC``, ``DIR``, ``SECONDS``), else one from its type
  (``TEXT``, ``INTEGER``, ``NUMBER``, ``PATH``, ``a|b`` for choices);
- an argument its metavar in capitals (``INPUT...``), in the usage line as well, and no type column;
- every leaf command a ``--debug`` flag of its own, so ``stemkit separate --debug …`` works like
  ``stemkit --debug separate …``.

It only sets metavars and, where Typer renders types itself, swaps a parameter's class for a subclass that
renders none; on a Typer that already prints plain help, what it changes is harmless.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["polish"]

_TYPE_METAVARS = {
    "text": "TEXT",
    "integer": "INTEGER",
    "float": "NUMBER",
    "path": "PATH",
    "boolean": "BOOLEAN",
    "integer range": "INTEGER",
    "float range": "NUMBER",
    "file": "FILE",
    "filename": "FILE",
    "uuid": "UUID",
    "datetime": "DATETIME",
}


def _walk(command: Any) -> Iterator[Any]:
    yield command
    for sub in (getattr(command, "commands", None) or {}).values():
        yield from _walk(sub)


def _metavar(param: Any) -> str:
    """What an option's value is called when its command did not name it."""
    described = _described(param)
    if described is not None:
        return described
    kind = getattr(param, "type", None)
    choices = getattr(kind, "choices", None)
    if choices:
        return "|".join(str(getattr(c, "value", c)) for c in choices)
    name = str(getattr(kind, "name", "") or "text").lower()
    return _TYPE_METAVARS.get(name, name.upper().replace(" ", "_") or "VALUE")


def _described(param: Any) -> str | None:
    """The metavar from the annotation, where Typer keeps one (``type_descriptor``, recent releases)."""
    desc = getattr(param, "type_descriptor", None)
    if desc is None:
        return None
    if getattr(desc, "is_choice", False) and getattr(desc, "choices", None):
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices)
    if getattr(desc, "is_path", False):
        return "PATH"
    annotation = getattr(desc, "annotation", None)
    args = getattr(annotation, "__args__", None)
    if getattr(annotation, "__origin__", None) in (list, tuple) and args:
        annotation = args[0]
    names: dict[Any, str] = {int: "INTEGER", float: "NUMBER", str: "TEXT", bool: "BOOLEAN"}
    return names.get(annotation)


@functools.cache
def _plain(base: Any) -> type:
    """``base`` (a Typer parameter class) rendering no type column: the metavar says what a value is."""

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        if getattr(self, "param_type_name", "") == "argument":
            return None
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return ""
        return str(self.metavar) if self.metavar is not None else None

    def get_usage_pieces(self: Any, ctx: Any) -> list[str]:
        name = str(self.metavar or str(self.name).upper())
        if self.nargs != 1 and not name.endswith("..."):
            name += "..."
        return [name if self.required else f"[{name}]"]

    members: dict[str, Callable[..., Any]] = {"display_type_rich": display_type_rich}
    if getattr(base, "param_type_name", "") == "argument":
        members["get_usage_pieces"] = get_usage_pieces
    return type(f"Plain{base.__name__}", (base,), members)


def _polish_param(param: Any) -> None:
    if getattr(param, "_stemkit_polished", False):
        return
    if getattr(param, "param_type_name", "") == "argument":
        name = str(param.metavar or str(param.name).upper())
        if param.nargs != 1 and not name.endswith("..."):
            name += "..."
        param.metavar = name
    elif not (getattr(param, "is_flag", False) and not getattr(param, "count", False)) and param.metavar is None:
        param.metavar = _metavar(param)
    if hasattr(param, "display_type_rich"):  # Typer's own parameter classes: swap in one without types
        param.__class__ = _plain(param.__class__)
    param._stemkit_polished = True


def _debug_option(root: Any, on_debug: Callable[[], None]) -> Any | None:
    """A copy of the root's ``--debug`` flag for a subcommand: same help, no value passed to the command."""
    original = next((p for p in getattr(root, "params", []) if "--debug" in getattr(p, "opts", ())), None)
    if original is None:
        return None
    option = copy.copy(original)
    option.expose_value = False
    option.callback = lambda _ctx, _param, value: on_debug() if value else None
    return option


def polish(root: Any, *, on_debug: Callable[[], None]) -> Any:
    """Polish the click command tree ``root`` (in place, and returned) as the module docstring says.

    ``on_debug`` is called when a subcommand's ``--debug`` is given.
    """
    for command in _walk(root):
        is_leaf = not getattr(command, "commands", None)
        if command is not root and is_leaf and not any("--debug" in getattr(p, "opts", ()) for p in command.params):
            option = _debug_option(root, on_debug)
            if option is not None:
                command.params.append(option)
        for param in command.params:
            _polish_param(param)
        _polish_help_option(command)
    return root


def _polish_help_option(command: Any) -> None:
    """The ``--help`` option click makes on demand gets the same treatment as the others."""
    original = getattr(command, "get_help_option", None)
    if original is None or getattr(original, "_stemkit_polished", False):
        return

    def get_help_option(ctx: Any) -> Any:
        option = original(ctx)
        if option is not None:
            _polish_param(option)
        return option

    get_help_option._stemkit_polished = True  # type: ignore[attr-defined]
    command.get_help_option = get_help_option
