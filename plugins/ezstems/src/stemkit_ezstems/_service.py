"""What EzStems offers, as its API document states it: Spleeter configurations and plan size limits.

The client (to plan and to check a file before uploading it) and the emulator (to enforce the same limits)
read these tables, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

__all__ = [
    "CANONICAL_BY_STEMS",
    "DEFAULT_BASE_URL",
    "DEFAULT_PLAN",
    "PLAN_LIMITS",
    "PLAN_TITLES",
    "SPLEETER_STEMS",
    "UPLOAD_FORMATS",
    "Plan",
    "StemCount",
]

DEFAULT_BASE_URL = "https://ezstems.com/api/v1"

StemCount = Literal[2, 4, 5]
Plan = Literal["basic", "premium", "pro", "custom"]

#: Spleeter's own stem names for each configuration, in the order Spleeter writes them.
SPLEETER_STEMS: Mapping[int, tuple[str, ...]] = {
    2: ("vocals", "accompaniment"),
    4: ("vocals", "drums", "bass", "other"),
    5: ("vocals", "drums", "bass", "piano", "other"),
}

#: The same configurations in stemkit's canonical vocabulary (``accompaniment`` is ``instrumental``).
CANONICAL_BY_STEMS: Mapping[int, tuple[str, ...]] = {
    2: ("vocals", "instrumental"),
    4: ("vocals", "drums", "bass", "other"),
    5: ("vocals", "drums", "bass", "piano", "other"),
}

_MB = 1024 * 1024
#: Maximum upload size per subscription level. The document says "30 MB" etc.; the service is PHP, whose
#: ``upload_max_filesize = 30M`` means MiB, so MiB it is. "Custom Plans: up to 300 MB" is the ceiling.
PLAN_LIMITS: Mapping[str, int] = {
    "basic": 30 * _MB,
    "premium": 40 * _MB,
    "pro": 75 * _MB,
    "custom": 300 * _MB,
}
PLAN_TITLES: Mapping[str, str] = {
    "basic": "Basic (Premium)",
    "premium": "Premium",
    "pro": "Pro",
    "custom": "Custom",
}
DEFAULT_PLAN: Plan = "basic"

#: Upload formats the document lists (file extensions, lower case).
UPLOAD_FORMATS = frozenset({"mp3", "wav", "m4a"})
