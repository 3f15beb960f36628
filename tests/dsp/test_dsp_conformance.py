"""The dsp provider passes stemkit's provider conformance suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import stemkit
from stemkit.protocol import Separator
from stemkit.testing import ProviderConformance


class TestDspConformance(ProviderConformance):
    @pytest.fixture
    def separator(self) -> Iterator[Separator]:
        with stemkit.load("dsp") as separator:
            yield separator
