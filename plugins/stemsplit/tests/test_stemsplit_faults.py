"""Each injected fault is either retried within the policy (request counts asserted) or surfaced as the
right stemkit error, and no half-written file is ever left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stemkit.errors import PermissionDeniedError, ProviderUnavailableError, RateLimitError
from stemkit.hosted import PresignedURLRejected

Served = Any
Serve = Any


def _no_partial_files(directory: Path) -> None:
    assert [p.name for p in directory.rglob("*") if p.name.endswith(".part") or p.name.startswith(".")] == []


def test_429_storm_is_retried_honoring_retry_after(serve: Serve, song: Path) -> None:
    served = serve(faults=["429:count=2,retry_after=0,path=/upload"])
    with served.separator() as sep:
        sep.separate(song, stems=["vocals"])
    assert served.count("POST", "/upload") == 3
    assert served.emulator.config.faults.fired["rate-limit"] == 2


def test_429_past_the_retry_budget_is_a_rate_limit_error_with_its_headers(serve: Serve, song: Path) -> None:
    served = serve(faults=["429:retry_after=0,path=/upload"])
    with served.separator() as sep, pytest.raises(RateLimitError) as info:
        sep.separate(song)
    assert served.count("POST", "/upload") == 3  # FAST_RETRY: 3 attempts
    assert (info.value.retry_after, info.value.limit, info.value.remaining) == (0.0, 60, 0)
    assert info.value.retryable


def test_retry_after_longer_than_the_policy_allows_is_surfaced_at_once(serve: Serve, song: Path) -> None:
    served = serve(faults=["429:retry_after=3600,path=/upload"])
    with served.separator() as sep, pytest.raises(RateLimitError) as info:
        sep.separate(song)
    assert served.count("POST", "/upload") == 1
    assert info.value.retry_after == 3600


def test_share_of_5xx_answers_is_retried(serve: Serve, song: Path) -> None:
    served = serve(faults=["5xx:count=2,status=503,path=/jobs/*"])
    with served.separator() as sep:
        result = sep.separate(song, stems=["vocals"])
    assert result.provenance.job_id
    assert served.emulator.config.faults.fired["server-error"] == 2


def test_persistent_5xx_is_provider_unavailable(serve: Serve, song: Path) -> None:
    served = serve(faults=["500:path=/upload"])
    with served.separator() as sep, pytest.raises(ProviderUnavailableError) as info:
        sep.separate(song)
    assert served.count("POST", "/upload") == 3
    assert info.value.status_code == 500
    assert info.value.request_id is not None


def test_a_5xx_on_a_post_without_idempotency_key_is_not_replayed(serve: Serve) -> None:
    served = serve(faults=["500:path=/webhooks"])
    with served.client() as client:
        transport = client.transport
        with pytest.raises(ProviderUnavailableError):
            transport.request("POST", "/webhooks", json={"url": "https://example.com/h"})
    assert served.count("POST", "/webhooks") == 1


def test_403_storm_is_permission_denied_without_retries(serve: Serve, song: Path) -> None:
    served = serve(faults=["403:path=/upload"])
    with served.separator() as sep, pytest.raises(PermissionDeniedError):
        sep.separate(song)
    assert served.count("POST", "/upload") == 1


def test_added_latency_is_tolerated(serve: Serve, song: Path) -> None:
    served = serve(faults=["latency=0.05"])
    with served.separator() as sep:
        assert list(sep.separate(song, stems=["vocals"])) == ["vocals"]
    # Every API call was delayed: at least POST /upload, POST /jobs and one GET /jobs/{id} (storage is not API).
    assert served.emulator.config.faults.fired["latency"] >= 3


def test_truncated_job_creation_is_retried_with_the_same_idempotency_key(serve: Serve, song: Path) -> None:
    served = serve(faults=["truncate:count=1,path=/jobs,method=POST"])
    with served.separator() as sep:
        result = sep.separate(song, stems=["vocals"])
    posts = [r for r in served.requests if r.method == "POST" and r.path.endswith("/jobs")]
    assert len(posts) == 2
    keys = {r.headers["idempotency-key"] for r in posts}
    assert len(keys) == 1
    assert list(served.emulator.state.jobs) == [result.provenance.job_id]  # one job, charged once
    assert served.emulator.state.credits == 3600 - 2


def test_connection_dropped_mid_download_is_retried(serve: Serve, song: Path) -> None:
    served = serve(faults=["drop-download:count=1,after=0.4"])
    with served.separator() as sep:
        result = sep.separate(song, stems=["vocals"])
        workdir = result["vocals"].path.parent if result["vocals"].path else None
    assert served.count("GET", "/storage/outputs/") == 2
    if workdir is not None:
        _no_partial_files(workdir)


def test_downloads_cut_every_time_fail_cleanly_leaving_no_file(serve: Serve, song: Path, tmp_path: Path) -> None:
    served = serve(faults=["drop-download:after=0.5"])
    with served.client() as client:
        ticket = client.upload_file(song)
        url = served.emulator.state.presign(served.server.url, "GET", ticket.upload_key, 60)[0]
        out = tmp_path / "out"
        with pytest.raises(ProviderUnavailableError, match=r"cut|Protocol|incomplete"):
            client.download(url, out / "song.wav")
    assert served.count("GET", "/storage/") == 3
    assert list(out.iterdir()) == []


def test_urls_that_expire_early_are_refreshed_with_one_more_get(serve: Serve, song: Path) -> None:
    served = serve(faults=["expire-urls:count=1"])
    with served.separator() as sep:
        sep.separate(song, stems=["vocals", "instrumental"])
    rejected = [r for r in served.requests if r.path.startswith("/storage/outputs/") and r.status == 403]
    # The outputs download concurrently: each URL of the expired answer is refused at most once (a sibling
    # download cancelled by the first refusal may not get that far).
    assert 1 <= len(rejected) <= 2
    assert len({r.path for r in rejected}) == len(rejected)
    gets_after = [r for r in served.requests if r.method == "GET" and r.path.startswith("/api/v1/jobs/")]
    assert served.emulator.config.faults.fired["expire-urls"] == 1
    assert len(gets_after) >= 2


def test_urls_still_expired_after_the_refresh_surface(serve: Serve, song: Path) -> None:
    served = serve(faults=["expire-urls"])
    with served.separator() as sep, pytest.raises(PresignedURLRejected):
        sep.separate(song, stems=["vocals"])
    assert served.emulator.config.faults.fired["expire-urls"] == 2


def test_no_authorization_header_ever_reaches_storage(serve: Serve, song: Path) -> None:
    served = serve(faults=["expire-urls:count=1", "drop-download:count=1"])
    with served.separator() as sep:
        sep.separate(song, stems=["vocals", "drums", "bass", "other"])
    storage = [r for r in served.requests if r.path.startswith("/storage/")]
    assert len(storage) >= 6
    assert all("authorization" not in r.headers for r in storage)
    assert all(r.headers.get("authorization") == "***" for r in served.requests if r.path.startswith("/api/"))
    assert served.emulator.state.storage_auth_rejections == 0
