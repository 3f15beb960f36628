"""Webhook deliveries: the emulator signs them, verify_and_parse accepts good ones and rejects the rest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stemkit.errors import JobFailedError, ProtocolError
from stemkit.hosted.emulator import run_in_thread
from stemkit_stemsplit import WebhookSignatureError, compute_signature, verify_and_parse, verify_signature

SECRET = "whsec_test"
BODY = json.dumps(
    {"event": "job.completed", "timestamp": "2026-05-21T12:00:00Z", "data": {"jobId": "job_1", "status": "COMPLETED"}}
).encode()


def test_good_signatures_verify_with_and_without_prefix() -> None:
    signature = compute_signature(BODY, SECRET)
    assert signature.startswith("sha256=")
    assert verify_and_parse(BODY, signature, SECRET).data.job_id == "job_1"
    assert verify_and_parse(BODY.decode(), signature.removeprefix("sha256="), SECRET).event == "job.completed"


@pytest.mark.parametrize(
    ("body", "signature", "secret"),
    [
        (BODY.replace(b"job_1", b"job_2"), compute_signature(BODY, SECRET), SECRET),
        (BODY, compute_signature(BODY, SECRET), "whsec_wrong"),
        (BODY, "", SECRET),
        (BODY, None, SECRET),
        (BODY, "sha256=deadbeef", SECRET),
    ],
)
def test_tampered_bodies_wrong_secrets_and_bad_signatures_are_rejected(
    body: bytes, signature: str | None, secret: str
) -> None:
    assert not verify_signature(body, signature, secret)
    with pytest.raises(WebhookSignatureError):
        verify_and_parse(body, signature, secret)


def test_a_signed_body_that_is_not_an_event_is_a_protocol_error() -> None:
    body = b'{"hello": 1}'
    with pytest.raises(ProtocolError):
        verify_and_parse(body, compute_signature(body, SECRET), SECRET)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[bytes, dict[str, str]]]]]:
    received: list[tuple[bytes, dict[str, str]]] = []

    async def hook(request: Request) -> Response:
        received.append((await request.body(), dict(request.headers)))
        return Response(status_code=200 if len(received) == 1 else 500)

    with run_in_thread(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as server:
        yield server.url + "/hook", received


def test_emulator_delivers_signed_completed_and_failed_events(serve: Any, song: Path, receiver: Any) -> None:
    url, received = receiver
    served = serve(faults=["fail-job:count=1,message=bad audio"])
    with served.separator() as sep:
        hook = sep.client().create_webhook(url)
        with pytest.raises(JobFailedError):
            sep.separate(song, stems=["vocals"])
        sep.separate(song, stems=["vocals"])
    assert [json.loads(body)["event"] for body, _ in received] == ["job.failed", "job.completed"]
    for body, headers in received:
        event = verify_and_parse(body, headers["x-webhook-signature"], hook.secret or "")
        assert event.data.job_id in served.emulator.state.jobs
    completed = verify_and_parse(received[1][0], received[1][1]["x-webhook-signature"], hook.secret or "")
    assert completed.data.outputs is not None
    assert set(completed.data.outputs) == {"vocals"}
    state_hook = served.emulator.state.webhooks[hook.id]
    assert (state_hook.fail_count, state_hook.last_error) == (1, "HTTP 500")
