"""The stemsplit provider passes stemkit's provider conformance suite, against its emulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stemkit.protocol import Separator
from stemkit.testing import ProviderConformance

from .conftest import KEY, Serve


class TestStemSplitConformance(ProviderConformance):
    @pytest.fixture
    def separator(self, serve: Serve) -> Iterator[Separator]:
        with serve(processing_seconds=0.02, queue_seconds=0.0).separator(options={"format": "wav"}) as separator:
            yield separator

    @pytest.fixture
    def secret(self) -> str:
        return KEY
