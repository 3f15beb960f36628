"""The job ledger: the three points of a hosted job's life, resuming an identical request, what is never
resumed, listing, and several processes beginning the same request at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stemkit.errors import ConfigError, JobFailedError
from stemkit.ledger import JobLedger, JobRequest, JobStatus
from stemkit.provenance import Cost


def request(sha: str = "a" * 64, stems: tuple[str, ...] | None = ("vocals", "instrumental")) -> JobRequest:
    return JobRequest(provider="stemsplit", spec="stemsplit?quality=best", input_sha256=sha, stems=stems,
                      identity={"provider": "stemsplit", "options": {"quality": "best"}},
                      input_name="/home/me/music/song.wav", input_duration=12.5)  # fmt: skip


@pytest.fixture
def ledger(tmp_path: Path) -> JobLedger:
    return JobLedger(tmp_path / "ledger.sqlite3")


def test_a_job_is_recorded_before_and_after_submission_and_when_it_ends(ledger: JobLedger) -> None:
    entry = ledger.begin(request())
    assert (entry.status, entry.job_id, entry.reused, entry.resumable) == (JobStatus.PREPARING, None, False, False)
    assert len(entry.idempotency_key) == 32
    assert entry.input_name == "song.wav"  # no local folders in the ledger
    submitted = ledger.submitted(entry.id, "job_123")
    assert submitted.status is JobStatus.SUBMITTED
    assert submitted.job_id == "job_123"
    assert submitted.submitted is not None
    done = ledger.finished(entry.id, Cost(13.0, "seconds"))
    assert done.status is JobStatus.FINISHED
    assert done.cost == Cost(13.0, "seconds")
    assert done.finished is not None
    assert not done.pending


def test_an_identical_request_resumes_the_submitted_job(ledger: JobLedger) -> None:
    first = ledger.begin(request())
    ledger.submitted(first.id, "job_1")
    again = ledger.begin(request())  # the process died after submitting; the same request comes again
    assert again.reused
    assert again.resumable
    assert (again.id, again.job_id, again.idempotency_key) == (first.id, "job_1", first.idempotency_key)
    assert again.attempts == 2


def test_an_unconfirmed_submission_is_retried_with_the_same_idempotency_key(ledger: JobLedger) -> None:
    first = ledger.begin(request())  # died before the provider's answer: it may or may not have the job
    again = ledger.begin(request())
    assert again.reused
    assert not again.resumable
    assert again.idempotency_key == first.idempotency_key


def test_another_input_or_other_stems_is_another_request(ledger: JobLedger) -> None:
    first = ledger.begin(request())
    assert ledger.begin(request(sha="b" * 64)).id != first.id
    assert ledger.begin(request(stems=("vocals",))).id != first.id


@pytest.mark.parametrize("end", ["failed", "expired", "finished"])
def test_a_job_that_ended_is_never_resumed(ledger: JobLedger, end: str) -> None:
    first = ledger.begin(request())
    ledger.submitted(first.id, "job_1")
    if end == "failed":
        ledger.failed(first.id, JobFailedError("spleeter crashed", provider="stemsplit"))
    elif end == "expired":
        ledger.expired(first.id)
    else:
        ledger.finished(first.id)
    again = ledger.begin(request())
    assert again.id != first.id
    assert not again.reused
    assert again.idempotency_key != first.idempotency_key
    ended = ledger.get(first.id)
    assert ended is not None
    assert ended.status.value == end
    if end == "failed":
        assert ended.error_class == "JobFailedError"


def test_an_open_job_older_than_the_provider_keeps_results_is_expired_not_resumed(ledger: JobLedger) -> None:
    first = ledger.begin(request())
    ledger.submitted(first.id, "job_1")
    again = ledger.begin(request(), resume_within=-1.0)
    assert again.id != first.id
    assert not again.reused
    old = ledger.get(first.id)
    assert old is not None
    assert old.status is JobStatus.EXPIRED
    assert "not resumed" in (old.error or "")


def test_a_timeouts_job_id_is_found_again(ledger: JobLedger) -> None:
    entry = ledger.begin(request())
    ledger.submitted(entry.id, "job_77")
    found = ledger.find("job_77", provider="stemsplit")
    assert found is not None
    assert found.id == entry.id
    assert ledger.find("job_77", provider="ezstems") is None


def test_listing_filters_by_status_and_provider_newest_first(ledger: JobLedger) -> None:
    done = ledger.begin(request(sha="1" * 64))
    ledger.finished(done.id, Cost(2.0, "seconds"))
    pending = ledger.begin(request(sha="2" * 64))
    failed = ledger.begin(request(sha="3" * 64))
    ledger.failed(failed.id, "boom")
    assert [e.id for e in ledger.entries()] == [failed.id, pending.id, done.id]
    assert [e.id for e in ledger.pending()] == [pending.id]
    assert [e.id for e in ledger.entries(status="finished")] == [done.id]
    assert ledger.entries(provider="ezstems") == []
    assert [e.id for e in ledger.entries(limit=1)] == [failed.id]


def test_errors_are_stored_without_signed_url_queries(ledger: JobLedger) -> None:
    entry = ledger.begin(request())
    ledger.failed(entry.id, "GET https://storage.example/out/v.wav?X-Signature=abc123&X-Expires=9 answered 403")
    stored = ledger.get(entry.id)
    assert stored is not None
    assert stored.error is not None
    assert "X-Signature" not in stored.error
    assert "https://storage.example/out/v.wav" in stored.error
    assert b"abc123" not in (ledger.path).read_bytes()


def test_a_file_that_is_not_a_ledger_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "ledger.sqlite3"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigError, match="not a usable SQLite"):
        JobLedger(bad)


def test_the_default_ledger_lives_in_the_cache_folder() -> None:
    assert JobLedger().path == Path(os.environ["STEMKIT_CACHE_DIR"]) / "ledger.sqlite3"


BEGIN = r"""
import json, sys
from stemkit.ledger import JobLedger, JobRequest
ledger = JobLedger(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
entry = ledger.begin(JobRequest("stemsplit", "stemsplit", "f" * 64, ("vocals",)))
print(json.dumps({"id": entry.id, "key": entry.idempotency_key}), flush=True)
"""


def test_processes_beginning_the_same_request_at_once_share_one_entry(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    JobLedger(path)
    procs = [subprocess.Popen([sys.executable, "-c", BEGIN, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]  # fmt: skip
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    answers = [json.loads(out.strip()) for out, _ in outputs]
    assert len({a["id"] for a in answers}) == 1
    assert len({a["key"] for a in answers}) == 1
    assert len(JobLedger(path).entries()) == 1


# -- what stage 2 added: the resume record, notes, read-only lookup, discard, which ledger -------------------------
def test_the_request_key_ignores_the_plugin_version() -> None:
    # An upgrade between a crash and the re-run must find the job, not submit (and bill) it again.
    def made_by(version: str) -> JobRequest:
        return JobRequest("stemsplit", "stemsplit", "a" * 64, ("vocals",),
                          identity={"provider": "stemsplit", "version": version})  # fmt: skip

    assert made_by("0.1").key == made_by("0.2").key


def test_lookup_finds_the_open_entry_without_changing_it(ledger: JobLedger) -> None:
    assert ledger.lookup(request()) is None
    entry = ledger.begin(request())
    ledger.submitted(entry.id, "job_1")
    found = ledger.lookup(request())
    assert found is not None
    assert (found.id, found.job_id, found.attempts) == (entry.id, "job_1", 1)
    assert ledger.get(entry.id).attempts == 1  # type: ignore[union-attr]


def test_notes_are_kept_for_the_next_try_of_the_same_request(ledger: JobLedger) -> None:
    entry = ledger.begin(request())
    ledger.note(entry.id, upload_key="uploads/u1/song.wav")
    ledger.note(entry.id, file_name="song.wav")
    again = ledger.begin(request())
    assert again.notes == {"upload_key": "uploads/u1/song.wav", "file_name": "song.wav"}


def test_only_an_entry_never_sent_and_not_reused_can_be_discarded(ledger: JobLedger) -> None:
    fresh = ledger.begin(request(sha="1" * 64))
    assert ledger.discard(fresh.id)
    assert ledger.get(fresh.id) is None
    tried = ledger.begin(request(sha="2" * 64))
    ledger.begin(request(sha="2" * 64))  # a second try: the first may have reached the provider
    assert not ledger.discard(tried.id)
    sent = ledger.begin(request(sha="3" * 64))
    ledger.submitted(sent.id, "job_3")
    assert not ledger.discard(sent.id)


def test_the_resume_record_round_trips(ledger: JobLedger) -> None:
    from stemkit.ledger import ResumeInfo

    info = ResumeInfo(options={"quality": "fast"}, requested=("vocals",), sample_rate=44_100, channels=2,
                      frames=1000, size_bytes=4044, suffix=".wav", input_path="/music/song.wav")  # fmt: skip
    base = request()
    entry = ledger.begin(JobRequest(base.provider, base.spec, base.input_sha256, base.stems, base.identity,
                                    base.input_name, base.input_duration, resume=info))  # fmt: skip
    assert entry.resume == info
    assert entry.to_dict()["input_path"] == "/music/song.wav"


def test_a_first_version_ledger_is_upgraded_in_place(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "ledger.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, request_key TEXT NOT NULL, provider TEXT NOT NULL,
            spec TEXT NOT NULL, input_sha256 TEXT NOT NULL, input_name TEXT, input_duration REAL, stems TEXT,
            idempotency_key TEXT NOT NULL, job_id TEXT, status TEXT NOT NULL, created REAL NOT NULL,
            updated REAL NOT NULL, submitted REAL, finished REAL, cost_amount REAL, cost_unit TEXT, error TEXT,
            error_class TEXT, attempts INTEGER NOT NULL DEFAULT 1);
        INSERT INTO jobs (request_key, provider, spec, input_sha256, idempotency_key, job_id, status, created, updated)
            VALUES ('k', 'stemsplit', 'stemsplit', 'abc', 'key1', 'job_old', 'submitted', 1.0, 1.0);
        PRAGMA user_version = 1;
        """
    )
    db.close()
    ledger = JobLedger(path)
    (old,) = ledger.entries()
    assert (old.job_id, old.resume, old.notes) == ("job_old", None, {})
    ledger.note(old.id, upload_key="u")
    assert JobLedger(path).get(old.id).notes == {"upload_key": "u"}  # type: ignore[union-attr]


def test_which_ledger_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stemkit.ledger import resolve_ledger

    default = resolve_ledger()
    assert default is not None
    assert default.path == Path(os.environ["STEMKIT_CACHE_DIR"]) / "ledger.sqlite3"
    assert resolve_ledger(False) is None
    mine = resolve_ledger(tmp_path / "mine.sqlite3")
    assert mine is not None
    assert mine.path == tmp_path / "mine.sqlite3"
    monkeypatch.setenv("STEMKIT_LEDGER", "off")
    assert resolve_ledger() is None
    monkeypatch.setenv("STEMKIT_LEDGER", str(tmp_path / "env.sqlite3"))
    assert resolve_ledger().path == tmp_path / "env.sqlite3"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="not a ledger setting"):
        resolve_ledger(3.5)
