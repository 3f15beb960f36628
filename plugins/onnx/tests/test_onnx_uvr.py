"""UVR's MDX-Net registry and its download path, against a real HTTP server on loopback; offline for real."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import stemkit
from stemkit.errors import ProviderUnavailableError
from stemkit.protocol import ProgressEvent
from stemkit_onnx import OnnxSeparator, quality, uvr
from stemkit_onnx.testing import mdx_model

HQ3 = "UVR-MDX-NET-Inst_HQ_3"


def test_the_registry_has_uvr_s_well_known_models_with_their_numbers() -> None:
    models = uvr.registry()
    assert set(models) == {
        "UVR-MDX-NET-Inst_HQ_3", "UVR-MDX-NET-Inst_HQ_4", "UVR-MDX-NET-Inst_HQ_5", "UVR-MDX-NET-Voc_FT",
        "Kim_Vocal_2", "Kim_Inst", "UVR_MDXNET_KARA", "UVR_MDXNET_KARA_2",
    }
    voc = models["UVR-MDX-NET-Voc_FT"]
    assert (voc.params.n_fft, voc.params.dim_f, voc.params.dim_t, voc.params.compensate) == (7680, 3072, 256, 1.021)
    assert (voc.primary, voc.uvr_hash) == ("vocals", "77d07b2667ddf05b9e3175941b4454a0")
    hq3 = models[HQ3]
    assert (hq3.params.n_fft, hq3.params.dim_f, hq3.params.dim_t, hq3.params.compensate) == (6144, 3072, 256, 1.022)
    assert hq3.primary == "instrumental"
    assert hq3.url() == (
        "https://github.com/TRvlvr/model_repo/releases/download/all_public_uvr_models/UVR-MDX-NET-Inst_HQ_3.onnx"
    )
    assert models["UVR_MDXNET_KARA_2"].note.startswith("karaoke")
    for model in models.values():
        model.params.check(model.name)
        assert model.params.hop == 1024
        assert model.sources == ("vocals", "instrumental")


def test_every_registry_model_has_published_sdr_for_both_stems_with_its_source() -> None:
    for name in uvr.registry():
        score = quality.score(name)
        assert score is not None, name
        assert set(score.sdr) == {"vocals", "instrumental"}
        assert score.source.url.startswith("https://github.com/nomadkaraoke/python-audio-separator/")
        assert score.tracks >= 40
    assert quality.score("htdemucs_ft_other") is None  # no published figure: none shown


@pytest.mark.parametrize("spelling", ["Kim_Vocal_2", "kim_vocal_2", "Kim_Vocal_2.onnx"])
def test_names_resolve_as_audio_separator_users_type_them(spelling: str) -> None:
    assert uvr.resolve(spelling) == uvr.registry()["Kim_Vocal_2"]
    sep = OnnxSeparator(spelling, {"device": "cpu"})
    assert sep.model_label == "onnx:Kim_Vocal_2"
    assert sep.capabilities.combinations == (("vocals", "instrumental"),)
    assert [d.name for d in sep.plan(None).outputs] == ["vocals", "instrumental"]
    assert sep.plan("instrumental").combination == ("vocals", "instrumental")  # the subtraction costs nothing


def test_registry_parameters_cannot_be_overridden(tmp_path: Path) -> None:
    with pytest.raises(stemkit.errors.ConfigError, match=r"n_fft= cannot be set for a registry model.*n_fft=6144"):
        OnnxSeparator(HQ3, {"n_fft": 4096})
    with pytest.raises(stemkit.errors.ConfigError, match="precision= picks an HT-Demucs download"):
        OnnxSeparator(HQ3, {"precision": "fp16weights"})


def test_uvr_hash_is_the_md5_of_the_last_10000_kib(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    data = np.random.default_rng(0).bytes(10_000 * 1024 + 777)
    big.write_bytes(data)
    assert uvr.uvr_hash(big) == hashlib.md5(data[777:]).hexdigest()
    small = tmp_path / "small.bin"
    small.write_bytes(b"tiny")
    assert uvr.uvr_hash(small) == hashlib.md5(b"tiny").hexdigest()


# -- downloads, against a real HTTP server -----------------------------------------------------------------


@pytest.fixture
def hq3_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated model with HQ 3's real signature (3072 bins, 256 frames)."""
    gains = np.linspace(0.5, 1.0, 3072, dtype=np.float32)
    return mdx_model(tmp_path_factory.mktemp("uvr") / f"{HQ3}.onnx", gains)


@pytest.fixture
def registered(hq3_file: Path, monkeypatch: pytest.MonkeyPatch) -> uvr.MdxModel:
    """HQ 3's registry entry, with the generated file's hash in place of the real weights'."""
    real = uvr.registry()[HQ3]
    entry = dataclasses.replace(real, uvr_hash=uvr.uvr_hash(hq3_file), size_bytes=hq3_file.stat().st_size)
    monkeypatch.setattr(uvr, "_MODELS", tuple(entry if m.name == HQ3 else m for m in uvr._MODELS))
    return entry


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_model_is_downloaded_through_redirects_and_failures_checked_and_cached(
    model_server, registered: uvr.MdxModel, hq3_file: Path, tmp_path: Path, wav: Callable[..., Path], noise
) -> None:
    model_server.files[registered.filename] = hq3_file.read_bytes()
    model_server.faults[registered.filename] = ["503", "truncate", "redirect"]
    cache = tmp_path / "models"
    sep = OnnxSeparator(HQ3, {"cache_dir": str(cache), "device": "cpu"})
    assert sep.capabilities.needs_network
    audio = noise(2, 50_000)
    events: list[ProgressEvent] = []
    stems = sep.separate(wav(audio), progress=events.append)
    downloads = [e for e in events if e.stage == "download"]
    assert downloads
    assert downloads[-1].fraction == 1.0
    assert downloads[-1].message.startswith(registered.filename)
    assert _leftovers(cache) == [registered.filename]  # no partial or unverified file left beside it
    assert (cache / registered.filename).read_bytes() == hq3_file.read_bytes()
    assert not sep.capabilities.needs_network
    assert model_server.requests.count(f"/releases/{registered.filename}") == 3
    assert model_server.requests[-1] == f"/cdn/{registered.filename}"
    # The registry run is the same computation as the file run with the same numbers.
    p = registered.params
    spec = f"onnx:{hq3_file}?n_fft={p.n_fft}&compensate={p.compensate}&primary=instrumental&device=cpu"
    custom = stemkit.separate(wav(audio), provider=spec)
    np.testing.assert_array_equal(stems["instrumental"].audio, custom["instrumental"].audio)
    np.testing.assert_array_equal(stems["vocals"].audio, custom["vocals"].audio)
    assert stems.provenance.model == f"onnx:{HQ3}"
    # Cached now: no second request.
    before = len(model_server.requests)
    stemkit.separate(wav(audio), provider=f"onnx:{HQ3}?cache_dir={cache}&device=cpu")
    assert len(model_server.requests) == before


def test_a_file_that_is_not_the_registered_model_is_discarded(
    model_server, hq3_file: Path, tmp_path: Path, wav: Callable[..., Path], noise
) -> None:
    model_server.files[f"{HQ3}.onnx"] = hq3_file.read_bytes()  # not the real weights: the real hash cannot match
    cache = tmp_path / "models"
    with pytest.raises(ProviderUnavailableError, match="is not the model the registry describes") as info:
        stemkit.separate(wav(noise(2, 1000)), provider=f"onnx:{HQ3}?cache_dir={cache}&device=cpu")
    assert info.value.code == "MODEL_MISMATCH"
    assert _leftovers(cache) == []


def test_a_missing_file_names_the_url_and_leaves_nothing(
    model_server, tmp_path: Path, wav: Callable[..., Path], noise
) -> None:
    cache = tmp_path / "models"
    with pytest.raises(ProviderUnavailableError) as info:
        stemkit.separate(wav(noise(2, 1000)), provider=f"onnx:Kim_Inst?cache_dir={cache}&device=cpu")
    text = str(info.value)
    assert info.value.code == "MODEL_NOT_AVAILABLE"
    assert "'Kim_Inst'" in text
    assert f"{model_server.url}/Kim_Inst.onnx" in text
    assert _leftovers(cache) == []


def test_a_cached_file_that_is_not_the_model_is_refused_before_it_runs(
    registered: uvr.MdxModel, tmp_path: Path, wav: Callable[..., Path], noise
) -> None:
    cache = tmp_path / "models"
    cache.mkdir()
    (cache / registered.filename).write_bytes(b"not a model")
    with pytest.raises(ProviderUnavailableError, match="is not the file the registry describes"):
        stemkit.separate(wav(noise(2, 1000)), provider=f"onnx:{HQ3}?cache_dir={cache}&device=cpu")


@pytest.mark.parametrize("variable", ["STEMKIT_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_and_not_cached_fails_at_once_without_a_request(
    model_server, registered: uvr.MdxModel, hq3_file: Path, tmp_path: Path, wav, noise, monkeypatch, variable: str
) -> None:
    model_server.files[registered.filename] = hq3_file.read_bytes()
    monkeypatch.setenv(variable, "1")
    with pytest.raises(ProviderUnavailableError) as info:
        stemkit.separate(wav(noise(2, 1000)), provider=f"onnx:{HQ3}?cache_dir={tmp_path / 'empty'}&device=cpu")
    text = str(info.value)
    assert f"{variable} is set" in text
    assert "no model is cached here" in text
    assert "allow downloads" in text
    assert model_server.requests == []


def test_offline_with_the_model_cached_runs_without_a_request(
    model_server, registered: uvr.MdxModel, hq3_file: Path, tmp_path: Path, wav, noise, monkeypatch
) -> None:
    cache = tmp_path / "models"
    cache.mkdir()
    (cache / registered.filename).write_bytes(hq3_file.read_bytes())
    monkeypatch.setenv("STEMKIT_OFFLINE", "1")
    stems = stemkit.separate(wav(noise(2, 3000)), provider=f"onnx:{HQ3}?cache_dir={cache}&device=cpu")
    assert set(stems) == {"vocals", "instrumental"}
    assert model_server.requests == []
