"""EzStems (hosted Spleeter, ZIP results) for stemkit: the ``ezstems`` provider, its API client (with key
management) and an offline emulator (``stemkit emulate ezstems``)."""

from __future__ import annotations

from stemkit_ezstems._archive import ArchiveWarning, ZipLimits, extract_stems
from stemkit_ezstems._models import ApiKeyInfo, GeneratedKey, StatusData, UploadData
from stemkit_ezstems.client import AsyncEzStemsClient, EzStemsClient
from stemkit_ezstems.separator import EzStemsOptions, EzStemsSeparator

__all__ = [
    "ApiKeyInfo",
    "ArchiveWarning",
    "AsyncEzStemsClient",
    "EzStemsClient",
    "EzStemsOptions",
    "EzStemsSeparator",
    "GeneratedKey",
    "StatusData",
    "UploadData",
    "ZipLimits",
    "extract_stems",
]
