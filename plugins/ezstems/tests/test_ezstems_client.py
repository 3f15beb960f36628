"""The EzStems client against the emulator: every error mapped, every fault retried within policy or surfaced."""

from __future__ import annotations

import asyncio
import logging
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from stemkit.errors import (
    AuthenticationError,
    ConfigError,
    JobExpiredError,
    ProtocolError,
    ProviderError,
    ProviderLimitError,
    ProviderUnavailableError,
    RateLimitError,
)
from stemkit.hosted import RetryPolicy
from stemkit_ezstems import AsyncEzStemsClient, EzStemsClient
from stemkit_ezstems.emulator import DEFAULT_API_KEY as KEY
from stemkit_ezstems.testing import RunningEmulator as Emu

EmuFactory = Callable[..., Emu]


@pytest.fixture
def client_for(fast_retry: RetryPolicy) -> Callable[..., EzStemsClient]:
    made: list[EzStemsClient] = []

    def make(emu: Emu, api_key: str = KEY, **kw: object) -> EzStemsClient:
        client = EzStemsClient(api_key, base_url=emu.base_url, retry=fast_retry, **kw)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make  # type: ignore[misc]
    for client in made:
        client.close()


def test_upload_status_and_download_round_trip(
    emulator: Emu, client_for: Callable[..., EzStemsClient], song: Path, tmp_path: Path
) -> None:
    client = client_for(emulator)
    created = client.upload(song, 4, output="wav", cutoff="16khz")
    assert (created.status, created.stems) == ("queued", 4)
    assert emulator.state.jobs[created.id].cutoff == "16khz"
    emulator.state.wait_finished(created.id)
    status = client.status(created.id)
    assert (status.status, status.queue_position, status.stems) == ("completed", 0, 4)
    archive = client.download(created.id, tmp_path / "stems.zip")
    assert len(zipfile.ZipFile(archive).namelist()) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stems.zip"]


def test_401_is_an_authentication_error_with_the_service_message_and_no_key(
    emulator: Emu, client_for: Callable[..., EzStemsClient]
) -> None:
    secret = "sk_do_not_print_me_0123456789"
    client = client_for(emulator, api_key=secret)
    with pytest.raises(AuthenticationError, match="Invalid or inactive API key") as caught:
        client.list_keys()
    assert caught.value.status_code == 401
    assert emulator.count("GET", "keys") == 1
    for text in (str(caught.value), repr(caught.value), repr(client), repr(client.transport)):
        assert secret not in text


def test_a_missing_key_is_a_config_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EZSTEMS_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="EZSTEMS_API_KEY"):
        EzStemsClient()


def test_key_and_base_url_come_from_the_environment(
    emulator: Emu, monkeypatch: pytest.MonkeyPatch, fast_retry: RetryPolicy
) -> None:
    monkeypatch.setenv("EZSTEMS_API_KEY", KEY)
    monkeypatch.setenv("EZSTEMS_BASE_URL", emulator.base_url + "/")
    with EzStemsClient(retry=fast_retry) as client:
        assert client.base_url == emulator.base_url
        assert client.list_keys()[0].is_active is True


def test_a_403_storm_is_retried_on_an_upload_then_succeeds(
    make_emulator: EmuFactory, client_for: Callable[..., EzStemsClient], song: Path
) -> None:
    emu = make_emulator("403:count=2,retry_after=0")
    created = client_for(emu).upload(song, 2)
    assert emu.count("POST", "upload") == 3
    assert len(emu.state.jobs) == 1
    assert created.id in emu.state.jobs


def test_a_403_storm_past_the_retry_budget_is_a_rate_limit_error(
    make_emulator: EmuFactory, client_for: Callable[..., EzStemsClient], fast_retry: RetryPolicy
) -> None:
    emu = make_emulator("403:retry_after=0")
    with pytest.raises(RateLimitError, match="Rate limit exceeded") as caught:
        client_for(emu).list_keys()
    assert emu.count("GET", "keys") == fast_retry.max_attempts
    assert caught.value.retry_after == 0
    assert caught.value.status_code == 403


def test_the_real_rate_limit_is_retried_with_backoff_then_surfaced(
    make_emulator: EmuFactory, client_for: Callable[..., EzStemsClient], fast_retry: RetryPolicy
) -> None:
    emu = make_emulator(rate_limit=2)
    client = client_for(emu)
    client.list_keys()
    client.list_keys()
    with pytest.raises(RateLimitError, match="limited to 2 requests per 60 seconds") as caught:
        client.list_keys()
    assert caught.value.retry_after is None
    assert emu.count("GET", "keys") == 2 + fast_retry.max_attempts


def test_a_retry_after_past_the_policy_is_not_waited_out(
    make_emulator: EmuFactory, client_for: Callable[..., EzStemsClient]
) -> None:
    emu = make_emulator("403:retry_after=3600")
    with pytest.raises(RateLimitError) as caught:
        client_for(emu).list_keys()
    assert caught.value.retry_after == 3600
    assert emu.count("GET", "keys") == 1


def test_server_errors_on_status_are_retried(
    make_emulator: EmuFactory, client_for: Callable[..., EzStemsClient], song: Path
) -> None:
    emu = make_emulator()
    client = client_for(emu)
    created = client.upload(song, 2)
    emu.state.wait_finished(created.id)
    emu.faults("500:count=2,path=/status.php")
    assert client.status(created.id).status == "completed"
    assert emu.count("GET", "status") == 3


def test_server_errors_past_the_budget_are_provider_unavailable_with_the_message(
    make_emulator: EmuFactory, client_for: Callable[..., EzStemsClient], fast_retry: RetryPolicy
) -> None:
    emu = make_emulator("502")
    with pytest.raises(ProviderUnavailableError, match="error processing the request") as caught:
        client_for(emu).list_keys()
    assert caught.value.retryable is True
    assert emu.count("GET", "keys") == fast_retry.max_attempts


def test_an_upload_is_not_replayed_after_a_server_error(
    make_emulator: EmuFactory, client_for: Callable[..., EzStemsClient], song: Path
) -> None:
    """The service may have stored the file before failing: replaying could create a second job."""
    emu = make_emulator("500:count=1")
    with pytest.raises(ProviderUnavailableError, match="HTTP 500"):
        client_for(emu).upload(song, 4)
    assert emu.count("POST", "upload") == 1


def test_a_response_cut_mid_body_is_retried_for_reads_only(
    make_emulator: EmuFactory, client_for: Callable[..., EzStemsClient], song: Path
) -> None:
    emu = make_emulator("truncate:count=1")
    client = client_for(emu)
    assert client.list_keys()
    assert emu.count("GET", "keys") == 2
    emu.faults("truncate:count=1")
    with pytest.raises(ProviderUnavailableError):
        client.upload(song, 4)
    assert emu.count("POST", "upload") == 1


def test_latency_is_tolerated(make_emulator: EmuFactory, client_for: Callable[..., EzStemsClient]) -> None:
    emu = make_emulator("latency=0.05")
    assert client_for(emu).list_keys()
    assert emu.count("GET", "keys") == 1


def test_a_download_cut_mid_body_is_retried_and_leaves_no_partial_file(
    make_emulator: EmuFactory, client_for: Callable[..., EzStemsClient], song: Path, tmp_path: Path
) -> None:
    emu = make_emulator("drop-download:count=1,after=0.4")
    client = client_for(emu)
    created = client.upload(song, 4)
    emu.state.wait_finished(created.id)
    archive = client.download(created.id, tmp_path / "dl" / "stems.zip")
    assert zipfile.ZipFile(archive).testzip() is None
    assert emu.count("GET", "download") == 2
    emu.faults("drop-download:after=0.4")
    with pytest.raises(ProviderUnavailableError, match=r"peer closed connection|connection was cut"):
        client.download(created.id, tmp_path / "dl2" / "stems.zip")
    assert list((tmp_path / "dl2").iterdir()) == []


def test_an_unknown_job_is_expired(emulator: Emu, client_for: Callable[..., EzStemsClient]) -> None:
    with pytest.raises(JobExpiredError, match="No processing with id 1699567234_4"):
        client_for(emulator).status("1699567234_4")


def test_a_wrong_base_url_is_a_protocol_error_pointing_at_it(emulator: Emu, fast_retry: RetryPolicy) -> None:
    with (
        EzStemsClient(KEY, base_url=emulator.origin + "/api/v2", retry=fast_retry) as client,
        pytest.raises(ProtocolError, match="EZSTEMS_BASE_URL"),
    ):
        client.list_keys()


def test_a_file_too_large_for_the_plan_is_a_limit_error(
    make_emulator: EmuFactory, client_for: Callable[..., EzStemsClient], big_wav: Path
) -> None:
    emu = make_emulator(plan="basic")
    with pytest.raises(ProviderLimitError, match=r"File too large: Maximum file size .* is 30 MB"):
        client_for(emu).upload(big_wav, 4)
    assert emu.count("POST", "upload") == 1


def test_other_bad_requests_are_provider_errors_with_the_message(
    emulator: Emu, client_for: Callable[..., EzStemsClient], song: Path
) -> None:
    with pytest.raises(ProviderError, match="Invalid stems parameter: stems must be 2, 4 or 5") as caught:
        client_for(emulator).upload(song, 3)
    assert caught.value.status_code == 400
    assert caught.value.code == "Invalid stems parameter"


def test_keys_are_managed_through_the_client(
    make_emulator: EmuFactory, client_for: Callable[..., EzStemsClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emu = make_emulator()
    client = client_for(emu)
    (info,) = client.list_keys()
    assert (info.api_key, info.is_active, info.rate_limit) == ("********" + KEY[-8:], True, 600)
    generated = client.generate_key()
    new_key = generated.api_key.get_secret_value()
    assert new_key not in repr(generated)
    assert new_key not in str(generated)
    assert client.deactivate_key() == "API key deactivated successfully"
    with pytest.raises(AuthenticationError):
        client.list_keys()
    fresh = client_for(emu, api_key=new_key)
    assert [k.is_active for k in fresh.list_keys()] == [False, True]
    assert new_key not in caplog.text
    assert KEY not in caplog.text


def test_the_async_client_does_the_same(emulator: Emu, fast_retry: RetryPolicy, song: Path, tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        async with AsyncEzStemsClient(KEY, base_url=emulator.base_url, retry=fast_retry) as client:
            created = await client.upload(song, 2)
            await asyncio.to_thread(emulator.state.wait_finished, created.id)
            assert (await client.status(created.id)).status == "completed"
            archive = await client.download(created.id, tmp_path / "a.zip")
            assert (await client.list_keys())[0].is_active
            with pytest.raises(JobExpiredError):
                await client.status("1_2")
            return zipfile.ZipFile(archive).namelist()

    assert [Path(n).name for n in asyncio.run(scenario())] == ["vocals.wav", "accompaniment.wav"]


def test_the_async_client_retries_a_403_storm(make_emulator: EmuFactory, fast_retry: RetryPolicy, song: Path) -> None:
    emu = make_emulator("403:count=2,retry_after=0")

    async def scenario() -> None:
        async with AsyncEzStemsClient(KEY, base_url=emu.base_url, retry=fast_retry) as client:
            await client.upload(song, 2)
            new = await client.generate_key()
            assert new.api_key.get_secret_value() in emu.state.keys
            assert await client.deactivate_key() == "API key deactivated successfully"

    asyncio.run(scenario())
    assert emu.count("POST", "upload") == 3
