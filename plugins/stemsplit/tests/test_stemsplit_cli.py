"""``stemkit emulate stemsplit`` serves the emulator until interrupted, printing its base URL first."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx

from stemkit.cli import main


def test_emulate_prints_the_base_url_first_and_serves_until_interrupted() -> None:
    runner = "import sys; from stemkit.cli import main; sys.exit(main())"
    options = ["--api-key", "sk_test_cli", "--processing-seconds", "0.1", "--fault", "429:count=1,retry_after=0"]
    command = [sys.executable, "-c", runner, "emulate", "stemsplit", *options]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/api/v1")
        headers = {"Authorization": "Bearer sk_test_cli"}
        assert httpx.get(base_url + "/balance", headers=headers).status_code == 429
        assert httpx.get(base_url + "/balance", headers=headers).json()["balanceSeconds"] == 3600
        assert httpx.get(base_url + "/balance", headers={"Authorization": "Bearer sk_test_emulator"}).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert proc.returncode in (0, 130)


def test_emulate_unknown_emulator_or_fault_is_a_usage_error(capsys: object) -> None:
    assert main(["emulate", "nope"]) == 2
    assert main(["emulate", "stemsplit", "--fault", "bogus"]) == 2
    assert main(["emulate", "stemsplit", "--option", "colour=blue"]) == 2
