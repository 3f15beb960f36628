"""The stemsplit provider end to end against the emulator: inputs, planning, results, errors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import stemkit
from stemkit.errors import (
    AuthenticationError,
    ConfigError,
    JobExpiredError,
    JobFailedError,
    PermissionDeniedError,
    ProviderLimitError,
    QuotaExceededError,
    SeparationTimeout,
)
from stemkit.hosted import PollPolicy
from stemkit_stemsplit import StemSplitSeparator

Served = Any
Serve = Any


def _created(served: Served) -> list[dict[str, Any]]:
    return [r for r in served.requests if r.method == "POST" and r.path.endswith(("/jobs", "/youtube-jobs"))]


@pytest.mark.parametrize(
    ("stems", "output_type", "derived"),
    [
        (["vocals"], "VOCALS", set()),
        (["vocals", "instrumental"], "BOTH", set()),
        (["drums", "instrumental"], "FOUR_STEMS", {"instrumental"}),
        (["instrumental"], "INSTRUMENTAL", set()),
        (["drums", "bass"], "FOUR_STEMS", set()),
        (["piano", "vocals"], "SIX_STEMS", set()),
    ],
)
def test_requested_stems_pick_the_smallest_output_type(
    served: Served, song: Path, stems: list[str], output_type: str, derived: set[str]
) -> None:
    with served.separator() as sep:
        result = sep.separate(song, stems=stems)
    job = served.emulator.state.jobs[result.provenance.job_id]
    assert job.output_type == output_type
    assert list(result) == stems
    assert {name for name, stem in result.items() if stem.derived} == derived
    assert result.provenance.extra["output_type"] == output_type


def test_local_file_is_uploaded_streamed_and_the_result_is_normalized(served: Served, song: Path) -> None:
    events: list[Any] = []
    with served.separator(options={"format": "mp3"}) as sep:
        result = sep.separate(song, stems=["vocals", "drums", "bass", "other"], progress=events.append)
    mixture, rate = sf.read(song, dtype="float32", always_2d=True)
    for stem in result.values():
        assert stem.audio.shape == mixture.T.shape
        assert stem.sample_rate == rate
    total = sum((s.audio for s in result.values()), np.zeros_like(mixture.T))
    snr = 10 * np.log10(np.sum(mixture.T**2) / np.sum((total - mixture.T) ** 2))
    assert snr > 10  # the four dsp stems sum back to the mix, through an mp3 round trip
    put = [r for r in served.requests if r.method == "PUT"]
    assert len(put) == 1
    assert put[0].headers["content-length"] == str(song.stat().st_size)
    prov = result.provenance
    assert prov.cost is not None
    assert prov.cost.amount == 2
    assert set(prov.analysis) == {"bpm", "key"}
    assert {"upload", "queue", "process", "download"} <= set(prov.timings)
    stages = [e.stage for e in events]
    for stage in ("prepare", "upload", "queued", "processing", "download", "done"):
        assert stage in stages
    assert all(e.job_id == prov.job_id for e in events if e.stage in ("queued", "processing"))
    fractions = [e.fraction for e in events if e.stage == "processing" and e.fraction is not None]
    assert fractions == sorted(fractions)


def test_bytes_input_is_written_to_a_temporary_file_then_uploaded(served: Served, song: Path) -> None:
    with served.separator() as sep:
        result = sep.separate(song.read_bytes(), stems=["vocals"])
    assert result["vocals"].audio.shape[1] == sf.info(song).frames
    assert served.count("PUT", "/storage/uploads/") == 1


def test_http_url_input_is_sent_as_source_url_without_upload(served: Served, song: Path) -> None:
    state = served.emulator.state
    with served.separator() as sep:
        key = sep.client().upload_file(song).upload_key
        url = state.presign(served.server.url, "GET", key, 600)[0]
        result = sep.separate(url, stems=["vocals", "instrumental"])
    assert served.count("PUT", "/storage/") == 1  # the fixture's own upload only
    job = state.jobs[result.provenance.job_id]
    assert job.output_type == "BOTH"
    assert job.size_bytes == song.stat().st_size
    assert result["vocals"].audio.shape[1] == sf.info(song).frames  # shaped like the provider's output


def test_youtube_url_becomes_a_youtube_job_with_the_full_audio_as_mixture(serve: Serve, song: Path) -> None:
    served = serve(youtube_file=song)
    with served.separator() as sep:
        result = sep.separate("https://www.youtube.com/watch?v=dQw4w9WgXcQ", stems=["vocals", "instrumental"])
    assert served.count("POST", "/youtube-jobs") == 1
    assert result.mixture is not None
    assert result.mixture.audio.shape == result["vocals"].audio.shape
    assert result.provenance.extra["video_title"].startswith("Emulated video")


def test_async_separation_matches_sync(served: Served, song: Path) -> None:
    with served.separator() as sep:
        sync = sep.separate(song, stems=["vocals", "drums"])
        result = asyncio.run(sep.aseparate(song, stems=["vocals", "drums"]))
    assert list(result) == ["vocals", "drums"]
    assert result.provenance.job_id != sync.provenance.job_id
    np.testing.assert_allclose(result["vocals"].audio, sync["vocals"].audio, atol=1e-6)


def test_spec_string_with_options_loads_the_provider(
    served: Served, song: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STEMSPLIT_API_KEY", "sk_test_emulator")
    monkeypatch.setenv("STEMSPLIT_BASE_URL", served.base_url)
    with stemkit.load("stemsplit?quality=fast&format=wav") as sep:
        assert "sk_test" not in repr(sep)
        result = sep.separate(song, stems=["vocals"])
    job = served.emulator.state.jobs[result.provenance.job_id]
    assert (job.quality, job.output_format) == ("FAST", "WAV")


def test_missing_key_is_a_config_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, song: Path) -> None:
    monkeypatch.delenv("STEMSPLIT_API_KEY", raising=False)
    sep = StemSplitSeparator()
    assert sep.capabilities.has_api_key is False
    with pytest.raises(ConfigError, match="STEMSPLIT_API_KEY"):
        sep.separate(song)


def test_with_fitting_off_a_file_over_the_limit_is_refused_before_any_request(served: Served, tmp_path: Path) -> None:
    big = tmp_path / "big.wav"
    sf.write(big, np.zeros((50 * 1024 * 1024 // 8 + 1000, 2), dtype="float32"), 44100, subtype="FLOAT")
    with served.separator() as sep, pytest.raises(ProviderLimitError, match="limit") as info:
        sep.separate(big, fit="off")
    assert info.value.code == "FILE_TOO_LARGE"
    assert served.requests == []


@pytest.mark.parametrize(
    ("config", "error", "attrs"),
    [
        ({"credits_seconds": 1}, QuotaExceededError, {"required_seconds": 2.0, "status_code": 402}),
        ({"api_key": "sk_test_other"}, AuthenticationError, {"code": "INVALID_API_KEY"}),
        ({"min_duration_seconds": 10.0}, ProviderLimitError, {"code": "AUDIO_TOO_SHORT"}),
    ],
)
def test_api_errors_map_to_stemkit_errors_with_request_ids(
    serve: Serve, song: Path, config: dict[str, Any], error: type[Exception], attrs: dict[str, Any]
) -> None:
    served = serve(**config)
    with served.separator() as sep, pytest.raises(error) as info:
        sep.separate(song, stems=["vocals"])
    for name, value in attrs.items():
        assert getattr(info.value, name) == value
    assert str(info.value.request_id).startswith("req_")  # type: ignore[attr-defined]
    assert "sk_test" not in str(info.value)


def test_a_revoked_key_is_permission_denied(served: Served, song: Path) -> None:
    with served.separator(api_key="sk_test_revoked") as sep, pytest.raises(PermissionDeniedError, match="revoked"):
        sep.separate(song)


def test_failed_job_raises_job_failed_with_the_servers_message(serve: Serve, song: Path) -> None:
    served = serve(faults=["fail-job:message=corrupt input"])
    with served.separator() as sep, pytest.raises(JobFailedError, match="corrupt input") as info:
        sep.separate(song)
    assert info.value.job_id in served.emulator.state.jobs
    assert served.emulator.state.credits == 3600  # refunded


def test_expired_job_raises_job_expired(serve: Serve, song: Path) -> None:
    served = serve(faults=["expire-job"])
    with served.separator() as sep, pytest.raises(JobExpiredError):
        sep.separate(song)


def test_deadline_raises_separation_timeout_with_the_job_id(serve: Serve, song: Path) -> None:
    served = serve(processing_seconds=5.0)
    poll = PollPolicy(initial=0.05, max_interval=0.1)
    with served.separator(poll=poll) as sep, pytest.raises(SeparationTimeout) as info:
        sep.separate(song, timeout=0.4)
    job_id = info.value.job_id
    assert job_id in served.emulator.state.jobs
    assert job_id in str(info.value)


def test_client_extras_balance_jobs_and_webhooks(served: Served, song: Path) -> None:
    with served.separator() as sep:
        sep.separate(song, stems=["vocals"])
        sep.separate(song, stems=["instrumental"])
        client = sep.client()
        assert client.balance().balance_seconds == 3600 - 4
        assert len(client.list_jobs(limit=1).jobs) == 1
        assert [j.status for j in client.iter_jobs(page_size=1)] == ["COMPLETED", "COMPLETED"]
        hook = client.create_webhook("https://example.com/hook", events=["job.completed"])
        assert hook.secret
        assert hook.secret not in repr(hook)
        assert [w.id for w in client.list_webhooks()] == [hook.id]
        assert client.delete_webhook(hook.id) is True
        assert client.last_rate_limit is not None
        assert client.last_rate_limit.limit == 60
