"""stemkit: one API for every music stem separation service and model.

    >>> import stemkit
    >>> stems = stemkit.separate("song.wav", provider="dsp")          # doctest: +SKIP
    >>> stems["vocals"].audio.shape                                    # doctest: +SKIP
    (2, 1323000)

Importing stemkit is cheap: providers, HTTP clients and numeric back ends load when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stemkit._lazy import lazy_exports
from stemkit.errors import (
    AllProvidersFailedError,
    AuthenticationError,
    BudgetExceededError,
    ConfigError,
    InputError,
    JobExpiredError,
    JobFailedError,
    OutputError,
    PermissionDeniedError,
    ProtocolError,
    ProviderError,
    ProviderLimitError,
    ProviderUnavailableError,
    QuotaExceededError,
    RateLimitError,
    SeparationTimeout,
    StemkitError,
)

if TYPE_CHECKING:
    from stemkit.api import aseparate, load, separate
    from stemkit.batch import BatchItem, aseparate_many, separate_many
    from stemkit.compose.ensemble import ensemble
    from stemkit.compose.pipeline import Stage, pipeline
    from stemkit.cost import Estimate, Estimates, aestimate, estimate
    from stemkit.evaluate.comparison import compare
    from stemkit.protocol import Capabilities, ProgressEvent, Separator
    from stemkit.registry import ProviderInfo, providers
    from stemkit.resuming import aresume, resume
    from stemkit.stemset import Stem, StemSet

__version__ = "0.1.0"

_LAZY = {
    "separate": "stemkit.api",
    "aseparate": "stemkit.api",
    "load": "stemkit.api",
    "separate_many": "stemkit.batch",
    "compare": "stemkit.evaluate.comparison",
    "aseparate_many": "stemkit.batch",
    "BatchItem": "stemkit.batch",
    "providers": "stemkit.registry",
    "ProviderInfo": "stemkit.registry",
    "Stem": "stemkit.stemset",
    "StemSet": "stemkit.stemset",
    "Capabilities": "stemkit.protocol",
    "ProgressEvent": "stemkit.protocol",
    "Separator": "stemkit.protocol",
    "ensemble": "stemkit.compose.ensemble",
    "pipeline": "stemkit.compose.pipeline",
    "Stage": "stemkit.compose.pipeline",
    "estimate": "stemkit.cost",
    "aestimate": "stemkit.cost",
    "Estimate": "stemkit.cost",
    "Estimates": "stemkit.cost",
    "resume": "stemkit.resuming",
    "aresume": "stemkit.resuming",
}

__all__ = [
    "AllProvidersFailedError",
    "AuthenticationError",
    "BatchItem",
    "BudgetExceededError",
    "Capabilities",
    "ConfigError",
    "Estimate",
    "Estimates",
    "InputError",
    "JobExpiredError",
    "JobFailedError",
    "OutputError",
    "PermissionDeniedError",
    "ProgressEvent",
    "ProtocolError",
    "ProviderError",
    "ProviderInfo",
    "ProviderLimitError",
    "ProviderUnavailableError",
    "QuotaExceededError",
    "RateLimitError",
    "SeparationTimeout",
    "Separator",
    "Stage",
    "Stem",
    "StemSet",
    "StemkitError",
    "aestimate",
    "aresume",
    "aseparate",
    "aseparate_many",
    "compare",
    "ensemble",
    "estimate",
    "load",
    "pipeline",
    "providers",
    "resume",
    "separate",
    "separate_many",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
