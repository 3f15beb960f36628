"""The EzStems emulator fires every fault kind it declares, refuses the ones it does not implement, and
``stemkit emulate ezstems`` removes its storage however it is stopped (SIGTERM, Ctrl-C, twice)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from stemkit.cli import main
from stemkit.errors import ConfigError
from stemkit.hosted.emulator import EmulatorSettings
from stemkit.hosted.faults import FAULT_KINDS as ALL_KINDS
from stemkit.hosted.faults import FaultPlan
from stemkit_ezstems.emulator import DEFAULT_API_KEY as KEY
from stemkit_ezstems.emulator import EMULATOR, FAULT_KINDS, build
from stemkit_ezstems.testing import RunningEmulator as Emu

EmuFactory = Callable[..., Emu]
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0, headers=AUTH) as client:
        yield client


def submit(http: httpx.Client, emu: Emu, song: Path) -> str:
    with song.open("rb") as fh:
        answer = http.post(f"{emu.base_url}/upload.php", files={"file": (song.name, fh)}, data={"stems": "2"})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["data"]["id"])


def finished(http: httpx.Client, emu: Emu, song: Path) -> str:
    job_id = submit(http, emu, song)
    emu.state.wait_finished(job_id)
    return job_id


def download(http: httpx.Client, emu: Emu, job_id: str) -> httpx.Response:
    return http.get(f"{emu.base_url}/download.php", params={"id": job_id})


def keys(http: httpx.Client, emu: Emu) -> httpx.Response:
    return http.get(f"{emu.base_url}/keys.php")


def latency(make: EmuFactory, http: httpx.Client, song: Path) -> None:
    emu = make("latency=0.2:path=/keys.php")
    started = time.monotonic()
    assert keys(http, emu).status_code == 200
    assert time.monotonic() - started >= 0.2
    assert emu.state.faults.fired["latency"] == 1


def rate_limit(make: EmuFactory, http: httpx.Client, song: Path) -> None:
    emu = make("429:count=1,retry_after=5")
    limited = keys(http, emu)
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "5")
    assert keys(http, emu).status_code == 200
    assert emu.state.faults.fired["rate-limit"] == 1


def forbidden(make: EmuFactory, http: httpx.Client, song: Path) -> None:
    emu = make("403:count=1")
    assert keys(http, emu).json()["error"] == "Rate limit exceeded"
    assert keys(http, emu).status_code == 200
    assert emu.state.faults.fired["forbidden"] == 1


def server_error(make: EmuFactory, http: httpx.Client, song: Path) -> None:
    emu = make("5xx:count=1,status=504")
    assert keys(http, emu).status_code == 504
    assert keys(http, emu).status_code == 200
    assert emu.state.faults.fired["server-error"] == 1


def truncate(make: EmuFactory, http: httpx.Client, song: Path) -> None:
    emu = make("truncate:count=1")
    with pytest.raises(httpx.RemoteProtocolError):
        keys(http, emu)
    assert keys(http, emu).status_code == 200
    assert emu.state.faults.fired["truncate"] == 1


def drop_download(make: EmuFactory, http: httpx.Client, song: Path) -> None:
    emu = make("drop-download:count=1,after=0.4")
    job_id = finished(http, emu, song)
    with pytest.raises(httpx.RemoteProtocolError):
        download(http, emu, job_id)
    assert zipfile.ZipFile(io.BytesIO(download(http, emu, job_id).content)).testzip() is None
    assert emu.state.faults.fired["drop-download"] == 1


def fail_job(make: EmuFactory, http: httpx.Client, song: Path) -> None:
    emu = make("fail-job:count=1,message=out of GPUs")
    job_id = finished(http, emu, song)
    status = http.get(f"{emu.base_url}/status.php", params={"id": job_id}).json()["data"]
    assert (status["status"], status["error"]) == ("failed", "out of GPUs")
    assert emu.state.faults.fired["fail-job"] == 1


def expire_job(make: EmuFactory, http: httpx.Client, song: Path) -> None:
    emu = make("expire-job:count=1")
    job_id = submit(http, emu, song)
    with pytest.raises(KeyError, match="unknown or expired"):
        emu.state.wait_finished(job_id)
    assert http.get(f"{emu.base_url}/status.php", params={"id": job_id}).status_code == 404
    assert emu.state.faults.fired["expire-job"] == 1


def corrupt_zip(make: EmuFactory, http: httpx.Client, song: Path) -> None:
    emu = make("corrupt-zip:count=1,variant=cut")
    job_id = finished(http, emu, song)
    body = download(http, emu, job_id).content
    with pytest.raises((zipfile.BadZipFile, EOFError, ValueError, OSError)):
        read_every_member(body)
    assert emu.state.faults.fired["corrupt-zip"] == 1


def read_every_member(data: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            archive.read(name)


def hostile_zip(make: EmuFactory, http: httpx.Client, song: Path) -> None:
    emu = make("hostile-zip:count=1,variant=zip-slip")
    job_id = finished(http, emu, song)
    names = zipfile.ZipFile(io.BytesIO(download(http, emu, job_id).content)).namelist()
    assert "../ezstems-escape.wav" in names
    assert emu.state.faults.fired["hostile-zip"] == 1


SCENARIOS: dict[str, Callable[[EmuFactory, httpx.Client, Path], None]] = {
    "latency": latency,
    "rate-limit": rate_limit,
    "forbidden": forbidden,
    "server-error": server_error,
    "truncate": truncate,
    "drop-download": drop_download,
    "fail-job": fail_job,
    "expire-job": expire_job,
    "corrupt-zip": corrupt_zip,
    "hostile-zip": hostile_zip,
}


@pytest.mark.parametrize("kind", sorted(FAULT_KINDS))
def test_every_declared_fault_kind_fires(kind: str, make_emulator: EmuFactory, http: httpx.Client, song: Path) -> None:
    SCENARIOS[kind](make_emulator, http, song)  # a declared kind without a scenario fails: declare what fires


def test_the_entry_point_declares_the_same_kinds() -> None:
    assert EMULATOR.fault_kinds == FAULT_KINDS
    assert set(ALL_KINDS) >= FAULT_KINDS


@pytest.mark.parametrize("kind", sorted(set(ALL_KINDS) - FAULT_KINDS))
def test_a_fault_it_does_not_implement_is_refused(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=f"does not implement the fault.s. {kind}; it supports: rate-limit, "):
        build(EmulatorSettings(faults=FaultPlan.parse([kind])))
    assert main(["emulate", "ezstems", "--fault", kind]) == 2
    err = capsys.readouterr().err
    assert f"the ezstems emulator does not implement the fault(s) {kind}" in err
    assert "hostile-zip" in err


@pytest.mark.parametrize(
    "signals",
    [(signal.SIGTERM,), (signal.SIGINT,), (signal.SIGINT, signal.SIGINT)],
    ids=["SIGTERM", "Ctrl-C", "Ctrl-C twice"],
)
def test_stemkit_emulate_removes_its_storage_however_it_is_stopped(
    tmp_path: Path, song: Path, signals: tuple[signal.Signals, ...]
) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    command = [sys.executable, "-m", "stemkit", "emulate", "ezstems", "--processing-seconds", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.endswith("/api/v1"), proc.stderr.read() if proc.stderr else ""
        (storage,) = tmp_path.glob("ezstems-emulator-*")
        with song.open("rb") as fh:
            answer = httpx.post(f"{base_url}/upload.php", headers=AUTH, files={"file": ("song.wav", fh)},
                                data={"stems": "2"})  # fmt: skip
        assert answer.status_code == 200
        assert any(storage.iterdir())  # something stored
        for sig in signals:
            proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    assert list(tmp_path.glob("ezstems-emulator-*")) == []
