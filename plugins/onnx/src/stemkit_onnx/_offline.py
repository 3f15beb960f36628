"""Whether downloads are allowed: ``STEMKIT_OFFLINE`` (stemkit's own switch) or ``HF_HUB_OFFLINE``.

Offline, a model is used from its cache or not at all — at once, with no network attempt, no retry
and no library's retry chatter — and the message says what can work here instead.
"""

from __future__ import annotations

import os

from stemkit.routing import OFFLINE_ENV

__all__ = ["HF_OFFLINE_ENV", "OFFLINE_ENV", "offline_reason"]

HF_OFFLINE_ENV = "HF_HUB_OFFLINE"


def offline_reason() -> str | None:
    """Which variable forbids downloads (``"STEMKIT_OFFLINE is set"``), or None when they are allowed.

    ``STEMKIT_OFFLINE`` counts as set for any value but empty or ``0``, as the router reads it;
    ``HF_HUB_OFFLINE`` as huggingface_hub reads it (1/on/yes/true, here or when the hub was imported).
    """
    if os.environ.get(OFFLINE_ENV, "").strip() not in ("", "0"):
        return f"{OFFLINE_ENV} is set"
    if os.environ.get(HF_OFFLINE_ENV, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
        return f"{HF_OFFLINE_ENV} is set"
    import sys

    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and getattr(constants, "HF_HUB_OFFLINE", False):
        return f"{HF_OFFLINE_ENV} was set when huggingface_hub was imported"
    return None
