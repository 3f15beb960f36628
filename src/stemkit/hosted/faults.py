"""Fault injection for emulators, described by short strings (``stemkit emulate NAME --fault ...``).

Grammar: ``KIND[=VALUE][:KEY=VALUE[,KEY=VALUE...]]``. ``VALUE`` sets the kind's main parameter.

=================  ===========================================================  ==============
kind (aliases)     what the emulator does                                       main parameter
=================  ===========================================================  ==============
rate-limit (429)   answers API requests with 429 + Retry-After (``retry_after``)  count
forbidden (403)    answers API requests with 403 + Retry-After (``retry_after``)  count
server-error (5xx) answers API requests with ``status`` (default 500)            rate
latency (slow)     delays every API request by ``seconds``                        seconds
truncate           cuts an API response body in half, then closes the connection  count
drop-download      closes the connection ``after`` (0-1) of a download's body     count
fail-job           the job ends FAILED with ``message``                           count
expire-job         the job ends EXPIRED                                          count
expire-urls        the presigned URLs handed out are already expired              count
corrupt-zip        an archive download is damaged (``variant``: emulator-defined)  count
hostile-zip        an archive download has a hostile entry (``variant``)          count
=================  ===========================================================  ==============

Every kind also takes ``count=N`` (fire for the first N eligible events) and ``rate=P`` (fire for each
eligible event with probability P, from a seeded generator, so runs are reproducible); with neither, the
fault fires every time. ``path=GLOB`` (matched against the end of the request path, e.g. ``/jobs`` or
``/jobs/*``) and ``method=POST`` restrict which requests are eligible. Examples:
``429:count=2,retry_after=0``, ``5xx=0.2``, ``latency=0.05``, ``drop-download:count=1,after=0.3``,
``fail-job:message=corrupt input``, ``truncate:count=1,path=/jobs,method=POST``.

Not every emulator can place every fault (StemSplit has no archives to corrupt, EzStems no presigned URLs to
expire): each declares the kinds it fires (``fault_kinds``, at least :data:`MIDDLEWARE_FAULTS` when it installs
the kit's middleware), and :func:`check_supported` refuses a plan with any other kind, so a fault that would
never fire is a ``ConfigError`` instead of a test that silently checks nothing.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stemkit.errors import ConfigError

__all__ = ["FAULT_KINDS", "MIDDLEWARE_FAULTS", "Fault", "FaultPlan", "check_supported", "parse_fault"]

# kind -> (main parameter, {parameter: type}, defaults)
FAULT_KINDS: dict[str, tuple[str, dict[str, type], dict[str, Any]]] = {
    "rate-limit": ("count", {"retry_after": float}, {"retry_after": 1.0}),
    "forbidden": ("count", {"retry_after": float}, {"retry_after": 1.0}),
    "server-error": ("rate", {"status": int}, {"status": 500}),
    "latency": ("seconds", {"seconds": float}, {"seconds": 0.1}),
    "truncate": ("count", {}, {}),
    "drop-download": ("count", {"after": float}, {"after": 0.5}),
    "fail-job": ("count", {"message": str}, {"message": "Processing failed (injected fault)"}),
    "expire-job": ("count", {}, {}),
    "expire-urls": ("count", {}, {}),
    "corrupt-zip": ("count", {"variant": str}, {"variant": "damaged"}),
    "hostile-zip": ("count", {"variant": str}, {"variant": "zip-slip"}),
}
#: The kinds :class:`stemkit.hosted.emulator.FaultMiddleware` fires itself, in any emulator that installs it.
MIDDLEWARE_FAULTS = frozenset({"latency", "rate-limit", "forbidden", "server-error", "truncate"})
_ALIASES = {
    "429": "rate-limit",
    "403": "forbidden",
    "5xx": "server-error",
    "slow": "latency",
    "drop": "drop-download",
}
_COMMON: dict[str, type] = {"count": int, "rate": float, "path": str, "method": str}


@dataclass(frozen=True)
class Fault:
    """One parsed fault: when it fires (``count`` / ``rate``) and its parameters."""

    kind: str
    count: int | None = None
    rate: float | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    path: str | None = None
    method: str | None = None

    def applies(self, path: str | None, method: str | None) -> bool:
        """Whether a request matches the ``path`` (a glob on the path's end) and ``method`` filters."""
        if self.path is not None and path is not None and not fnmatch.fnmatchcase(path, "*" + self.path):
            return False
        return self.method is None or method is None or self.method.upper() == method.upper()

    def __getitem__(self, name: str) -> Any:
        return self.params[name]


def _convert(kind: str, key: str, raw: str, types: Mapping[str, type]) -> Any:
    typ = types.get(key) or _COMMON.get(key)
    if typ is None:
        known = ", ".join(sorted({*types, *_COMMON}))
        raise ConfigError(f"fault {kind!r}: unknown parameter {key!r}; known parameters: {known}")
    try:
        value = typ(raw)
    except ValueError:
        raise ConfigError(f"fault {kind!r}: {key}={raw!r} is not a valid {typ.__name__}") from None
    if key == "rate" and not 0.0 <= value <= 1.0:
        raise ConfigError(f"fault {kind!r}: rate must be between 0 and 1, not {raw}")
    if key == "count" and value < 0:
        raise ConfigError(f"fault {kind!r}: count must be 0 or more, not {raw}")
    return value


def parse_fault(text: str) -> Fault:
    """Parse one ``--fault`` string; a bad one raises ConfigError naming the known kinds and parameters."""
    head, _, tail = text.strip().partition(":")
    name, _, main_value = head.partition("=")
    kind = _ALIASES.get(name.strip().lower(), name.strip().lower())
    status_alias = name.strip().isdigit() and name.strip().startswith("5")
    if status_alias:
        kind = "server-error"
    if kind not in FAULT_KINDS:
        known = ", ".join([*FAULT_KINDS, *_ALIASES])
        raise ConfigError(f"unknown fault {name!r} in {text!r}; known faults: {known}")
    main, types, defaults = FAULT_KINDS[kind]
    values: dict[str, Any] = dict(defaults)
    if status_alias:
        values["status"] = int(name)
    pairs: list[tuple[str, str]] = [("", main_value)] if main_value else []
    for part in filter(str.strip, tail.split(",")):
        key, _, raw = part.partition("=")
        pairs.append((key, raw))
    for given, raw in pairs:
        key = (given.strip() or main).replace("-", "_")
        if not raw.strip():
            raise ConfigError(f"fault {kind!r}: parameter {key!r} needs a value ({key}=...)")
        values[key] = _convert(kind, key, raw.strip(), types)
    count, rate = values.pop("count", None), values.pop("rate", None)
    path, method = values.pop("path", None), values.pop("method", None)
    return Fault(kind, count, rate, values, path, method)


class FaultPlan:
    """The faults an emulator injects, with thread-safe bookkeeping of what fired.

    ``fire(kind)`` is asked at each eligible event and returns the Fault when it fires (consuming one of its
    ``count``); ``fired`` counts firings per kind so tests can assert them.
    """

    def __init__(self, faults: Iterable[Fault] = (), *, seed: int = 0) -> None:
        self._faults = {f.kind: f for f in faults}
        self._left = {f.kind: f.count for f in self._faults.values()}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.fired: Counter[str] = Counter()

    @classmethod
    def parse(cls, texts: Iterable[str], *, seed: int = 0) -> FaultPlan:
        return cls([parse_fault(t) for t in texts], seed=seed)

    def __contains__(self, kind: str) -> bool:
        return kind in self._faults

    def __bool__(self) -> bool:
        return bool(self._faults)

    @property
    def kinds(self) -> frozenset[str]:
        """The fault kinds this plan holds."""
        return frozenset(self._faults)

    def get(self, kind: str) -> Fault | None:
        """The configured fault of this kind, without firing it."""
        return self._faults.get(kind)

    def fire(self, kind: str, *, path: str | None = None, method: str | None = None) -> Fault | None:
        """The fault, when it fires for this event (``path``/``method``: the request, when there is one)."""
        fault = self._faults.get(kind)
        if fault is None or not fault.applies(path, method):
            return None
        with self._lock:
            left = self._left[kind]
            if left is not None and left <= 0:
                return None
            if fault.rate is not None and self._rng.random() >= fault.rate:
                return None
            if left is not None:
                self._left[kind] = left - 1
            self.fired[kind] += 1
            return fault

    def describe(self) -> str:
        parts = []
        for f in self._faults.values():
            when = [f"count={f.count}"] if f.count is not None else []
            when += [f"rate={f.rate}"] if f.rate is not None else []
            parts.append(":".join([f.kind, ",".join(when + [f"{k}={v}" for k, v in f.params.items()])]))
        return "; ".join(parts) or "none"


def check_supported(plan: FaultPlan, supported: Iterable[str], *, emulator: str) -> None:
    """Refuse a plan holding a fault kind the emulator does not fire, listing the kinds it does."""
    allowed = frozenset(supported)
    unsupported = sorted(plan.kinds - allowed)
    if unsupported:
        listed = ", ".join(kind for kind in FAULT_KINDS if kind in allowed)
        raise ConfigError(
            f"the {emulator} emulator does not implement the fault(s) {', '.join(unsupported)}; "
            f"it supports: {listed}"
        )
