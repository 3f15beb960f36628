"""``stemkit doctor``: what is installed and what a provider spec would actually use here, before anything runs.

The core knows no plugin by name, so each plugin contributes its own findings through the entry-point
group ``stemkit.diagnostics``: an entry point named like the provider, pointing to a callable
``diagnose(spec)`` that takes the member's :class:`~stemkit.config.ProviderSpec` (or None, for a general
report) and returns an iterable of mappings with the keys ``level`` (``ok``, ``info``, ``warning`` or
``error``), ``topic`` (a few words) and ``message``. The onnx plugin's says which execution providers
onnxruntime offers and which one a spec would use, and warns when a GPU was asked for and the CPU will
run. Loading a plugin's diagnostics imports the plugin (unlike ``stemkit providers``); one that fails
to load is reported as an error finding, not a crash. Exit status 1 when any finding is an error.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from stemkit.cli._console import console

if TYPE_CHECKING:
    from stemkit.config import ProviderSpec

# Imported when the command runs, not when the CLI is built (every `stemkit` invocation builds it).
OFFLINE_ENV = "STEMKIT_OFFLINE"  # stemkit.routing.OFFLINE_ENV, read the same way
__all__ = ["DIAGNOSTICS_GROUP", "LEVELS", "collect", "register"]

DIAGNOSTICS_GROUP = "stemkit.diagnostics"
LEVELS = ("ok", "info", "warning", "error")
_MARK = {"ok": "ok", "info": "--", "warning": "WARN", "error": "FAIL"}


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor_command)


def _finding(level: str, topic: str, message: str) -> dict[str, str]:
    return {"level": level, "topic": topic, "message": message}


def _clean(raw: Iterable[Mapping[str, Any]], source: str) -> list[dict[str, str]]:
    """A plugin's findings, checked: a malformed one is reported, not trusted."""
    out = []
    for item in raw:
        level = str(item.get("level", ""))
        if level not in LEVELS:
            out.append(_finding("error", source, f"diagnostics returned a finding with level {level!r}: {item!r}"))
            continue
        out.append(_finding(level, str(item.get("topic", "")), str(item.get("message", ""))))
    return out


def _diagnose(name: str, spec: ProviderSpec | None) -> list[dict[str, str]]:
    from stemkit.registry import entry_points

    found = {ep.name: ep for ep in entry_points(DIAGNOSTICS_GROUP)}
    if name not in found:
        return [_finding("info", "diagnostics", f"the {name} plugin offers no diagnostics")]
    try:
        diagnose = found[name].load()
        return _clean(diagnose(spec), name)
    except Exception as exc:  # a broken plugin is a finding, not a crash of the doctor
        failure = f"the {name} plugin's diagnostics failed: {type(exc).__name__}: {exc}"
        return [_finding("error", "diagnostics", failure)]


def collect(spec: str | None = None) -> dict[str, Any]:
    """Everything ``stemkit doctor`` prints, as data: the environment, then one section per provider."""
    from stemkit.config import default_chain, parse_chain
    from stemkit.registry import entry_points, providers

    installed = {p.name: p for p in providers()}
    offline = os.environ.get(OFFLINE_ENV, "").strip() not in ("", "0")
    environment = {
        "stemkit": _version(),
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "providers": {p.name: f"{p.distribution} {p.version}" for p in installed.values()},
        "offline": offline,
        "default_chain": default_chain(),
    }
    sections: list[dict[str, Any]] = []
    if spec is None:
        for name in sorted({*installed, *(ep.name for ep in entry_points(DIAGNOSTICS_GROUP))}):
            sections.append({"provider": name, "spec": None, "findings": _diagnose(name, None)})
    else:
        for member in parse_chain(spec):
            if member.name not in installed:
                known = ", ".join(installed) or "none"
                findings = [_finding("error", "installed", f"{member.name!r} is not installed (installed: {known})")]
            else:
                findings = _diagnose(member.name, member)
            sections.append({"provider": member.name, "spec": member.render(), "findings": findings})
    return {"environment": environment, "sections": sections}


def _version() -> str:
    from stemkit import __version__

    return str(__version__)


def doctor_command(
    provider: str | None = typer.Option(
        None, "--provider", "-p", metavar="SPEC",
        help="A provider spec or chain to check, e.g. 'onnx:htdemucs?device=cuda'."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Show what is installed and, for a spec, what it would use here (e.g. which execution provider)."""
    report = collect(provider)
    failed = any(f["level"] == "error" for s in report["sections"] for f in s["findings"])
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        raise typer.Exit(1 if failed else 0)
    env = report["environment"]
    console.print(f"stemkit {env['stemkit']}, Python {env['python']} on {env['platform']}", soft_wrap=False)
    installed = ", ".join(f"{k} ({v})" for k, v in env["providers"].items()) or "none"
    console.print(f"providers: {installed}", soft_wrap=False)
    offline = "set: no downloads" if env["offline"] else "not set"
    console.print(f"{OFFLINE_ENV}: {offline}; default chain: {env['default_chain']}", soft_wrap=False)
    for section in report["sections"]:
        console.print()
        console.print(section["spec"] or section["provider"], style="bold", markup=False)
        table = Table(box=None, show_header=False, pad_edge=False, show_edge=False)
        table.add_column("level", no_wrap=True)
        table.add_column("topic", no_wrap=True)
        table.add_column("message", overflow="fold")
        for finding in section["findings"]:
            style = {"warning": "yellow", "error": "red"}.get(finding["level"], "")
            table.add_row(_MARK[finding["level"]], finding["topic"], finding["message"], style=style)
        console.print(table)
    if failed:
        raise typer.Exit(1)
