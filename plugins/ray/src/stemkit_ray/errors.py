"""The engine's own errors: both are :class:`stemkit.errors.StemkitError`, so a caller catches them by intent."""

from __future__ import annotations

from stemkit.errors import StemkitError

__all__ = ["RayEngineError", "WorkerLostError"]


class RayEngineError(StemkitError):
    """The run as a whole could not go on: Ray could not be reached or started, or its pipeline failed."""


class WorkerLostError(StemkitError):
    """One input's worker process died every time it was tried (a crash or an out-of-memory kill while
    decoding or separating it); the rest of the batch went on."""
