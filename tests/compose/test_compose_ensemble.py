"""Ensembles through the Separator protocol, with real separators (dsp) and a test double on the real base
class: what must hold (one member, identical members, independent errors, alignment), the failure policies
and their trail, planning and derivation, concurrency, and both flavours (sync and async)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

import stemkit
from stemkit.compose.ensemble import Ensemble
from stemkit.errors import AllProvidersFailedError, ConfigError, InputError, ProviderError, ProviderUnavailableError
from stemkit.evaluate.metrics import sdr
from stemkit.routing import Chain

Noisy = Callable[..., Any]


def run(sep: Any, audio: Any, flavour: str, **kwargs: Any) -> stemkit.StemSet:
    if flavour == "sync":
        return sep.separate(audio, **kwargs)  # type: ignore[no-any-return]

    async def main() -> stemkit.StemSet:
        return await sep.aseparate(audio, **kwargs)  # type: ignore[no-any-return]

    return anyio.run(main)


FLAVOURS = pytest.mark.parametrize("flavour", ["sync", "async"])


@pytest.mark.parametrize("method", ["mean", "median", "max_spec", "min_spec", "mean_spec"])
def test_an_ensemble_of_one_member_equals_that_member(song: Path, method: str) -> None:
    with stemkit.load("dsp") as alone, stemkit.ensemble(["dsp"], method=method) as ens:  # type: ignore[arg-type]
        expected = alone.separate(song, stems=["vocals", "instrumental"])
        got = ens.separate(song, stems=["vocals", "instrumental"])
    for name in ("vocals", "instrumental"):
        np.testing.assert_allclose(got[name].audio, expected[name].audio, atol=1e-6)
    assert got.provenance.provider == "ensemble"


@pytest.mark.parametrize("method", ["mean", "median", "max_spec", "min_spec", "mean_spec"])
def test_an_ensemble_of_identical_members_equals_each_of_them(song: Path, method: str) -> None:
    """Unlike one member (passed through), two go through the method's arithmetic and the STFT."""
    with stemkit.load("dsp") as alone, stemkit.load(f"(dsp + dsp)?method={method}") as ens:
        expected = alone.separate(song)
        got = ens.separate(song)
    assert list(got) == ["vocals", "drums", "bass", "other"]
    for name in got:
        np.testing.assert_allclose(got[name].audio, expected[name].audio, atol=2e-5)


@FLAVOURS
def test_mean_of_members_with_independent_errors_gains_as_derived(
    song: Path, refs: dict[str, np.ndarray], noisy: Noisy, flavour: str
) -> None:
    """Each member is the reference plus its own white noise of equal power: the mean's error power is 1/K of
    a member's, so its SDR is a member's plus 10·log10(K) (6.02 dB for K = 4), stem by stem."""
    members = [noisy(seed=i, noise=0.02) for i in range(4)]
    singles = [m.separate(song) for m in members]
    with Ensemble(members) as ens:
        result = run(ens, song, flavour)
    for name in ("vocals", "drums", "bass", "other"):
        single = np.mean([sdr(refs[name], s[name].audio) for s in singles])
        assert sdr(refs[name], result[name].audio) - single == pytest.approx(10 * np.log10(4), abs=0.1)


def test_a_member_delayed_by_a_few_ms_is_aligned_before_combining(song: Path, refs: dict[str, np.ndarray],
                                                                  noisy: Noisy) -> None:
    delay = 132  # 3 ms at 44.1 kHz
    members = [noisy(seed=1), noisy(seed=2, delay=delay)]
    with Ensemble(members) as aligned, Ensemble(members, max_lag_seconds=0) as unaligned:
        good = aligned.separate(song, stems=["vocals", "drums"])
        bad = unaligned.separate(song, stems=["vocals", "drums"])
    body = slice(0, refs["vocals"].shape[1] - delay)  # the delayed member's last 3 ms are lost (zeros)
    for name in ("vocals", "drums"):
        np.testing.assert_allclose(good[name].audio[:, body], refs[name][:, body], atol=1e-5)
        assert sdr(refs[name], bad[name].audio) < sdr(refs[name], good[name].audio) - 10
    lags = [m.get("lag_seconds") for m in good.provenance.extra["members"]]
    assert lags == [0.0, pytest.approx(delay / 44_100)]


@FLAVOURS
def test_a_failing_member_is_dropped_with_a_trail(song: Path, refs: dict[str, np.ndarray], noisy: Noisy,
                                                  flavour: str) -> None:
    good, down = noisy(seed=1), noisy(seed=2, fail=True)
    with Ensemble([good, down]) as ens:
        result = run(ens, song, flavour, stems=["vocals", "instrumental"])
    np.testing.assert_allclose(result["vocals"].audio, refs["vocals"], atol=1e-6)
    trail = [(a.provider, a.outcome, a.error_class) for a in result.attempts]
    assert trail == [(good.spec, "ok", None), (down.spec, "failed", "ProviderUnavailableError")]
    assert result.provenance.extra["dropped"] == [down.spec]
    assert result.provenance.extra["stems"]["vocals"]["members"] == [0]
    assert "the test double is down" in result.provenance.extra["members"][1]["message"]


@FLAVOURS
def test_on_failure_fail_raises_the_members_error(song: Path, noisy: Noisy, flavour: str) -> None:
    with (
        Ensemble([noisy(seed=1), noisy(seed=2, fail=True)], on_failure="fail") as ens,
        pytest.raises(ProviderUnavailableError, match="the test double is down"),
    ):
        run(ens, song, flavour)


def test_every_member_failing_lists_them_all(song: Path, noisy: Noisy) -> None:
    with (
        Ensemble([noisy(seed=1, fail=True), noisy(seed=2, fail=True)]) as ens,
        pytest.raises(AllProvidersFailedError, match="every member failed") as info,
    ):
        ens.separate(song)
    assert [a.outcome for a in info.value.attempts] == ["failed", "failed"]


def test_bad_audio_fails_at_once_without_calling_any_member(tmp_path: Path, noisy: Noisy) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    members = [noisy(seed=1), noisy(seed=2)]
    with Ensemble(members) as ens, pytest.raises(InputError, match=r"bad\.wav"):
        ens.separate(bad)
    assert [m.calls for m in members] == [0, 0]


def test_a_member_its_capabilities_rule_out_is_skipped_before_any_call(song: Path, noisy: Noisy) -> None:
    keyless = noisy(seed=2, needs_key=True)
    with Ensemble([noisy(seed=1), keyless]) as ens:
        result = ens.separate(song, stems=["vocals"])
    assert keyless.calls == 0
    assert result.attempts[1].outcome == "skipped"
    assert result.attempts[1].reason == "no API key configured"
    with Ensemble([noisy(seed=1), keyless], on_failure="fail") as strict, pytest.raises(
        ProviderError, match="no API key configured"
    ) as info:
        strict.separate(song)
    assert info.value.code == "MEMBER_UNAVAILABLE"


def test_stems_only_some_members_produce_are_combined_over_those(song: Path, refs: dict[str, np.ndarray],
                                                                 noisy: Noisy) -> None:
    two = noisy(seed=1, noise=0.01, combinations=(("vocals", "instrumental"),))
    four = noisy(seed=2, noise=0.01)
    with Ensemble([two, four]) as ens:
        result = ens.separate(song, stems=["vocals", "drums"])
        assert ens.capabilities.combinations == (("vocals", "instrumental"), ("vocals", "drums", "bass", "other"))
    stems = result.provenance.extra["stems"]
    assert stems["vocals"]["members"] == [0, 1]
    assert stems["drums"]["members"] == [1]
    assert two.calls == four.calls == 1


def test_derived_stems_are_derived_after_combining(song: Path, noisy: Noisy) -> None:
    """instrumental from two four-stem members is median(drums) + median(bass) + median(other), not the median
    of the members' instrumentals."""
    members = [noisy(seed=i, noise=0.05) for i in range(3)]
    with Ensemble(members, method="median") as ens:
        both = ens.separate(song, stems=["drums", "bass", "other", "instrumental"])
    summed = both["drums"].audio + both["bass"].audio + both["other"].audio
    np.testing.assert_allclose(both["instrumental"].audio, summed, atol=1e-6)
    assert both["instrumental"].derived
    assert both["instrumental"].provider_name == "drums+bass+other"


def test_weights_per_member_and_stem(song: Path, refs: dict[str, np.ndarray], noisy: Noisy) -> None:
    a, b = noisy(seed=1, gain=1.0), noisy(seed=2, gain=0.0)  # b returns silence
    with Ensemble([a, b], weights=[{"vocals": 3.0}, 1.0]) as ens:
        result = ens.separate(song, stems=["vocals", "drums"])
    np.testing.assert_allclose(result["vocals"].audio, refs["vocals"] * 0.75, atol=1e-6)
    np.testing.assert_allclose(result["drums"].audio, refs["drums"] * 0.5, atol=1e-6)
    assert ens.spec.endswith(")?weights.vocals=3,1")
    with stemkit.load("(dsp + dsp?kernel=31)?weights.vocals=3,1&weights=1,2") as loaded:
        assert isinstance(loaded, Ensemble)
        assert loaded.weights.for_stem("vocals") == (3.0, 1.0)
        assert loaded.weights.for_stem("drums") == (1.0, 2.0)


def test_ensemble_options_are_checked_with_clear_errors() -> None:
    with pytest.raises(ConfigError, match="no weighted form"):
        stemkit.ensemble(["dsp", "dsp?kernel=9"], method="max_spec", weights=[2, 1])
    with pytest.raises(ConfigError, match="mean, median, max_spec, min_spec, mean_spec"):
        stemkit.ensemble(["dsp", "dsp?kernel=9"], method="average")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="3 weight"):
        stemkit.load("(dsp + dsp?kernel=9)?weights=1,2,3")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) 'methd'; known options: local_concurrency, "):
        stemkit.load("(dsp + dsp?kernel=9)?methd=median")
    with pytest.raises(ConfigError, match="unknown stem 'vocal_chords'"):
        stemkit.load("(dsp + dsp?kernel=9)?weights.vocal_chords=1,2")
    with pytest.raises(ConfigError, match="reference=2 names no member"):
        stemkit.ensemble(["dsp", "dsp?kernel=9"], reference=2)
    with pytest.raises(ConfigError, match="cannot be passed to a whole ensemble"), stemkit.load("dsp + dsp") as ens:
        ens.separate("x.wav", kernel=3)


def test_local_members_take_turns_and_hosted_ones_overlap(song: Path, noisy: Noisy) -> None:
    local = [noisy(seed=i, sleep=0.2) for i in range(3)]
    with Ensemble(local) as ens:
        ens.separate(song, stems=["vocals"])
    active = max(m.max_active for m in local)
    assert active == 1
    # Two "hosted" members that each wait for the other: this only finishes if they run at the same time.
    barrier = threading.Barrier(2, timeout=10)
    hosted = [noisy(seed=i, local=False, barrier=barrier) for i in range(2)]
    with Ensemble(hosted) as ens:
        ens.separate(song, stems=["vocals"])
    assert [m.calls for m in hosted] == [1, 1]


def test_costs_are_summed_where_units_agree(song: Path, noisy: Noisy) -> None:
    with Ensemble([noisy(seed=1, local=False), noisy(seed=2, local=False), noisy(seed=3)]) as ens:
        result = ens.separate(song, stems=["vocals"])
    assert result.provenance.cost is not None
    assert (result.provenance.cost.amount, result.provenance.cost.unit) == (2.0, "seconds")
    assert result.provenance.extra["cost_by_unit"] == {"seconds": 2.0}


def test_a_timeout_bounds_the_members_and_the_slow_one_is_dropped(song: Path, noisy: Noisy) -> None:
    fast, slow = noisy(seed=1, local=False), noisy(seed=2, local=False, sleep=30)
    with Ensemble([fast, slow]) as ens:
        result = ens.separate(song, stems=["vocals"], timeout=1.0)
    assert [a.outcome for a in result.attempts] == ["ok", "failed"]
    assert result.attempts[1].error_class == "SeparationTimeout"
    assert result.provenance.timings["total"] < 10


def test_capabilities_are_the_widest_when_dropping_and_the_narrowest_when_failing(noisy: Noisy) -> None:
    from stemkit.protocol import Capabilities

    class Limited(type(noisy())):  # type: ignore[misc]
        def __init__(self, limit: int | None, **kw: Any) -> None:
            super().__init__(**kw)
            self._caps = Capabilities(combinations=(("vocals", "instrumental"),), max_file_bytes=limit,
                                      input_formats=frozenset({"wav", "mp3"}) if limit else frozenset())

    small, big = Limited(10), Limited(100)
    assert Ensemble([small, big]).capabilities.max_file_bytes == 100
    assert Ensemble([small, big], on_failure="fail").capabilities.max_file_bytes == 10
    assert Ensemble([small, Limited(None)]).capabilities.max_file_bytes is None
    assert Ensemble([small, Limited(None)], on_failure="fail").capabilities.max_file_bytes == 10
    assert Ensemble([small, Limited(None)]).capabilities.input_formats == frozenset()  # one member takes any
    assert Ensemble([small, Limited(None)], on_failure="fail").capabilities.input_formats == {"wav", "mp3"}


def test_ensembles_nest_in_chains_and_chains_in_ensembles(song: Path) -> None:
    with stemkit.load("(dsp + dsp?kernel=31)?method=median | dsp") as chain:
        assert isinstance(chain, Chain)
        assert isinstance(chain.members[0], Ensemble)
        assert chain.spec == "(dsp + dsp?kernel=31)?method=median | dsp"
        result = chain.separate(song, stems=["vocals"])
    assert result.provider == "ensemble"
    with stemkit.load("(dsp?kernel=9 | dsp) + dsp?kernel=31") as ens:
        assert isinstance(ens, Ensemble)
        assert isinstance(ens.members[0], Chain)
        assert ens.spec == "(dsp?kernel=9 | dsp) + dsp?kernel=31"
        assert list(ens.separate(song, stems="vocals,instrumental")) == ["vocals", "instrumental"]


def test_a_failing_ensemble_in_a_chain_falls_back(song: Path, noisy: Noisy) -> None:
    ens = Ensemble([noisy(seed=1, fail=True), noisy(seed=2, fail=True)])
    with Chain([ens, stemkit.load("dsp")]) as chain:
        result = chain.separate(song, stems=["vocals"])
    assert result.provider == "dsp"
    assert [a.outcome for a in result.attempts] == ["failed", "ok"]
    assert result.attempts[0].error_class == "AllProvidersFailedError"


def test_array_input_and_the_callers_array_is_left_alone(song: Path) -> None:
    import soundfile as sf

    audio, rate = sf.read(song, dtype="float32", always_2d=True)
    array = np.ascontiguousarray(audio.T)
    with stemkit.load("dsp + dsp?kernel=31") as ens:
        result = ens.separate(array, sample_rate=rate, stems=["vocals"])
    assert result.frames == array.shape[1]
    assert result.provenance.input_name == "<array>"


def test_progress_names_each_member_and_the_ensemble(song: Path) -> None:
    events: list[stemkit.ProgressEvent] = []
    with stemkit.load("dsp + dsp?kernel=31") as ens:
        ens.separate(song, stems=["vocals"], progress=events.append)
    providers = {e.provider for e in events}
    assert {"dsp", "dsp?kernel=31", "ensemble"} <= providers
    assert events[-1].provider == "ensemble"
    assert events[-1].stage == "done"


def test_closing_closes_what_the_ensemble_loaded_only(noisy: Noisy) -> None:
    mine = noisy(seed=1)
    ens = stemkit.ensemble([mine, "dsp"])
    loaded = ens.members[1]
    ens.close()
    assert loaded._closed  # type: ignore[attr-defined]
    assert not mine._closed
    with pytest.raises(stemkit.StemkitError, match="closed"):
        ens.separate("song.wav")


def test_a_spectral_method_without_scipy_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "scipy.signal", None)
    with pytest.raises(ConfigError, match=r"pip install 'stemkit\[ensemble\]'"):
        stemkit.ensemble(["dsp", "dsp?kernel=9"], method="max_spec")
    stemkit.ensemble(["dsp", "dsp?kernel=9"], method="median").close()  # waveform methods need nothing more
