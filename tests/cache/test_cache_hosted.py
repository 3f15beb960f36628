"""The result cache in front of a hosted provider, against the StemSplit emulator on loopback: a repeated
request makes no request at all, batches re-run for free, and nothing secret is ever stored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import stemkit
from stemkit.cache import stems_equal

from .conftest import Emulated


def cache_root() -> Path:
    return Path(os.environ["STEMKIT_CACHE_DIR"])


def test_a_second_identical_request_makes_no_request_at_all(song: Path, stemsplit: Emulated) -> None:
    with stemkit.load(stemsplit.spec(), **stemsplit.kwargs()) as sep:  # cached by default: it costs money
        first = sep.separate(song, stems=["vocals", "instrumental"])
        assert stemsplit.submissions() == 1
        seen = stemsplit.requests()
        again = sep.separate(song, stems=["vocals", "instrumental"])
    assert stemsplit.requests() == seen  # not one request: no upload, no job, no poll, no download
    assert stemsplit.submissions() == 1
    assert again.provenance.cache is not None
    assert again.provenance.cache.cost == first.provenance.cost  # what it cost when it was made
    assert again.provenance.cost is None
    assert again.provenance.job_id == first.provenance.job_id
    assert stems_equal(first, again)


def test_a_re_run_batch_submits_nothing_and_writes_every_stem(
    songs: list[Path], stemsplit: Emulated, tmp_path: Path
) -> None:
    folder = songs[0].parent
    with stemkit.load(stemsplit.spec(), **stemsplit.kwargs()) as sep:
        first = list(stemkit.separate_many([folder], sep, stems="vocals", output_dir=tmp_path / "one"))
        assert stemsplit.submissions() == 3
        again = list(stemkit.separate_many([folder], sep, stems="vocals", output_dir=tmp_path / "two"))
    assert stemsplit.submissions() == 3
    assert all(item.ok for item in first + again)
    assert all(item.result is not None and item.result.provenance.cache is not None for item in again)
    assert sorted(p.parent.name for p in (tmp_path / "two").glob("*/vocals.wav")) == ["song0", "song1", "song2"]


def test_a_chain_caches_its_hosted_member_and_not_its_local_one(song: Path, stemsplit: Emulated) -> None:
    spec = f"{stemsplit.spec()} | dsp"
    kwargs = {"provider_kwargs": {"stemsplit": stemsplit.kwargs()}}
    with stemkit.load(spec, **kwargs) as chain:
        chain.separate(song, stems="vocals")
        hit = chain.separate(song, stems="vocals")
    assert stemsplit.submissions() == 1
    assert hit.provider == "stemsplit"
    assert hit.provenance.cache is not None
    with stemkit.load(f"{stemsplit.spec()}&quality=fast | dsp", **kwargs) as chain:
        chain.separate(song, stems="vocals")  # another option: another entry
    assert stemsplit.submissions() == 2


def test_the_key_changes_with_the_requested_stems_and_options(song: Path, stemsplit: Emulated) -> None:
    with stemkit.load(stemsplit.spec(), **stemsplit.kwargs()) as sep:
        sep.separate(song, stems="vocals")
        sep.separate(song, stems="drums")
        sep.separate(song, stems="vocals", quality="fast")
        sep.separate(song, stems="vocals")
    assert stemsplit.submissions() == 3


def test_no_cache_asks_the_provider_every_time(song: Path, stemsplit: Emulated) -> None:
    for _ in range(2):
        stemkit.separate(song, provider=stemsplit.spec(), stems="vocals", cache=False, api_key=stemsplit.api_key)
    assert stemsplit.submissions() == 2
    assert not (cache_root() / "entries").exists()


def test_the_cache_never_stores_the_key_or_a_signed_url(song: Path, stemsplit: Emulated) -> None:
    stemkit.separate(song, provider=stemsplit.spec(), stems=["vocals", "instrumental"], api_key=stemsplit.api_key)
    stored = [p for p in cache_root().rglob("*") if p.is_file()]
    assert any(p.name == "entry.json" for p in stored)
    signatures = [r.query for r in stemsplit.emulator.recorder.requests if "X-Signature=" in r.query]
    assert signatures  # the emulator did hand out presigned URLs
    for path in stored:
        raw = path.read_bytes()
        assert stemsplit.api_key.encode() not in raw, path
        assert b"X-Signature" not in raw, path
        assert b"X-Expires" not in raw, path
        assert not any(query.encode() in raw for query in signatures), path


def test_a_separator_loaded_without_a_key_answers_hits_without_one(
    song: Path, stemsplit: Emulated, monkeypatch: pytest.MonkeyPatch
) -> None:
    stemkit.separate(song, provider=stemsplit.spec(), stems="vocals", api_key=stemsplit.api_key)
    monkeypatch.delenv("STEMSPLIT_API_KEY", raising=False)
    hit = stemkit.separate(song, provider=stemsplit.spec(), stems="vocals")
    assert hit.provenance.cache is not None
