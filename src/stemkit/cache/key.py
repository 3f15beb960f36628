"""The cache key: what a separation's result depends on, hashed.

A key is the SHA-256 of a canonical JSON document holding the input's content hash, the provider's identity
(:func:`separator_identity`: name, target, validated options with defaults filled in and secrets left out, and
the plugin distribution's version — or whatever the provider's own ``cache_identity()`` says) and the requested
stems. Change any of these and the key changes; rename or move the input file and it does not, because only
the input's bytes count.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from stemkit.config import is_secret_key
from stemkit.protocol import Separator
from stemkit.registry import distribution_version
from stemkit.stems import normalize_request

__all__ = ["KEY_FORMAT", "cache_key", "separator_identity"]

#: Bumped when the key's recipe or the entry format changes, so old entries are never misread.
KEY_FORMAT = 1


def separator_identity(separator: Separator, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What identifies ``separator``'s output for a call with ``options`` (JSON-ready, never a secret).

    A provider states it with ``cache_identity(options)`` (SeparatorBase provides one); a composite that
    exposes ``members`` (a fallback chain) is identified by its members in order; anything else written to
    the Separator protocol by its spec, options and distribution version.
    """
    own = getattr(separator, "cache_identity", None)
    if callable(own):
        identity = own(dict(options or {}))
        if not isinstance(identity, Mapping):
            raise TypeError(f"{separator.spec}: cache_identity() returned {type(identity).__name__}, not a dict")
        return dict(identity)
    members = getattr(separator, "members", None)
    if isinstance(members, list | tuple) and members:
        # The composite's spec carries its own settings (an ensemble's weights and options); members their own.
        return {"composite": separator.spec, "members": [separator_identity(member) for member in members]}
    return {
        "spec": separator.spec,
        "options": {k: v for k, v in sorted((options or {}).items()) if not is_secret_key(k)},
        "version": distribution_version(type(separator)),
    }


def cache_key(input_sha256: str, identity: Mapping[str, Any], stems: Iterable[str] | str | None) -> str:
    """The entry's name: a hex SHA-256 of (format, input hash, provider identity, requested stems).

    Requested stems are canonicalized and sorted, so ``vocals,drums`` and ``drums,vocals`` share an entry;
    ``None`` (the provider's default set) is its own entry.
    """
    requested = normalize_request(stems)
    document = {
        "format": KEY_FORMAT,
        "input": input_sha256,
        "identity": identity,
        "stems": sorted(requested) if requested is not None else None,
    }
    payload = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()
