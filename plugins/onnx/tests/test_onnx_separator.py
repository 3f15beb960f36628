"""The onnx provider end to end: StemSet shape, streaming to files, progress, planning, sessions, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stemkit
from stemkit.errors import InputError, SeparationTimeout
from stemkit.protocol import ProgressEvent
from stemkit_onnx import OnnxSeparator, _sessions
from stemkit_onnx import separator as separator_module
from stemkit_onnx.testing import gain_model

SEGMENT = 64
STRIDE = 48
GAINS = np.array([[[0.5, 0.0], [0.0, 0.5]], [[0.25, 0.25], [0.25, 0.25]], [[0.0, 1.0], [1.0, 0.0]]], dtype=np.float32)
SOURCES = "vocals,drums,bass"


@pytest.fixture(scope="module")
def gain3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gain_model(tmp_path_factory.mktemp("sep") / "gain3.onnx", GAINS, segment=SEGMENT)


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> Path:
    eye = np.eye(2, dtype=np.float32)[np.newaxis]
    return gain_model(tmp_path_factory.mktemp("sep") / "identity.onnx", eye, segment=4096)


def _spec(path: Path, sources: str = SOURCES, **options: str) -> str:
    extra = "".join(f"&{k}={v}" for k, v in options.items())
    return f"onnx:{path}?sources={sources}&device=cpu{extra}"


def _expected(audio: np.ndarray) -> np.ndarray:
    return np.einsum("soc,ct->sot", GAINS, audio)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    frames=st.one_of(
        st.integers(2, 600),
        st.sampled_from([SEGMENT - 1, SEGMENT, SEGMENT + 1, STRIDE, STRIDE + 1, 20 * STRIDE + 16, 20 * STRIDE + 17]),
    )
)
def test_any_length_comes_back_exact_in_length_and_value(gain3: Path, tmp_path: Path, frames: int) -> None:
    audio = np.random.default_rng(frames).uniform(-0.5, 0.5, (2, frames)).astype(np.float32)
    path = tmp_path / f"in{frames}.wav"
    sf.write(path, audio.T, 44100, subtype="FLOAT")
    with stemkit.separate(path, provider=_spec(gain3)) as stems:
        assert stems.frames == frames
        expected = _expected(audio)
        for k, name in enumerate(SOURCES.split(",")):
            got = stems[name].audio
            assert got.shape == (2, frames)
            assert np.all(got[:, 0] == 0.0)  # demucs-onnx's window zeroes the first sample
            np.testing.assert_allclose(got[:, 1:], expected[k, :, 1:], rtol=0, atol=1e-6)


def test_stems_are_streamed_to_files_and_decoded_only_when_used(gain3: Path, wav: Callable[..., Path], noise) -> None:
    audio = noise(2, 5000)
    stems = stemkit.separate(wav(audio), provider=_spec(gain3, stream="on"))
    for stem in stems.values():
        assert stem.path is not None
        assert stem.path.is_file()
        assert not stem.is_loaded
        info = sf.info(stem.path)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (44100, 2, 5000, "FLOAT")
    vocals = stems["vocals"].audio
    assert stems["vocals"].is_loaded
    assert not stems["drums"].is_loaded
    np.testing.assert_allclose(vocals[:, 1:], _expected(audio)[0, :, 1:], atol=1e-6)
    folder = stems["vocals"].path.parent
    stems.close()
    assert not folder.exists()


@pytest.mark.parametrize("stream", ["on", "off"])
@pytest.mark.parametrize(("rate", "channels"), [(48_000, 2), (44_100, 1), (16_000, 1), (96_000, 2)])
def test_other_rates_and_mono_are_resampled_in_and_back_out(
    identity: Path, wav: Callable[..., Path], rate: int, channels: int, stream: str
) -> None:
    t = np.arange(int(rate * 0.5)) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    audio = np.stack([tone, -tone][:channels])
    stems = stemkit.separate(wav(audio, rate=rate), provider=_spec(identity, sources="other", stream=stream))
    assert (stems["other"].path is not None) == (stream == "on")
    assert (stems.sample_rate, stems.channels, stems.frames) == (rate, channels, audio.shape[1])
    out = stems["other"].audio
    # The identity model returns its input: only the resampling round trip is left (edges aside).
    inner = slice(rate // 50, -rate // 50)
    assert np.max(np.abs(out[:, inner] - audio[:, inner])) < 1e-3


def test_streamed_and_in_memory_results_are_identical(
    gain3: Path, wav: Callable[..., Path], noise, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = wav(noise(1, 3000))
    on = stemkit.separate(path, provider=_spec(gain3, stream="on"))
    off = stemkit.separate(path, provider=_spec(gain3, stream="off"))
    assert all(s.path is not None for s in on.values())
    assert all(s.path is None and s.is_loaded for s in off.values())
    for name in on:
        np.testing.assert_array_equal(on[name].audio, off[name].audio)
    # auto streams once the stems would outgrow the memory budget
    assert stemkit.separate(path, provider=_spec(gain3))["vocals"].path is None
    monkeypatch.setattr(separator_module, "STREAM_ABOVE_BYTES", 3 * 3000 * 4 - 1)
    assert stemkit.separate(path, provider=_spec(gain3))["vocals"].path is not None


def test_pcm_and_flac_inputs_stream_like_float_wav(gain3: Path, tmp_path: Path, noise) -> None:
    audio = np.clip(noise(2, 3000), -0.9, 0.9)
    results = []
    for name, subtype in (("in.wav", "PCM_24"), ("in.flac", "PCM_24")):
        sf.write(tmp_path / name, audio.T, 44100, subtype=subtype)
        results.append(stemkit.separate(tmp_path / name, provider=_spec(gain3))["bass"].audio)
    np.testing.assert_allclose(results[0], results[1], atol=1e-6)  # libsndfile scales 24-bit FLAC and WAV apart
    np.testing.assert_allclose(results[0][:, 1:], _expected(audio)[2, :, 1:], atol=1e-5)


def test_progress_reports_every_segment(gain3: Path, wav: Callable[..., Path], noise) -> None:
    events: list[ProgressEvent] = []
    frames = 10 * STRIDE + 5
    stemkit.separate(wav(noise(2, frames)), provider=_spec(gain3), progress=events.append)
    separate = [e for e in events if e.stage == "separate"]
    n = -(-frames // STRIDE)
    assert len(separate) == n + 1  # an announcement, then one per segment
    assert [e.fraction for e in separate[1:]] == pytest.approx([(i + 1) / n for i in range(n)])
    assert separate[-1].message.endswith(f"segment {n}/{n}")
    assert events[-1].stage == "done"


def test_a_url_is_refused_as_an_input_error(gain3: Path) -> None:
    with pytest.raises(InputError, match="local"):
        stemkit.separate("https://example.com/song.mp3", provider=_spec(gain3))


def test_sessions_are_created_once_and_reused_across_calls(
    gain3: Path, wav: Callable[..., Path], noise, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[str] = []
    real = ort.InferenceSession

    def counting(path: str, **kwargs: object) -> ort.InferenceSession:
        created.append(path)
        return real(path, **kwargs)

    monkeypatch.setattr(_sessions.ort, "InferenceSession", counting)
    path = wav(noise(2, 500))
    for _ in range(3):
        stemkit.separate(path, provider=_spec(gain3))
    assert created == [str(gain3)]
    stemkit.separate(path, provider=_spec(gain3, threads="1"))
    assert len(created) == 2  # another thread count is another session


def test_threads_option_reaches_the_session(gain3: Path) -> None:
    OnnxSeparator(str(gain3), {"sources": SOURCES, "device": "cpu", "threads": 1})
    session, _ = _sessions.load_session(gain3, ["CPUExecutionProvider"], threads=1, label="t")
    assert session.get_session_options().intra_op_num_threads == 1


def test_a_deadline_that_has_passed_stops_the_separation(gain3: Path, wav: Callable[..., Path], noise) -> None:
    with pytest.raises(SeparationTimeout, match=r"not separated within 0 s"):
        stemkit.separate(wav(noise(2, 5000)), provider=_spec(gain3), timeout=0.0)


def test_aseparate_gives_the_same_stems(gain3: Path, wav: Callable[..., Path], noise) -> None:
    path = wav(noise(2, 700))
    sync = stemkit.separate(path, provider=_spec(gain3))
    result = asyncio.run(stemkit.aseparate(path, provider=_spec(gain3)))
    for name in sync:
        np.testing.assert_array_equal(sync[name].audio, result[name].audio)


def test_instrumental_is_derived_from_a_custom_models_stems(gain3: Path, wav: Callable[..., Path], noise) -> None:
    audio = noise(2, 900)
    stems = stemkit.separate(
        wav(audio), provider=_spec(gain3, sources="vocals,drums,other"), stems=["vocals", "instrumental"]
    )
    assert stems["instrumental"].derived
    expected = _expected(audio)
    np.testing.assert_allclose(stems["instrumental"].audio[:, 1:], (expected[1] + expected[2])[:, 1:], atol=1e-6)


def test_bag_plans_run_only_the_specialists_a_request_needs() -> None:
    bag = OnnxSeparator("htdemucs_ft", {"device": "cpu"})
    assert bag.plan("vocals").combination == ("vocals",)
    # The core derives from the residual only as a last resort: instrumental comes from the other specialists.
    assert bag.plan(["vocals", "instrumental"]).combination == ("drums", "bass", "other", "vocals")
    assert bag.plan(["drums", "bass"]).combination == ("drums", "bass")
    assert bag.plan("other").combination == ("other",)  # the "other" specialist alone (a partial combination)
    assert bag.plan(None).combination == ("drums", "bass", "other", "vocals")
    six = OnnxSeparator("6s", {"device": "cpu"})
    assert six.plan("piano").combination == ("drums", "bass", "other", "vocals", "guitar", "piano")
    assert OnnxSeparator("ft_drums").plan(None).combination == ("drums",)


def test_the_bag_fetches_only_the_specialists_it_runs(
    fake_hub, tmp_path: Path, wav: Callable[..., Path], noise
) -> None:
    gains = np.stack([np.eye(2, dtype=np.float32) * g for g in (0.1, 0.2, 0.3, 0.4)])
    model = gain_model(tmp_path / "spec.onnx", gains, segment=343_980)
    for stem in ("drums", "bass", "other", "vocals"):
        fake_hub.serve(f"StemSplitio/htdemucs-ft-{stem}-onnx", f"htdemucs_ft_{stem}.onnx", model)
    audio = noise(2, 20_000)
    spec = f"onnx:htdemucs_ft?cache_dir={tmp_path}&device=cpu"
    stems = stemkit.separate(wav(audio), provider=spec, stems=["drums", "bass"])
    assert [c["filename"] for c in fake_hub.calls] == ["htdemucs_ft_drums.onnx", "htdemucs_ft_bass.onnx"]
    np.testing.assert_allclose(stems["bass"].audio[:, 1:], audio[:, 1:] * 0.2, atol=1e-6)
    fake_hub.calls.clear()
    stems = stemkit.separate(wav(audio), provider=spec, stems=["vocals", "instrumental"])
    assert len(fake_hub.calls) == 4
    np.testing.assert_allclose(stems["vocals"].audio[:, 1:], audio[:, 1:] * 0.4, atol=1e-6)
    np.testing.assert_allclose(stems["instrumental"].audio[:, 1:], audio[:, 1:] * 0.6, atol=1e-6)
    assert stems.provenance.model == "onnx:htdemucs_ft"


# -- shifts and overlap ---------------------------------------------------------------------------------------

FIR_TAPS = np.array([[1.0, -0.5, 0.25, 0.1], [0.3, 0.3, 0.3, 0.1]], dtype=np.float32)


@pytest.fixture(scope="module")
def fir2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stemkit_onnx.testing import fir_model

    return fir_model(tmp_path_factory.mktemp("shifts") / "fir2.onnx", FIR_TAPS, segment=SEGMENT)


def _fir_spec(path: Path, **options: object) -> str:
    return f"onnx:{path}?sources=vocals,other&device=cpu" + "".join(f"&{k}={v}" for k, v in options.items())


def _plain_run(audio: np.ndarray, delay: int, stride: int = STRIDE) -> np.ndarray:
    """One pass over the input delayed by ``delay`` zeros, then advanced: plain numpy, float64."""
    from stemkit_onnx._engine import SegmentPlan
    from stemkit_onnx.testing import fir_reference

    plan = SegmentPlan(SEGMENT, stride)
    x = np.concatenate([np.zeros((2, delay), dtype=np.float32), audio], axis=1)
    window = plan.demucs_window().astype(np.float64)
    acc, weight = np.zeros((2, 2, x.shape[1])), np.zeros(x.shape[1])
    for i in range(plan.count(x.shape[1])):
        start = i * plan.stride
        seg = np.zeros((2, SEGMENT), dtype=np.float32)
        n = min(SEGMENT, x.shape[1] - start)
        seg[:, :n] = x[:, start : start + n]
        acc[:, :, start : start + n] += fir_reference(FIR_TAPS, seg)[:, :, :n] * window[:n]
        weight[start : start + n] += window[:n]
    return (acc / np.maximum(weight, 1e-8))[:, :, delay:]


def test_shifts_average_passes_over_randomly_delayed_input_as_demucs_does(
    fir2: Path, wav: Callable[..., Path], noise
) -> None:
    import random

    audio = noise(2, 3000)
    stems = stemkit.separate(wav(audio), provider=_fir_spec(fir2, shifts=3, seed=42))
    extra = stems.provenance.extra
    assert (extra["shifts"], extra["shift_seed"]) == (3, 42)
    rng = random.Random(42)  # demucs: offset = randint(0, max_shift) per shift, max_shift = half a second
    delays = [rng.randint(0, 22_050) for _ in range(3)]
    assert extra["shift_samples"] == delays
    expected = sum(_plain_run(audio, d) for d in delays) / 3
    np.testing.assert_allclose(stems["vocals"].audio, expected[0], atol=1e-5)
    np.testing.assert_allclose(stems["other"].audio, expected[1], atol=1e-5)


def test_shifts_are_deterministic_with_a_seed_and_reproducible_from_the_recorded_one(
    fir2: Path, wav: Callable[..., Path], noise
) -> None:
    path = wav(noise(2, 2000))
    first = stemkit.separate(path, provider=_fir_spec(fir2, shifts=2, seed=7))
    again = stemkit.separate(path, provider=_fir_spec(fir2, shifts=2, seed=7))
    other = stemkit.separate(path, provider=_fir_spec(fir2, shifts=2, seed=8))
    np.testing.assert_array_equal(first["vocals"].audio, again["vocals"].audio)
    assert not np.array_equal(first["vocals"].audio, other["vocals"].audio)
    unseeded = stemkit.separate(path, provider=_fir_spec(fir2, shifts=2))
    seed = unseeded.provenance.extra["shift_seed"]
    replay = stemkit.separate(path, provider=_fir_spec(fir2, shifts=2, seed=seed))
    np.testing.assert_array_equal(unseeded["vocals"].audio, replay["vocals"].audio)


@pytest.mark.parametrize("shifts", [0, 1])
def test_one_shift_is_the_plain_unshifted_pass(fir2: Path, wav: Callable[..., Path], noise, shifts: int) -> None:
    path = wav(noise(2, 2000))
    plain = stemkit.separate(path, provider=_fir_spec(fir2))
    one = stemkit.separate(path, provider=_fir_spec(fir2, shifts=shifts, seed=3))
    np.testing.assert_array_equal(plain["vocals"].audio, one["vocals"].audio)
    assert "shift_seed" not in one.provenance.extra
    assert one.provenance.extra["shifts"] == 1


def test_shifts_cost_one_model_run_per_pass_and_progress_counts_them(
    fir2: Path, wav: Callable[..., Path], noise
) -> None:
    events: list[ProgressEvent] = []
    stems = stemkit.separate(wav(noise(2, 1000)), provider=_fir_spec(fir2, shifts=4, seed=1), progress=events.append)
    runs = [e for e in events if e.stage == "separate"][1:]
    delays = stems.provenance.extra["shift_samples"]
    assert len(runs) == stems.provenance.extra["segments"] == sum(-(-(1000 + d) // STRIDE) for d in delays)
    assert runs[-1].fraction == 1.0


@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.75])
def test_overlap_is_demucs_fraction_of_a_segment_shared(
    fir2: Path, wav: Callable[..., Path], noise, overlap: float
) -> None:
    audio = noise(2, 1500)
    stems = stemkit.separate(wav(audio), provider=_fir_spec(fir2, overlap=overlap))
    stride = SEGMENT - int(overlap * SEGMENT)
    assert stems.provenance.extra["stride"] == stride
    np.testing.assert_allclose(stems["vocals"].audio, _plain_run(audio, 0, stride)[0], atol=1e-5)


def test_shifts_and_overlap_are_checked(fir2: Path) -> None:
    with pytest.raises(stemkit.errors.ConfigError, match="shifts"):
        OnnxSeparator(str(fir2), {"sources": "vocals,other", "shifts": -1})
    with pytest.raises(stemkit.errors.ConfigError, match="overlap"):
        OnnxSeparator(str(fir2), {"sources": "vocals,other", "overlap": 1.0})
