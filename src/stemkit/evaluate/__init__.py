"""Separation quality: the field's metrics, ``compare`` across providers, and reports.

Nothing here is imported by ``import stemkit``; names load on first use, so ``stemkit.evaluate.metrics``
(numpy only) stays cheap for a caller who only wants a metric.

    >>> from stemkit.evaluate import sdr, si_sdr                 # doctest: +SKIP
    >>> report = stemkit.compare("song.wav", ["dsp"], references="refs/")   # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stemkit.evaluate.bsseval import bss_eval
    from stemkit.evaluate.cache import SeparationCache
    from stemkit.evaluate.comparison import compare
    from stemkit.evaluate.metrics import agreement, mixture_consistency, sdr, sdr_and_si_sdr, si_sdr, song_sdr
    from stemkit.evaluate.report import Report, RunRecord, Score

_LAZY = {
    "sdr": "stemkit.evaluate.metrics",
    "si_sdr": "stemkit.evaluate.metrics",
    "sdr_and_si_sdr": "stemkit.evaluate.metrics",
    "song_sdr": "stemkit.evaluate.metrics",
    "mixture_consistency": "stemkit.evaluate.metrics",
    "agreement": "stemkit.evaluate.metrics",
    "bss_eval": "stemkit.evaluate.bsseval",
    "compare": "stemkit.evaluate.comparison",
    "Report": "stemkit.evaluate.report",
    "RunRecord": "stemkit.evaluate.report",
    "Score": "stemkit.evaluate.report",
    "SeparationCache": "stemkit.evaluate.cache",
}

__all__ = [
    "Report",
    "RunRecord",
    "Score",
    "SeparationCache",
    "agreement",
    "bss_eval",
    "compare",
    "mixture_consistency",
    "sdr",
    "sdr_and_si_sdr",
    "si_sdr",
    "song_sdr",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'stemkit.evaluate' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
