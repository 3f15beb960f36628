"""device=: parsed, resolved against what onnxruntime offers, and what actually ran recorded in the provenance.

This machine's onnxruntime is the CPU build, so a GPU request really is unavailable here; the selection
logic for GPU builds is checked by having ``onnxruntime.get_available_providers`` report more providers
(and building a real session with them: onnxruntime then leaves the GPU out, as onnxruntime-gpu does when
CUDA fails to load).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import stemkit
from stemkit.errors import ConfigError, ProviderUnavailableError
from stemkit_onnx import OnnxSeparator
from stemkit_onnx._devices import CPU, CUDA, DML, parse_device, select_device, session_fallback
from stemkit_onnx.testing import gain_model

CPU_ONLY = "CUDAExecutionProvider" not in ort.get_available_providers()
needs_cpu_build = pytest.mark.skipif(not CPU_ONLY, reason="this onnxruntime has CUDA")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gain_model(tmp_path_factory.mktemp("dev") / "gain.onnx", np.ones((1, 2, 2), dtype=np.float32), segment=64)


@pytest.fixture
def reports(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], None]:
    """``reports([...])``: what onnxruntime says it offers, for the selection logic (demucs-onnx caches it too)."""
    from demucs_onnx import providers as dproviders

    def set_available(names: list[str]) -> None:
        monkeypatch.setattr(ort, "get_available_providers", lambda: list(names))
        dproviders._available_providers.cache_clear()

    yield set_available
    dproviders._available_providers.cache_clear()


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("auto", ("auto", None)), ("CPU", ("cpu", None)), ("cuda", ("cuda", None)), ("cuda:1", ("cuda", 1)),
     ("dml", ("directml", None)), ("directml:2", ("directml", 2)), ("coreml", ("coreml", None))],
)
def test_devices_parse(value: str, parsed: tuple[str, int | None]) -> None:
    assert parse_device(value) == parsed


@pytest.mark.parametrize(("value", "fragment"), [("gpu", "not a device; use one of auto, cpu, cuda, cuda:N"),
                                                 ("cpu:1", "only cuda and directml take a device index")])
def test_an_unknown_device_is_a_config_error_listing_the_choices(value: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_device(value)
    with pytest.raises(ConfigError, match="device"):
        stemkit.load(f"onnx:htdemucs?device={value}")


@needs_cpu_build
def test_cuda_on_the_cpu_build_warns_what_to_install_runs_on_the_cpu_and_says_so(
    model: Path, wav: Callable[..., Path], noise
) -> None:
    with pytest.warns(RuntimeWarning) as caught:
        stems = stemkit.separate(wav(noise(2, 500)), provider=f"onnx:{model}?sources=vocals&device=cuda")
    text = " ".join(str(w.message) for w in caught)
    assert "needs CUDAExecutionProvider" in text
    assert 'pip install "stemkit[gpu]", then pip uninstall -y onnxruntime onnxruntime-gpu' in text
    assert "onnxruntime-gpu" in text
    assert "Running on the CPU (CPUExecutionProvider)" in text
    extra = stems.provenance.extra
    assert extra["device"] == "cuda"
    assert extra["execution_provider"] == CPU
    assert extra["execution_providers"] == [CPU]
    assert "CUDAExecutionProvider" in extra["device_fallback"]


@needs_cpu_build
def test_require_device_makes_a_missing_gpu_an_error_and_a_chain_moves_on(
    model: Path, wav: Callable[..., Path], noise
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # required: an error when it runs, not a warning now
        sep = OnnxSeparator(str(model), {"sources": "vocals", "device": "cuda:1", "require_device": True})
    with pytest.raises(ProviderUnavailableError, match=r"device=cuda:1 needs CUDAExecutionProvider") as info:
        sep.separate(wav(noise(2, 300)))
    assert info.value.code == "DEVICE_UNAVAILABLE"
    assert str(info.value).startswith("onnx: device=cuda:1")
    pytest.importorskip("stemkit_dsp")
    stems = stemkit.separate(
        wav(noise(2, 44_100)), provider=f"onnx:{model}?sources=vocals&device=cuda&require_device=true | dsp",
        stems="vocals",
    )
    assert stems.provider == "dsp"


def test_a_gpu_build_gets_the_gpu_with_its_index(reports: Callable[[list[str]], None]) -> None:
    reports([CUDA, CPU])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning when the GPU is there
        choice = select_device("cuda:1")
    assert choice.providers == ((CUDA, {"device_id": 1}), CPU)
    assert choice.names == (CUDA, CPU)
    assert choice.fallback is None
    assert select_device("cuda").providers == (CUDA, CPU)
    reports([DML, CPU])
    assert select_device("directml:0").providers == ((DML, {"device_id": 0}), CPU)


def test_auto_takes_the_gpu_when_there_is_one(reports: Callable[[list[str]], None], monkeypatch) -> None:
    import platform

    monkeypatch.setattr(platform, "system", lambda: "Linux")
    reports([CUDA, CPU])
    assert select_device("auto").names == (CUDA, CPU)
    reports([CPU])
    assert select_device("auto").names == (CPU,)


def test_a_gpu_provider_that_fails_to_start_is_reported_not_silent(
    reports: Callable[[list[str]], None], model: Path, wav: Callable[..., Path], noise
) -> None:
    """onnxruntime-gpu without working CUDA builds a CPU session and only logs; stemkit says so and records it."""
    reports([CUDA, CPU])  # offered... but this build cannot start it, exactly like a GPU build missing cuDNN
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Specified provider", UserWarning)  # onnxruntime's own complaint
        with pytest.warns(RuntimeWarning, match=r"offers CUDAExecutionProvider but could not start it"):
            stems = stemkit.separate(wav(noise(2, 300)), provider=f"onnx:{model}?sources=vocals&device=cuda")
    assert stems.provenance.extra["execution_provider"] == CPU
    assert "could not start" in stems.provenance.extra["device_fallback"]
    path, spec = wav(noise(2, 300)), f"onnx:{model}?sources=vocals&device=cuda&require_device=true"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # onnxruntime's own complaint about the missing provider
        with pytest.raises(ProviderUnavailableError, match="could not start"):
            stemkit.separate(path, provider=spec)


def test_session_fallback_compares_what_was_asked_with_what_the_session_has(
    reports: Callable[[list[str]], None],
) -> None:
    reports([CUDA, CPU])
    choice = select_device("cuda")
    assert session_fallback(choice, [CUDA, CPU]) is None
    assert "could not start it" in (session_fallback(choice, [CPU]) or "")
    assert session_fallback(select_device("cpu"), [CPU]) is None


def test_the_cpu_records_itself(model: Path, wav: Callable[..., Path], noise) -> None:
    stems = stemkit.separate(wav(noise(2, 300)), provider=f"onnx:{model}?sources=vocals&device=cpu")
    extra = stems.provenance.extra
    assert (extra["device"], extra["execution_provider"], extra["device_fallback"]) == ("cpu", CPU, None)

