"""The job ledger in the hosted lifecycle, against the emulators on loopback: every job is recorded before and
after submission, an identical request resumes a job an abandoned run submitted (never submitting it twice),
a retried submission reuses its idempotency key and upload, failed and expired jobs are recorded and not
resumed, and a ledger that cannot be used never breaks a separation."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

import stemkit
from stemkit.errors import JobExpiredError, JobFailedError
from stemkit.ledger import JobLedger, JobStatus, LedgerWarning

from .conftest import POLL, StemSplit, abandon_after_submission, stemsplit_emulator


def ledger() -> JobLedger:
    return JobLedger()  # the test's own cache folder (STEMKIT_CACHE_DIR)


def test_a_job_is_recorded_with_its_key_cost_and_what_resuming_it_needs(song: Path, stemsplit: StemSplit) -> None:
    with stemsplit.load(cache=False) as sep:
        stems = sep.separate(song, stems=["vocals", "instrumental"])
    (entry,) = ledger().entries()
    assert entry.status is JobStatus.FINISHED
    assert entry.job_id == stems.provenance.job_id
    assert entry.cost == stems.provenance.cost
    assert stems.provenance.origin == "new"
    (create,) = stemsplit.requests("POST", "/jobs")
    assert create.headers["idempotency-key"] == entry.idempotency_key  # the ledger's key, not a fresh one
    info = entry.resume
    assert info is not None
    assert info.requested == ("vocals", "instrumental")
    assert (info.sample_rate, info.channels, info.frames) == (44_100, 2, 66_150)
    assert info.input_path == str(song.resolve())
    assert info.options["base_url"] == stemsplit.base_url
    assert stemsplit.api_key not in str(entry.to_dict())


def test_an_identical_request_resumes_the_job_an_abandoned_run_submitted(song: Path, stemsplit: StemSplit) -> None:
    with stemsplit.load(cache=False) as sep:
        job_id = abandon_after_submission(sep, song, stems="vocals")
        assert ledger().entries()[0].status is JobStatus.SUBMITTED
        uploads = stemsplit.uploads()
        again = sep.separate(song, stems="vocals")
    assert again.provenance.job_id == job_id
    assert again.provenance.origin == "resumed"
    assert (stemsplit.jobs(), stemsplit.submissions(), stemsplit.uploads()) == (1, 1, uploads)  # polled, not sent
    (entry,) = ledger().entries()
    assert entry.status is JobStatus.FINISHED
    assert entry.attempts == 2
    assert again["vocals"].audio.shape == (2, 66_150)


def test_an_unconfirmed_submission_is_sent_again_with_its_key_and_upload(song: Path) -> None:
    # Every answer to POST /jobs is cut off: the job is created, but the client never learns its id.
    with stemsplit_emulator(faults=_faults("truncate:count=3,path=/jobs,method=POST")) as stemsplit:
        with stemsplit.load(cache=False) as sep:
            with pytest.raises(stemkit.ProviderError):
                sep.separate(song, stems="vocals")
            (entry,) = ledger().entries()
            assert entry.status is JobStatus.PREPARING
            assert set(entry.notes) == {"upload_key", "file_name"}
            assert stemsplit.jobs() == 1
            again = sep.separate(song, stems="vocals")  # the next run, after the connection is back
        assert stemsplit.jobs() == 1  # the provider answered the retry with the job it already had
        assert stemsplit.uploads() == 1  # the noted upload was reused: the very same request body
        keys = {r.headers["idempotency-key"] for r in stemsplit.requests("POST", "/jobs")}
        assert keys == {entry.idempotency_key}
        assert again.provenance.job_id == next(iter(stemsplit.emulator.state.jobs))
        assert ledger().get(entry.id).status is JobStatus.FINISHED  # type: ignore[union-attr]


def test_a_failed_job_is_recorded_and_never_resumed(song: Path) -> None:
    with stemsplit_emulator(faults=_faults("fail-job:count=1,message=spleeter crashed")) as stemsplit:
        with stemsplit.load(cache=False) as sep:
            with pytest.raises(JobFailedError):
                sep.separate(song, stems="vocals")
            sep.separate(song, stems="vocals")
        assert stemsplit.jobs() == 2
    failed, finished = sorted(ledger().entries(), key=lambda e: e.id)
    assert failed.status is JobStatus.FAILED
    assert failed.error_class == "JobFailedError"
    assert "spleeter crashed" in (failed.error or "")
    assert finished.status is JobStatus.FINISHED
    assert finished.idempotency_key != failed.idempotency_key


def test_an_expired_job_is_recorded_and_a_new_one_submitted(song: Path) -> None:
    with stemsplit_emulator(faults=_faults("expire-job:count=1")) as stemsplit:
        with stemsplit.load(cache=False) as sep:
            with pytest.raises(JobExpiredError):
                sep.separate(song, stems="vocals")
            sep.separate(song, stems="vocals")
        assert stemsplit.jobs() == 2
    assert [e.status for e in sorted(ledger().entries(), key=lambda e: e.id)] == [JobStatus.EXPIRED, JobStatus.FINISHED]


def test_a_job_the_provider_no_longer_has_is_expired_and_submitted_anew(song: Path, stemsplit: StemSplit) -> None:
    with stemsplit.load(cache=False) as sep:
        abandon_after_submission(sep, song, stems="vocals")
        (entry,) = ledger().entries()
        ledger().submitted(entry.id, "job_forgotten_by_the_provider")
        again = sep.separate(song, stems="vocals")
    assert again.provenance.origin == "new"
    assert stemsplit.jobs() == 2
    old = ledger().get(entry.id)
    assert old is not None
    assert old.status is JobStatus.EXPIRED


def test_the_ledger_is_used_without_the_result_cache_and_can_be_turned_off(
    song: Path, stemsplit: StemSplit, monkeypatch: pytest.MonkeyPatch
) -> None:
    with stemsplit.load(cache=False) as sep:
        stemkit.separate(song, provider=sep, stems="vocals")  # cache=False: the ledger still records the job
        assert len(ledger().entries()) == 1
        stemkit.separate(song, provider=sep, stems="drums", ledger=False)
        assert len(ledger().entries()) == 1
        monkeypatch.setenv("STEMKIT_LEDGER", "off")
        sep.separate(song, stems="bass")
        assert len(ledger().entries()) == 1
    assert stemsplit.jobs() == 3


def test_a_ledger_that_cannot_be_opened_warns_and_the_separation_goes_on(
    song: Path, stemsplit: StemSplit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("STEMKIT_CACHE_DIR", str(blocker))
    with stemsplit.load(cache=False) as sep, pytest.warns(LedgerWarning, match="not recorded"):
        stems = sep.separate(song, stems="vocals")
    assert stems["vocals"].audio.shape == (2, 66_150)


def test_a_damaged_ledger_file_warns_and_the_separation_goes_on(
    song: Path, stemsplit: StemSplit, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = Path(os.environ["STEMKIT_CACHE_DIR"]) / "ledger.sqlite3"
    path.write_bytes(b"this is not a database" * 200)
    with stemsplit.load(cache=False) as sep, pytest.warns(LedgerWarning, match="SQLite"):
        stems = sep.separate(song, stems="vocals")
    assert stems.provenance.job_id is not None


def test_a_named_ledger_that_cannot_be_opened_is_a_config_error(
    song: Path, stemsplit: StemSplit, tmp_path: Path
) -> None:
    bad = tmp_path / "ledger.sqlite3"
    bad.write_bytes(b"x" * 4096)
    with stemsplit.load(cache=False) as sep, pytest.raises(stemkit.ConfigError, match="not a usable SQLite"):
        stemkit.separate(song, provider=sep, stems="vocals", ledger=bad)
    assert stemsplit.requests() == []  # refused before anything was sent


def test_ezstems_jobs_are_recorded_and_resumed_too(song: Path, ezstems: object) -> None:
    emu = ezstems
    spec = f"ezstems?base_url={emu.base_url}"  # type: ignore[attr-defined]
    with stemkit.load(spec, api_key=emu.api_key, poll=POLL, cache=False) as sep:  # type: ignore[attr-defined]
        job_id = abandon_after_submission(sep, song, stems="vocals")
        again = sep.separate(song, stems="vocals")
    assert again.provenance.job_id == job_id
    assert again.provenance.origin == "resumed"
    assert emu.count("POST", "upload") == 1  # type: ignore[attr-defined]
    (entry,) = ledger().entries()
    assert entry.status is JobStatus.FINISHED


def test_a_second_run_after_an_abandoned_one_submits_nothing_new(songs: list[Path], stemsplit: StemSplit) -> None:
    folder = songs[0].parent
    with stemsplit.load() as sep:  # cached by default: it costs money
        for path in songs[:2]:
            abandon_after_submission(sep, path, stems="vocals")
        assert stemsplit.jobs() == 2
        first = list(stemkit.separate_many([folder], sep, stems="vocals"))
        assert sorted(item.origin or "" for item in first) == ["new", "new", "resumed", "resumed"]
        requests = len(stemsplit.requests())
        again = list(stemkit.separate_many([folder], sep, stems="vocals"))
    assert stemsplit.jobs() == 4
    assert [item.origin for item in again] == ["cached"] * 4
    assert len(stemsplit.requests()) == requests  # not one request the second time
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert all(item.cost is None for item in again)


def _faults(*specs: str) -> object:
    from stemkit.hosted.faults import FaultPlan

    return FaultPlan.parse(specs)
