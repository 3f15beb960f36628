"""The emulator speaks the documented EzStems wire format: checked with plain httpx over real sockets."""

from __future__ import annotations

import io
import re
import stat
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from stemkit.errors import ConfigError
from stemkit.hosted.emulator import EmulatorSettings
from stemkit.hosted.faults import FaultPlan
from stemkit_ezstems.emulator import DEFAULT_API_KEY as KEY
from stemkit_ezstems.emulator import EMULATOR, HOSTILE_VARIANTS, build
from stemkit_ezstems.testing import RunningEmulator as Emu

EmuFactory = Callable[..., Emu]

AUTH = {"Authorization": f"Bearer {KEY}"}
HTTP = httpx.Client(timeout=30.0)  # one client: building one costs ~0.1 s (CA bundle)


@pytest.fixture(scope="module", autouse=True)
def _close_http() -> Iterator[None]:
    yield
    HTTP.close()


MIB = 1024 * 1024


def upload(emu: Emu, path: Path, stems: str = "4", key: str = KEY, **fields: str) -> httpx.Response:
    with path.open("rb") as fh:
        return HTTP.post(
            f"{emu.base_url}/upload.php",
            headers={"Authorization": f"Bearer {key}"},
            files={"file": (path.name, fh)},
            data={"stems": stems, **fields},
        )


def get(emu: Emu, endpoint: str, key: str = KEY, **params: str) -> httpx.Response:
    return HTTP.get(f"{emu.base_url}/{endpoint}.php", headers={"Authorization": f"Bearer {key}"}, params=params)


def submit(emu: Emu, path: Path, stems: str = "4", **fields: str) -> str:
    response = upload(emu, path, stems, **fields)
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["id"])


def completed_zip(emu: Emu, path: Path, stems: str = "4", **fields: str) -> zipfile.ZipFile:
    job_id = submit(emu, path, stems, **fields)
    assert emu.state.wait_finished(job_id).status == "completed"
    response = get(emu, "download", id=job_id)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    return zipfile.ZipFile(io.BytesIO(response.content))


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert isinstance(body, dict)
    assert "success" not in body
    assert isinstance(body["error"], str)
    return body


# -- the happy path, as documented -------------------------------------------------------------------------


def test_upload_answers_the_documented_envelope_with_a_timestamp_stems_id(emulator: Emu, song: Path) -> None:
    response = upload(emulator, song, "4")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    assert re.fullmatch(r"\d{10}_4", data["id"])
    assert re.fullmatch(rf"{data['id']}_\d{{5}}\.wav", data["filename"])
    assert data["status"] == "queued"
    assert data["stems"] == "4"
    assert data["check_status_endpoint"] == f"/api/v1/status.php?id={data['id']}"


def test_ids_stay_unique_for_uploads_in_the_same_second(emulator: Emu, song: Path) -> None:
    ids = {submit(emulator, song, "2") for _ in range(3)}
    assert len(ids) == 3
    assert all(i.endswith("_2") for i in ids)


def test_status_reports_completion_with_a_download_url(emulator: Emu, song: Path) -> None:
    job_id = submit(emulator, song, "2")
    emulator.state.wait_finished(job_id)
    data = get(emulator, "status", id=job_id).json()["data"]
    assert data == {
        "id": job_id,
        "status": "completed",
        "queue_position": 0,
        "stems": 2,
        "created_at": data["created_at"],
        "download_url": f"/api/v1/download.php?id={job_id}",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", data["created_at"])


@pytest.mark.parametrize(
    ("stems", "names"),
    [
        ("2", ["vocals", "accompaniment"]),
        ("4", ["vocals", "drums", "bass", "other"]),
        ("5", ["vocals", "drums", "bass", "piano", "other"]),
    ],
)
def test_the_zip_holds_spleeter_stems_in_a_folder(emulator: Emu, song: Path, stems: str, names: list[str]) -> None:
    archive = completed_zip(emulator, song, stems)
    members = archive.namelist()
    folder = members[0].split("/")[0]
    assert members == [f"{folder}/{n}.wav" for n in names]
    for member in members:
        audio, rate = sf.read(io.BytesIO(archive.read(member)))
        assert rate == 22050
        assert audio.shape == (22050, 2)


def test_the_five_stem_piano_is_silence_and_the_stems_still_sum_to_the_mixture(emulator: Emu, song: Path) -> None:
    archive = completed_zip(emulator, song, "5")
    stems = {Path(m).stem: sf.read(io.BytesIO(archive.read(m)), dtype="float32")[0] for m in archive.namelist()}
    assert not np.any(stems["piano"])
    mixture = sf.read(song, dtype="float32")[0]
    assert np.max(np.abs(sum(stems.values()) - mixture)) < 5e-3  # 16-bit stems


def test_output_mp3_gives_mp3_members(emulator: Emu, song: Path) -> None:
    archive = completed_zip(emulator, song, "2", output="mp3", cutoff="16khz")
    assert [Path(m).suffix for m in archive.namelist()] == [".mp3", ".mp3"]
    assert sf.info(io.BytesIO(archive.read(archive.namelist()[0]))).format == "MP3"


def test_waiting_jobs_report_their_queue_position(make_emulator: EmuFactory, song: Path) -> None:
    emu = make_emulator(workers=1)
    emu.state.pause()
    first, second, third = (submit(emu, song, "2") for _ in range(3))
    assert get(emu, "status", id=first).json()["data"]["status"] == "processing"
    positions = [get(emu, "status", id=j).json()["data"] for j in (second, third)]
    assert [(p["status"], p["queue_position"]) for p in positions] == [("queued", 1), ("queued", 2)]
    emu.state.resume()
    for job in (first, second, third):
        assert emu.state.wait_finished(job).status == "completed"


# -- errors, as documented ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "endpoint", "allow"),
    [("GET", "upload", "POST"), ("POST", "status", "GET"), ("DELETE", "download", "GET"), ("PUT", "keys", "GET")],
)
def test_a_wrong_method_is_405_with_allow(emulator: Emu, method: str, endpoint: str, allow: str) -> None:
    response = HTTP.request(method, f"{emulator.base_url}/{endpoint}.php", headers=AUTH)
    assert response.status_code == 405
    assert response.headers["allow"].startswith(allow)
    assert error_of(response)["error"] == "Method Not Allowed"


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic ezstems_test_emulator", "Bearer"])
def test_a_missing_or_wrong_key_is_401(emulator: Emu, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = HTTP.get(f"{emulator.base_url}/keys.php", headers=headers)
    assert response.status_code == 401
    assert error_of(response)["error"] == "Unauthorized"


def test_unknown_ids_and_paths_are_404(emulator: Emu) -> None:
    assert get(emulator, "status", id="1699567234_4").status_code == 404
    assert get(emulator, "download", id="1699567234_4").status_code == 404
    response = HTTP.get(f"{emulator.origin}/api/v1/jobs.php", headers=AUTH)
    assert response.status_code == 404
    assert "jobs.php" in error_of(response)["message"]


@pytest.mark.parametrize(("params", "error"), [({}, "Missing id"), ({"id": "abc"}, "Invalid id")])
def test_a_missing_or_malformed_id_is_400(emulator: Emu, params: dict[str, str], error: str) -> None:
    for endpoint in ("status", "download"):
        response = get(emulator, endpoint, **params)
        assert response.status_code == 400
        assert error_of(response)["error"].startswith(error)


@pytest.mark.parametrize(
    ("stems", "fields", "name", "error"),
    [
        ("3", {}, "song.wav", "Invalid stems"),
        ("four", {}, "song.wav", "Invalid stems"),
        ("4", {}, "song.flac", "Unsupported file type"),
        ("4", {"output": "ogg"}, "song.wav", "Invalid output"),
    ],
)
def test_bad_upload_parameters_are_400(
    emulator: Emu, song: Path, tmp_path: Path, stems: str, fields: dict[str, str], name: str, error: str
) -> None:
    renamed = tmp_path / name
    renamed.write_bytes(song.read_bytes())
    jobs_before = len(emulator.state.jobs)
    response = upload(emulator, renamed, stems, **fields)
    assert response.status_code == 400
    assert error_of(response)["error"].startswith(error)
    assert len(emulator.state.jobs) == jobs_before


def test_an_upload_without_a_file_or_multipart_is_400(emulator: Emu) -> None:
    no_file = HTTP.post(f"{emulator.base_url}/upload.php", headers=AUTH, files={"stems": (None, "4")})
    assert error_of(no_file)["error"] == "No file uploaded"
    not_multipart = HTTP.post(f"{emulator.base_url}/upload.php", headers=AUTH, json={"stems": 4})
    assert not_multipart.status_code == 400
    assert "multipart" in error_of(not_multipart)["message"]


def test_the_plan_size_limit_is_enforced_to_the_byte(make_emulator: EmuFactory, tmp_path: Path) -> None:
    limit_mib = 30
    emu = make_emulator(plan="basic")
    at_limit, over = tmp_path / "at.mp3", tmp_path / "over.mp3"
    for path, size in ((at_limit, limit_mib * MIB), (over, limit_mib * MIB + 1)):
        with path.open("wb") as fh:
            fh.truncate(size)
    assert upload(emu, at_limit).status_code == 200
    refused = upload(emu, over)
    assert refused.status_code == 400
    body = error_of(refused)
    assert body["error"] == "File too large"
    assert f"{limit_mib} MB" in body["message"]


def test_past_the_rate_limit_calls_are_403_without_retry_after(make_emulator: EmuFactory) -> None:
    emu = make_emulator(rate_limit=3)
    assert [get(emu, "keys").status_code for _ in range(3)] == [200, 200, 200]
    refused = get(emu, "keys")
    assert refused.status_code == 403
    assert error_of(refused)["error"] == "Rate limit exceeded"
    assert "retry-after" not in refused.headers
    assert emu.state.keys[KEY].calls_count == 3


def test_a_download_before_completion_is_400(make_emulator: EmuFactory, song: Path) -> None:
    emu = make_emulator(workers=1)
    emu.state.pause()
    job_id = submit(emu, song)
    response = get(emu, "download", id=job_id)
    assert response.status_code == 400
    assert error_of(response)["error"] == "Processing not complete"
    emu.state.resume()


def test_a_failing_job_reports_failed_with_the_reason(make_emulator: EmuFactory, song: Path) -> None:
    emu = make_emulator("fail-job:count=1,message=Out of GPU memory")
    failing, fine = submit(emu, song), submit(emu, song)
    assert emu.state.wait_finished(failing).status == "failed"
    data = get(emu, "status", id=failing).json()["data"]
    assert (data["status"], data["error"]) == ("failed", "Out of GPU memory")
    assert "download_url" not in data
    assert "Out of GPU memory" in error_of(get(emu, "download", id=failing))["message"]
    assert emu.state.wait_finished(fine).status == "completed"


def test_undecodable_audio_fails_in_processing(emulator: Emu, tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"\x00" * 4096)
    job_id = submit(emulator, junk)
    assert emulator.state.wait_finished(job_id).status == "failed"
    assert "Spleeter could not process the file" in get(emulator, "status", id=job_id).json()["data"]["error"]


def test_an_expired_job_is_forgotten(make_emulator: EmuFactory, song: Path) -> None:
    emu = make_emulator("expire-job:count=1")
    job_id = submit(emu, song)
    with pytest.raises(KeyError):
        emu.state.wait_finished(job_id)
    assert get(emu, "status", id=job_id).status_code == 404


# -- keys ---------------------------------------------------------------------------------------------------


def test_keys_are_listed_masked_generated_and_deactivated(make_emulator: EmuFactory) -> None:
    emulator = make_emulator()
    listed = get(emulator, "keys").json()["data"]
    assert listed == [
        {
            "id": 1,
            "api_key": "********" + KEY[-8:],
            "is_active": 1,
            "rate_limit": 600,
            "calls_count": 1,
            "created_at": listed[0]["created_at"],
            "last_used_at": listed[0]["last_used_at"],
        }
    ]
    generated = HTTP.post(f"{emulator.base_url}/keys.php", headers=AUTH).json()
    new_key = generated["data"]["api_key"]
    assert generated["success"] is True
    assert "won't be shown again" in generated["data"]["message"]
    assert re.fullmatch(r"[0-9a-f]{64}", new_key)
    deactivated = HTTP.delete(f"{emulator.base_url}/keys.php", headers=AUTH).json()
    assert deactivated == {"success": True, "message": "API key deactivated successfully"}
    assert get(emulator, "keys").status_code == 401
    rows = get(emulator, "keys", key=new_key).json()["data"]
    assert [(r["api_key"], r["is_active"]) for r in rows] == [
        ("********" + KEY[-8:], 0),
        ("********" + new_key[-8:], 1),
    ]


# -- faults -------------------------------------------------------------------------------------------------


def test_a_403_storm_answers_the_rate_limit_body_then_recovers(make_emulator: EmuFactory) -> None:
    emu = make_emulator("403:count=2,retry_after=0")
    statuses = [get(emu, "keys") for _ in range(3)]
    assert [r.status_code for r in statuses] == [403, 403, 200]
    assert error_of(statuses[0])["error"] == "Rate limit exceeded"
    assert statuses[0].headers["retry-after"] == "0"


def test_server_errors_use_the_error_body_and_can_target_one_endpoint(make_emulator: EmuFactory) -> None:
    emu = make_emulator("503:count=1,path=/status.php")
    assert get(emu, "keys").status_code == 200
    failed = get(emu, "status", id="1_4")
    assert failed.status_code == 503
    assert error_of(failed)["error"] == "Internal Server Error"
    assert get(emu, "status", id="1_4").status_code == 404


def test_truncate_cuts_a_response_mid_body(make_emulator: EmuFactory) -> None:
    emu = make_emulator("truncate:count=1")
    with pytest.raises(httpx.RemoteProtocolError):
        get(emu, "keys")
    assert get(emu, "keys").status_code == 200


def test_drop_download_cuts_the_zip_mid_body(make_emulator: EmuFactory, song: Path) -> None:
    emu = make_emulator("drop-download:count=1,after=0.5")
    job_id = submit(emu, song)
    emu.state.wait_finished(job_id)
    with pytest.raises(httpx.RemoteProtocolError):
        get(emu, "download", id=job_id)
    assert zipfile.ZipFile(io.BytesIO(get(emu, "download", id=job_id).content)).testzip() is None


@pytest.mark.parametrize("variant", ["damaged", "cut"])
def test_corrupt_zips_are_delivered_intact_over_http(make_emulator: EmuFactory, song: Path, variant: str) -> None:
    emu = make_emulator(f"corrupt-zip:count=1,variant={variant}")
    job_id = submit(emu, song)
    emu.state.wait_finished(job_id)
    response = get(emu, "download", id=job_id)
    assert int(response.headers["content-length"]) == len(response.content)
    with pytest.raises((zipfile.BadZipFile, EOFError, ValueError, OSError)):
        _read_all(response.content)


def _read_all(data: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            archive.read(name)


def test_hostile_zip_variants_carry_what_they_promise(emulator: Emu, song: Path) -> None:
    job_id = submit(emulator, song)
    emulator.state.wait_finished(job_id)
    names = {}
    for variant in HOSTILE_VARIANTS:
        emulator.faults(f"hostile-zip:count=1,variant={variant}")
        names[variant] = zipfile.ZipFile(io.BytesIO(get(emulator, "download", id=job_id).content)).infolist()
    assert any(i.filename == "../ezstems-escape.wav" for i in names["zip-slip"])
    assert any(i.filename == "/tmp/ezstems-absolute.wav" for i in names["absolute"])
    links = [i for i in names["symlink"] if stat.S_ISLNK(i.external_attr >> 16)]
    assert [Path(i.filename).name for i in links] == ["vocals.wav"]
    bomb = names["bomb"]
    assert sum(i.file_size for i in bomb) > 32 * MIB > 100 * sum(i.compress_size for i in bomb)
    assert max(i.file_size for i in names["bomb-declared"]) == 0xFFFF_0000
    assert all(i.file_size == 1024 < i.compress_size for i in names["bomb-actual"])
    assert not any(i.filename.endswith("vocals.wav") for i in names["missing-stem"])
    assert {Path(i.filename).name for i in names["extra-files"]} >= {"readme.txt", "cover.jpg", "._vocals.wav"}


# -- configuration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "faults", "message"),
    [
        ({"colour": "red"}, [], "unknown option"),
        ({"plan": "gold"}, [], "plan must be one of"),
        ({"workers": "0"}, [], "workers must be positive"),
        ({}, ["hostile-zip:variant=nuke"], "variant 'nuke' is unknown"),
    ],
)
def test_bad_emulator_settings_are_config_errors(options: dict[str, str], faults: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(EmulatorSettings(faults=FaultPlan.parse(faults), options=options))


def test_the_emulator_is_an_entry_point_with_the_api_path() -> None:
    (entry,) = metadata.entry_points(group="stemkit.emulators", name="ezstems")
    assert entry.load() is EMULATOR
    assert EMULATOR.api_path == "/api/v1"
    (separator,) = metadata.entry_points(group="stemkit.separators", name="ezstems")
    assert separator.load().name == "ezstems"


def test_stemkit_emulate_serves_it_and_prints_the_base_url_first() -> None:
    cmd = [sys.executable, "-m", "stemkit", "emulate", "ezstems", "--port", "0", "--api-key", "k_cli_test"]
    cmd += ["--processing-seconds", "0", "--option", "plan=pro", "--fault", "403:count=1,retry_after=0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/v1", base_url)
        headers = {"Authorization": "Bearer k_cli_test"}
        assert [HTTP.get(f"{base_url}/keys.php", headers=headers).status_code for _ in range(2)] == [403, 200]
        assert HTTP.get(f"{base_url}/keys.php", headers=AUTH).status_code == 401
    finally:
        proc.terminate()
        proc.wait(10)
