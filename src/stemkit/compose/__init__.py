"""Composing providers: separations no single provider can do alone — ensembles, pipelines, and fitting an
input to a provider's limits.

    >>> sep = stemkit.ensemble(["stemsplit", "onnx:htdemucs_ft"], method="median")        # doctest: +SKIP
    >>> sep = stemkit.pipeline("stemsplit", Stage("onnx:htdemucs", feed="instrumental"))   # doctest: +SKIP

``Fitted`` makes an input fit a provider's limits (transcoding, padding, splitting into overlapping chunks and
stitching the stems back). Names load on first use, like stemkit's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stemkit._lazy import lazy_exports

if TYPE_CHECKING:
    from stemkit.compose.build import build
    from stemkit.compose.ensemble import Ensemble, ensemble
    from stemkit.compose.fit import FitMode, FitPlan, Fitted, SentAudio, estimate_sent, plan_fit
    from stemkit.compose.fit_weights import EnsembleFit, fit_ensemble
    from stemkit.compose.pipeline import Pipeline, Stage, pipeline

_LAZY = {
    "Ensemble": "stemkit.compose.ensemble",
    "ensemble": "stemkit.compose.ensemble",
    "Pipeline": "stemkit.compose.pipeline",
    "Stage": "stemkit.compose.pipeline",
    "pipeline": "stemkit.compose.pipeline",
    "build": "stemkit.compose.build",
    "EnsembleFit": "stemkit.compose.fit_weights",
    "fit_ensemble": "stemkit.compose.fit_weights",
    "FitMode": "stemkit.compose.fit",
    "FitPlan": "stemkit.compose.fit",
    "Fitted": "stemkit.compose.fit",
    "SentAudio": "stemkit.compose.fit",
    "estimate_sent": "stemkit.compose.fit",
    "plan_fit": "stemkit.compose.fit",
}

__all__ = [
    "Ensemble",
    "EnsembleFit",
    "FitMode",
    "FitPlan",
    "Fitted",
    "Pipeline",
    "SentAudio",
    "Stage",
    "build",
    "ensemble",
    "estimate_sent",
    "fit_ensemble",
    "pipeline",
    "plan_fit",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
