"""The StemSplit emulator fires every fault kind it declares, refuses the ones it does not implement, and
``stemkit emulate stemsplit`` removes its storage however it is stopped (SIGTERM, Ctrl-C, twice)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from stemkit.cli import main
from stemkit.errors import ConfigError
from stemkit.hosted.faults import FAULT_KINDS as ALL_KINDS
from stemkit.hosted.faults import FaultPlan
from stemkit_stemsplit.emulator import EMULATOR, FAULT_KINDS, EmulatorConfig, StemSplitEmulator

Served = Any
Serve = Callable[..., Served]


def _job(served: Served, song: Path, *, wait: bool = True) -> dict[str, Any]:
    """Upload ``song``, create a VOCALS job, and (``wait``) poll it to the end, over the wire."""
    with served.http() as http:
        ticket = http.post("/upload", json={"filename": song.name}).json()
        put = httpx.put(ticket["uploadUrl"], content=song.read_bytes(), headers={"Content-Type": "audio/wav"})
        assert put.status_code == 200
        created = http.post("/jobs", json={"uploadKey": ticket["uploadKey"], "outputType": "VOCALS",
                                           "outputFormat": "WAV"})  # fmt: skip
        assert created.status_code == 201, created.text
        job: dict[str, Any] = created.json()
        deadline = time.monotonic() + 30
        while wait and job["status"] not in ("COMPLETED", "FAILED", "EXPIRED"):
            assert time.monotonic() < deadline, "the job never finished"
            time.sleep(0.02)
            job = http.get(f"/jobs/{job['id']}").json()
    return job


def _fired(served: Served, kind: str) -> int:
    return int(served.emulator.config.faults.fired[kind])


def latency(serve: Serve, song: Path) -> None:
    served = serve(faults=["latency=0.2:path=/balance"])
    with served.http() as http:
        started = time.monotonic()
        assert http.get("/balance").status_code == 200
        assert time.monotonic() - started >= 0.2
        assert http.get("/jobs").status_code == 200  # another path: not delayed, not counted
    assert _fired(served, "latency") == 1


def rate_limit(serve: Serve, song: Path) -> None:
    served = serve(faults=["429:count=1,retry_after=7"])
    with served.http() as http:
        limited = http.get("/balance")
        assert (limited.status_code, limited.headers["retry-after"]) == (429, "7")
        assert limited.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
        assert http.get("/balance").status_code == 200
    assert _fired(served, "rate-limit") == 1


def forbidden(serve: Serve, song: Path) -> None:
    served = serve(faults=["403:count=1"])
    with served.http() as http:
        assert http.get("/balance").json()["error"]["code"] == "API_KEY_REVOKED"
        assert http.get("/balance").status_code == 200
    assert _fired(served, "forbidden") == 1


def server_error(serve: Serve, song: Path) -> None:
    served = serve(faults=["5xx:count=1,status=502"])
    with served.http() as http:
        assert http.get("/balance").status_code == 502
        assert http.get("/balance").status_code == 200
    assert _fired(served, "server-error") == 1


def truncate(serve: Serve, song: Path) -> None:
    served = serve(faults=["truncate:count=1,path=/balance"])
    with served.http() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            http.get("/balance")
        assert http.get("/balance").status_code == 200
    assert _fired(served, "truncate") == 1


def drop_download(serve: Serve, song: Path) -> None:
    served = serve(faults=["drop-download:count=1,after=0.3"])
    job = _job(served, song)
    url = job["outputs"]["vocals"]["url"]
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url)
    assert httpx.get(url).status_code == 200
    assert _fired(served, "drop-download") == 1


def fail_job(serve: Serve, song: Path) -> None:
    served = serve(faults=["fail-job:count=1,message=the model crashed"])
    job = _job(served, song)
    assert (job["status"], job["errorMessage"]) == ("FAILED", "the model crashed")
    assert _fired(served, "fail-job") == 1


def expire_job(serve: Serve, song: Path) -> None:
    served = serve(faults=["expire-job:count=1"])
    assert _job(served, song)["status"] == "EXPIRED"
    assert _fired(served, "expire-job") == 1


def expire_urls(serve: Serve, song: Path) -> None:
    served = serve(faults=["expire-urls:count=1"])
    job = _job(served, song)
    expired = httpx.get(job["outputs"]["vocals"]["url"])
    assert expired.status_code == 403
    assert b"Request has expired" in expired.content
    with served.http() as http:
        fresh = http.get(f"/jobs/{job['id']}").json()["outputs"]["vocals"]["url"]
    assert httpx.get(fresh).status_code == 200
    assert _fired(served, "expire-urls") == 1


SCENARIOS: dict[str, Callable[[Serve, Path], None]] = {
    "latency": latency,
    "rate-limit": rate_limit,
    "forbidden": forbidden,
    "server-error": server_error,
    "truncate": truncate,
    "drop-download": drop_download,
    "fail-job": fail_job,
    "expire-job": expire_job,
    "expire-urls": expire_urls,
}


@pytest.mark.parametrize("kind", sorted(FAULT_KINDS))
def test_every_declared_fault_kind_fires(kind: str, serve: Serve, song: Path) -> None:
    SCENARIOS[kind](serve, song)  # a declared kind without a scenario here fails: declare only what fires


def test_the_entry_point_declares_the_same_kinds() -> None:
    assert EMULATOR.fault_kinds == FAULT_KINDS == StemSplitEmulator.fault_kinds
    assert set(ALL_KINDS) >= FAULT_KINDS


@pytest.mark.parametrize("kind", sorted(set(ALL_KINDS) - FAULT_KINDS))
def test_a_fault_it_does_not_implement_is_refused(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=f"does not implement the fault.s. {kind}; it supports: rate-limit, "):
        StemSplitEmulator(EmulatorConfig(faults=FaultPlan.parse([kind])))
    assert main(["emulate", "stemsplit", "--fault", kind]) == 2
    err = capsys.readouterr().err
    assert f"the stemsplit emulator does not implement the fault(s) {kind}" in err
    assert "expire-urls" in err  # the list of what it does support


# -- stopping ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signals",
    [(signal.SIGTERM,), (signal.SIGINT,), (signal.SIGINT, signal.SIGINT), (signal.SIGHUP,)],
    ids=["SIGTERM", "Ctrl-C", "Ctrl-C twice", "SIGHUP"],
)
def test_stemkit_emulate_removes_its_storage_however_it_is_stopped(
    tmp_path: Path, song: Path, signals: tuple[signal.Signals, ...]
) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the emulator's storage folder goes here
    command = [sys.executable, "-m", "stemkit", "emulate", "stemsplit", "--processing-seconds", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.endswith("/api/v1"), proc.stderr.read() if proc.stderr else ""
        (storage,) = tmp_path.glob("stemkit-stemsplit-emulator-*")
        with httpx.Client(base_url=base_url, headers={"Authorization": "Bearer sk_test_emulator"}) as http:
            ticket = http.post("/upload", json={"filename": "song.wav"}).json()
        assert httpx.put(ticket["uploadUrl"], content=song.read_bytes()).status_code == 200
        assert any(p.is_file() for p in storage.rglob("*"))  # something stored
        for sig in signals:
            proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    assert list(tmp_path.glob("stemkit-*")) == []
