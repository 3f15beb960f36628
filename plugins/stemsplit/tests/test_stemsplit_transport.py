"""The hosted toolkit under the StemSplit plugin: auth scoping, retries, streaming, secrets, polling, faults."""

from __future__ import annotations

import asyncio
import logging
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from stemkit.errors import (
    ConfigError,
    JobExpiredError,
    JobFailedError,
    ProtocolError,
    ProviderUnavailableError,
)
from stemkit.hosted import (
    AsyncHostedTransport,
    HostedTransport,
    JobSnapshot,
    PollPolicy,
    RetryPolicy,
    Secret,
    parse_retry_after,
    poll_job,
)
from stemkit.hosted.emulator import RequestRecorder, read_body_to, run_in_thread
from stemkit.hosted.faults import FaultPlan, parse_fault

KEY = "sk_live_topsecret"
RETRY = RetryPolicy(max_attempts=3, backoff_initial=0.01, jitter=0.0)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, RequestRecorder]]:
    """A small API + storage on loopback; 'localhost' reaches it as a different host than 127.0.0.1."""

    async def redirect(request: Request) -> Response:
        return RedirectResponse(str(request.url).replace("127.0.0.1", "localhost").replace("/api/v1/go", "/elsewhere"))

    async def elsewhere(request: Request) -> Response:
        return JSONResponse({"auth": request.headers.get("authorization")})

    async def echo(request: Request) -> Response:
        return JSONResponse(
            {"auth": request.headers.get("authorization"), "idem": request.headers.get("idempotency-key")}
        )

    async def sink(request: Request) -> Response:
        size = await read_body_to(request.receive, tmp_path / "sink.bin")
        return JSONResponse({"size": size, "type": request.headers.get("content-type")})

    async def not_json(request: Request) -> Response:
        return Response("<html>", media_type="text/html")

    app = RequestRecorder(
        Starlette(
            routes=[
                Route("/api/v1/go", redirect),
                Route("/elsewhere", elsewhere),
                Route("/api/v1/echo", echo, methods=["GET", "POST"]),
                Route("/api/v1x/echo", echo),
                Route("/api/v1/sink", sink, methods=["POST", "PUT"]),
                Route("/storage/sink", sink, methods=["PUT"]),
                Route("/api/v1/html", not_json),
            ]
        )
    )
    with run_in_thread(app, api_path="/api/v1") as running:
        yield running.base_url, app


def _transport(base_url: str, **kwargs: Any) -> HostedTransport:
    return HostedTransport(provider="test", base_url=base_url, api_key=KEY, retry=RETRY, **kwargs)


def test_the_key_goes_to_the_api_only_never_across_a_redirect_or_outside_the_base_path(server: Any) -> None:
    base_url, _ = server
    with _transport(base_url) as t:
        assert t.request_json("GET", "/echo")["auth"] == f"Bearer {KEY}"
        assert t.request_json("GET", base_url + "/go")["auth"] is None  # redirected to another host
        assert t.request_json("GET", base_url.replace("/api/v1", "/api/v1x") + "/echo")["auth"] is None
        assert t.is_api_url(base_url + "/jobs")
        assert not t.is_api_url(base_url.replace("127.0.0.1", "localhost"))


def test_async_transport_scopes_the_key_the_same_way(server: Any) -> None:
    base_url, _ = server

    async def main() -> tuple[Any, Any]:
        async with AsyncHostedTransport(provider="t", base_url=base_url, api_key=KEY) as t:
            return (await t.request_json("GET", "/echo"))["auth"], (await t.request_json("GET", base_url + "/go"))[
                "auth"
            ]

    assert asyncio.run(main()) == (f"Bearer {KEY}", None)


def test_the_key_never_shows_in_repr_logs_or_errors(server: Any, caplog: pytest.LogCaptureFixture) -> None:
    _base_url, _ = server
    caplog.set_level(logging.DEBUG)
    secret = Secret(KEY)
    assert KEY not in f"{secret!r} {secret} {secret:>20}"
    with _transport("http://127.0.0.1:9/api/v1") as t:
        assert KEY not in repr(t)
        with pytest.raises(ProviderUnavailableError) as info:
            t.request("GET", "/echo")
    assert KEY not in str(info.value)
    assert KEY not in caplog.text


def test_connect_errors_are_retried_then_provider_unavailable() -> None:
    with _transport("http://127.0.0.1:9/api/v1") as t, pytest.raises(ProviderUnavailableError, match=r"127\.0\.0\.1:9"):
        t.request("POST", "/jobs", json={})  # connect errors are safe to retry even for a POST


def test_idempotency_key_is_generated_once_per_call(server: Any) -> None:
    base_url, _ = server
    with _transport(base_url) as t:
        first = t.request_json("POST", "/echo", idempotency_key=True)["idem"]
        second = t.request_json("POST", "/echo", idempotency_key=True)["idem"]
        fixed = t.request_json("POST", "/echo", idempotency_key="k-1")["idem"]
    assert first
    assert second
    assert first != second
    assert fixed == "k-1"


def test_streamed_put_and_multipart_uploads_send_the_whole_file(server: Any, tmp_path: Path) -> None:
    base_url, app = server
    data = tmp_path / "blob.bin"
    data.write_bytes(bytes(range(256)) * 40_000)  # ~10 MB
    seen: list[int] = []
    with _transport(base_url) as t:
        put = t.upload("PUT", base_url.replace("/api/v1", "") + "/storage/sink", data, content_type="audio/wav",
                       progress=lambda done, total: seen.append(done))  # fmt: skip
        assert put.json() == {"size": data.stat().st_size, "type": "audio/wav"}
        form = t.upload_multipart("/sink", data, data={"stems": "4"}).json()
    assert form["size"] > data.stat().st_size
    assert form["type"].startswith("multipart/form-data")
    assert seen[-1] == data.stat().st_size
    assert app.requests[-2].headers.get("authorization") is None  # storage PUT
    assert app.requests[-2].headers["content-length"] == str(data.stat().st_size)


def test_uploads_stream_from_disk_without_reading_the_file_whole(server: Any, tmp_path: Path) -> None:
    base_url, _ = server
    data = tmp_path / "big.bin"
    with data.open("wb") as fh:
        fh.truncate(32 * 1024 * 1024)
    with _transport(base_url) as t:
        tracemalloc.start()
        t.upload("PUT", base_url.replace("/api/v1", "") + "/storage/sink", data)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


def test_a_non_json_success_is_a_protocol_error(server: Any) -> None:
    base_url, _ = server
    with _transport(base_url) as t, pytest.raises(ProtocolError, match="not JSON"):
        t.request_json("GET", "/html")


def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None


def test_fault_strings_parse_with_aliases_and_reject_unknowns() -> None:
    fault = parse_fault("429:count=2,retry_after=0,path=/jobs,method=POST")
    assert (fault.kind, fault.count, fault["retry_after"], fault.path, fault.method) == (
        "rate-limit",
        2,
        0.0,
        "/jobs",
        "POST",
    )
    assert parse_fault("5xx=0.25").rate == 0.25
    assert parse_fault("503").params["status"] == 503
    assert parse_fault("latency=0.2")["seconds"] == 0.2
    for bad in ("nope", "429:count=x", "5xx:rate=2", "latency:volume=3", "429:count"):
        with pytest.raises(ConfigError):
            parse_fault(bad)
    plan = FaultPlan.parse(["429:count=2,path=/jobs"])
    fired = [
        plan.fire("rate-limit", path=p) is not None
        for p in ("/api/v1/upload", "/api/v1/jobs", "/api/v1/jobs", "/api/v1/jobs")
    ]
    assert fired == [False, True, True, False]


def test_fault_rates_are_reproducible_with_a_seed() -> None:
    a, b = (FaultPlan.parse(["5xx=0.5"], seed=3), FaultPlan.parse(["5xx=0.5"], seed=3))
    assert [a.fire("server-error") is not None for _ in range(20)] == [
        b.fire("server-error") is not None for _ in range(20)
    ]


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _poll(states: list[JobSnapshot], clock: _Clock, **kwargs: Any) -> Any:
    it = iter(states[1:])

    async def fetch() -> JobSnapshot:
        return next(it)

    async def main() -> Any:
        return await poll_job(states[0], fetch, provider="t", sleep=clock.sleep, clock=clock, **kwargs)

    return anyio.run(main)


def test_polling_waits_for_the_estimate_then_polls_briskly() -> None:
    clock = _Clock()
    snaps = [JobSnapshot("j", "queued", eta_seconds=20.0)] + [JobSnapshot("j", "processing", 0.5)] * 6
    snaps.append(JobSnapshot("j", "completed"))
    outcome = _poll(snaps, clock, policy=PollPolicy())
    assert sum(clock.sleeps[:3]) <= 20.0 + 1e-9
    before = [s for s in clock.sleeps if s >= 5.0]
    assert before, clock.sleeps  # sparse polls while the job is expected to run
    assert clock.sleeps[-1] <= 1.0  # brisk once the estimate has passed
    assert outcome.polls == len(snaps) - 1


def test_polling_reports_progress_and_raises_for_failed_and_expired_jobs() -> None:
    events: list[tuple[str, float | None]] = []

    def report(stage: str, fraction: float | None = None, message: str = "", **kw: Any) -> None:
        events.append((stage, fraction))

    done = _poll([JobSnapshot("j", "queued", queue_position=3), JobSnapshot("j", "processing", 0.4),
                  JobSnapshot("j", "completed")], _Clock(), report=report)  # fmt: skip
    assert events == [("queued", None), ("processing", 0.4)]
    assert done.snapshot.state == "completed"
    with pytest.raises(JobFailedError, match="boom"):
        _poll([JobSnapshot("j", "queued"), JobSnapshot("j", "failed", message="boom")], _Clock())
    with pytest.raises(JobExpiredError):
        _poll([JobSnapshot("j", "queued"), JobSnapshot("j", "expired")], _Clock())


def test_bad_base_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="absolute"):
        HostedTransport(provider="t", base_url="stemsplit.io/api", api_key=KEY)
    assert httpx.URL("http://x").host == "x"
