"""A faithful StemSplit emulator: ``stemkit emulate stemsplit``, and the server the tests run against.

It speaks the documented wire format (every path of the OpenAPI document plus ``/youtube-jobs``), keeps
jobs, separates for real with the ``dsp`` provider, serves signed, expiring presigned URLs on the same
server (refusing any request to them that carries an ``Authorization`` header, as object storage does),
charges credits, rate-limits (``X-RateLimit-*`` on every API answer), signs webhook deliveries, and injects
the faults of :mod:`stemkit.hosted.faults`.

In tests::

    emulator = StemSplitEmulator(EmulatorConfig(processing_seconds=0.2))
    with emulator.serve() as server:
        client = StemSplitClient(emulator.config.api_key, base_url=server.base_url)
        ...
    emulator.recorder.requests        # every request that reached it
    emulator.state.jobs               # every job, with completed_clock for timing

Emulator-specific options (``--option KEY=VALUE``): credits, rate_limit, youtube_file, max_file_mb,
min_duration, queue_seconds, revoked_key. YouTube is never contacted: YouTube jobs fail with a clear message
unless ``youtube_file`` names a local file to serve for them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from starlette.types import ASGIApp

from stemkit.hosted.emulator import EmulatorSettings, RunningServer, run_in_thread
from stemkit_stemsplit.emulator._app import API_PATH, FAULT_KINDS, build_app
from stemkit_stemsplit.emulator._model import DEFAULT_API_KEY, EmulatorConfig, JobRecord, State

__all__ = [
    "API_PATH",
    "DEFAULT_API_KEY",
    "EMULATOR",
    "FAULT_KINDS",
    "EmulatorConfig",
    "JobRecord",
    "StemSplitEmulator",
]


class StemSplitEmulator:
    """One emulator instance: its state, its ASGI app, and a way to serve it on loopback."""

    fault_kinds = FAULT_KINDS

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.state = State(self.config)
        self.app, self._emulator = build_app(self.state)
        self.recorder = self.app

    @contextlib.contextmanager
    def serve(self, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[RunningServer]:
        """Serve on loopback in a background thread; storage is removed on exit."""
        try:
            with run_in_thread(self.app, host=host, port=port, api_path=API_PATH) as server:
                yield server
        finally:
            self.state.close()


class _Entry:
    """What the ``stemkit.emulators`` entry point ``stemsplit`` names."""

    api_path = API_PATH
    default_api_key = DEFAULT_API_KEY
    fault_kinds = FAULT_KINDS
    #: what ``stemkit emulate stemsplit`` tells the user to set, so the stemsplit provider talks to it
    base_url_env = "STEMSPLIT_BASE_URL"
    api_key_env = "STEMSPLIT_API_KEY"

    def create_app(self, settings: EmulatorSettings) -> ASGIApp:
        return StemSplitEmulator(EmulatorConfig.from_settings(settings)).app


EMULATOR = _Entry()
