"""``stemkit doctor`` for onnx specs: which execution provider a spec would use, and the GPU-asked-CPU-runs warning."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from stemkit.cli import main
from stemkit_onnx.testing import gain_model

CPU_ONLY = "CUDAExecutionProvider" not in ort.get_available_providers()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gain_model(tmp_path_factory.mktemp("doc") / "gain.onnx", np.ones((1, 2, 2), dtype=np.float32), segment=64)


def _onnx(report: dict, index: int = 0) -> dict[str, tuple[str, str]]:
    section = [s for s in report["sections"] if s["provider"] == "onnx"][index]
    return {f["topic"]: (f["level"], f["message"]) for f in section["findings"]}


def _doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    code = main(["doctor", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_the_general_report_names_the_build_its_providers_and_what_auto_picks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, report = _doctor(capsys)
    findings = _onnx(report)
    assert code == 0
    assert findings["onnxruntime"][1].startswith("onnxruntime")
    assert "CPUExecutionProvider" in findings["execution providers"][1]
    assert findings["device=auto"][1].startswith("would use ")
    assert findings["downloads"] == ("info", "off: HF_HUB_OFFLINE is set")


@pytest.mark.skipif(not CPU_ONLY, reason="this onnxruntime has CUDA")
def test_a_gpu_asked_for_on_the_cpu_build_is_a_warning_that_the_cpu_will_run(
    model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _doctor(capsys, "-p", f"onnx:{model}?sources=vocals&device=cuda")
    findings = _onnx(report)
    assert code == 0
    level, message = findings["device=cuda"]
    assert level == "warning"
    assert "needs CUDAExecutionProvider" in message
    assert 'pip install "stemkit[gpu]", then pip uninstall -y onnxruntime onnxruntime-gpu' in message
    assert message.endswith("The CPU (CPUExecutionProvider) will run")
    assert findings["session"] == ("ok", "built on this model: runs on CPUExecutionProvider")
    assert main(["doctor", "-p", f"onnx:{model}?sources=vocals&device=cuda"]) == 0
    assert re.search(r"WARN\s+device=cuda", capsys.readouterr().out)


@pytest.mark.skipif(not CPU_ONLY, reason="this onnxruntime has CUDA")
def test_a_required_gpu_that_is_missing_is_an_error_and_exit_1(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = _doctor(capsys, "-p", f"onnx:{model}?sources=vocals&device=cuda:0&require_device=true")
    assert code == 1
    assert _onnx(report)["device=cuda:0"][0] == "error"


def test_a_gpu_that_is_offered_but_does_not_start_is_caught_by_building_the_session(
    model: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from demucs_onnx import providers as dproviders

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    dproviders._available_providers.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # onnxruntime's own complaint about the missing provider
        code, report = _doctor(capsys, "-p", f"onnx:{model}?sources=vocals&device=cuda")
    dproviders._available_providers.cache_clear()
    findings = _onnx(report)
    assert code == 0
    assert findings["device=cuda"][0] == "ok"
    assert findings["device=cuda"][1].startswith("would use CUDAExecutionProvider")
    level, message = findings["session"]
    assert level == "warning"
    assert "could not start it" in message


def test_weights_not_cached_offline_are_a_warning(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, report = _doctor(capsys, "-p", f"onnx:Kim_Vocal_2?cache_dir={tmp_path}&device=cpu")
    findings = _onnx(report)
    assert code == 0
    assert findings["model"] == ("info", "onnx:Kim_Vocal_2 (mdx-net)")
    assert findings["weights"][0] == "warning"
    assert "HF_HUB_OFFLINE is set: a run fails at once" in findings["weights"][1]


def test_a_spec_the_provider_refuses_is_an_error_finding(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = _doctor(capsys, "-p", "onnx:htdemucs?n_fft=512 | onnx:htdemucs_9s")
    assert code == 1
    assert _onnx(report, 0)["spec"][0] == "error"
    assert "n_fft= is for MDX-Net models" in _onnx(report, 0)["spec"][1]
    assert "unknown model 'htdemucs_9s'" in _onnx(report, 1)["spec"][1]


def test_two_onnxruntime_builds_side_by_side_are_a_warning_with_the_fix(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pip install "stemkit[gpu]"` alone leaves onnxruntime and onnxruntime-gpu overwriting each other."""
    from importlib import metadata

    real = metadata.version

    def version(name: str) -> str:
        return "1.31.1" if name == "onnxruntime-gpu" else real(name)

    monkeypatch.setattr(metadata, "version", version)
    _, report = _doctor(capsys)
    level, message = _onnx(report)["onnxruntime builds"]
    assert level == "warning"
    assert "onnxruntime-gpu 1.31.1 are both installed and overwrite each other's files" in message
    assert message.endswith("pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu")
