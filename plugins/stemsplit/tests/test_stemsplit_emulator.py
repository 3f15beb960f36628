"""The emulator speaks StemSplit's documented wire format (validated against the OpenAPI document)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from stemkit_stemsplit.emulator import DEFAULT_API_KEY as KEY

Serve = Any
Served = Any
Check = Callable[[httpx.Response, str, str], None]


def _upload(http: httpx.Client, path: Path) -> str:
    body = http.post("/upload", json={"filename": path.name}).json()
    put = httpx.put(body["uploadUrl"], content=path.read_bytes(), headers={"Content-Type": body["contentType"]})
    assert put.status_code == 200
    return str(body["uploadKey"])


def _wait(http: httpx.Client, path: str) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = http.get(path)
        if job.json()["status"] in ("COMPLETED", "FAILED", "EXPIRED"):
            return dict(job.json())
        time.sleep(0.03)
    raise AssertionError("job never finished")


def test_job_lifecycle_responses_match_the_openapi_schemas(
    assert_matches_openapi: Check, served: Served, song: Path
) -> None:
    with served.http() as http:
        ticket = http.post("/upload", json={"filename": song.name})
        assert_matches_openapi(ticket, "/upload", "post")
        key = _upload(http, song)
        created = http.post("/jobs", json={"uploadKey": key, "outputType": "FOUR_STEMS", "outputFormat": "WAV"})
        assert created.status_code == 201
        assert_matches_openapi(created, "/jobs", "post")
        job_id = created.json()["id"]
        assert created.json()["status"] == "PENDING"
        assert created.json()["creditsRequired"] == 2
        first = http.get(f"/jobs/{job_id}")
        assert_matches_openapi(first, "/jobs/{id}", "get")
        done = _wait(http, f"/jobs/{job_id}")
        final = http.get(f"/jobs/{job_id}")
        assert_matches_openapi(final, "/jobs/{id}", "get")
        assert done["status"] == "COMPLETED"
        assert done["progress"] == 100
        assert set(done["outputs"]) == {"vocals", "drums", "bass", "other"}  # type: ignore[arg-type]
        assert done["creditsCharged"] == 2
        assert set(done["audioMetadata"]) == {"bpm", "key"}  # type: ignore[arg-type]
        listing = http.get("/jobs", params={"limit": 1, "status": "COMPLETED"})
        assert_matches_openapi(listing, "/jobs", "get")
        assert listing.json()["pagination"] == {"total": 1, "limit": 1, "offset": 0, "hasMore": False}
        balance = http.get("/balance")
        assert_matches_openapi(balance, "/balance", "get")
        assert balance.json()["balanceSeconds"] == 3600 - 2


def test_every_api_response_carries_rate_limit_headers_and_a_request_id(served: Served) -> None:
    with served.http() as http:
        for response in (http.get("/balance"), http.get("/jobs/nope"), httpx.get(served.base_url + "/balance")):
            assert response.headers["X-RateLimit-Limit"] == "60"
            assert int(response.headers["X-RateLimit-Remaining"]) >= 0
            assert int(response.headers["X-RateLimit-Reset"]) > time.time()
            assert response.headers["X-Request-Id"].startswith("req_")


def test_rate_limit_answers_429_with_retry_after_past_the_limit(assert_matches_openapi: Check, serve: Serve) -> None:
    served = serve(rate_limit=3)
    with served.http() as http:
        codes = [http.get("/balance").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = http.get("/balance")
        assert_matches_openapi(limited, "/balance", "get")
        assert limited.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert limited.headers["X-RateLimit-Remaining"] == "0"


@pytest.mark.parametrize(
    ("key", "status", "code"),
    [
        (None, 401, "MISSING_API_KEY"),
        ("sk_test_wrong", 401, "INVALID_API_KEY"),
        ("sk_test_revoked", 403, "API_KEY_REVOKED"),
    ],
)
def test_authentication_errors_use_the_documented_codes(
    assert_matches_openapi: Check, served: Served, key: str | None, status: int, code: str
) -> None:
    with served.http(key) as http:
        response = http.get("/jobs")
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    if status == 401:
        assert_matches_openapi(response, "/jobs", "get")


def test_unknown_job_is_404_job_not_found(assert_matches_openapi: Check, served: Served) -> None:
    with served.http() as http:
        response = http.get("/jobs/job_missing")
    assert response.status_code == 404
    assert_matches_openapi(response, "/jobs/{id}", "get")
    assert response.json()["error"]["code"] == "JOB_NOT_FOUND"


def test_402_insufficient_credits_names_required_seconds_and_purchase_url(
    assert_matches_openapi: Check, serve: Serve, song: Path
) -> None:
    served = serve(credits_seconds=1)
    with served.http() as http:
        response = http.post("/jobs", json={"uploadKey": _upload(http, song)})
    assert response.status_code == 402
    assert_matches_openapi(response, "/jobs", "post")
    error = response.json()["error"]
    assert (error["code"], error["requiredSeconds"]) == ("INSUFFICIENT_CREDITS", 2)
    assert error["purchaseUrl"].startswith("https://")


@pytest.mark.parametrize(
    ("config", "name", "content", "code"),
    [
        ({"max_file_bytes": 1000}, "song.wav", None, "FILE_TOO_LARGE"),
        ({"max_duration_seconds": 1.2}, "song.wav", None, "AUDIO_TOO_LONG"),
        ({"min_duration_seconds": 5.0}, "song.wav", None, "AUDIO_TOO_SHORT"),
        ({}, "notes.txt", b"not audio", "UNSUPPORTED_FORMAT"),
        ({}, "song.wav", b"RIFF garbage", "UNSUPPORTED_FORMAT"),
    ],
)
def test_input_errors_are_400_with_the_documented_codes(
    assert_matches_openapi: Check,
    serve: Serve,
    song: Path,
    tmp_path: Path,
    config: dict[str, float],
    name: str,
    content: bytes | None,
    code: str,
) -> None:
    served = serve(**config)
    path = tmp_path / name
    path.write_bytes(song.read_bytes() if content is None else content)
    with served.http() as http:
        ticket = http.post("/upload", json={"filename": name}).json()
        httpx.put(ticket["uploadUrl"], content=path.read_bytes())
        response = http.post("/jobs", json={"uploadKey": ticket["uploadKey"]})
    assert response.status_code == 400
    assert_matches_openapi(response, "/jobs", "post")
    assert response.json()["error"]["code"] == code


def test_malformed_job_requests_are_400(assert_matches_openapi: Check, served: Served) -> None:
    with served.http() as http:
        for body in ({}, {"uploadKey": "a", "sourceUrl": "http://x/y.mp3"}, {"uploadKey": "unknown"},
                     {"sourceUrl": "http://x/y.mp3", "outputType": "SEVEN_STEMS"}):  # fmt: skip
            response = http.post("/jobs", json=body)
            assert response.status_code == 400, body
            assert_matches_openapi(response, "/jobs", "post")
        assert http.get("/jobs", params={"limit": 101}).status_code == 400
        assert http.get("/jobs", params={"status": "DONE"}).status_code == 400


def test_source_url_jobs_fetch_the_audio_themselves(served: Served, song: Path) -> None:
    with served.http() as http:
        key = _upload(http, song)
        source = served.emulator.state.presign(served.server.url, "GET", key, 60)[0]
        created = http.post("/jobs", json={"sourceUrl": source, "outputType": "VOCALS"})
        assert created.status_code == 201
        assert created.json()["input"]["fileSizeBytes"] == song.stat().st_size
        assert _wait(http, f"/jobs/{created.json()['id']}")["status"] == "COMPLETED"
        missing = http.post("/jobs", json={"sourceUrl": f"{served.server.url}/storage/missing.wav"})
        assert missing.status_code == 400


def test_presigned_storage_rejects_authorization_headers_and_expired_urls(served: Served, song: Path) -> None:
    with served.http() as http:
        ticket = http.post("/upload", json={"filename": "song.wav"}).json()
    with_auth = httpx.put(ticket["uploadUrl"], content=b"x", headers={"Authorization": f"Bearer {KEY}"})
    assert with_auth.status_code == 400
    assert b"Only one auth mechanism allowed" in with_auth.content
    tampered = httpx.put(ticket["uploadUrl"].replace("X-Signature=", "X-Signature=0"), content=b"x")
    assert tampered.status_code == 403
    expired = served.emulator.state.presign(served.server.url, "PUT", ticket["uploadKey"], -10)[0]
    assert b"Request has expired" in httpx.put(expired, content=b"x").content
    assert served.emulator.state.storage_auth_rejections == 1


def test_youtube_jobs_fail_clearly_without_a_local_file(served: Served) -> None:
    with served.http() as http:
        assert http.post("/youtube-jobs", json={"youtubeUrl": "https://example.com/v"}).status_code == 400
        created = http.post("/youtube-jobs", json={"youtubeUrl": "https://www.youtube.com/watch?v=dQw4w9WgXcQ"})
        assert created.status_code == 201
        assert created.json()["videoId"] == "dQw4w9WgXcQ"
        job = _wait(http, f"/youtube-jobs/{created.json()['id']}")
        assert job["status"] == "FAILED"
        assert "youtube_file" in str(job["errorMessage"])
        assert http.get(f"/jobs/{created.json()['id']}").status_code == 404
        assert http.get("/youtube-jobs").json()["pagination"]["total"] == 1


def test_youtube_jobs_serve_the_configured_file_with_full_audio(serve: Serve, song: Path) -> None:
    served = serve(youtube_file=song)
    with served.http() as http:
        created = http.post("/youtube-jobs", json={"youtubeUrl": "https://youtu.be/dQw4w9WgXcQ", "outputFormat": "WAV"})
        job = _wait(http, f"/youtube-jobs/{created.json()['id']}")
    assert job["status"] == "COMPLETED"
    assert set(job["outputs"]) == {"vocals", "instrumental", "fullAudio"}  # type: ignore[arg-type]
    assert job["videoDuration"] == 2


def test_webhooks_create_list_delete(assert_matches_openapi: Check, served: Served) -> None:
    with served.http() as http:
        created = http.post("/webhooks", json={"url": "https://example.com/hook"})
        assert created.status_code == 201
        assert_matches_openapi(created, "/webhooks", "post")
        assert created.json()["secret"].startswith("whsec_")
        assert created.json()["events"] == ["job.completed", "job.failed"]
        listing = http.get("/webhooks")
        assert_matches_openapi(listing, "/webhooks", "get")
        assert "secret" not in listing.json()["webhooks"][0]
        assert http.post("/webhooks", json={"url": "ftp://x"}).status_code == 400
        assert http.post("/webhooks", json={"url": "https://x", "events": ["job.started"]}).status_code == 400
        deleted = http.delete(f"/webhooks/{created.json()['id']}")
        assert deleted.json() == {"deleted": True}
        assert_matches_openapi(deleted, "/webhooks/{id}", "delete")
        missing = http.delete(f"/webhooks/{created.json()['id']}")
        assert missing.status_code == 404
        assert_matches_openapi(missing, "/webhooks/{id}", "delete")
