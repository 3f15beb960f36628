"""Compositions of providers: separations no single provider can do alone.

``Fitted`` makes an input fit a provider's limits (transcoding, padding, splitting into overlapping chunks
and stitching the stems back).
"""

from __future__ import annotations

from stemkit.compose.fit import FitMode, FitPlan, Fitted, SentAudio, estimate_sent, plan_fit

__all__ = ["FitMode", "FitPlan", "Fitted", "SentAudio", "estimate_sent", "plan_fit"]
