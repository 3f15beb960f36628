"""``stemkit models list|pull`` through the real ``stemkit`` command, and ``stemkit separate`` to disk."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemkit.cli import main
from stemkit_onnx.testing import gain_model


@pytest.fixture(scope="module")
def model4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gains = np.stack([np.eye(2, dtype=np.float32) * g for g in (0.1, 0.2, 0.3, 0.4)])
    return gain_model(tmp_path_factory.mktemp("cli") / "gain4.onnx", gains, segment=343_980)


def test_models_list_shows_every_model_and_what_is_cached(
    model4: Path, hub_cache: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cache = hub_cache("StemSplitio/htdemucs-onnx", "htdemucs.onnx", model4)
    hub_cache("StemSplitio/htdemucs-ft-vocals-onnx", "htdemucs_ft_vocals.onnx", model4)
    assert main(["models", "list", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("htdemucs")}
    assert set(lines) == {
        "htdemucs_ft",
        "htdemucs_ft_drums",
        "htdemucs_ft_bass",
        "htdemucs_ft_other",
        "htdemucs_ft_vocals",
        "htdemucs",
        "htdemucs_6s",
    }
    assert "drums,bass,other,vocals,guitar,piano" in lines["htdemucs_6s"]
    assert " yes " in lines["htdemucs"]
    assert f"{model4.stat().st_size / 1e6:.0f} MB" in lines["htdemucs"]
    assert " no " in lines["htdemucs_6s"]
    assert "~150 MB" in lines["htdemucs_6s"]
    assert "1/4 files" in lines["htdemucs_ft"]
    assert "StemSplitio/htdemucs-6s-onnx" in lines["htdemucs_6s"]


def test_models_list_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", "--json", "--precision", "fp16weights", "--cache-dir", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["precision"] == "fp16weights"
    by_name = {m["name"]: m for m in data["models"]}
    assert by_name["htdemucs_ft"]["size"] == f"~{round(4 * 316 / 1.9)} MB"
    assert all(m["cached"] == "no" for m in data["models"])


def test_models_pull_fetches_every_file_of_the_bag(
    fake_hub, model4: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for stem in ("drums", "bass", "other", "vocals"):
        fake_hub.serve(f"StemSplitio/htdemucs-ft-{stem}-onnx", f"htdemucs_ft_{stem}.onnx", model4)
    assert main(["models", "pull", "ft", "--cache-dir", str(tmp_path)]) == 0
    assert [c["filename"] for c in fake_hub.calls] == [
        f"htdemucs_ft_{s}.onnx" for s in ("drums", "bass", "other", "vocals")
    ]
    assert capsys.readouterr().out.count("htdemucs_ft: StemSplitio/") == 4


def test_models_pull_offline_fails_with_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "pull", "htdemucs", "--cache-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE" in err
    assert "StemSplitio/htdemucs-onnx" in err
    assert "Traceback" not in err


def test_models_pull_unknown_model_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "pull", "htdemucs_9s"]) == 2
    assert "unknown model 'htdemucs_9s'" in capsys.readouterr().err


def test_separate_to_disk_streams_file_backed_stems_and_matches_memory(
    model4: Path, hub_cache: Callable[..., Path], tmp_path: Path, wav: Callable[..., Path], noise
) -> None:
    cache = hub_cache("StemSplitio/htdemucs-onnx", "htdemucs.onnx", model4)
    audio = noise(2, 30_000)
    path = wav(audio, name="song.wav")
    spec = f"onnx:htdemucs?device=cpu&cache_dir={cache}&stream=on"
    assert main(["separate", str(path), "-p", spec, "-o", str(tmp_path / "out"), "--format", "flac"]) == 0
    import stemkit

    stems = stemkit.separate(path, provider=spec)
    written = stems.save(tmp_path / "again", format="wav")
    assert not any(s.is_loaded for s in stems.values())  # saved block by block, never loaded whole
    for name, gain in zip(("drums", "bass", "other", "vocals"), (0.1, 0.2, 0.3, 0.4), strict=True):
        flac, _ = sf.read(tmp_path / "out" / "song" / f"{name}.flac", dtype="float32", always_2d=True)
        np.testing.assert_allclose(flac.T[:, 1:], audio[:, 1:] * gain, atol=2e-7 + 2**-23 * 2)
        data, _ = sf.read(written[name], dtype="float32", always_2d=True)
        np.testing.assert_array_equal(data.T, stems[name].audio)
