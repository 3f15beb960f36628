"""``stemkit models list|pull`` through the real ``stemkit`` command, and ``stemkit separate`` to disk."""

from __future__ import annotations

import json
import re
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


def _table(out: str) -> dict[str, list[str]]:
    """Cells of the list by model name, a wrapped stems cell joined back (cells are 2+ spaces apart)."""
    lines = out.splitlines()
    body = lines[1 : next(i for i, line in enumerate(lines) if line.startswith("* "))]
    rows: dict[str, list[str]] = {}
    last = ""
    for line in body:
        cells = re.split(r"\s{2,}", line.strip())
        if line.startswith(" "):
            rows[last][1] += " " + cells[0]
        else:
            last = cells[0]
            rows[last] = cells
    return rows


def test_models_list_shows_every_model_its_published_sdr_and_what_is_cached(
    model4: Path, hub_cache: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cache = hub_cache("StemSplitio/htdemucs-onnx", "htdemucs.onnx", model4)
    hub_cache("StemSplitio/htdemucs-ft-vocals-onnx", "htdemucs_ft_vocals.onnx", model4)
    (cache / "Kim_Vocal_2.onnx").write_bytes(b"cached")
    assert main(["models", "list", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    rows = _table(out)
    assert set(rows) == {
        "htdemucs_ft", "htdemucs_ft_drums", "htdemucs_ft_bass", "htdemucs_ft_other", "htdemucs_ft_vocals",
        "htdemucs", "htdemucs_6s", "UVR-MDX-NET-Inst_HQ_3", "UVR-MDX-NET-Inst_HQ_4", "UVR-MDX-NET-Inst_HQ_5",
        "UVR-MDX-NET-Voc_FT", "Kim_Vocal_2", "Kim_Inst", "UVR_MDXNET_KARA", "UVR_MDXNET_KARA_2",
    }
    assert rows["htdemucs_6s"][1:] == ["drums 8.5, bass 10.1, other, vocals 9.6, guitar, piano", "~150 MB", "no"]
    assert rows["UVR-MDX-NET-Inst_HQ_3"][1] == "vocals 8.8, instrumental* 15.4"
    assert rows["UVR-MDX-NET-Voc_FT"][1] == "vocals* 10.2, instrumental 15.4"
    assert rows["htdemucs_ft_other"][1] == "other"  # no figure is published for it, none is shown
    assert rows["htdemucs"][2:] == [f"{model4.stat().st_size / 1e6:.0f} MB", "yes"]
    assert rows["htdemucs_ft"][2:] == ["~1264 MB", "1/4"]
    assert rows["Kim_Vocal_2"][3] == "yes"
    assert rows["Kim_Inst"][2:] == ["?", "no"]  # no published size, none invented
    assert "python-audio-separator" in out
    assert all(len(line) <= 80 for line in out.splitlines()), max(out.splitlines(), key=len)


def test_models_list_json_has_proper_types(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", "--json", "--precision", "fp16weights", "--cache-dir", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["precision"] == "fp16weights"
    assert data["caches"] == {"htdemucs": str(tmp_path), "mdx-net": str(tmp_path)}
    by_name = {m["name"]: m for m in data["models"]}
    ft = by_name["htdemucs_ft"]
    assert ft["stems"] == ["drums", "bass", "other", "vocals"]
    assert ft["cached"] is False
    assert (ft["cached_files"], ft["file_count"]) == (0, 4)
    assert ft["size_bytes"] == round(4 * 316 / 1.9) * 1_000_000
    assert ft["size_is_estimate"] is True
    assert ft["sdr"] == {"vocals": 10.793, "drums": 10.024, "bass": 12.02}
    assert ft["sdr_source"]["tracks"] == 13
    assert ft["sdr_source"]["source"]["key"] == "audio-separator"
    assert ft["files"][0]["cached"] is False
    hq3 = by_name["UVR-MDX-NET-Inst_HQ_3"]
    assert hq3["family"] == "mdx-net"
    assert hq3["primary"] == "instrumental"
    assert hq3["parameters"] == {
        "n_fft": 6144, "dim_f": 3072, "dim_t": 256, "hop": 1024, "compensate": 1.022, "primary": "instrumental",
        "uvr_hash": "55657dd70583b0fedfba5f67df11d711",
    }
    assert hq3["files"][0]["url"].endswith("/UVR-MDX-NET-Inst_HQ_3.onnx")
    assert by_name["Kim_Inst"]["size_bytes"] is None
    assert all(isinstance(m["cached"], bool) and isinstance(m["stems"], list) for m in data["models"])
    assert data["sdr_sources"]["audio-separator"]["url"].startswith("https://github.com/")


def test_models_pull_fetches_every_file_of_the_bag(
    fake_hub, model4: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for stem in ("drums", "bass", "other", "vocals"):
        fake_hub.serve(f"StemSplitio/htdemucs-ft-{stem}-onnx", f"htdemucs_ft_{stem}.onnx", model4)
    assert main(["models", "pull", "ft", "--cache-dir", str(tmp_path)]) == 0
    assert [c["filename"] for c in fake_hub.calls] == [
        f"htdemucs_ft_{s}.onnx" for s in ("drums", "bass", "other", "vocals")
    ]
    assert capsys.readouterr().out.count("htdemucs_ft: https://huggingface.co/StemSplitio/") == 4


@pytest.mark.parametrize("variable", ["STEMKIT_OFFLINE", "HF_HUB_OFFLINE"])
def test_models_pull_offline_fails_at_once_with_a_message_that_does_not_send_you_back_to_pull(
    fake_hub, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "1")
    assert main(["models", "pull", "htdemucs", "--cache-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{variable} is set, so nothing can be downloaded" in err
    assert "StemSplitio/htdemucs-onnx" in err
    assert "no model is cached here" in err
    assert "Traceback" not in err
    assert "run `stemkit models pull" not in err.lower()
    assert fake_hub.calls == []


def test_models_pull_fetches_an_mdx_model_from_uvr_s_repository(
    model_server, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from stemkit_onnx import uvr
    from stemkit_onnx.testing import mdx_model

    model = mdx_model(tmp_path / "kim.onnx", np.ones(3072))
    entry = dataclasses.replace(uvr.registry()["Kim_Vocal_2"], uvr_hash=uvr.uvr_hash(model))
    monkeypatch.setattr(uvr, "_MODELS", tuple(entry if m.name == "Kim_Vocal_2" else m for m in uvr._MODELS))
    model_server.files["Kim_Vocal_2.onnx"] = model.read_bytes()
    cache = tmp_path / "cache"
    assert main(["models", "pull", "kim_vocal_2.onnx", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Kim_Vocal_2: {model_server.url}/Kim_Vocal_2.onnx -> {cache / 'Kim_Vocal_2.onnx'}")
    assert (cache / "Kim_Vocal_2.onnx").read_bytes() == model.read_bytes()
    # pull refreshes: it downloads again even when cached
    assert main(["models", "pull", "Kim_Vocal_2", "--cache-dir", str(cache)]) == 0
    assert model_server.requests.count("/releases/Kim_Vocal_2.onnx") == 2


def test_models_pull_unknown_model_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "pull", "htdemucs_9s"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'htdemucs_9s'" in err
    assert "Kim_Vocal_2" in err


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


@pytest.mark.parametrize("columns", [66, 100])
def test_models_list_fits_the_terminal_it_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["models", "list", "--cache-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= columns
    assert len(_table("\n".join(lines))) == 15
