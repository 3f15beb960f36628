"""The EzStems emulator, served by ``stemkit emulate ezstems`` (entry point group ``stemkit.emulators``).

See :mod:`stemkit_ezstems.emulator._app` for what it does, its options and its faults.
"""

from __future__ import annotations

from starlette.types import ASGIApp

from stemkit.hosted.emulator import EmulatorSettings
from stemkit_ezstems.emulator._app import (
    DEFAULT_API_KEY,
    FAULT_KINDS,
    PREFIX,
    EmulatorRuntime,
    EmulatorState,
    EzStemsSettings,
    build,
)
from stemkit_ezstems.emulator._zips import CORRUPT_VARIANTS, HOSTILE_VARIANTS

__all__ = [
    "CORRUPT_VARIANTS",
    "DEFAULT_API_KEY",
    "EMULATOR",
    "FAULT_KINDS",
    "HOSTILE_VARIANTS",
    "EmulatorRuntime",
    "EmulatorState",
    "EzStemsEmulator",
    "EzStemsSettings",
    "build",
]


class EzStemsEmulator:
    """The object the ``ezstems`` entry point of ``stemkit.emulators`` names."""

    api_path = PREFIX
    fault_kinds = FAULT_KINDS
    default_api_key = DEFAULT_API_KEY
    #: what ``stemkit emulate ezstems`` tells the user to set, so the ezstems provider talks to it
    base_url_env = "EZSTEMS_BASE_URL"
    api_key_env = "EZSTEMS_API_KEY"

    def create_app(self, settings: EmulatorSettings) -> ASGIApp:
        return build(settings).app


EMULATOR = EzStemsEmulator()
