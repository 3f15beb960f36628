"""stemkit-ray: run ``separate_many`` and ``stemkit separate`` on a Ray cluster, with the same API.

    >>> import stemkit
    >>> for item in stemkit.separate_many(["catalogue/"], "dsp", output_dir="stems",
    ...                                   engine="ray", engine_options={"address": "auto"}):  # doctest: +SKIP
    ...     print(item.name, item.ok)

The engine (entry point ``ray`` in the group ``stemkit.engines``) runs a Ray Data pipeline: inputs listed and
hashed, decoded in CPU tasks, separated in a pool of actors that each load the provider once, and written by
CPU tasks; a manifest beside the outputs; one rate limiter for the whole cluster; a progress bar in the driver.
"""

from __future__ import annotations

from stemkit_ray.engine import RayEngine, RayOptions
from stemkit_ray.errors import RayEngineError, WorkerLostError
from stemkit_ray.manifest import FIELDS as MANIFEST_FIELDS
from stemkit_ray.ratelimit import ClusterRateLimiter, Rate, SlidingWindow, parse_rate

__all__ = [
    "MANIFEST_FIELDS",
    "ClusterRateLimiter",
    "Rate",
    "RayEngine",
    "RayEngineError",
    "RayOptions",
    "SlidingWindow",
    "WorkerLostError",
    "parse_rate",
]

__version__ = "0.1.0"
