"""The result cache with local providers (dsp and a test provider on SeparatorBase): what a hit returns, what
the key depends on, damaged entries, eviction, backends, housekeeping and the policy."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import stemkit
from stemkit import registry
from stemkit.cache import CachedSeparator, CacheWarning, ResultCache, apply_cache, stems_equal
from stemkit.cache.eviction import MANIFEST, entry_dir
from stemkit.protocol import Capabilities

from .conftest import Loud


def entries(root: Path) -> list[Path]:
    ResultCache(root).flush()  # local results are stored in the background: wait for them
    return sorted((root / "entries").glob("*/*/entry.json"))


def data_files(root: Path) -> list[Path]:
    ResultCache(root).flush()
    return sorted((root / "entries").glob("*/*/data-*/*.wav"))


def test_a_hit_returns_a_stemset_equal_to_the_stored_one_bit_for_bit(song: Path, tmp_path: Path) -> None:
    provider = Loud()
    sep = CachedSeparator(provider, ResultCache(tmp_path / "cache"))
    plain = Loud().separate(song)
    first = sep.separate(song)
    again = sep.separate(song)
    assert provider.calls == 1
    assert stems_equal(plain, first)
    assert stems_equal(first, again)
    assert float(np.max(np.abs(again["vocals"].audio))) > 1.0  # past full scale, kept exactly
    assert np.signbit(again["drums"].audio[:, ::2]).all()  # even -0.0 survives
    assert (again.sample_rate, again.channels, again.frames) == (plain.sample_rate, plain.channels, plain.frames)
    assert again.provenance.model == "loud-1"
    assert again.provenance.input_sha256 == plain.provenance.input_sha256
    assert again.mixture is not None
    assert np.array_equal(again.mixture.audio, plain.mixture.audio)  # type: ignore[union-attr]


def test_a_hit_is_marked_in_provenance_with_when_and_by_which_spec(song: Path, tmp_path: Path) -> None:
    sep = stemkit.load("dsp?kernel=9", cache=tmp_path / "cache")
    first = sep.separate(song, stems=["vocals", "instrumental"])
    assert first.provenance.cache is None  # computed, not a hit
    hit = sep.separate(song, stems=["vocals", "instrumental"])
    record = hit.provenance.cache
    assert record is not None
    assert record.spec == "dsp?kernel=9"
    assert datetime.fromisoformat(record.created).tzinfo is not None
    assert record.seconds == round(first.provenance.timings["total"], 6)
    assert hit.provenance.cost is None  # the hit itself cost nothing
    assert [a.outcome for a in hit.attempts] == ["ok"]
    assert hit["instrumental"].derived
    assert not hit["vocals"].derived
    assert hit.to_dict()["provenance"]["cache"]["spec"] == "dsp?kernel=9"


def test_renaming_or_moving_the_input_hits_and_is_named_as_it_is_now(song: Path, tmp_path: Path) -> None:
    provider = Loud()
    sep = CachedSeparator(provider, ResultCache(tmp_path / "cache"))
    sep.separate(song, stems=["vocals"])
    moved = tmp_path / "elsewhere" / "renamed.wav"
    moved.parent.mkdir()
    shutil.copy(song, moved)
    hit = sep.separate(moved, stems=["vocals"])
    assert provider.calls == 1
    assert hit.provenance.input_name == str(moved)
    written = hit.save(tmp_path / "out", template="{input}-{stem}.{ext}")
    assert written["vocals"].name == "renamed-vocals.wav"
    assert hit.provenance.cache is not None


def test_bytes_and_array_inputs_hit_what_a_file_input_stored(song: Path, tmp_path: Path) -> None:
    provider = Loud()
    sep = CachedSeparator(provider, ResultCache(tmp_path / "cache"))
    sep.separate(song)
    assert sep.separate(song.read_bytes()).provenance.cache is not None  # the same bytes: the same content hash
    audio, rate = sf.read(song, dtype="float32", always_2d=True)
    sep.separate(audio.T, sample_rate=rate)  # an array is hashed by its samples: another entry
    assert provider.calls == 2
    assert sep.separate(audio.T.copy(), sample_rate=rate).provenance.cache is not None
    assert provider.calls == 2


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("dsp", ["vocals"]), ("dsp", ["drums"])),
        (("dsp", ["vocals"]), ("dsp?kernel=9", ["vocals"])),
        (("dsp", None), ("dsp", ["vocals", "drums", "bass", "other"])),
    ],
)
def test_changing_the_provider_options_or_stems_misses(
    song: Path, tmp_path: Path, first: tuple[str, Any], second: tuple[str, Any]
) -> None:
    cache = ResultCache(tmp_path / "cache")
    stemkit.separate(song, provider=first[0], stems=first[1], cache=cache)
    result = stemkit.separate(song, provider=second[0], stems=second[1], cache=cache)
    assert result.provenance.cache is None
    assert len(entries(tmp_path / "cache")) == 2


def test_changing_the_input_misses(song: Path, tmp_path: Path) -> None:
    audio, rate = sf.read(song, dtype="float32")
    other = tmp_path / "quieter.wav"
    sf.write(other, audio * 0.5, rate, subtype="FLOAT")
    cache = ResultCache(tmp_path / "cache")
    stemkit.separate(song, provider="dsp", cache=cache)
    assert stemkit.separate(other, provider="dsp", cache=cache).provenance.cache is None


def test_the_plugin_version_is_part_of_the_key(song: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ResultCache(tmp_path / "cache")
    stemkit.separate(song, provider="dsp", stems="vocals", cache=cache)
    monkeypatch.setattr(registry, "distribution_version", lambda cls: "stemkit-dsp==9.9.9")
    assert stemkit.separate(song, provider="dsp", stems="vocals", cache=cache).provenance.cache is None


def test_defaults_spelled_out_and_stem_order_share_one_entry(song: Path, tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "cache")
    stemkit.separate(song, provider="dsp", stems=["vocals", "drums"], cache=cache)
    same = stemkit.separate(song, provider="dsp?kernel=17&center=4", stems=["drums", "Vocals"], cache=cache)
    assert same.provenance.cache is not None


def test_a_call_option_is_part_of_the_key(song: Path, tmp_path: Path) -> None:
    dsp = stemkit.load("dsp", cache=tmp_path / "cache")
    dsp.separate(song, stems="vocals", kernel=9)
    assert dsp.separate(song, stems="vocals", kernel=9).provenance.cache is not None
    assert dsp.separate(song, stems="vocals").provenance.cache is None


def test_a_damaged_stem_is_dropped_with_a_warning_and_recomputed(song: Path, tmp_path: Path) -> None:
    provider = Loud()
    root = tmp_path / "cache"
    sep = CachedSeparator(provider, ResultCache(root))
    original = sep.separate(song)
    expected = {name: stem.audio.copy() for name, stem in original.items()}  # read before the damage
    victim = data_files(root)[0]
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x40  # one flipped bit in the samples
    victim.write_bytes(bytes(raw))
    with pytest.warns(CacheWarning, match="damaged"):
        again = sep.separate(song)
    assert provider.calls == 2
    assert again.provenance.cache is None
    assert all(np.array_equal(again[name].audio, audio) for name, audio in expected.items())
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        assert sep.separate(song).provenance.cache is not None  # the fresh entry is sound
    assert provider.calls == 2


@pytest.mark.parametrize("damage", ["truncate-manifest", "garbage-manifest", "remove-stem", "truncate-stem"])
def test_every_kind_of_damage_is_detected(song: Path, tmp_path: Path, damage: str) -> None:
    provider = Loud()
    root = tmp_path / "cache"
    sep = CachedSeparator(provider, ResultCache(root))
    sep.separate(song, stems="vocals")
    manifest = entries(root)[0]
    stem = data_files(root)[0]
    if damage == "truncate-manifest":
        manifest.write_bytes(manifest.read_bytes()[:50])
    elif damage == "garbage-manifest":
        manifest.write_bytes(manifest.read_bytes().replace(b'"loud-1"', b'"loud-2"'))  # valid JSON, wrong sum
    elif damage == "remove-stem":
        stem.unlink()
    else:
        stem.write_bytes(stem.read_bytes()[:-100])
    with pytest.warns(CacheWarning, match="damaged"):
        result = sep.separate(song, stems="vocals")
    assert provider.calls == 2
    assert result.provenance.cache is None


def test_least_recently_used_entries_are_evicted_first(songs: list[Path], tmp_path: Path) -> None:
    root = tmp_path / "cache"
    probe = ResultCache(root, max_size="none")
    CachedSeparator(Loud(), probe).separate(songs[0], stems="vocals")
    one = probe.info().size
    probe.clear()
    cache = ResultCache(root, max_size=int(2.5 * one))
    sep = CachedSeparator(Loud(), cache)
    a, b, c = songs
    for path, when in ((a, 1_000_000_000.0), (b, 1_000_000_100.0)):  # stored long ago, a before b
        sep.separate(path, stems="vocals")
        cache.flush()
        for file in (root / entry_dir(_key_for(sep, path))).rglob("*"):
            os.utime(file, (when, when))
    assert sep.separate(a, stems="vocals").provenance.cache is not None  # a is used now: b is the oldest
    sep.separate(c, stems="vocals")
    assert len(entries(root)) == 2
    assert sep.lookup(b, stems="vocals") is None
    assert sep.lookup(a, stems="vocals") is not None
    assert sep.lookup(c, stems="vocals") is not None


def _key_for(sep: CachedSeparator, path: Path) -> str:
    from stemkit.audio import open_source

    return sep.key(open_source(path), "vocals")


def test_a_cache_that_cannot_be_written_warns_and_the_separation_goes_on(song: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = ResultCache(root)
    (root / "entries").write_text("not a folder")  # every write below it fails with an OSError
    provider = Loud()
    sep = CachedSeparator(provider, cache, write_behind=False)  # the store runs in the call: its warning too
    with pytest.warns(CacheWarning, match="could not be stored"):
        result = sep.separate(song, stems="vocals")
    assert provider.calls == 1
    assert result["vocals"].audio.shape == (2, 88_200)
    assert not list((root / "tmp").glob("stage-*"))  # the staged files went with the failure


def test_a_cache_location_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(stemkit.ConfigError, match="not a folder"):
        stemkit.load("dsp", cache=blocker)


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_fsspec_locations_store_and_hit(song: Path, tmp_path: Path, scheme: str) -> None:
    url = f"memory://stemkit-{uuid.uuid4().hex}" if scheme == "memory" else (tmp_path / "via-url").as_uri()
    provider = Loud()
    cache = ResultCache(url)
    sep = CachedSeparator(provider, cache)
    first = sep.separate(song, stems=["vocals", "drums"])
    again = sep.separate(song, stems=["vocals", "drums"])
    assert provider.calls == 1
    assert again.provenance.cache is not None
    assert stems_equal(first, again)
    assert cache.info().entries == 1
    assert cache.location == url if scheme == "memory" else (tmp_path / "via-url").is_dir()
    assert cache.clear().entries == 1
    assert sep.separate(song, stems=["vocals", "drums"]).provenance.cache is None


def test_a_damaged_entry_in_memory_storage_is_recomputed(song: Path) -> None:
    import fsspec

    url = f"memory://stemkit-{uuid.uuid4().hex}"
    provider = Loud()
    sep = CachedSeparator(provider, ResultCache(url))
    sep.separate(song, stems="vocals")
    sep.cache.flush()  # stored in the background: wait before looking at the storage directly
    fs = fsspec.filesystem("memory")
    stem = next(p for p in fs.find(url.removeprefix("memory:/")) if p.endswith(".wav"))
    fs.pipe_file(stem, fs.cat_file(stem)[:-8])
    with pytest.warns(CacheWarning, match="damaged"):
        sep.separate(song, stems="vocals")
    assert provider.calls == 2


def test_info_prune_and_clear(songs: list[Path], tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "cache")
    sep = CachedSeparator(Loud(), cache)
    for path in songs:
        sep.separate(path, stems="vocals")
    info = cache.info()
    assert info.entries == 3
    assert info.incomplete == 0
    assert info.size > 0
    pruned = cache.prune(max_size=info.size // 2)
    assert pruned.entries == 2
    assert cache.info().entries == 1
    assert cache.prune(older_than=-1).entries == 1  # nothing is younger than the future
    sep.separate(songs[0], stems="vocals")
    assert cache.clear().entries == 1
    assert cache.info().entries == 0


def test_prune_removes_what_dead_writers_left_and_spares_live_ones(song: Path, tmp_path: Path) -> None:
    import socket

    root = tmp_path / "cache"
    cache = ResultCache(root)
    host = socket.gethostname().replace("-", "_")[:40]
    dead = root / "tmp" / f"stage-{host}-999999999-abc"
    live = root / "tmp" / f"read-{host}-{os.getpid()}-abc"
    for folder in (dead, live):
        folder.mkdir()
        (folder / "vocals.wav").write_bytes(b"x")
    half = root / entry_dir("ab" + "0" * 62) / "data-x"
    half.mkdir(parents=True)
    (half / "vocals.wav").write_bytes(b"partial")
    old = 1_000_000.0
    os.utime(half / "vocals.wav", (old, old))
    result = cache.prune()
    assert result.leftovers == 2
    assert not dead.exists()
    assert live.exists()
    assert not half.exists()


def test_a_fresh_entry_without_its_manifest_is_left_for_its_writer(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "cache")
    half = tmp_path / "cache" / entry_dir("cd" + "0" * 62) / "data-x"
    half.mkdir(parents=True)
    (half / "vocals.wav").write_bytes(b"being written")
    assert cache.prune().leftovers == 0
    assert half.exists()
    assert cache.info().incomplete == 1


def test_local_providers_are_cached_only_when_asked(song: Path, tmp_path: Path) -> None:
    default_root = Path(os.environ["STEMKIT_CACHE_DIR"])
    stemkit.separate(song, provider="dsp", stems="vocals")
    assert entries(default_root) == []
    stemkit.separate(song, provider="dsp", stems="vocals", cache=True)
    assert len(entries(default_root)) == 1
    assert stemkit.separate(song, provider="dsp", stems="vocals", cache=True).provenance.cache is not None
    assert stemkit.separate(song, provider="dsp", stems="vocals", cache=False).provenance.cache is None


def test_a_separator_passed_in_is_wrapped_not_changed_and_stays_open(song: Path, tmp_path: Path) -> None:
    provider = Loud()
    first = stemkit.separate(song, provider=provider, stems="vocals", cache=tmp_path / "cache")
    again = stemkit.separate(song, provider=provider, stems="vocals", cache=tmp_path / "cache")
    assert (first.provenance.cache, again.provenance.cache is not None, provider.calls) == (None, True, 1)
    outcomes = list(stemkit.separate_many([song], provider, stems="vocals", cache=tmp_path / "cache"))
    assert outcomes[0].result is not None
    assert outcomes[0].result.provenance.cache is not None
    assert provider.separate(song, stems="vocals") is not None  # separate_many did not close it


def test_separate_many_re_run_answers_every_input_from_the_cache(songs: list[Path], tmp_path: Path) -> None:
    folder = songs[0].parent
    first = list(stemkit.separate_many([folder], "dsp", stems="vocals", output_dir=tmp_path / "a", cache=True))
    again = list(stemkit.separate_many([folder], "dsp", stems="vocals", output_dir=tmp_path / "b", cache=True))
    assert all(item.ok for item in first + again)
    assert all(item.result is not None and item.result.provenance.cache is not None for item in again)
    for item in first:
        ours = sf.read(item.paths["vocals"], dtype="float32")[0]
        theirs = sf.read(tmp_path / "b" / item.name / "vocals.wav", dtype="float32")[0]
        assert np.array_equal(ours, theirs)


def test_aseparate_takes_the_cache_argument(song: Path, tmp_path: Path) -> None:
    async def twice() -> tuple[stemkit.StemSet, stemkit.StemSet]:
        first = await stemkit.aseparate(song, provider="dsp", stems="vocals", cache=tmp_path / "c")
        again = await stemkit.aseparate(song, provider="dsp", stems="vocals", cache=tmp_path / "c")
        return first, again

    first, again = asyncio.run(twice())
    assert first.provenance.cache is None
    assert again.provenance.cache is not None


def test_compare_answers_from_what_separate_cached(song: Path, tmp_path: Path) -> None:
    from stemkit.evaluate import compare

    stemkit.separate(song, provider="dsp", cache=tmp_path / "cache")
    report = compare(song, ["dsp"], cache=tmp_path / "cache", metrics="consistency")
    assert [run.cached for run in report.runs] == [True]


def test_a_hit_closes_cleanly_and_the_entry_outlives_it(song: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    sep = CachedSeparator(Loud(), ResultCache(root))
    sep.separate(song, stems="vocals").close()
    hit = sep.separate(song, stems="vocals")
    path = hit["vocals"].path
    assert path is not None
    assert path.exists()
    ResultCache(root).clear()  # another process empties the cache: this hit's private copy stays readable
    assert hit["vocals"].audio.shape == (2, 88_200)
    hit.close()
    assert not path.exists()
    assert (root / MANIFEST).exists() is False


def test_an_unusable_default_location_warns_and_separates_without_a_cache(
    song: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("STEMKIT_CACHE_DIR", str(blocker))
    provider = Loud()
    monkeypatch.setattr(Loud, "capabilities", property(lambda self: Capabilities(
        combinations=(("vocals", "drums", "bass", "other"),), local=False, cost_unit="seconds")))  # fmt: skip
    with pytest.warns(CacheWarning, match="not a folder"):
        sep = apply_cache(provider, None, owned=False)  # the default policy: nobody asked for a cache
    assert sep is provider
    assert sep.separate(song, stems="vocals").provenance.cache is None
    with pytest.raises(stemkit.ConfigError, match="not a folder"):
        stemkit.separate(song, provider=provider, stems="vocals", cache=True)  # asked for: an error


def test_a_local_result_is_returned_at_once_and_stored_behind_it(song: Path, tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "cache")
    provider = Loud()
    first = CachedSeparator(provider, cache).separate(song, stems="vocals")
    assert first["vocals"].path is None  # the provider's own in-memory result, not a copy read back
    other = ResultCache(tmp_path / "cache")  # another object on the same folder, same process
    assert CachedSeparator(provider, other).separate(song, stems="vocals").provenance.cache is not None
    assert provider.calls == 1


def test_without_write_behind_a_miss_returns_the_stored_files(song: Path, tmp_path: Path) -> None:
    sep = CachedSeparator(Loud(), ResultCache(tmp_path / "cache"), write_behind=False)
    first = sep.separate(song, stems="vocals")
    assert first["vocals"].path is not None
    assert not first["vocals"].is_loaded
    assert first.provenance.cache is None
    assert stems_equal(first, sep.separate(song, stems="vocals"))


def test_a_composites_key_covers_its_own_settings_and_its_members() -> None:
    from stemkit.cache import separator_identity

    class Composite:
        """A composite Separator as the protocol sees it: a spec with its own settings, and members."""

        name = "ensemble"

        def __init__(self, spec: str, members: list[Any]) -> None:
            self.spec, self.members = spec, members

    dsp, nine = stemkit.load("dsp"), stemkit.load("dsp?kernel=9")
    base = separator_identity(Composite("dsp + dsp?kernel=9", [dsp, nine]))
    assert base == separator_identity(Composite("dsp + dsp?kernel=9", [dsp, nine]))
    assert base != separator_identity(Composite("(dsp + dsp?kernel=9)?weights=2,1", [dsp, nine]))
    assert base != separator_identity(Composite("dsp + dsp?kernel=9", [nine, dsp]))
    assert "api_key" not in str(separator_identity(stemkit.load("ezstems", api_key="ez_secret")))
    assert "ez_secret" not in str(separator_identity(stemkit.load("ezstems", api_key="ez_secret")))


def test_a_provider_that_renders_its_own_spec_is_keyed_by_it(song: Path, tmp_path: Path) -> None:
    class Scaled(Loud):
        """Settings from the constructor, not options: its own spec says them."""

        def __init__(self, gain: float) -> None:
            super().__init__()
            self.gain = gain

        @property
        def spec(self) -> str:
            return f"loud?gain={self.gain}"

    cache = ResultCache(tmp_path / "cache")
    CachedSeparator(Scaled(1.0), cache).separate(song, stems="vocals")
    assert CachedSeparator(Scaled(1.0), cache).separate(song, stems="vocals").provenance.cache is not None
    assert CachedSeparator(Scaled(2.0), cache).separate(song, stems="vocals").provenance.cache is None
