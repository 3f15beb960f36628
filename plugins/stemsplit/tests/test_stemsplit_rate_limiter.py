"""The transport's rate-limit hook, seen through a real StemSplit separation against the emulator: every API
request asks the installed limiter first (presigned storage never does), every API answer is reported, a 429's
Retry-After reaches it, and a limiter that never lets a request go is bounded by the caller's deadline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from stemkit.errors import SeparationTimeout
from stemkit.hosted import RateLimitInfo, RateScope, installed_rate_limiter, rate_limited


class Recording:
    def __init__(self) -> None:
        self.acquired: list[RateScope] = []
        self.observed: list[tuple[RateScope, int, RateLimitInfo]] = []

    async def acquire(self, scope: RateScope) -> None:
        self.acquired.append(scope)

    async def observe(self, scope: RateScope, status: int, info: RateLimitInfo) -> None:
        self.observed.append((scope, status, info))


def test_each_api_request_asks_the_limiter_and_storage_transfers_do_not(served: Any, song: Path) -> None:
    limiter = Recording()
    with rate_limited(limiter), served.separator() as sep:
        sep.separate(song)
    api = [r for r in served.requests if r.path.startswith("/api/v1")]
    storage = [r for r in served.requests if not r.path.startswith("/api/v1")]
    assert storage  # the upload and the downloads went to presigned storage
    assert len(limiter.acquired) == len(api)
    assert {(s.provider, s.base_url) for s in limiter.acquired} == {("stemsplit", served.base_url)}
    assert [status for _, status, _ in limiter.observed] == [r.status for r in api]
    assert all(info.limit == 60 for _, _, info in limiter.observed)
    assert installed_rate_limiter() is None  # put back as it was


def test_a_429_and_its_retry_after_reach_the_limiter(serve: Any, song: Path) -> None:
    served = serve(faults=["429:count=1,retry_after=1,path=/jobs,method=POST"])
    limiter = Recording()
    with rate_limited(limiter), served.separator() as sep:
        sep.separate(song)
    refused = [info for _, status, info in limiter.observed if status == 429]
    assert len(refused) == 1
    assert refused[0].retry_after == pytest.approx(1.0)


def test_a_limiter_wait_is_bounded_by_the_callers_deadline(served: Any, song: Path) -> None:
    class Closed(Recording):
        async def acquire(self, scope: RateScope) -> None:
            await anyio.sleep(3600)

    with rate_limited(Closed()), served.separator() as sep, pytest.raises(SeparationTimeout):
        sep.separate(song, timeout=0.5)
    assert not [r for r in served.requests if r.path.startswith("/api/v1")]
