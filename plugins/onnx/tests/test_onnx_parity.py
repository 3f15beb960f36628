"""stemkit's output equals demucs-onnx's own on the same model (real 7.8 s segment, public demucs-onnx API).

Both sides download through demucs-onnx's registry with ``hf_hub_download`` patched to serve a
generated model, so the only difference left is the inference loop (and, for other rates, the
streamed resampling).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import demucs_onnx
import numpy as np
import pytest

import stemkit
from stemkit_onnx.testing import fir_model

SEGMENT = 343_980
STRIDE = 257_985


def _taps(n_stems: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n_stems, 6)) * 0.5).astype(np.float32)


@pytest.fixture(scope="module")
def fir4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fir_model(tmp_path_factory.mktemp("parity") / "fir4.onnx", _taps(4), segment=SEGMENT)


@pytest.fixture(scope="module")
def fir6(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fir_model(tmp_path_factory.mktemp("parity") / "fir6.onnx", _taps(6, seed=1), segment=SEGMENT)


def _demucs(path: Path, model: str, cache: Path, stems: list[str] | None = None) -> dict[str, np.ndarray]:
    return demucs_onnx.separate(path, model=model, stems=stems, providers="cpu", progress=False, cache_dir=cache)


@pytest.mark.parametrize("frames", [SEGMENT, 2 * STRIDE + 1000])
def test_htdemucs_output_equals_demucs_onnx(
    fake_hub, fir4: Path, wav: Callable[..., Path], noise, tmp_path: Path, frames: int
) -> None:
    fake_hub.serve("StemSplitio/htdemucs-onnx", "htdemucs.onnx", fir4)
    path = wav(noise(2, frames))
    theirs = _demucs(path, "htdemucs", tmp_path)
    ours = stemkit.separate(path, provider=f"onnx:htdemucs?device=cpu&cache_dir={tmp_path}")
    assert set(ours) == set(theirs) == {"drums", "bass", "other", "vocals"}
    for name in theirs:
        assert ours[name].audio.shape == theirs[name].shape
        assert np.max(np.abs(ours[name].audio - theirs[name])) <= 1e-5, name


def test_htdemucs_6s_output_equals_demucs_onnx_for_all_six_stems(
    fake_hub, fir6: Path, wav: Callable[..., Path], noise, tmp_path: Path
) -> None:
    fake_hub.serve("StemSplitio/htdemucs-6s-onnx", "htdemucs_6s.onnx", fir6)
    path = wav(noise(2, STRIDE + 5000, seed=2))
    theirs = _demucs(path, "htdemucs_6s", tmp_path)
    ours = stemkit.separate(path, provider=f"onnx:htdemucs_6s?device=cpu&cache_dir={tmp_path}")
    assert set(ours) == {"drums", "bass", "other", "vocals", "guitar", "piano"}
    for name in theirs:
        assert np.max(np.abs(ours[name].audio - theirs[name])) <= 1e-5, name


def test_htdemucs_ft_vocals_runs_only_the_vocals_specialist_and_equals_demucs_onnx(
    fake_hub, fir4: Path, wav: Callable[..., Path], noise, tmp_path: Path
) -> None:
    for stem in ("drums", "bass", "other", "vocals"):
        fake_hub.serve(f"StemSplitio/htdemucs-ft-{stem}-onnx", f"htdemucs_ft_{stem}.onnx", fir4)
    path = wav(noise(2, 400_000, seed=3))
    ours = stemkit.separate(path, provider=f"onnx:htdemucs_ft?device=cpu&cache_dir={tmp_path}", stems="vocals")
    assert [c["filename"] for c in fake_hub.calls] == ["htdemucs_ft_vocals.onnx"]
    theirs = _demucs(path, "htdemucs_ft", tmp_path, stems=["vocals"])
    assert list(ours) == ["vocals"]
    assert np.max(np.abs(ours["vocals"].audio - theirs["vocals"])) <= 1e-5


def test_htdemucs_ft_other_runs_only_the_other_specialist_and_equals_demucs_onnx(
    fake_hub, tmp_path: Path, wav: Callable[..., Path], noise
) -> None:
    for i, stem in enumerate(("drums", "bass", "other", "vocals")):
        model = fir_model(tmp_path / f"{stem}.onnx", _taps(4, seed=20 + i), segment=SEGMENT)
        fake_hub.serve(f"StemSplitio/htdemucs-ft-{stem}-onnx", f"htdemucs_ft_{stem}.onnx", model)
    path = wav(noise(2, 200_000, seed=6))
    ours = stemkit.separate(path, provider=f"onnx:htdemucs_ft?device=cpu&cache_dir={tmp_path}", stems="other")
    assert [c["filename"] for c in fake_hub.calls] == ["htdemucs_ft_other.onnx"]
    assert list(ours) == ["other"]
    assert ours["other"].complement_of == ("vocals", "drums", "bass")
    theirs = _demucs(path, "htdemucs_ft", tmp_path, stems=["other"])
    assert np.max(np.abs(ours["other"].audio - theirs["other"])) <= 1e-5


def test_htdemucs_ft_full_bag_takes_each_stem_from_its_own_specialist(
    fake_hub, tmp_path: Path, wav: Callable[..., Path], noise
) -> None:
    # A different model per specialist: a stem taken from the wrong file or row would not match.
    for i, stem in enumerate(("drums", "bass", "other", "vocals")):
        model = fir_model(tmp_path / f"{stem}.onnx", _taps(4, seed=10 + i), segment=SEGMENT)
        fake_hub.serve(f"StemSplitio/htdemucs-ft-{stem}-onnx", f"htdemucs_ft_{stem}.onnx", model)
    path = wav(noise(2, 300_000, seed=4))
    theirs = _demucs(path, "htdemucs_ft", tmp_path)
    ours = stemkit.separate(path, provider=f"onnx:htdemucs_ft?device=cpu&cache_dir={tmp_path}")
    assert list(ours) == ["drums", "bass", "other", "vocals"]
    for name in theirs:
        assert np.max(np.abs(ours[name].audio - theirs[name])) <= 1e-5, name


@pytest.mark.parametrize(("rate", "channels"), [(48_000, 2), (22_050, 1)])
def test_other_rates_and_mono_match_demucs_onnx_after_resampling(
    fake_hub, fir4: Path, wav: Callable[..., Path], noise, tmp_path: Path, rate: int, channels: int
) -> None:
    fake_hub.serve("StemSplitio/htdemucs-onnx", "htdemucs.onnx", fir4)
    frames = int(rate * 9.5)
    path = wav(noise(channels, frames, seed=5), rate=rate)
    theirs = _demucs(path, "htdemucs", tmp_path)
    ours = stemkit.separate(path, provider=f"onnx:htdemucs?device=cpu&cache_dir={tmp_path}")
    assert (ours.sample_rate, ours.channels, ours.frames) == (rate, channels, frames)
    for name, reference in theirs.items():
        # demucs-onnx returns stereo for mono input; stemkit keeps the input's channel count.
        expected = reference.mean(axis=0, keepdims=True) if channels == 1 else reference
        n = min(expected.shape[1], frames)
        assert np.max(np.abs(ours[name].audio[:, :n] - expected[:, :n])) <= 1e-5, name
