"""When results are cached, and where.

By default a provider whose capabilities say it costs money (hosted, or with a ``cost_unit``) is cached in the
default location, and a local one is not: re-running a local model is cheap enough that filling a disk with
its stems should be the user's choice. ``cache=`` on ``separate``/``aseparate``/``separate_many``/``load``
(``--cache DIR`` / ``--no-cache`` on the command line) changes that:

- ``None`` (the default): paid providers cached in the default location; local ones not;
- ``True``: every provider cached in the default location;
- ``False``: nothing cached;
- a folder or an fsspec URL: every provider cached there;
- a ``ResultCache``: every provider cached in it (a temporary one keeps paid providers' results in the
  default location as well, so that they are never paid for twice).

The default location is ``$STEMKIT_CACHE_DIR`` (a folder or an fsspec URL), else the user cache folder
(``~/.cache/stemkit`` on Linux, via platformdirs); the size cap ``$STEMKIT_CACHE_MAX_SIZE`` (e.g. ``50GB``,
``none``), else 20 GB.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stemkit.errors import ConfigError
from stemkit.protocol import Separator

if TYPE_CHECKING:
    from stemkit.cache.store import ResultCache

__all__ = [
    "ENV_CACHE_DIR",
    "ENV_MAX_SIZE",
    "CachePolicy",
    "apply_cache",
    "costs_money",
    "default_location",
    "default_max_size",
    "parse_size",
    "resolve_cache",
]

ENV_CACHE_DIR = "STEMKIT_CACHE_DIR"
ENV_MAX_SIZE = "STEMKIT_CACHE_MAX_SIZE"
DEFAULT_MAX_SIZE = 20 * 1000**3

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}  # fmt: skip
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def default_location() -> str:
    """``$STEMKIT_CACHE_DIR``, else the platform's user cache folder for stemkit."""
    configured = os.environ.get(ENV_CACHE_DIR, "").strip()
    if configured:
        return configured
    import platformdirs

    return str(Path(platformdirs.user_cache_dir("stemkit", appauthor=False)))


def parse_size(value: int | str) -> int | None:
    """Bytes from ``1000000``, ``"500MB"``, ``"20 GiB"``; None for ``"none"``/``"unlimited"`` (no cap)."""
    if isinstance(value, bool):
        raise ConfigError(f"cache size: {value!r} is not a size; use e.g. '20GB' or 'none'")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"cache size: {value} is negative; use a size such as '20GB', or 'none'")
        return value
    text = str(value).strip().lower()
    if text in ("none", "unlimited", "off", "inf"):
        return None
    match = _SIZE.match(text)
    if match is None or match.group(2) not in _UNITS:
        raise ConfigError(f"cache size: {value!r} is not a size; use e.g. '500MB', '20GB', '1.5TiB' or 'none'")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def default_max_size() -> int | None:
    configured = os.environ.get(ENV_MAX_SIZE, "").strip()
    if not configured:
        return DEFAULT_MAX_SIZE
    try:
        return parse_size(configured)
    except ConfigError as exc:
        raise ConfigError(f"{ENV_MAX_SIZE}: {exc}") from None


_DEFAULT = "default"


class CachePolicy:
    """Which cache (if any) serves providers that cost money, and which serves local ones.

    ``"default"`` stands for the default location, opened only when a provider actually needs it (loading
    ``dsp`` under the default policy touches no folder).
    """

    def __init__(
        self,
        paid: ResultCache | str | None,
        local: ResultCache | str | None,
        *,
        implicit: bool = False,
        write_behind: bool = True,
    ) -> None:
        self._paid, self._local = paid, local
        #: see :class:`~stemkit.cache.CachedSeparator`
        self.write_behind = write_behind
        self._default: ResultCache | None = None
        #: nobody asked for a cache: a default location that cannot be used warns and is skipped
        self._implicit = implicit
        self._unusable = False

    @property
    def enabled(self) -> bool:
        return self._paid is not None or self._local is not None

    def for_separator(self, separator: Separator) -> ResultCache | None:
        return self._open(self._paid if costs_money(separator) else self._local)

    def _open(self, which: ResultCache | str | None) -> ResultCache | None:
        if which != _DEFAULT:
            assert which is None or not isinstance(which, str)
            return which
        if self._default is None and not self._unusable:
            from stemkit.cache.store import CacheWarning, ResultCache

            try:
                self._default = ResultCache()
            except ConfigError as exc:
                if not self._implicit:
                    raise
                import warnings

                self._unusable = True
                warnings.warn(f"stemkit cache: {exc}; separating without a result cache", CacheWarning, stacklevel=4)
        return self._default

    def __repr__(self) -> str:
        return f"CachePolicy(paid={self._paid!r}, local={self._local!r})"


def costs_money(separator: Separator) -> bool:
    """Whether a provider's capabilities say a separation is billed: hosted, or a stated cost unit."""
    try:
        caps = separator.capabilities
    except Exception:  # a provider that cannot say is treated as local: nothing is cached behind its back
        return False
    return (not caps.local) or caps.cost_unit is not None


def resolve_cache(cache: Any, *, write_behind: bool = True) -> CachePolicy:
    """The policy a ``cache=`` argument stands for (see the module docstring)."""
    from stemkit.cache.store import ResultCache

    if isinstance(cache, CachePolicy):
        return cache
    if cache is None:
        return CachePolicy(paid=_DEFAULT, local=None, implicit=True, write_behind=write_behind)
    if cache is False:
        return CachePolicy(None, None)
    if cache is True:
        return CachePolicy(_DEFAULT, _DEFAULT, write_behind=write_behind)
    if isinstance(cache, ResultCache):
        paid = cache if cache.persistent else _DEFAULT
        return CachePolicy(paid=paid, local=cache, write_behind=write_behind)
    if isinstance(cache, str | os.PathLike):
        opened = ResultCache(os.fspath(cache))
        return CachePolicy(opened, opened, write_behind=write_behind)
    raise ConfigError(
        f"cache: {cache!r} is not a cache setting; use True, False, a folder, an fsspec URL or a ResultCache"
    )


def apply_cache(separator: Separator, cache: Any, *, owned: bool = True) -> Separator:
    """``separator`` with the result cache the policy gives it (``cache`` as ``cache=`` takes it).

    A composite that stemkit built (``owned``) and that exposes a ``members`` list — a fallback chain — has
    each member wrapped instead, so each provider's results are kept under its own key and policy: a chain
    that fell back to a local model today still asks the hosted provider (or its cached result) first
    tomorrow. A Separator the caller built is never modified: it is wrapped whole, and closing the wrapper
    leaves it open.
    """
    from stemkit.cache.separator import CachedSeparator

    policy = resolve_cache(cache)
    if not policy.enabled or isinstance(separator, CachedSeparator):
        return separator
    members = getattr(separator, "members", None)
    if owned and isinstance(members, list):
        members[:] = [apply_cache(member, policy) for member in members]
        return separator
    store = policy.for_separator(separator)
    if store is None:
        return separator
    return CachedSeparator(separator, store, close_inner=owned, write_behind=policy.write_behind)


def cli_cache(directory: str | None, disabled: bool) -> Any:
    """The ``cache=`` value for the command line's ``--cache DIR`` / ``--no-cache``."""
    if directory is not None and disabled:
        raise ConfigError("--cache and --no-cache both given; use one")
    if disabled:
        return False
    return directory
