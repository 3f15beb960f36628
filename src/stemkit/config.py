"""Provider spec strings — ``name[:target][?key=value&key=value]`` joined by ``|`` into fallback chains —
parsed, validated against a plugin's own pydantic model, and rendered with secrets redacted.

Secrets never travel in a spec string (it ends up in logs, shell history and reports); they come from the
environment or a keyword argument.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from pydantic import BaseModel, ValidationError

from stemkit.errors import ConfigError

__all__ = [
    "DEFAULT_PROVIDER",
    "ProviderSpec",
    "default_chain",
    "parse_chain",
    "parse_spec",
    "redact",
    "validate_options",
]

DEFAULT_PROVIDER = "dsp"
ENV_PROVIDER = "STEMKIT_PROVIDER"
REDACTED = "***"

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_SECRET_WORDS = ("key", "secret", "token", "password", "passwd", "credential", "auth")

M = TypeVar("M", bound=BaseModel)


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def redact(options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``options`` with every secret-looking value replaced by ``***``."""
    return {k: (REDACTED if is_secret_key(k) and v is not None else v) for k, v in options.items()}


@dataclass(frozen=True)
class ProviderSpec:
    """One provider of a spec string: its entry-point name, optional target and raw string options."""

    name: str
    target: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    def render(self) -> str:
        """The canonical spec string, secrets redacted; parsing it gives back an equal spec."""
        text = self.name
        if self.target is not None:
            text += ":" + quote(self.target, safe="/._-~@+,=")
        if self.options:
            pairs = (
                f"{quote(k, safe='_-')}={quote(str(REDACTED if is_secret_key(k) else v), safe='/._-~,:@+*')}"
                for k, v in self.options.items()
            )
            text += "?" + "&".join(pairs)
        return text

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"ProviderSpec({self.render()!r})"

    def with_options(self, extra: Mapping[str, Any]) -> ProviderSpec:
        merged = dict(self.options)
        merged.update({k: v for k, v in extra.items()})
        return ProviderSpec(self.name, self.target, merged)


def parse_spec(text: str) -> ProviderSpec:
    """Parse one provider spec. A ``|`` here is an error: use :func:`parse_chain` for chains."""
    if not isinstance(text, str):
        raise ConfigError(f"provider: expected a spec string such as 'dsp', got {type(text).__name__}")
    raw = text.strip()
    if not raw:
        raise ConfigError("provider: the spec is empty; name a provider, e.g. 'dsp'")
    if "|" in raw:
        raise ConfigError(f"provider: {raw!r} is a chain; parse it with parse_chain")
    head, sep, query = raw.partition("?")
    name, colon, target = head.partition(":")
    name = name.strip()
    if not _NAME.match(name):
        raise ConfigError(
            f"provider: {name!r} in {raw!r} is not a provider name; "
            "a spec looks like name[:target][?key=value&key=value]"
        )
    parsed_target: str | None = None
    if colon:
        parsed_target = unquote(target.strip())
        if not parsed_target:
            raise ConfigError(f"provider: {raw!r} has ':' but no target after it; drop the ':' or add a target")
    options: dict[str, str] = {}
    if sep:
        if not query.strip():
            raise ConfigError(f"provider: {raw!r} has '?' but no options after it")
        for pair in query.split("&"):
            if not pair:
                raise ConfigError(f"provider: {raw!r} has an empty option (two '&' in a row?)")
            key, eq, value = pair.partition("=")
            key = unquote(key).strip()
            if not eq or not _KEY.match(key):
                raise ConfigError(f"provider: option {pair!r} in {name!r} is not key=value")
            if key in options:
                raise ConfigError(f"provider: option {key!r} is given twice in {name!r}")
            if is_secret_key(key):
                raise ConfigError(
                    f"provider: {name!r} option {key!r} looks like a secret; secrets do not belong in spec "
                    "strings — set the provider's environment variable or pass it as a keyword"
                )
            options[key] = unquote(value)
    return ProviderSpec(name, parsed_target, options)


def parse_chain(spec: str | ProviderSpec | Sequence[str | ProviderSpec]) -> list[ProviderSpec]:
    """Parse ``"a | b?x=1 | c:target"`` (or a list of specs) into its providers, in order."""
    if isinstance(spec, ProviderSpec):
        return [spec]
    parts: list[str | ProviderSpec]
    if isinstance(spec, str):
        parts = list(spec.split("|"))
    elif isinstance(spec, Sequence):
        parts = list(spec)
    else:
        raise ConfigError(f"provider: expected a spec string or a list of them, got {type(spec).__name__}")
    if not parts:
        raise ConfigError("provider: the chain is empty; name at least one provider")
    out: list[ProviderSpec] = []
    for part in parts:
        if isinstance(part, ProviderSpec):
            out.append(part)
        elif isinstance(part, str) and not part.strip():
            raise ConfigError(f"provider: {spec!r} has an empty link (a stray '|'?)")
        elif isinstance(part, str) and "|" in part:
            out.extend(parse_chain(part))
        else:
            out.append(parse_spec(part))
    return out


def render_chain(specs: Sequence[ProviderSpec]) -> str:
    return " | ".join(s.render() for s in specs)


def default_chain() -> str:
    """The provider used when none is named: ``$STEMKIT_PROVIDER`` or the embedded ``dsp`` baseline."""
    return os.environ.get(ENV_PROVIDER, "").strip() or DEFAULT_PROVIDER


def validate_options(model: type[M], options: Mapping[str, Any], *, provider: str) -> M:
    """Validate raw options with the plugin's pydantic model; every problem becomes one ConfigError line."""
    known = sorted(model.model_fields)
    unknown = [k for k in options if k not in model.model_fields]
    if unknown:
        listing = ", ".join(known) if known else "none"
        raise ConfigError(
            f"{provider}: unknown option(s) {', '.join(repr(k) for k in unknown)}; known options: {listing}"
        )
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "options"
            value = err.get("input")
            shown = REDACTED if is_secret_key(where) else repr(value)
            problems.append(f"{where}={shown}: {err['msg']}")
        raise ConfigError(f"{provider}: invalid option(s): " + "; ".join(problems)) from None
