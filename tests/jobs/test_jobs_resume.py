"""Resuming a hosted job from Python by its id: a timeout's job, a job a dead run left behind (with or without
its input), the result stored in the result cache under the original request's key; and what cannot be
resumed, said clearly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import stemkit
from stemkit.cache import ResultCache
from stemkit.errors import ConfigError, InputError, JobFailedError, SeparationTimeout
from stemkit.ledger import JobLedger, JobStatus
from stemkit.resuming import RecordedInput

from .conftest import POLL, RETRY, StemSplit, abandon_after_submission, stemsplit_emulator


def test_a_timeouts_job_id_is_resumed_from_python_and_then_answered_from_the_cache(
    song: Path, stemsplit: StemSplit
) -> None:
    with stemsplit.load() as sep:
        sep.separate(song, stems="drums")  # everything imported and warm: the deadline below is the job's alone
        stemsplit.emulator.config.queue_seconds = 6.0  # jobs now wait 6 s in the provider's queue
        with pytest.raises(SeparationTimeout) as caught:
            sep.separate(song, stems="vocals", timeout=3.0)
    job_id = caught.value.job_id
    assert job_id is not None
    assert f"stemkit.resume({job_id!r})" in str(caught.value)
    stems = stemkit.resume(job_id, **stemsplit.kwargs())
    assert stems.provenance.job_id == job_id
    assert stems.provenance.origin == "resumed"
    assert stems["vocals"].audio.shape == (2, 66_150)
    seen = len(stemsplit.requests())
    with stemsplit.load() as sep:
        again = sep.separate(song, stems="vocals")  # the original request
    assert again.provenance.cache is not None  # stored under the original request's key
    assert len(stemsplit.requests()) == seen
    assert stemsplit.jobs() == 2  # the warm-up's and the resumed one: nothing submitted twice


def test_a_job_is_finished_without_its_input_from_its_ledger_record(
    song: Path, stemsplit: StemSplit, tmp_path: Path
) -> None:
    with stemsplit.load() as sep:
        job_id = abandon_after_submission(sep, song, stems=["vocals", "instrumental"])
    moved = tmp_path / "elsewhere" / "renamed.wav"
    moved.parent.mkdir()
    shutil.move(song, moved)  # the input is gone from where it was separated
    stems = stemkit.resume(job_id, **stemsplit.kwargs())
    assert sorted(stems) == ["instrumental", "vocals"]
    assert (stems.sample_rate, stems.channels, stems.frames) == (44_100, 2, 66_150)
    assert stemsplit.uploads() == 1
    with stemsplit.load() as sep:
        hit = sep.separate(moved, stems=["vocals", "instrumental"])  # renamed and moved: the same content
    assert hit.provenance.cache is not None
    assert hit.provenance.input_name == str(moved)
    entry = JobLedger().find(job_id)
    assert entry is not None
    assert entry.status is JobStatus.FINISHED


def test_a_separator_resumes_into_its_own_cache(song: Path, stemsplit: StemSplit, tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "team-cache")
    with stemsplit.load(cache=cache) as sep:
        job_id = abandon_after_submission(sep, song, stems="vocals")
        stems = sep.resume(job_id)
        assert stems.provenance.origin == "resumed"
        assert sep.separate(song, stems="vocals").provenance.cache is not None
    assert len(cache.entries()) == 1


def test_resuming_by_ledger_entry_number_works_like_by_job_id(song: Path, stemsplit: StemSplit) -> None:
    with stemsplit.load(cache=False) as sep:
        abandon_after_submission(sep, song, stems="vocals")
    (entry,) = JobLedger().entries()
    stems = stemkit.resume(entry.id, **stemsplit.kwargs())
    assert stems.provenance.job_id == entry.job_id


def test_an_unconfirmed_job_needs_its_input_and_says_how_to_give_it(song: Path, tmp_path: Path) -> None:
    with stemsplit_emulator(faults=_faults("truncate:count=3,path=/jobs,method=POST")) as stemsplit:
        with stemsplit.load(cache=False) as sep, pytest.raises(stemkit.ProviderError):
            sep.separate(song, stems="vocals")
        (entry,) = JobLedger().entries()
        moved = tmp_path / "moved.wav"
        shutil.move(song, moved)
        with pytest.raises(InputError, match=rf"jobs resume {entry.id} --input"):
            stemkit.resume(entry.id, **stemsplit.kwargs())
        stems = stemkit.resume(entry.id, audio=moved, **stemsplit.kwargs())  # sent again: the same job
        assert stems["vocals"].audio.shape == (2, 66_150)
        assert stemsplit.jobs() == 1


def test_another_file_is_refused_as_the_input_of_a_job(song: Path, stemsplit: StemSplit, tmp_path: Path) -> None:
    with stemsplit.load(cache=False) as sep:
        job_id = abandon_after_submission(sep, song, stems="vocals")
    other = tmp_path / "other.wav"
    other.write_bytes(song.read_bytes()[:-4] + b"\x00\x01\x00\x01")
    with pytest.raises(InputError, match="not the input job"):
        stemkit.resume(job_id, audio=other, **stemsplit.kwargs())


def test_jobs_that_cannot_be_resumed_say_why(song: Path, tmp_path: Path) -> None:
    with stemsplit_emulator(faults=_faults("fail-job:count=1")) as stemsplit:
        with stemsplit.load(cache=False) as sep, pytest.raises(JobFailedError):
            sep.separate(song, stems="vocals")
        (failed,) = JobLedger().entries()
        with pytest.raises(JobFailedError, match="cannot be resumed"):
            stemkit.resume(str(failed.job_id), **stemsplit.kwargs())
        with pytest.raises(ConfigError, match="stemkit jobs list"):
            stemkit.resume("job_nobody_knows", **stemsplit.kwargs())
        with pytest.raises(ConfigError, match="turned off"):
            stemkit.resume(str(failed.job_id), ledger=False, **stemsplit.kwargs())


def test_a_recorded_input_has_the_shape_and_hash_but_no_audio(song: Path, stemsplit: StemSplit) -> None:
    with stemsplit.load(cache=False) as sep:
        abandon_after_submission(sep, song, stems="vocals")
    (entry,) = JobLedger().entries()
    recorded = RecordedInput(entry)
    assert (recorded.sample_rate, recorded.channels, recorded.frames) == (44_100, 2, 66_150)
    assert recorded.sha256 == entry.input_sha256
    assert recorded.size_bytes == song.stat().st_size
    with pytest.raises(InputError, match="derived from the mixture"):
        recorded.read()
    with pytest.raises(InputError, match="--input FILE"):
        _ = recorded.path


def _faults(*specs: str) -> object:
    from stemkit.hosted.faults import FaultPlan

    return FaultPlan.parse(specs)


_ = (POLL, RETRY)


def test_a_fitted_input_resumes_its_pieces_and_a_piece_is_finished_by_its_whole_request(
    stemsplit: StemSplit, tmp_path: Path
) -> None:
    import dataclasses

    from stemkit_stemsplit import StemSplitSeparator

    from .conftest import write_song

    class ShortStemSplit(StemSplitSeparator):
        """StemSplit as if it took at most 8 s: a 14 s song is sent as two overlapping pieces."""

        @property
        def capabilities(self) -> stemkit.Capabilities:
            return dataclasses.replace(super().capabilities, max_duration_seconds=8.0)

    long = write_song(tmp_path / "long.wav", 14.0, seed=9)
    with ShortStemSplit(options={"base_url": stemsplit.base_url, "format": "wav"}, api_key=stemsplit.api_key,
                        retry=RETRY, poll=POLL) as sep:  # fmt: skip
        job_id = abandon_after_submission(sep, long, stems="vocals")
        entry = JobLedger().find(job_id)
        assert entry is not None
        assert entry.resume is not None
        assert (entry.resume.pieces, entry.resume.parent_name, entry.resume.fit) == (2, str(long), "auto")
        assert entry.resume.parent_path == str(long.resolve())
        stems = stemkit.resume(job_id, provider=sep)  # the whole request again: its pieces resumed or sent
        assert stems.provenance.resumed
        assert stems.provenance.extra["fit"]["chunks"] == 2
        assert stems["vocals"].audio.shape == (2, 14 * 44_100)
        assert stemsplit.jobs() == 2  # one per piece, the abandoned one not sent again
        assert JobLedger().pending() == []
