"""The ezstems provider passes stemkit's provider conformance suite, against its emulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stemkit.hosted import PollPolicy, RetryPolicy
from stemkit.protocol import Separator
from stemkit.testing import ProviderConformance
from stemkit_ezstems import EzStemsSeparator
from stemkit_ezstems.testing import RunningEmulator


class TestEzStemsConformance(ProviderConformance):
    @pytest.fixture
    def separator(
        self, emulator: RunningEmulator, fast_retry: RetryPolicy, fast_poll: PollPolicy
    ) -> Iterator[Separator]:
        options = {"base_url": emulator.base_url, "output": "wav"}
        with EzStemsSeparator(options=options, api_key=emulator.api_key, retry=fast_retry, poll=fast_poll) as sep:
            yield sep

    @pytest.fixture
    def secret(self, emulator: RunningEmulator) -> str:
        return emulator.api_key
