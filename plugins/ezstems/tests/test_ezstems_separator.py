"""The ezstems provider end to end against the emulator: planning, progress, failures, hostile results."""

from __future__ import annotations

import asyncio
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import stemkit
from stemkit.errors import (
    ConfigError,
    JobExpiredError,
    JobFailedError,
    ProtocolError,
    ProviderLimitError,
    SeparationTimeout,
)
from stemkit.hosted import PollPolicy, RetryPolicy
from stemkit.ledger import using_ledger
from stemkit.protocol import ProgressEvent
from stemkit_ezstems import ArchiveWarning, EzStemsClient, EzStemsSeparator
from stemkit_ezstems.emulator import DEFAULT_API_KEY as KEY
from stemkit_ezstems.emulator import HOSTILE_VARIANTS
from stemkit_ezstems.testing import RunningEmulator as Emu

from .conftest import write_song

EmuFactory = Callable[..., Emu]
SeparatorFactory = Callable[..., EzStemsSeparator]


@pytest.fixture
def separator_for(fast_retry: RetryPolicy, fast_poll: PollPolicy) -> Iterator[SeparatorFactory]:
    made: list[EzStemsSeparator] = []

    def make(emu: Emu, **options: object) -> EzStemsSeparator:
        sep = EzStemsSeparator(
            options={"base_url": emu.base_url, **options}, api_key=KEY, retry=fast_retry, poll=fast_poll
        )
        made.append(sep)
        return sep

    yield make
    for sep in made:
        sep.close()


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every temporary file of the call (work folders, downloads) lands here, so a test can see all of it."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def leftovers(root: Path) -> list[Path]:
    """Everything under ``root`` but the emulator's own folder (it serves from the same process)."""
    return [p for p in root.rglob("*") if not p.relative_to(root).parts[0].startswith("ezstems-emulator-")]


# -- planning -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_stems", "uploaded", "derived"),
    [
        (["vocals"], 2, set()),
        (["vocals", "instrumental"], 2, set()),
        (["drums", "bass"], 4, set()),
        (["drums", "instrumental"], 4, {"instrumental"}),
        (["piano", "vocals"], 5, set()),
        (None, 4, set()),
    ],
)
def test_requests_run_the_smallest_spleeter_configuration_covering_them(
    emulator: Emu,
    separator_for: SeparatorFactory,
    song: Path,
    request_stems: list[str] | None,
    uploaded: int,
    derived: set[str],
) -> None:
    stems = separator_for(emulator).separate(song, stems=request_stems)
    assert emulator.state.jobs[stems.provenance.job_id or ""].stems == uploaded
    assert list(stems) == (request_stems or ["vocals", "drums", "bass", "other"])
    assert {name for name, stem in stems.items() if stem.derived} == derived
    frames = sf.info(song).frames
    for stem in stems.values():
        assert stem.audio.shape == (2, frames)
        assert stem.audio.dtype == np.float32
    assert stems.provenance.job_id is not None
    assert stems.provenance.job_id.endswith(f"_{uploaded}")
    assert stems.provenance.model == f"spleeter:{uploaded}stems"
    assert {"upload", "queue", "process", "download", "extract"} <= set(stems.provenance.timings)


def test_accompaniment_comes_back_as_instrumental(emulator: Emu, separator_for: SeparatorFactory, song: Path) -> None:
    stems = separator_for(emulator, stems=2).separate(song)
    assert list(stems) == ["vocals", "instrumental"]
    assert stems["instrumental"].provider_name == "accompaniment"
    assert not stems["instrumental"].derived


def test_a_pinned_configuration_is_used_even_for_a_smaller_request(
    emulator: Emu, separator_for: SeparatorFactory, song: Path
) -> None:
    stems = separator_for(emulator, stems="5").separate(song, stems=["vocals"])
    assert list(stems) == ["vocals"]
    assert emulator.state.jobs[stems.provenance.job_id or ""].stems == 5


def test_the_five_stem_piano_from_the_emulator_is_silent(
    emulator: Emu, separator_for: SeparatorFactory, song: Path
) -> None:
    stems = separator_for(emulator).separate(song, stems=["piano", "other"])
    assert not np.any(stems["piano"].audio)


def test_mp3_output_is_normalized_to_the_input_length(
    emulator: Emu, separator_for: SeparatorFactory, song: Path
) -> None:
    stems = separator_for(emulator, output="mp3").separate(song, stems=["vocals", "instrumental"])
    assert emulator.state.jobs[stems.provenance.job_id or ""].output == "mp3"
    assert stems["vocals"].audio.shape == (2, sf.info(song).frames)


def test_the_provider_loads_from_a_spec_string(emulator: Emu, song: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EZSTEMS_API_KEY", KEY)
    monkeypatch.setenv("EZSTEMS_BASE_URL", emulator.base_url)
    with stemkit.load("ezstems?stems=4&plan=pro", cache=False) as sep:  # the provider itself, no cache in front
        assert isinstance(sep, EzStemsSeparator)
        assert sep.capabilities.max_file_bytes == 75 * 1024 * 1024
        assert sep.capabilities.combinations == (("vocals", "drums", "bass", "other"),)
        stems = sep.separate(song, stems=["vocals"])
    assert list(stems) == ["vocals"]


# -- limits -------------------------------------------------------------------------------------------------


def test_with_fitting_off_a_file_over_the_plan_limit_is_refused_before_upload(
    emulator: Emu, separator_for: SeparatorFactory, big_wav: Path
) -> None:
    before = emulator.count("POST", "upload")
    with pytest.raises(ProviderLimitError, match="over the 31 MB limit for ezstems"):
        separator_for(emulator, plan="basic").separate(big_wav, fit="off")
    assert emulator.count("POST", "upload") == before


def test_the_server_side_plan_limit_is_a_limit_error_too(
    make_emulator: EmuFactory, separator_for: SeparatorFactory, big_wav: Path
) -> None:
    emu = make_emulator(plan="basic")
    with pytest.raises(ProviderLimitError, match="File too large"):
        separator_for(emu, plan="pro").separate(big_wav)
    assert emu.count("POST", "upload") == 1


def test_with_fitting_off_an_unsupported_input_format_is_refused_before_upload(
    emulator: Emu, separator_for: SeparatorFactory, song: Path, tmp_path: Path
) -> None:
    flac = tmp_path / "song.flac"
    sf.write(flac, sf.read(song)[0], 22050)
    before = emulator.count("POST", "upload")
    with pytest.raises(ProviderLimitError, match="not accepted"):
        separator_for(emulator).separate(flac, fit="off")
    assert emulator.count("POST", "upload") == before


def test_configuration_errors(monkeypatch: pytest.MonkeyPatch, song: Path) -> None:
    monkeypatch.delenv("EZSTEMS_API_KEY", raising=False)
    sep = EzStemsSeparator()
    assert sep.capabilities.has_api_key is False
    with pytest.raises(ConfigError, match="EZSTEMS_API_KEY"):
        sep.separate(song)
    with pytest.raises(ConfigError, match="takes no target"):
        EzStemsSeparator("spleeter")
    with pytest.raises(ConfigError, match="stems"):
        EzStemsSeparator(options={"stems": "3"})
    with pytest.raises(ConfigError, match="unknown option"):
        EzStemsSeparator(options={"quality": "best"})
    secret = "sk_never_shown_42"
    shown = EzStemsSeparator(api_key=secret)
    assert secret not in repr(shown)
    assert secret not in shown.spec


# -- progress -----------------------------------------------------------------------------------------------


def test_progress_reports_upload_queue_position_processing_and_download(
    make_emulator: EmuFactory, separator_for: SeparatorFactory, song: Path
) -> None:
    emu = make_emulator(workers=1)
    emu.state.pause()
    with EzStemsClient(KEY, base_url=emu.base_url) as client:
        client.upload(song, 2)  # held in processing: the separation below waits behind it
    events: list[ProgressEvent] = []
    queued = threading.Event()

    def on_progress(event: ProgressEvent) -> None:
        events.append(event)
        if event.stage == "queued" and event.queue_position == 1:
            queued.set()

    worker = threading.Thread(
        target=separator_for(emu).separate, args=(song,), kwargs={"stems": ["drums"], "progress": on_progress}
    )
    worker.start()
    assert queued.wait(10)
    emu.state.resume()
    worker.join(10)
    stages = [e.stage for e in events]
    assert stages[0] == "prepare"
    assert stages[-1] == "done"
    for earlier, later in [("upload", "queued"), ("queued", "processing"), ("processing", "download")]:
        assert stages.index(earlier) < stages.index(later)
    assert any(e.stage == "queued" and e.queue_position == 1 and e.job_id for e in events)
    assert "write" in stages


# -- job outcomes -------------------------------------------------------------------------------------------


def test_a_failed_job_is_a_job_failed_error_with_the_service_message(
    make_emulator: EmuFactory, separator_for: SeparatorFactory, song: Path, private_tmp: Path
) -> None:
    emu = make_emulator("fail-job:message=Spleeter ran out of memory")
    with pytest.raises(JobFailedError, match="Spleeter ran out of memory") as caught:
        separator_for(emu).separate(song)
    assert caught.value.job_id in emu.state.jobs
    assert leftovers(private_tmp) == []


def test_an_expired_job_is_a_job_expired_error(
    make_emulator: EmuFactory, separator_for: SeparatorFactory, song: Path
) -> None:
    emu = make_emulator("expire-job")
    with pytest.raises(JobExpiredError):
        separator_for(emu).separate(song)


def test_the_deadline_is_a_separation_timeout_naming_the_job(
    make_emulator: EmuFactory, separator_for: SeparatorFactory, song: Path
) -> None:
    emu = make_emulator()
    emu.state.pause()
    with pytest.raises(SeparationTimeout) as caught:
        separator_for(emu).separate(song, timeout=0.3)
    assert caught.value.job_id in emu.state.jobs
    emu.state.resume()


def test_a_403_storm_during_a_separation_is_ridden_out(
    make_emulator: EmuFactory, separator_for: SeparatorFactory, song: Path
) -> None:
    emu = make_emulator("403:count=3,retry_after=0")
    assert list(separator_for(emu).separate(song, stems=["vocals"])) == ["vocals"]
    assert emu.count("POST", "upload") == 4
    assert len(emu.state.jobs) == 1


def test_flaky_status_and_a_cut_download_are_retried(
    make_emulator: EmuFactory, separator_for: SeparatorFactory, song: Path
) -> None:
    emu = make_emulator("5xx:count=2,path=/status.php", "drop-download:count=1,after=0.5")
    separator_for(emu).separate(song, stems=["vocals"])
    assert emu.count("GET", "download") == 2
    assert emu.count("GET", "status") >= 3


# -- hostile and corrupt results --------------------------------------------------------------------------------

REFUSED = [v for v in HOSTILE_VARIANTS if v != "extra-files"]


@pytest.mark.parametrize("variant", REFUSED)
def test_each_hostile_zip_is_refused_with_nothing_left_anywhere(
    emulator: Emu, separator_for: SeparatorFactory, song: Path, private_tmp: Path, variant: str
) -> None:
    emulator.faults(f"hostile-zip:variant={variant}")
    Path("/tmp/ezstems-absolute.wav").unlink(missing_ok=True)
    message = "no vocals stem" if variant == "missing-stem" else "refused|corrupt"
    with pytest.raises(ProtocolError, match=message):
        separator_for(emulator).separate(song)
    assert leftovers(private_tmp) == []  # work folder, ZIP and staging all gone; nothing escaped
    assert not Path("/tmp/ezstems-absolute.wav").exists()


@pytest.mark.parametrize("variant", ["damaged", "cut"])
def test_a_corrupt_zip_is_a_protocol_error(
    emulator: Emu, separator_for: SeparatorFactory, song: Path, private_tmp: Path, variant: str
) -> None:
    emulator.faults(f"corrupt-zip:variant={variant}")
    with pytest.raises(ProtocolError, match="corrupt or truncated"):
        separator_for(emulator).separate(song)
    assert leftovers(private_tmp) == []


def test_extra_members_are_ignored_with_a_warning(emulator: Emu, separator_for: SeparatorFactory, song: Path) -> None:
    emulator.faults("hostile-zip:variant=extra-files")
    with pytest.warns(ArchiveWarning, match="readme.txt"):
        stems = separator_for(emulator).separate(song)
    assert list(stems) == ["vocals", "drums", "bass", "other"]


def test_a_successful_result_keeps_only_the_stems(
    emulator: Emu, separator_for: SeparatorFactory, song: Path, private_tmp: Path
) -> None:
    stems = separator_for(emulator).separate(song, stems=["vocals", "drums"])
    files = sorted(p.name for p in leftovers(private_tmp) if p.is_file())
    assert files == ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]
    del stems


# -- async --------------------------------------------------------------------------------------------------


def test_concurrent_async_separations_of_different_songs_each_get_their_own_job(
    make_emulator: EmuFactory, separator_for: SeparatorFactory, tmp_path: Path
) -> None:
    emu = make_emulator(workers=3)
    sep = separator_for(emu)
    songs = [write_song(tmp_path / f"song{n}.wav", seconds=1.0 + n / 10) for n in range(3)]

    async def run() -> list[stemkit.StemSet]:
        return list(await asyncio.gather(*(sep.aseparate(song, stems=["vocals"]) for song in songs)))

    results = asyncio.run(run())
    assert len({r.provenance.job_id for r in results}) == 3
    assert [r["vocals"].audio.shape for r in results] == [(2, sf.info(song).frames) for song in songs]


def test_the_same_song_asked_for_three_times_at_once_is_one_job(
    make_emulator: EmuFactory, separator_for: SeparatorFactory, song: Path, tmp_path: Path
) -> None:
    # The job ledger finds the first request's open entry: the others wait for that job, not a second bill.
    emu = make_emulator(workers=3)
    sep = separator_for(emu)

    async def run() -> list[stemkit.StemSet]:
        with using_ledger(tmp_path / "ledger.sqlite3"):
            return list(await asyncio.gather(*(sep.aseparate(song, stems=["vocals"]) for _ in range(3))))

    results = asyncio.run(run())
    assert len({r.provenance.job_id for r in results}) == 1
    assert emu.count("POST", "upload") == 1
    assert all(r["vocals"].audio.shape == (2, sf.info(song).frames) for r in results)


def test_async_failures_and_hostile_zips_surface_the_same_errors(
    make_emulator: EmuFactory, separator_for: SeparatorFactory, song: Path
) -> None:
    emu = make_emulator("fail-job:count=1,message=bad audio")
    sep = separator_for(emu)
    with pytest.raises(JobFailedError, match="bad audio"):
        asyncio.run(sep.aseparate(song))
    emu.faults("hostile-zip:variant=zip-slip")
    with pytest.raises(ProtocolError, match="zip-slip"):
        asyncio.run(sep.aseparate(song))
    emu.faults("403:count=1,retry_after=0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(asyncio.run(sep.aseparate(song, stems=["vocals"]))) == ["vocals"]
