"""Native BSSEval v4: museval's numbers frame by frame (where museval can run), and what stemkit says instead of
museval's rounding noise (singular projections, perfect estimates, silent stems)."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import stemkit.evaluate.bsseval as bsseval_module
from stemkit.errors import ConfigError, InputError
from stemkit.evaluate.bsseval import BSS_METRICS, BssReferences, bss_eval, bss_eval_frames, load_museval

RATE = 8000
TOLERANCE_DB = 0.01
HAVE_MUSEVAL_PACKAGE = importlib.util.find_spec("museval") is not None


def _museval_imports() -> bool:
    try:
        load_museval()
    except ConfigError:
        return False
    return True


MUSEVAL = _museval_imports()
# CI installs ffmpeg so that museval imports; there a missing museval is a failure, not a skip.
if os.environ.get("STEMKIT_REQUIRE_MUSEVAL") == "1" and not MUSEVAL:
    raise RuntimeError("STEMKIT_REQUIRE_MUSEVAL=1 but museval cannot be imported (is ffmpeg on PATH?)")
needs_museval = pytest.mark.skipif(not MUSEVAL, reason="museval cannot be imported here (not installed, or no ffmpeg)")


def _run_isolated(code: str, path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def _song(seed: int, stems: tuple[str, ...] = ("vocals", "drums"), seconds: float = 3.5):
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    refs = {name: rng.standard_normal((2, n)) for name in stems}
    # One reference low-passed, so the Gram matrix is not the identity.
    first = stems[0]
    kernel = np.ones(4) / 4
    refs[first] = np.stack([np.convolve(ch, kernel, mode="same") for ch in refs[first]])
    ests = {}
    for i, name in enumerate(stems):
        other = refs[stems[(i + 1) % len(stems)]]
        delayed = np.roll(refs[name], 2, axis=-1)  # a small filter: spatial distortion
        ests[name] = 0.8 * refs[name] + 0.2 * delayed + 0.25 * other + 0.05 * rng.standard_normal((2, n))
    return refs, ests


def _assert_parity(refs: dict[str, np.ndarray], ests: dict[str, np.ndarray], rate: int = RATE) -> None:
    ours = bss_eval_frames(refs, ests, rate)
    theirs = bss_eval_frames(refs, ests, rate, backend="museval")
    assert ours.stems == theirs.stems
    for stem in ours.stems:
        for metric in BSS_METRICS:
            a, b = ours.values[stem][metric], theirs.values[stem][metric]
            assert a.shape == b.shape
            assert np.array_equal(np.isnan(a), np.isnan(b)), (stem, metric, a, b)
            finite = np.isfinite(a)
            assert np.all(np.abs(a[finite] - b[finite]) <= TOLERANCE_DB), (stem, metric, a, b)
            # Where stemkit reads +inf, museval has rounding noise far above any real separation.
            assert np.all(b[np.isposinf(a)] > 100), (stem, metric, a, b)


# -- errors ----------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not HAVE_MUSEVAL_PACKAGE, reason="museval is not installed")
def test_the_museval_backend_without_ffmpeg_is_a_config_error_pointing_to_the_native_one(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    code = (
        "from stemkit.errors import ConfigError\n"
        "from stemkit.evaluate.bsseval import load_museval\n"
        "try:\n    load_museval()\nexcept ConfigError as exc:\n    print(exc)\nelse:\n    print('IMPORTED')\n"
    )
    proc = _run_isolated(code, str(empty))
    assert proc.returncode == 0, proc.stderr
    message = proc.stdout.strip()
    assert "ffmpeg and ffprobe" in message
    assert "apt-get install ffmpeg" in message
    assert "native backend" in message


def test_the_native_bss_needs_no_ffmpeg_and_no_museval(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    code = (
        "import sys\nsys.modules['museval'] = None\n"
        "import numpy as np\nfrom stemkit.evaluate import bss_eval\n"
        "rng = np.random.default_rng(0)\n"
        "r = {'a': rng.standard_normal((2, 4000)), 'b': rng.standard_normal((2, 4000))}\n"
        "e = {k: v + 0.1 * rng.standard_normal((2, 4000)) for k, v in r.items()}\n"
        "print(round(bss_eval(r, e, 4000, window_seconds=0.5, hop_seconds=0.5)['a']['bss-sdr']))\n"
    )
    proc = _run_isolated(code, str(empty))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "20"


def test_without_scipy_bss_is_a_config_error_naming_the_extra() -> None:
    code = (
        "import sys\nsys.modules['scipy'] = None\n"
        "from stemkit.errors import ConfigError\n"
        "from stemkit.evaluate.bsseval import load_scipy\n"
        "try:\n    load_scipy()\nexcept ConfigError as exc:\n    print(exc)\n"
    )
    proc = _run_isolated(code, os.environ.get("PATH", ""))
    assert proc.returncode == 0, proc.stderr
    assert 'pip install "stemkit[evaluate]"' in proc.stdout


def test_without_museval_the_cross_check_names_its_extra() -> None:
    code = (
        "import sys\nsys.modules['museval'] = None\n"
        "from stemkit.errors import ConfigError\n"
        "from stemkit.evaluate.bsseval import load_museval\n"
        "try:\n    load_museval()\nexcept ConfigError as exc:\n    print(exc)\n"
    )
    proc = _run_isolated(code, os.environ.get("PATH", ""))
    assert 'pip install "stemkit[museval]"' in proc.stdout


def test_mismatched_shapes_and_unknown_backends_are_clear_errors() -> None:
    refs, ests = _song(0)
    with pytest.raises(InputError, match="align them first"):
        bss_eval(refs, {"vocals": ests["vocals"][:, :-5], "drums": ests["drums"][:, :-5]}, RATE)
    with pytest.raises(InputError, match="no stem has both"):
        bss_eval(refs, {"bass": ests["vocals"]}, RATE)
    with pytest.raises(ConfigError, match="unknown backend"):
        bss_eval(refs, ests, RATE, backend="matlab")  # type: ignore[arg-type]


# -- parity with museval -----------------------------------------------------------------------------------------


@needs_museval
def test_every_frame_matches_museval_on_leaky_filtered_estimates() -> None:
    _assert_parity(*_song(1, ("vocals", "drums", "bass")))


@needs_museval
def test_every_frame_matches_museval_on_the_demo_song() -> None:
    from stemkit.demo import synthesize

    rate = 16_000
    song = synthesize(4.0, rate)
    names = ("vocals", "drums", "bass", "other")
    refs = {n: song[n].astype(np.float64) for n in names}
    rng = np.random.default_rng(3)
    ests = {
        n: refs[n] + 0.1 * refs[names[(i + 1) % 4]] + 0.002 * rng.standard_normal(refs[n].shape)
        for i, n in enumerate(names)
    }
    _assert_parity(refs, ests, rate)
    ours = bss_eval(refs, ests, rate)
    # A 0.1 leak is 10-25 dB of interference depending on the levels: sane figures, not the old -50 dB noise.
    assert all(8 < ours[n]["bss-sir"] < 30 for n in names)


@needs_museval
def test_a_silent_frame_is_undefined_for_every_stem_as_in_museval() -> None:
    refs, ests = _song(2)
    refs["drums"][:, RATE : 2 * RATE] = 0.0
    _assert_parity(refs, ests)
    frames = bss_eval_frames(refs, ests, RATE)
    assert np.isnan(frames.values["vocals"]["bss-sdr"][1])
    assert np.isfinite(frames.values["vocals"]["bss-sdr"][0])


@needs_museval
def test_a_silent_stem_is_left_out_and_the_others_match_museval_without_it() -> None:
    refs, ests = _song(4, ("vocals", "drums", "bass"))
    refs["bass"] = np.zeros_like(refs["bass"])
    frames = bss_eval_frames(refs, ests, RATE)
    assert all(np.all(np.isnan(frames.values["bass"][m])) for m in BSS_METRICS)
    assert "silent" in frames.notes["bass"]
    without = {k: v for k, v in refs.items() if k != "bass"}
    _assert_parity(without, {k: ests[k] for k in without})
    reference = bss_eval_frames(without, {k: ests[k] for k in without}, RATE)
    for metric in BSS_METRICS:
        np.testing.assert_allclose(frames.values["vocals"][metric], reference.values["vocals"][metric])


@needs_museval
def test_a_perfect_estimate_reads_infinite_where_museval_prints_rounding_noise() -> None:
    refs, ests = _song(5)
    ests["vocals"] = refs["vocals"].copy()
    _assert_parity(refs, ests)
    medians = bss_eval(refs, ests, RATE)
    assert all(medians["vocals"][m] == math.inf for m in BSS_METRICS)
    assert math.isfinite(medians["drums"]["bss-sdr"])


@needs_museval
def test_mono_sources_match_museval() -> None:
    refs, ests = _song(6)
    _assert_parity({k: v[:1] for k, v in refs.items()}, {k: v[:1] for k, v in ests.items()})


@needs_museval
@pytest.mark.parametrize(("window", "hop"), [(1.0, 0.5), (1.0, 0.3), (0.5, 0.8), (5.0, 5.0), (0.03, 0.03)])
def test_overlapping_gapped_and_oversized_frames_match_museval(window: float, hop: float) -> None:
    refs, ests = _song(11, ("vocals", "drums", "bass"), seconds=3.3)
    ours = bss_eval_frames(refs, ests, RATE, window_seconds=window, hop_seconds=hop)
    theirs = bss_eval_frames(refs, ests, RATE, window_seconds=window, hop_seconds=hop, backend="museval")
    assert len(ours.frame_starts) == len(theirs.frame_starts) > 0
    for stem in ours.stems:
        for metric in BSS_METRICS:
            a, b = ours.values[stem][metric], theirs.values[stem][metric]
            assert np.array_equal(np.isnan(a), np.isnan(b))
            assert np.all(np.abs(a - b)[np.isfinite(a)] <= TOLERANCE_DB), (stem, metric, a, b)


@needs_museval
def test_float32_stems_are_scored_in_float64_like_museval() -> None:
    refs, ests = _song(14)
    single = {k: v.astype(np.float32) for k, v in refs.items()}, {k: v.astype(np.float32) for k, v in ests.items()}
    ours = bss_eval_frames(*single, RATE)
    widened = bss_eval_frames(
        {k: v.astype(np.float64) for k, v in single[0].items()},
        {k: v.astype(np.float64) for k, v in single[1].items()},
        RATE,
        backend="museval",
    )
    for stem in ours.stems:
        for metric in BSS_METRICS:
            # float32 arithmetic anywhere would show as ~1e-6 dB; float64 throughout agrees to ~1e-11.
            np.testing.assert_allclose(ours.values[stem][metric], widened.values[stem][metric], atol=1e-8)


# -- what stemkit says instead of noise ----------------------------------------------------------------------------


def test_a_mono_reference_makes_the_projection_singular_and_says_so() -> None:
    refs, ests = _song(7)
    refs["vocals"] = np.stack([refs["vocals"][0], refs["vocals"][0]])  # left = right
    frames = bss_eval_frames(refs, ests, RATE)
    medians = frames.medians()
    assert "left and right channels are identical" in frames.notes["vocals"]
    assert "singular" in frames.notes["drums"]
    for stem in ("vocals", "drums"):
        assert math.isnan(medians[stem]["bss-sir"])
        assert math.isnan(medians[stem]["bss-sar"])
        assert math.isfinite(medians[stem]["bss-sdr"])  # SDR needs no projection
    assert math.isnan(medians["vocals"]["bss-isr"])
    assert math.isfinite(medians["drums"]["bss-isr"])  # its own projection is fine


def test_the_mixture_as_an_estimate_has_no_artefacts() -> None:
    refs, _ = _song(8)
    mixture = refs["vocals"] + refs["drums"]
    medians = bss_eval(refs, {"vocals": mixture, "drums": mixture}, RATE)
    assert medians["vocals"]["bss-sar"] == math.inf  # it lies in the references' span
    assert medians["vocals"]["bss-sir"] < 5


def test_reference_only_work_is_done_once_for_several_estimates(monkeypatch: pytest.MonkeyPatch) -> None:
    passes: list[int] = []
    factorizations: list[int] = []
    real_correlations, real_factor = bsseval_module.lag_correlations, bsseval_module.block_toeplitz_cholesky

    def counting_correlations(xs, ys, runs, lags):  # type: ignore[no-untyped-def]
        passes.append(len(ys))  # signal groups correlated with the references in this pass
        return real_correlations(xs, ys, runs, lags)

    def counting_factor(correlations, shift):  # type: ignore[no-untyped-def]
        factorizations.append(len(correlations))
        return real_factor(correlations, shift)

    monkeypatch.setattr(bsseval_module, "lag_correlations", counting_correlations)
    monkeypatch.setattr(bsseval_module, "block_toeplitz_cholesky", counting_factor)
    refs, ests = _song(9)
    prepared = BssReferences(refs, RATE)
    first = bss_eval(prepared, ests, RATE)
    second = bss_eval(prepared, {k: 0.5 * v for k, v in ests.items()}, RATE)
    # The first pass correlates the references with themselves and with the first estimates, reading their
    # blocks once; the second only with its estimates. The joint Gram matrix and the two stems' own ones are
    # factorized once.
    assert passes == [2, 1]
    assert factorizations == [1, 2]
    assert first["vocals"]["bss-sir"] == pytest.approx(second["vocals"]["bss-sir"], abs=1e-9)  # scale-free
    assert first == bss_eval(refs, ests, RATE)


def test_references_prepared_before_any_estimate_give_the_same_frames() -> None:
    refs, ests = _song(12, ("vocals", "drums", "bass"))
    prepared = BssReferences(refs, RATE)
    prepared.projector(("vocals", "drums", "bass"))  # the reference-only pass, on its own
    ahead = prepared.evaluate(ests)
    together = BssReferences(refs, RATE).evaluate(ests)  # the reference-only work shares the first pass
    for stem in together.stems:
        for metric in BSS_METRICS:
            np.testing.assert_allclose(ahead.values[stem][metric], together.values[stem][metric], rtol=1e-9)


def test_a_subset_of_stems_against_prepared_references_matches_scoring_them_alone() -> None:
    refs, ests = _song(13, ("vocals", "drums", "bass"))
    prepared = BssReferences(refs, RATE)
    prepared.evaluate(ests)
    pair = ("vocals", "bass")
    subset = prepared.evaluate({n: ests[n] for n in pair})
    alone = bss_eval_frames({n: refs[n] for n in pair}, {n: ests[n] for n in pair}, RATE)
    assert subset.stems == pair
    for stem in pair:
        for metric in BSS_METRICS:
            np.testing.assert_allclose(subset.values[stem][metric], alone.values[stem][metric], rtol=1e-9)


def test_the_demo_stems_are_genuinely_stereo() -> None:
    from stemkit.demo import DEMO_STEMS, synthesize

    song = synthesize(3.0, 22_050)
    for name in DEMO_STEMS:
        left, right = song[name].astype(np.float64)
        correlation = float(left @ right / np.sqrt((left @ left) * (right @ right)))
        assert not np.array_equal(left, right), name
        assert correlation < 0.9999, name
    prepared = BssReferences({n: song[n] for n in DEMO_STEMS}, 22_050)
    projector = prepared.projector(tuple(DEMO_STEMS))
    assert projector.joint.rcond >= bsseval_module.RCOND_LIMIT


def test_compare_reports_native_bss_metrics_per_stem(tmp_path: Path) -> None:
    from stemkit.demo import make_demo
    from stemkit.evaluate import compare

    make_demo(tmp_path, seconds=3.0, sample_rate=RATE)
    report = compare(tmp_path / "mixture.wav", [], references=tmp_path, metrics="bss", stems="vocals,bass")
    assert report.metrics == list(BSS_METRICS)
    assert report.stems == ["vocals", "bass"]
    mixture_sir = report.value("mixture", "mixture", "vocals", "bss-sir")
    oracle_sir = report.value("mixture", "oracle", "vocals", "bss-sir")
    assert oracle_sir > mixture_sir
