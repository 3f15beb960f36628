"""MDX-Net models: parity with a plain STFT → model → iSTFT reference, the derived stem, options, errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stemkit
from stemkit.errors import ConfigError
from stemkit_onnx import OnnxSeparator
from stemkit_onnx._mdx import MdxParams, MdxTransform
from stemkit_onnx.testing import gain_model, mdx_model, mdx_reference

N_FFT, DIM_F, DIM_T, HOP = 2048, 700, 16, 1024  # a 15,360-sample chunk: many chunks from a second of audio


def _gains(dim_f: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.2, 1.5, dim_f).astype(np.float32)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mdx_model(tmp_path_factory.mktemp("mdx") / "small.onnx", _gains(DIM_F), dim_t=DIM_T)


@pytest.fixture(scope="module")
def bent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mdx_model(tmp_path_factory.mktemp("mdx") / "bent.onnx", _gains(DIM_F, 1), dim_t=DIM_T, squash=2.0)


# -- the reference: UVR's loop written out plainly, float64, one frame at a time -------------------------


def _stft(chunk: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """torch.stft(center=True, reflect padding, periodic Hann): (2, n_fft // 2 + 1, frames), complex."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    padded = np.pad(chunk.astype(np.float64), ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
    frames = 1 + (padded.shape[1] - n_fft) // hop
    return np.stack(
        [np.stack([np.fft.rfft(padded[c, t * hop : t * hop + n_fft] * window) for t in range(frames)], axis=1)
         for c in range(2)]
    )


def _istft(spec: np.ndarray, n_fft: int, hop: int, length: int) -> np.ndarray:
    """torch.istft(center=True): windowed overlap-add divided by the summed squared window."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = spec.shape[2]
    out = np.zeros((2, n_fft + hop * (frames - 1)))
    envelope = np.zeros(out.shape[1])
    for t in range(frames):
        for c in range(2):
            out[c, t * hop : t * hop + n_fft] += np.fft.irfft(spec[c, :, t], n=n_fft) * window
        envelope[t * hop : t * hop + n_fft] += window**2
    centre = slice(n_fft // 2, n_fft // 2 + length)
    return out[:, centre] / envelope[centre]


def _reference(
    mix: np.ndarray,
    gains: np.ndarray,
    *,
    n_fft: int = N_FFT,
    dim_f: int = DIM_F,
    dim_t: int = DIM_T,
    compensate: float = 1.0,
    overlap: float | None = None,
    squash: float | None = None,
    denoise: bool = False,
) -> np.ndarray:
    """The target stem, UVR's way: pad, chunk, STFT → model → iSTFT per chunk, Hann overlap-add, trim, compensate."""
    trim, chunk, total = n_fft // 2, HOP * (dim_t - 1), mix.shape[1]
    step = chunk - n_fft if overlap is None else int((1 - overlap) * chunk)
    padded = np.concatenate([np.zeros((2, trim)), mix.astype(np.float64), np.zeros((2, chunk))], axis=1)
    result, divider = np.zeros_like(padded), np.zeros(padded.shape[1])
    hann = np.hanning(chunk) if overlap != 0 else np.ones(chunk)  # UVR: no window without overlap

    def model(spec_in: np.ndarray) -> np.ndarray:
        return mdx_reference(gains, spec_in.astype(np.float32), squash=squash).astype(np.float64)

    for start in range(0, trim + total, step):
        spec = _stft(padded[:, start : start + chunk], n_fft, HOP)
        x = np.zeros((1, 4, dim_f, dim_t))
        x[0, 0::2], x[0, 1::2] = spec.real[:, :dim_f], spec.imag[:, :dim_f]
        x[:, :, :3] = 0.0
        y = model(x) if not denoise else 0.5 * model(x) - 0.5 * model(-x)
        full = np.zeros((2, n_fft // 2 + 1, dim_t), dtype=complex)
        full[:, :dim_f] = y[0, 0::2] + 1j * y[0, 1::2]
        result[:, start : start + chunk] += _istft(full, n_fft, HOP, chunk) * hann
        divider[start : start + chunk] += hann
    with np.errstate(invalid="ignore", divide="ignore"):
        return (result / divider)[:, trim : trim + total] * compensate


def _spec(path: Path, **options: object) -> str:
    base = {"n_fft": N_FFT, "primary": "vocals", "device": "cpu", **options}
    return f"onnx:{path}?" + "&".join(f"{k}={v}" for k, v in base.items())


# -- parity -----------------------------------------------------------------------------------------------


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.one_of(st.integers(2, 60_000), st.sampled_from([15_360 - 2048, 15_360, 44_100])))
def test_mdx_output_equals_a_plain_stft_model_istft_reference(
    small: Path, wav: Callable[..., Path], frames: int
) -> None:
    audio = (np.random.default_rng(frames).standard_normal((2, frames)) * 0.2).astype(np.float32)
    stems = stemkit.separate(wav(audio), provider=_spec(small, compensate=1.03))
    reference = _reference(audio, _gains(DIM_F), compensate=1.03)
    assert np.max(np.abs(stems["vocals"].audio - reference)) <= 1e-5


def test_the_other_stem_is_exactly_the_mixture_minus_the_target(small: Path, wav: Callable[..., Path], noise) -> None:
    audio = noise(2, 30_000)
    stems = stemkit.separate(wav(audio), provider=_spec(small, compensate=1.022))
    assert list(stems) == ["vocals", "instrumental"]  # both by default, as UVR writes both
    assert stems.provenance.extra["mdx"]["mixture_minus_primary"] == "instrumental"
    np.testing.assert_array_equal(stems["instrumental"].audio, audio - stems["vocals"].audio)
    # ...so the two sum to the mixture, to float32 rounding
    np.testing.assert_allclose(stems["vocals"].audio + stems["instrumental"].audio, audio, rtol=0, atol=1e-7)


def test_an_instrumental_model_estimates_the_instrumental_and_derives_the_vocals(
    small: Path, wav: Callable[..., Path], noise
) -> None:
    audio = noise(2, 20_000, seed=3)
    stems = stemkit.separate(wav(audio), provider=_spec(small, primary="instrumental"))
    assert stems.provenance.extra["mdx"]["mixture_minus_primary"] == "vocals"
    np.testing.assert_array_equal(stems["vocals"].audio, audio - stems["instrumental"].audio)
    np.testing.assert_allclose(stems["instrumental"].audio, _reference(audio, _gains(DIM_F)), atol=1e-5)
    only = stemkit.separate(wav(audio), provider=_spec(small, primary="instrumental"), stems="vocals")
    assert list(only) == ["vocals"]
    np.testing.assert_array_equal(only["vocals"].audio, stems["vocals"].audio)


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.8])
def test_overlap_sets_uvr_s_chunk_step(small: Path, wav: Callable[..., Path], noise, overlap: float) -> None:
    audio = noise(2, 40_000, seed=4)
    stems = stemkit.separate(wav(audio), provider=_spec(small, overlap=overlap))
    np.testing.assert_allclose(stems["vocals"].audio, _reference(audio, _gains(DIM_F), overlap=overlap), atol=1e-5)
    assert stems.provenance.extra["stride"] == int((1 - overlap) * HOP * (DIM_T - 1))


def test_denoise_averages_the_model_on_the_spectrogram_and_its_negation(
    bent: Path, wav: Callable[..., Path], noise
) -> None:
    audio = noise(2, 25_000, seed=5, scale=0.5)
    plain = stemkit.separate(wav(audio), provider=_spec(bent))
    denoised = stemkit.separate(wav(audio), provider=_spec(bent, denoise="true"))
    gains = _gains(DIM_F, 1)
    np.testing.assert_allclose(plain["vocals"].audio, _reference(audio, gains, squash=2.0), atol=1e-5)
    np.testing.assert_allclose(
        denoised["vocals"].audio, _reference(audio, gains, squash=2.0, denoise=True), atol=1e-5
    )
    assert denoised.provenance.extra["mdx"]["denoise"] is True


def test_an_identity_model_gives_back_the_input_above_the_three_zeroed_bins(tmp_path: Path, wav) -> None:
    """The STFT and inverse STFT reconstruct: only what falls in the bins UVR zeroes (below ~65 Hz here) is lost —
    a sine has nothing there, except a little where a chunk's reflect padding bends it (1e-3 of 0.5, at chunk edges)."""
    model = mdx_model(tmp_path / "identity.onnx", np.ones(N_FFT // 2 + 1), dim_t=DIM_T)
    t = np.arange(50_000) / 44_100
    audio = np.stack([np.sin(2 * np.pi * 2000 * t), np.sin(2 * np.pi * 3100 * t)]).astype(np.float32) * 0.5
    stems = stemkit.separate(wav(audio), provider=f"onnx:{model}?n_fft={N_FFT}&primary=vocals&device=cpu")
    inner = slice(N_FFT, -N_FFT)  # away from the abrupt start and end, which reach the zeroed bins
    np.testing.assert_allclose(stems["vocals"].audio[:, inner], audio[:, inner], atol=1e-3)


@pytest.mark.parametrize(("rate", "channels"), [(48_000, 2), (22_050, 1)])
def test_other_rates_and_mono_come_back_in_the_input_s_shape(
    small: Path, wav: Callable[..., Path], noise, rate: int, channels: int
) -> None:
    audio = noise(channels, rate)
    stems = stemkit.separate(wav(audio, rate=rate), provider=_spec(small))
    assert (stems.sample_rate, stems.channels, stems.frames) == (rate, channels, rate)
    np.testing.assert_allclose(stems["vocals"].audio + stems["instrumental"].audio, audio, rtol=0, atol=1e-7)


def test_streamed_and_in_memory_mdx_results_are_identical(small: Path, wav: Callable[..., Path], noise) -> None:
    path = wav(noise(2, 33_333))
    on = stemkit.separate(path, provider=_spec(small, stream="on"))
    off = stemkit.separate(path, provider=_spec(small, stream="off"))
    assert on["vocals"].path is not None
    np.testing.assert_array_equal(on["vocals"].audio, off["vocals"].audio)


def test_the_transform_matches_the_plain_stft_for_the_registry_s_real_sizes() -> None:
    params = MdxParams(n_fft=7680, dim_f=3072, dim_t=256, compensate=1.021)
    chunk = (np.random.default_rng(9).standard_normal((2, params.chunk)) * 0.1).astype(np.float32)
    transform = MdxTransform(params)
    ours = transform.forward(chunk)
    spec = _stft(chunk, 7680, HOP)
    assert ours.shape == (1, 4, 3072, 256)
    assert np.all(ours[:, :, :3] == 0)
    np.testing.assert_allclose(ours[0, 0, 3:], spec.real[0, 3:3072], atol=2e-3, rtol=1e-4)
    np.testing.assert_allclose(ours[0, 3, 3:], spec.imag[1, 3:3072], atol=2e-3, rtol=1e-4)
    full = np.zeros((2, 3841, 256), dtype=complex)
    full[:, :3072] = spec[:, :3072]
    np.testing.assert_allclose(transform.inverse(ours), _istft_zeroed(full), atol=1e-5)


def _istft_zeroed(full: np.ndarray) -> np.ndarray:
    full = full.copy()
    full[:, :3] = 0
    return _istft(full, 7680, HOP, HOP * 255)


# -- options and errors -----------------------------------------------------------------------------------


def test_a_custom_mdx_file_takes_its_dims_from_the_model_and_records_its_parameters(
    small: Path, wav: Callable[..., Path], noise
) -> None:
    sep = OnnxSeparator(str(small), {"n_fft": N_FFT, "primary": "vocals", "compensate": 1.05, "device": "cpu"})
    caps = sep.capabilities
    assert caps.combinations == (("vocals", "instrumental"),)
    assert caps.extra["architecture"] == "mdx-net"
    assert caps.extra["segment_seconds"] == pytest.approx(HOP * (DIM_T - 1) / 44_100)
    stems = sep.separate(wav(noise(2, 5000)))
    assert stems.provenance.extra["mdx"] == {
        "n_fft": N_FFT, "dim_f": DIM_F, "dim_t": DIM_T, "hop": HOP, "compensate": 1.05, "primary": "vocals",
        "denoise": False, "mixture_minus_primary": "instrumental",
    }
    assert stems.provenance.extra["architecture"] == "mdx-net"


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"primary": "vocals"}, "needs n_fft="),
        ({"n_fft": N_FFT}, "needs primary="),
        ({"n_fft": N_FFT, "primary": "vocals", "sources": "vocals"}, "name it with primary= instead of sources="),
        ({"n_fft": N_FFT, "primary": "kazoo"}, "'kazoo' is not a stem name"),
        ({"n_fft": N_FFT, "primary": "vocals", "dim_t": 4}, "dim_t=4 but the model's input declares 16 (UVR's"),
        ({"n_fft": N_FFT, "primary": "vocals", "dim_f": 100}, "dim_f=100 but the model's input declares 700"),
        ({"n_fft": 20_000, "primary": "vocals"}, "must be longer than n_fft=20000"),
        ({"n_fft": 1024, "primary": "vocals"}, "dim_f=700 must be between 1 and n_fft/2+1 = 513"),
        ({"n_fft": N_FFT, "primary": "vocals", "hop": 4096}, "hop=4096 must be between 1 and n_fft=2048"),
        ({"n_fft": N_FFT, "primary": "vocals", "precision": "fp16weights"}, "precision= picks a registry download"),
    ],
)
def test_custom_mdx_options_are_checked_at_load_time(small: Path, options: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        OnnxSeparator(str(small), {"device": "cpu", **options})
    assert fragment in str(info.value)


def test_a_model_that_declares_no_dims_needs_them_given(tmp_path: Path, wav, noise) -> None:
    model = mdx_model(tmp_path / "dynamic.onnx", _gains(DIM_F), dim_t="frames")
    with pytest.raises(ConfigError, match="does not declare dim_t; give it"):
        OnnxSeparator(str(model), {"n_fft": N_FFT, "primary": "vocals", "device": "cpu"})
    sep = OnnxSeparator(str(model), {"n_fft": N_FFT, "primary": "vocals", "dim_t": DIM_T, "device": "cpu"})
    assert sep.separate(wav(noise(2, 1000)))["vocals"].frames == 1000


def test_mdx_options_on_an_htdemucs_model_are_refused(tmp_path: Path) -> None:
    model = gain_model(tmp_path / "gain.onnx", np.ones((1, 2, 2)), segment=64)
    with pytest.raises(ConfigError, match=r"n_fft=, denoise= are for MDX-Net models; this is an HT-Demucs model"):
        OnnxSeparator(str(model), {"sources": "vocals", "n_fft": 512, "denoise": True, "device": "cpu"})
    with pytest.raises(ConfigError, match="compensate= is for MDX-Net"):
        OnnxSeparator("htdemucs", {"compensate": 1.1})


def test_model_describing_options_cannot_change_per_call(small: Path, wav, noise) -> None:
    sep = OnnxSeparator(str(small), {"n_fft": N_FFT, "primary": "vocals", "device": "cpu"})
    with pytest.raises(ConfigError, match="compensate= can only be set when the provider is loaded"):
        sep.separate(wav(noise(2, 100)), compensate=1.5)
    # what is not about the model may change per call
    assert sep.separate(wav(noise(2, 100)), overlap=0.5, denoise=True).frames == 100


def test_a_lone_other_estimate_is_musdb_s_other_and_derives_nothing_else(tmp_path: Path, wav, noise) -> None:
    model = mdx_model(tmp_path / "other.onnx", _gains(DIM_F), dim_t=DIM_T)
    sep = OnnxSeparator(str(model), {"n_fft": N_FFT, "primary": "other", "device": "cpu"})
    assert sep.capabilities.partial == frozenset({("other",)})
    stems = sep.separate(wav(noise(2, 2000)))
    assert list(stems) == ["other"]
    with pytest.raises(ConfigError, match="cannot produce or derive vocals"):
        sep.separate(wav(noise(2, 2000)), stems="vocals")


def test_the_complement_is_written_as_the_estimate_is_holding_only_a_few_chunks_of_input(
    small: Path, wav: Callable[..., Path], noise, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stemkit_onnx import _stream
    from stemkit_onnx import separator as separator_module

    held: list[int] = []

    class Watched(_stream.MixtureTap):
        def take(self, count: int) -> np.ndarray:
            held.append(sum(b.shape[1] for b in self._kept) - self._offset)
            return super().take(count)

    monkeypatch.setattr(separator_module, "MixtureTap", Watched)
    audio = noise(2, 44_100 * 20)
    stems = stemkit.separate(wav(audio), provider=_spec(small, stream="on"))
    np.testing.assert_array_equal(stems["instrumental"].audio, audio - stems["vocals"].audio)
    chunk = HOP * (DIM_T - 1)
    assert held
    assert max(held) <= 8 * chunk + 2 * 65_536  # a few chunks in flight and two read blocks, not the song
