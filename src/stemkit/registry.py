"""Plugin discovery and loading.

Providers are entry points in the group ``stemkit.separators``; the core never imports one by name. Listing
reads installed distributions' metadata only (no plugin module is imported, so a broken or heavy plugin
cannot slow down or break ``stemkit providers``); loading goes through stevedore.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, NoReturn

from stemkit.errors import ConfigError

__all__ = [
    "KNOWN_PROVIDERS",
    "PROVIDER_GROUP",
    "KnownProvider",
    "ProviderInfo",
    "distribution_version",
    "install_hint",
    "load_entry_point",
    "missing_providers",
    "provider_class",
    "providers",
]

PROVIDER_GROUP = "stemkit.separators"
EMULATOR_GROUP = "stemkit.emulators"
COMMAND_GROUP = "stemkit.commands"


@dataclass(frozen=True)
class KnownProvider:
    """A provider of the stemkit project: which distribution brings it and how to install it.

    This is a catalogue of names (for ``stemkit providers`` and for the error a missing provider gives), not
    an import: the core still finds providers only through entry points.
    """

    name: str
    distribution: str
    summary: str
    extra: str | None = None

    @property
    def install(self) -> str:
        """The command that installs it (nothing to install for the embedded default)."""
        if self.extra is None:
            return f"pip install {self.distribution}"
        return f'pip install "stemkit[{self.extra}]"'

    def to_dict(self) -> dict[str, str | None]:
        return {"name": self.name, "distribution": self.distribution, "summary": self.summary,
                "extra": self.extra, "install": self.install}  # fmt: skip


#: The providers of the stemkit project, by entry-point name. ``dsp`` ships inside the ``stemkit``
#: distribution itself; each of the others is its own distribution, brought by the extra of the same name.
KNOWN_PROVIDERS: Mapping[str, KnownProvider] = {
    known.name: known
    for known in (
        KnownProvider("dsp", "stemkit", "the embedded default: a signal-processing baseline, no weights, no network"),
        KnownProvider("stemsplit", "stemkit-stemsplit", "StemSplit's hosted API (and its offline emulator)",
                      "stemsplit"),
        KnownProvider("ezstems", "stemkit-ezstems", "EzStems' hosted Spleeter API (and its offline emulator)",
                      "ezstems"),
        KnownProvider("onnx", "stemkit-onnx", "local ONNX models: HT-Demucs, UVR's MDX-Net, or your .onnx file",
                      "onnx"),
    )
}  # fmt: skip


def install_hint(name: str) -> str | None:
    """How to install the project's provider ``name`` (``pip install "stemkit[onnx]"``); None for others."""
    known = KNOWN_PROVIDERS.get(name)
    return known.install if known is not None else None


@dataclass(frozen=True)
class ProviderInfo:
    """An installed provider, as its distribution's metadata describes it."""

    name: str
    distribution: str
    version: str
    summary: str
    target: str

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "summary": self.summary,
            "target": self.target,
        }


def entry_points(group: str) -> list[metadata.EntryPoint]:
    """The group's entry points by name, one per name, read from metadata (nothing is imported)."""
    seen: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=group):
        seen.setdefault(ep.name, ep)  # the first on sys.path wins, as the import system would have it
    return sorted(seen.values(), key=lambda ep: ep.name)


def providers() -> list[ProviderInfo]:
    """Every installed provider plugin (name, distribution, version, summary), without importing any.

    The summary is the distribution's own, except for the project's providers, which say what each one is
    (the ``stemkit`` distribution's summary would not describe ``dsp``).
    """
    out = []
    for ep in entry_points(PROVIDER_GROUP):
        dist = ep.dist
        name = dist.metadata["Name"] if dist is not None else "?"
        version = dist.version if dist is not None else "?"
        summary = (dist.metadata["Summary"] or "") if dist is not None else ""
        known = KNOWN_PROVIDERS.get(ep.name)
        if known is not None and _same_distribution(known.distribution, name):
            summary = known.summary
        out.append(ProviderInfo(ep.name, name, version, summary, ep.value))
    return out


def missing_providers() -> list[KnownProvider]:
    """The project's providers that are not installed here, each with the command that installs it."""
    installed = {ep.name for ep in entry_points(PROVIDER_GROUP)}
    return [known for name, known in KNOWN_PROVIDERS.items() if name not in installed]


def _same_distribution(a: str, b: str) -> bool:
    """Distribution names compare normalized (PEP 503): ``stemkit_onnx`` is ``stemkit-onnx``."""

    def norm(text: str) -> str:
        return re.sub(r"[-_.]+", "-", text).lower()

    return norm(a) == norm(b)


def load_entry_point(group: str, name: str, *, what: str = "provider") -> Any:
    """Import and return the object behind one entry point, or a ConfigError listing what is installed."""
    found = {ep.name: ep for ep in entry_points(group)}
    if name not in found:
        installed = ", ".join(found) if found else "none"
        hint = install_hint(name) if group in (PROVIDER_GROUP, EMULATOR_GROUP) else None
        if hint is not None:
            raise ConfigError(f"{what} {name!r} is not installed; install it with: {hint} (installed {what}s: "
                              f"{installed})")  # fmt: skip
        raise ConfigError(
            f"{what} {name!r} is not installed; installed {what}s: {installed} "
            f"(a {what} is a package registering the entry-point group {group!r})"
        )
    from stevedore import driver
    from stevedore.exception import NoMatches

    try:
        manager = driver.DriverManager(
            namespace=group, name=name, invoke_on_load=False, on_load_failure_callback=_raise
        )
    except ConfigError:
        raise
    except NoMatches:
        # stevedore caches each sys.path's entry points for the life of the process, so a distribution
        # installed after the first look (a test fixture, a notebook's pip install) is invisible to it;
        # the metadata we just read does see it, so load that entry point directly.
        try:
            return found[name].load()
        except Exception as exc:
            _raise(None, found[name], exc)
    except Exception as exc:  # stevedore wraps import failures in its own exception types
        raise ConfigError(f"{what} {name!r} is installed but could not be loaded: {exc}") from exc
    return manager.driver


def _raise(_manager: Any, entrypoint: Any, exc: BaseException) -> NoReturn:
    raise ConfigError(
        f"provider {entrypoint.name!r} is installed but failed to import ({type(exc).__name__}: {exc}); "
        "reinstall its package"
    ) from exc


def provider_class(name: str) -> Any:
    """The Separator factory registered under ``name`` (a SeparatorBase subclass for built-in plugins)."""
    return load_entry_point(PROVIDER_GROUP, name)


def distribution_version(cls: type) -> str:
    """``name==version`` of the installed distribution that ships ``cls`` (a provider class), read from
    metadata; ``module:<name>`` when no installed distribution claims its module (a class defined in a script
    or a test). Part of what identifies a provider's output in the result cache. Read once per module and
    process: every cache lookup asks."""
    return _module_version(cls.__module__)


@functools.cache
def _module_version(module: str) -> str:
    top = module.partition(".")[0]
    return _top_level_versions().get(top) or _version_by_name(top) or f"module:{module}"


@functools.cache
def _top_level_versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for top, dists in metadata.packages_distributions().items():
        if dists:
            name = dists[0]
            try:
                out[top] = f"{name}=={metadata.version(name)}"
            except metadata.PackageNotFoundError:
                continue
    return out


def _version_by_name(top: str) -> str | None:
    """Editable installs often leave packages_distributions() blind: try the module's own dist-style name."""
    for candidate in (top, top.replace("_", "-")):
        try:
            return f"{candidate}=={metadata.version(candidate)}"
        except metadata.PackageNotFoundError:
            continue
    module = sys.modules.get(top)
    version = getattr(module, "__version__", None)
    return f"{top}=={version}" if isinstance(version, str) else None
