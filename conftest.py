"""Every test gets a result cache of its own: nothing reads or fills the user's real cache folder, and no
test sees another's entries (a cached hosted result would hide the requests a test counts)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_result_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEMKIT_CACHE_DIR", str(tmp_path_factory.mktemp("stemkit-cache")))
