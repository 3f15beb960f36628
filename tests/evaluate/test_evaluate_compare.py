"""stemkit.compare end to end: real providers (dsp, test doubles on SeparatorBase), baselines, cache, alignment."""

from __future__ import annotations

import math
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from stemkit.errors import ConfigError
from stemkit.evaluate import SeparationCache, compare
from stemkit.evaluate.metrics import DELTA, sdr
from stemkit.evaluate.report import SONG
from stemkit.protocol import ProgressEvent

STEMS = ("vocals", "drums", "bass", "other")


def _read(path: Path) -> np.ndarray:
    audio, _ = sf.read(path, dtype="float32", always_2d=True)
    return np.ascontiguousarray(audio.T)


def test_dsp_lands_between_the_mixture_floor_and_the_oracle_ceiling(demo_dir: Path) -> None:
    report = compare(demo_dir / "mixture.wav", ["dsp"], references=demo_dir)
    assert report.providers == ["dsp", "mixture", "oracle"]
    assert report.stems == list(STEMS)
    assert report.metrics[:3] == ["sdr", "si-sdr", "consistency"]
    assert {"consensus", "leakage", "peak", "clipped", "activity"} <= set(report.metrics)
    song = {p: report.value("mixture", p, SONG, "sdr") for p in report.providers}
    assert song["mixture"] < song["dsp"] < song["oracle"]
    assert not report.failures
    # dsp's stems sum to its input: consistency is bounded only by float32 rounding.
    assert report.value("mixture", "dsp", SONG, "consistency") > 90


def test_the_mixture_baseline_scores_the_mixture_against_each_reference(demo_dir: Path) -> None:
    report = compare(demo_dir / "mixture.wav", [], references=demo_dir, metrics="sdr")
    mix = _read(demo_dir / "mixture.wav")
    for stem in STEMS:
        expected = sdr(_read(demo_dir / f"{stem}.wav"), mix)
        assert report.value("mixture", "mixture", stem, "sdr") == pytest.approx(expected, abs=1e-9)
    values = [report.value("mixture", "mixture", s, "sdr") for s in STEMS]
    assert report.value("mixture", "mixture", SONG, "sdr") == pytest.approx(np.mean(values), abs=1e-12)


def test_a_perfect_separation_scores_the_delta_ceiling_and_infinite_si_sdr(demo_dir: Path, refcopy: Any) -> None:
    report = compare(demo_dir / "mixture.wav", [refcopy()], references=demo_dir, metrics="sdr,si-sdr", baselines=False)
    label = report.providers[0]
    for stem in STEMS:
        ref = _read(demo_dir / f"{stem}.wav").astype(np.float64)
        ceiling = 10 * math.log10((np.sum(ref**2) + DELTA) / DELTA)
        assert report.value("mixture", label, stem, "sdr") == pytest.approx(ceiling, abs=1e-6)
        assert report.value("mixture", label, stem, "si-sdr") == math.inf


def test_a_delayed_separation_is_aligned_before_scoring(demo_dir: Path, refcopy: Any) -> None:
    delayed = refcopy(delay=37)
    report = compare(demo_dir / "mixture.wav", [delayed], references=demo_dir, metrics="sdr", baselines=False)
    run = report.runs[0]
    label = report.providers[0]
    assert label == "refcopy"  # the short label; the full spec is kept in report.specs
    assert report.specs[label] == delayed.spec
    assert run.lag_seconds == pytest.approx(37 / 44_100)
    # The last 37 samples are lost to the delay (zero-padded), so not the ceiling, but far above what a
    # 37-sample misalignment would score (a few dB).
    assert report.value("mixture", label, "vocals", "sdr") > 40
    unaligned = compare(
        demo_dir / "mixture.wav",
        [refcopy(delay=37)],
        references=demo_dir,
        metrics="sdr",
        baselines=False,
        max_lag_seconds=0.0,
    )
    assert unaligned.value("mixture", label, "vocals", "sdr") < 10


def test_a_scaled_separation_keeps_its_si_sdr_and_loses_sdr_in_closed_form(demo_dir: Path, refcopy: Any) -> None:
    half = refcopy(gain=0.5)
    report = compare(demo_dir / "mixture.wav", [half], references=demo_dir, metrics="sdr,si-sdr", baselines=False)
    ref = _read(demo_dir / "drums.wav").astype(np.float64)
    energy = np.sum(ref**2)
    assert report.value("mixture", "refcopy", "drums", "sdr") == pytest.approx(
        10 * math.log10((energy + DELTA) / (0.25 * energy + DELTA)), abs=1e-4
    )
    assert report.value("mixture", "refcopy", "drums", "si-sdr") > 100


def test_the_cache_keeps_a_second_comparison_from_separating_again(demo_dir: Path, refcopy: Any) -> None:
    provider = refcopy()
    first = compare(demo_dir / "mixture.wav", [provider], references=demo_dir, metrics="sdr", baselines=False)
    assert provider.calls == 1
    second = compare(
        demo_dir / "mixture.wav",
        [provider, "dsp"],
        references=demo_dir,
        metrics="sdr,si-sdr",
        baselines=False,
        cache=first.cache,
    )
    assert provider.calls == 1  # a new metric and a new provider: the first separation is reused
    runs = {r.provider: r for r in second.runs}
    assert runs["refcopy"].cached
    assert not runs["dsp"].cached
    assert runs["refcopy"].seconds == first.runs[0].seconds  # the original wall time is kept
    assert second.value("mixture", "refcopy", "vocals", "sdr") == first.value("mixture", "refcopy", "vocals", "sdr")


def test_a_cache_folder_persists_across_runs(demo_dir: Path, refcopy: Any, tmp_path: Path) -> None:
    provider = refcopy()
    compare(demo_dir / "mixture.wav", [provider], references=demo_dir, cache=tmp_path / "cache", baselines=False)
    again = compare(
        demo_dir / "mixture.wav", [provider], references=demo_dir, cache=tmp_path / "cache", baselines=False
    )
    assert provider.calls == 1
    assert again.runs[0].cached


def test_the_same_input_twice_is_separated_once(demo_dir: Path, refcopy: Any) -> None:
    provider = refcopy()
    report = compare([demo_dir / "mixture.wav", demo_dir / "mixture.wav"], [provider], metrics="consistency")
    assert provider.calls == 1
    assert report.tracks == ["mixture", "mixture-2"]


def test_a_failing_provider_is_recorded_and_the_others_are_scored(demo_dir: Path, refcopy: Any) -> None:
    broken = refcopy(fail=True, label="broken")
    report = compare(demo_dir / "mixture.wav", [broken, "dsp"], references=demo_dir, metrics="sdr")
    assert [r.provider for r in report.failures] == ["broken"]
    assert report.failures[0].error_class == "ProviderUnavailableError"
    assert "test double is down" in (report.failures[0].error or "")
    assert math.isfinite(report.value("mixture", "dsp", "vocals", "sdr"))
    assert "ProviderUnavailableError" in report.table()
    with pytest.raises(Exception, match="broken on mixture"):
        report.raise_for_failures()


def test_without_references_providers_are_scored_by_consistency_and_agreement(demo_dir: Path, refcopy: Any) -> None:
    copy = refcopy(label="copy")
    report = compare(demo_dir / "mixture.wav", ["dsp", copy])
    assert report.providers == ["dsp", "copy"]  # no baselines without references
    assert report.metrics[0] == "consistency"
    assert report.metrics[-1] == "agreement"
    assert not {"sdr", "si-sdr"} & set(report.metrics)
    dsp_vocals = _read(demo_dir / "vocals.wav")
    assert report.value("mixture", "copy", SONG, "consistency") > 90
    forward = report.value("mixture", "dsp", "vocals", "agreement", against="copy")
    backward = report.value("mixture", "copy", "vocals", "agreement", against="dsp")
    assert forward != backward  # SDR is not symmetric: each direction is its own score
    # "dsp against copy" is dsp's SDR with the copy (= the reference) as reference.
    assert forward == pytest.approx(
        compare(demo_dir / "mixture.wav", ["dsp"], references=demo_dir, metrics="sdr", baselines=False).value(
            "mixture", "dsp", "vocals", "sdr"
        ),
        abs=1e-6,
    )
    assert dsp_vocals.shape[0] == 2


def test_providers_with_room_run_concurrently_and_local_ones_one_at_a_time(
    demo_dir: Path, refcopy: Any, tmp_path: Path
) -> None:
    inputs = []
    for i in range(2):
        folder = tmp_path / f"song{i}"
        shutil.copytree(demo_dir, folder)
        mix = _read(folder / "mixture.wav") * (1.0 - 0.25 * i)  # distinct inputs: distinct cache keys
        sf.write(folder / "mixture.wav", mix.T, 44_100, subtype="FLOAT")
        inputs.append(folder / "mixture.wav")
    # Both jobs must be inside _separate at once to pass the barrier; a serial run would time out.
    parallel = refcopy(max_concurrency=2, barrier=threading.Barrier(2, timeout=30), label="parallel")
    serial = refcopy(label="serial")
    report = compare(inputs, [parallel, serial], metrics="consistency")
    assert parallel.max_active == 2
    assert serial.max_active == 1
    assert not report.failures


def test_progress_events_name_the_provider_and_the_track(demo_dir: Path, refcopy: Any) -> None:
    events: list[ProgressEvent] = []
    lock = threading.Lock()

    def record(event: ProgressEvent) -> None:
        with lock:
            events.append(event)

    compare(demo_dir / "mixture.wav", [refcopy(label="copy")], metrics="consistency", progress=record)
    assert {(e.provider, e.input_name) for e in events} == {("copy", "mixture")}
    assert events[-1].stage == "done"


def test_musdb_layout_without_inputs_compares_every_track(musdb_root: Path) -> None:
    report = compare(None, [], references=musdb_root, metrics="sdr")
    assert report.tracks == ["Alpha - One", "Beta - Two"]
    aggregate = next(a for a in report.aggregates() if (a.provider, a.stem, a.metric) == ("oracle", "vocals", "sdr"))
    values = [report.value(t, "oracle", "vocals", "sdr") for t in report.tracks]
    assert aggregate.n == 2
    assert aggregate.median == pytest.approx(np.median(values))
    assert aggregate.mean == pytest.approx(np.mean(values))
    assert "median over tracks (mean)" in report.table()


def test_an_input_is_matched_to_its_musdb_track_by_name(musdb_root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "Beta - Two.wav"
    shutil.copy(musdb_root / "test" / "Beta - Two" / "mixture.wav", copy)
    report = compare(copy, [], references=musdb_root, metrics="sdr")
    assert report.tracks == ["Beta - Two"]
    stranger = tmp_path / "Gamma - Three.wav"
    shutil.copy(copy, stranger)
    with pytest.raises(ConfigError, match="no track under"):
        compare(stranger, [], references=musdb_root, metrics="sdr")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": "sdr,loudnes"}, "unknown metric 'loudnes'"),
        ({"metrics": "sdr", "references": None}, "scores against references"),
        ({"providers": ["oracle"], "references": None, "metrics": "consistency"}, "oracle baseline"),
        ({"providers": ["oracle?beta=2"]}, "unknown option"),
        ({"providers": ["oracle?alpha=-1"]}, "alpha must be a positive number"),
        ({"providers": ["dsp", "dsp"]}, "listed twice"),
        ({"providers": ["no-such-provider"]}, "not installed"),
        ({"stems": "piano"}, "piano not among the references"),
        ({"max_lag_seconds": 60.0}, "max_lag_seconds"),
    ],
)
def test_bad_requests_fail_before_any_separation(demo_dir: Path, kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"providers": ["dsp"], "references": demo_dir, **kwargs}
    with pytest.raises(ConfigError, match=message):
        compare(demo_dir / "mixture.wav", **args)


def test_a_reference_folder_with_a_stray_audio_file_is_refused(demo_dir: Path, tmp_path: Path) -> None:
    refs = tmp_path / "refs"
    shutil.copytree(demo_dir, refs)
    shutil.copy(refs / "vocals.wav", refs / "notes.wav")
    with pytest.raises(ConfigError, match=r"notes\.wav"):
        compare(refs / "mixture.wav", [], references=refs)


def test_a_stem_folder_takes_one_input(demo_dir: Path) -> None:
    with pytest.raises(ConfigError, match="one input"):
        compare([demo_dir / "mixture.wav", demo_dir / "vocals.wav"], ["dsp"], references=demo_dir)


def test_references_of_different_lengths_are_an_input_error(demo_dir: Path, tmp_path: Path) -> None:
    refs = tmp_path / "refs"
    shutil.copytree(demo_dir, refs)
    audio = _read(refs / "bass.wav")
    sf.write(refs / "bass.wav", audio[:, :-10].T, 44_100, subtype="FLOAT")
    with pytest.raises(Exception, match="differ in rate, channels or length"):
        compare(refs / "mixture.wav", [], references=refs)


def test_the_bss_metric_fails_before_separating_when_scipy_is_missing(
    demo_dir: Path, refcopy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stemkit.evaluate.comparison as module

    def unavailable() -> None:
        raise ConfigError("metrics: 'bss' (BSSEval v4) needs the optional scipy package")

    monkeypatch.setattr(module, "load_scipy", unavailable)
    provider = refcopy()
    with pytest.raises(ConfigError, match="scipy"):
        compare(demo_dir / "mixture.wav", [provider], references=demo_dir, metrics="sdr,bss")
    assert provider.calls == 0


def test_a_temporary_cache_is_removed_on_close(demo_dir: Path, refcopy: Any) -> None:
    report = compare(demo_dir / "mixture.wav", [refcopy()], metrics="consistency")
    assert report.cache is not None
    folder = report.cache.directory
    assert any(folder.rglob("entry.json"))
    report.cache.close()
    assert not folder.exists()
    with SeparationCache() as cache:
        assert cache.directory.is_dir()
    assert not cache.directory.exists()


def test_a_two_stem_provider_is_compared_with_a_four_stem_one_without_naming_stems(
    demo_dir: Path, twostem: Any
) -> None:
    report = compare(demo_dir / "mixture.wav", [twostem(), "dsp"], references=demo_dir, metrics="sdr")
    assert not report.failures
    runs = {r.provider: r for r in report.runs}
    assert runs["twostem"].stems == ("vocals", "instrumental")
    assert runs["dsp"].stems == ("vocals", "drums", "bass", "other", "instrumental")
    assert report.stems == ["vocals", "drums", "bass", "other", "instrumental"]
    assert report.derived_references == ["instrumental"]
    # The two-stem provider copies the reference vocals and the exact remainder: its instrumental, scored
    # against the derived reference drums + bass + other, is the float32 rounding ceiling.
    assert report.value("mixture", "twostem", "instrumental", "sdr") > 60
    assert math.isfinite(report.value("mixture", "dsp", "instrumental", "sdr"))
    with pytest.raises(KeyError):
        report.value("mixture", "twostem", "drums", "sdr")
    overview = dict(zip(*report.overview_rows(), strict=False))
    assert "scored on" in overview
    assert "vocals, instrumental*" in report.table(width=200)


def test_instrumental_is_scored_against_references_derived_from_a_musdb_layout(musdb_root: Path) -> None:
    report = compare(None, [], references=musdb_root, metrics="sdr", stems="vocals,instrumental")
    assert report.stems == ["vocals", "instrumental"]
    track = musdb_root / "test" / "Alpha - One"
    instrumental = sum(_read(track / f"{s}.wav") for s in ("drums", "bass", "other"))
    expected = sdr(instrumental, _read(track / "mixture.wav"))
    assert report.value("Alpha - One", "mixture", "instrumental", "sdr") == pytest.approx(expected, abs=1e-6)


def test_labels_are_short_and_can_be_chosen_and_the_full_spec_stays_in_the_json(demo_dir: Path, tmp_path: Path) -> None:
    import json

    report = compare(demo_dir / "mixture.wav", ["dsp", "dsp?kernel=31"], metrics="consistency")
    assert report.providers == ["dsp", "dsp(kernel=31)"]
    named = compare(demo_dir / "mixture.wav", {"fast": "dsp", "wide": "dsp?kernel=31"}, metrics="consistency")
    assert named.providers == ["fast", "wide"]
    data = json.loads(named.to_json())
    assert data["specs"] == {"fast": "dsp", "wide": "dsp?kernel=31"}
    with pytest.raises(ConfigError, match="not a usable provider label"):
        compare(demo_dir / "mixture.wav", {"a=b": "dsp"})


def test_without_references_the_indicators_are_computed_apart_from_scores(demo_dir: Path, refcopy: Any) -> None:
    report = compare(demo_dir / "mixture.wav", ["dsp", refcopy(label="copy")], metrics="indicators")
    assert report.table_metrics == []
    assert "consensus" in report.indicator_metrics
    assert report.value("mixture", "copy", "vocals", "clipped") == 0
    assert report.value("mixture", "copy", "vocals", "activity") > 50
    both = compare(demo_dir / "mixture.wav", ["dsp", refcopy(label="copy")], metrics="consensus,agreement")
    # With two providers, each one's consensus is the other: the agreement score with it as the reference.
    assert both.value("mixture", "copy", "vocals", "consensus") == pytest.approx(
        both.value("mixture", "copy", "vocals", "agreement", against="dsp"), abs=1e-9
    )
    titles = [title for title, *_ in report.sections()]
    assert "indicators (no references needed)" in titles
    assert "scores (against references)" not in titles


def test_the_excerpt_keeps_a_player_per_provider_and_stem(demo_dir: Path) -> None:
    report = compare(demo_dir / "mixture.wav", ["dsp"], references=demo_dir, metrics="sdr", excerpt="1:3")
    listening = report.listening
    assert listening is not None
    assert (listening.start, listening.end, listening.chosen) == (1.0, 3.0, "given")
    vocals = [(c.source, c.kind) for c in listening.for_stem("vocals")]
    assert vocals == [("reference", "reference"), ("dsp", "provider"), ("oracle", "baseline")]
    assert all(c.audio and c.spectrogram.startswith(b"\x89PNG") for c in listening.clips)
    with pytest.raises(ConfigError, match="after the end"):
        compare(demo_dir / "mixture.wav", ["dsp"], metrics="consistency", excerpt="100:110")
