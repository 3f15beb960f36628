"""Run the EzStems emulator in-process, for tests and benchmarks (yours and ours)::

    with running_emulator(processing_seconds=0) as emu:
        stems = stemkit.separate("song.wav", provider=f"ezstems?base_url={emu.base_url}",
                                 api_key=emu.api_key)
        emu.count("GET", "status")           # requests that reached the server, faulted ones included

Needs stemkit's ``emulators`` extra (starlette, uvicorn, python-multipart):
``pip install "stemkit[ezstems,emulators]"``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from stemkit.hosted.emulator import EmulatorSettings, run_in_thread
from stemkit.hosted.faults import FaultPlan
from stemkit_ezstems.emulator._app import DEFAULT_API_KEY, PREFIX, EmulatorRuntime, EmulatorState, build

__all__ = ["RunningEmulator", "running_emulator"]


@dataclass(frozen=True)
class RunningEmulator:
    """A served emulator: where it listens, its state (jobs, keys, pause/resume) and its request log."""

    runtime: EmulatorRuntime
    base_url: str
    origin: str
    api_key: str

    @property
    def state(self) -> EmulatorState:
        return self.runtime.state

    def count(self, method: str, endpoint: str) -> int:
        """Requests of ``method`` that reached ``endpoint`` (upload, status, download, keys)."""
        return self.runtime.count(method, endpoint)

    def faults(self, *faults: str) -> FaultPlan:
        """Replace the active faults (``--fault`` strings; ``path=/status.php`` limits one to an endpoint)."""
        return self.runtime.set_faults(*faults)


@contextlib.contextmanager
def running_emulator(
    *faults: str,
    processing_seconds: float = 0.0,
    api_key: str | None = None,
    host: str = "127.0.0.1",
    **options: object,
) -> Iterator[RunningEmulator]:
    """Serve an emulator on loopback (a free port) for the duration of the block.

    ``faults`` are ``--fault`` strings; ``options`` are the emulator's ``--option``s (plan, rate_limit,
    rate_window, workers).
    """
    settings = EmulatorSettings(
        api_key=api_key,
        processing_seconds=processing_seconds,
        faults=FaultPlan.parse(faults),
        options={k: str(v) for k, v in options.items()},
    )
    runtime = build(settings)
    with run_in_thread(runtime.app, host=host, api_path=PREFIX) as server:
        yield RunningEmulator(runtime, server.base_url, server.url, api_key or DEFAULT_API_KEY)
