"""Separation quality: the field's metrics, ``compare`` across providers, and reports.

Nothing here is imported by ``import stemkit``; names load on first use, so ``stemkit.evaluate.metrics``
(numpy only) stays cheap for a caller who only wants a metric.

    >>> from stemkit.evaluate import sdr, si_sdr                 # doctest: +SKIP
    >>> report = stemkit.compare("song.wav", ["dsp"], references="refs/")   # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stemkit._lazy import lazy_exports

if TYPE_CHECKING:
    from stemkit.evaluate.bsseval import BssFrames, BssReferences, bss_eval, bss_eval_frames
    from stemkit.evaluate.cache import SeparationCache
    from stemkit.evaluate.comparison import compare
    from stemkit.evaluate.indicators import activity, clipped_samples, consensus, leakage, loudness, peak_dbfs
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
    "bss_eval_frames": "stemkit.evaluate.bsseval",
    "BssFrames": "stemkit.evaluate.bsseval",
    "BssReferences": "stemkit.evaluate.bsseval",
    "activity": "stemkit.evaluate.indicators",
    "clipped_samples": "stemkit.evaluate.indicators",
    "consensus": "stemkit.evaluate.indicators",
    "leakage": "stemkit.evaluate.indicators",
    "loudness": "stemkit.evaluate.indicators",
    "peak_dbfs": "stemkit.evaluate.indicators",
    "compare": "stemkit.evaluate.comparison",
    "Report": "stemkit.evaluate.report",
    "RunRecord": "stemkit.evaluate.report",
    "Score": "stemkit.evaluate.report",
    "SeparationCache": "stemkit.evaluate.cache",
}

__all__ = [
    "BssFrames",
    "BssReferences",
    "Report",
    "RunRecord",
    "Score",
    "SeparationCache",
    "activity",
    "agreement",
    "bss_eval",
    "bss_eval_frames",
    "clipped_samples",
    "compare",
    "consensus",
    "leakage",
    "loudness",
    "mixture_consistency",
    "peak_dbfs",
    "sdr",
    "sdr_and_si_sdr",
    "si_sdr",
    "song_sdr",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
