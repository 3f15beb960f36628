"""The command line against the StemSplit emulator, each command a real subprocess: a batch killed with SIGKILL
after its jobs were submitted and run again completes with exactly one job per song; ``--dry-run`` makes no
request and prints the plan; ``--max-cost`` refuses before billing; ``stemkit jobs resume`` finishes jobs left
pending."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import soundfile as sf

from stemkit.ledger import JobLedger, JobStatus

from .conftest import StemSplit, abandon_after_submission, stemsplit_emulator


def command(stemsplit: StemSplit, *args: str) -> list[str]:
    return [sys.executable, "-m", "stemkit", *args]


def environment(stemsplit: StemSplit) -> dict[str, str]:
    return {**os.environ, "STEMSPLIT_API_KEY": stemsplit.api_key}


def stemkit(stemsplit: StemSplit, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(stemsplit, *args), capture_output=True, text=True, env=environment(stemsplit),
                          stdin=subprocess.DEVNULL, check=False, timeout=240)  # fmt: skip


def created(requests: list[object]) -> int:
    """Jobs the emulator accepted (answered 201 to POST /jobs)."""
    return sum(1 for r in requests if r.method == "POST" and r.path.endswith("/jobs") and r.status == 201)  # type: ignore[attr-defined]


def test_a_batch_killed_after_submitting_and_run_again_makes_exactly_one_job_per_song(
    songs: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    # Jobs take 3 s at the provider, so the run is killed while all four are being processed.
    with stemsplit_emulator(processing_seconds=3.0) as stemsplit:
        args = ("separate", str(songs[0].parent), "-p", stemsplit.spec(), "--stems", "vocals", "-j", "4", "-o")
        args = (*args, str(out))
        credits = stemsplit.credits
        run = subprocess.Popen(command(stemsplit, *args), env=environment(stemsplit), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert stemsplit.emulator.recorder.wait_for(lambda requests: created(requests) >= 4, timeout=180)
        finally:
            run.kill()  # SIGKILL: no cleanup, no goodbye
            _, killed_stderr = run.communicate(timeout=60)
        assert run.returncode == -9, killed_stderr
        assert stemsplit.jobs() == 4

        again = stemkit(stemsplit, *args)
        assert again.returncode == 0, again.stderr
        assert "4 inputs:" in again.stderr
        assert "0 new" in again.stderr  # every song was cached or resumed: none submitted again
        assert stemsplit.jobs() == 4  # exactly one job per song at the provider
        assert credits - stemsplit.credits == 4 * 2  # billed once each (1.5 s, rounded up per job)
        for song in songs:
            info = sf.info(out / song.stem / "vocals.wav")
            assert (info.frames, info.samplerate, info.channels) == (66_150, 44_100, 2)
        assert {e.status for e in JobLedger().entries()} == {JobStatus.FINISHED}

        seen = len(stemsplit.requests())
        third = stemkit(stemsplit, *args[:-1], str(tmp_path / "out3"))
        assert third.returncode == 0, third.stderr
        assert "4 cached, 0 resumed, 0 new" in third.stderr
        assert len(stemsplit.requests()) == seen  # not one request


def test_dry_run_prints_the_plan_and_makes_no_request(songs: list[Path], stemsplit: StemSplit, tmp_path: Path) -> None:
    with stemsplit.load() as sep:
        sep.separate(songs[0], stems="vocals")  # cached now
        job_id = abandon_after_submission(sep, songs[1], stems="vocals")  # the provider holds this one
    seen = len(stemsplit.requests())
    run = stemkit(stemsplit, "separate", str(songs[0].parent), "-p", stemsplit.spec(), "--stems", "vocals",
                  "-o", str(tmp_path / "out"), "--dry-run")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert len(stemsplit.requests()) == seen  # no upload, no job, not even a status request
    assert not (tmp_path / "out").exists()
    lines = {song.name: next(line for line in run.stdout.splitlines() if song.name in line) for song in songs}
    assert "cached" in lines["song0.wav"]
    assert f"resume job {job_id}" in lines["song1.wav"]
    assert "submit" in lines["song2.wav"]
    assert "2 seconds" in lines["song2.wav"]
    assert "direct: vocals" in lines["song3.wav"]
    assert "estimated cost 4 seconds" in run.stdout  # songs 2 and 3; the cached and resumed ones cost nothing
    assert "1 cached, 1 resume, 2 submit" in run.stdout


def test_max_cost_refuses_a_batch_over_budget_before_anything_is_billed(
    songs: list[Path], stemsplit: StemSplit, tmp_path: Path
) -> None:
    args = ("separate", str(songs[0].parent), "-p", stemsplit.spec(), "--stems", "vocals", "-o", str(tmp_path / "o"))
    refused = stemkit(stemsplit, *args, "--max-cost", "7")
    assert refused.returncode == 2, refused.stderr
    assert "8 seconds" in refused.stderr
    assert "budget of 7 seconds" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert stemsplit.requests() == []
    assert JobLedger().entries() == []
    dry = stemkit(stemsplit, *args, "--max-cost", "7 seconds", "--dry-run")
    assert dry.returncode == 2  # the plan is printed, and the budget judged
    assert "estimated cost 8 seconds" in dry.stdout
    done = stemkit(stemsplit, *args, "--max-cost", "8 seconds")
    assert done.returncode == 0, done.stderr
    assert "cost 8 seconds" in done.stderr  # the actual cost, summed
    assert stemsplit.jobs() == 4


def test_jobs_resume_finishes_the_jobs_left_pending(songs: list[Path], stemsplit: StemSplit, tmp_path: Path) -> None:
    with stemsplit.load() as sep:
        ids = [abandon_after_submission(sep, song, stems=["vocals", "instrumental"]) for song in songs[:2]]
    assert [e.status for e in JobLedger().pending()] == [JobStatus.SUBMITTED] * 2
    run = stemkit(stemsplit, "jobs", "resume")
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("finished (stored in the result cache)") == 2
    assert all(job_id in run.stdout for job_id in ids)
    assert JobLedger().pending() == []
    assert stemsplit.jobs() == 2
    seen = len(stemsplit.requests())
    with stemsplit.load() as sep:
        hits = [sep.separate(song, stems=["vocals", "instrumental"]) for song in songs[:2]]
    assert all(hit.provenance.cache is not None for hit in hits)
    assert len(stemsplit.requests()) == seen
    nothing = stemkit(stemsplit, "jobs", "resume")
    assert nothing.returncode == 0
    assert "no pending jobs" in nothing.stdout


def test_jobs_resume_one_job_writes_its_stems(song: Path, stemsplit: StemSplit, tmp_path: Path) -> None:
    with stemsplit.load(cache=False) as sep:
        job_id = abandon_after_submission(sep, song, stems="vocals")
    song.unlink()  # finished from the ledger's record alone
    out = tmp_path / "stems"
    run = stemkit(stemsplit, "jobs", "resume", job_id, "-o", str(out), "--format", "flac")
    assert run.returncode == 0, run.stderr
    info = sf.info(out / "song" / "vocals.flac")
    assert (info.frames, info.samplerate, info.channels) == (66_150, 44_100, 2)


def test_jobs_resume_usage_errors_exit_2(stemsplit: StemSplit, tmp_path: Path) -> None:
    no_job = stemkit(stemsplit, "jobs", "resume", "--input", str(tmp_path / "x.wav"))
    assert no_job.returncode == 2
    assert "--input" in no_job.stderr
    unknown = stemkit(stemsplit, "jobs", "resume", "job_unknown")
    assert unknown.returncode == 2
    assert "stemkit jobs list" in unknown.stderr
