"""A custom .onnx file is checked when it is loaded; each mismatch says what was expected and found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import stemkit
from stemkit.errors import ConfigError
from stemkit_onnx import OnnxSeparator
from stemkit_onnx.testing import gain_model, raw_model

SOURCES4 = "drums,bass,other,vocals"


def _load(path: Path, sources: str | None = SOURCES4, **options: str) -> OnnxSeparator:
    opts: dict[str, str] = {"device": "cpu", **options}
    if sources is not None:
        opts["sources"] = sources
    return OnnxSeparator(str(path), opts)


@pytest.mark.parametrize(
    ("inputs", "outputs", "fragment"),
    [
        ([("audio", [1, 2, 64])], [("stems", [1, 4, 2, 64])], "found input(s) 'audio'"),
        ([("mix", [1, 2, 64]), ("extra", [1])], [("stems", [1, 4, 2, 64])], "'extra'"),
        ([("mix", [2, 64])], [("stems", [1, 4, 2, 64])], "rank 3 (1, 2, N); found rank 2"),
        ([("mix", [1, 1, 64])], [("stems", [1, 4, 2, 64])], "(batch 1, stereo); found (1, 1, 64)"),
        ([("mix", [1, 2, 64])], [("sources", [1, 4, 2, 64])], "found output(s) 'sources'"),
        ([("mix", [1, 2, 64])], [("stems", [1, 4, 128])], "rank 4 (1, S, 2, N); found rank 3"),
        ([("mix", [1, 2, 64])], [("stems", [1, 4, 1, 64])], "must be (1, S, 2, N); found (1, 4, 1, 64)"),
        ([("mix", [1, 2, 64])], [("stems", [1, 4, 2, 32])], "64 samples per segment but output 'stems' has 32"),
    ],
)
def test_signature_mismatch_is_a_config_error_saying_expected_and_found(
    tmp_path: Path, inputs: list, outputs: list, fragment: str
) -> None:
    path = raw_model(tmp_path / "bad.onnx", inputs=inputs, outputs=outputs)
    with pytest.raises(ConfigError) as info:
        _load(path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_integer_input_is_rejected_with_its_type(tmp_path: Path) -> None:
    path = raw_model(
        tmp_path / "int.onnx",
        inputs=[("mix", [1, 2, 64])],
        outputs=[("stems", [1, 4, 2, 64])],
        input_type=onnx.TensorProto.INT16,
    )
    with pytest.raises(ConfigError, match=r"must be float32 \(tensor\(float\)\); found tensor\(int16\)"):
        _load(path)


def test_sources_count_must_match_the_stem_axis(tmp_path: Path) -> None:
    path = gain_model(tmp_path / "three.onnx", np.ones((3, 2, 2)), segment=64)
    with pytest.raises(ConfigError) as info:
        _load(path, sources=SOURCES4)
    assert "names 4 stem(s)" in str(info.value)
    assert "has 3 on its stem axis" in str(info.value)


class _Session:
    """A session whose real output disagrees with its declared shape (onnxruntime cannot always infer it)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.zeros(self.shape, dtype=np.float32)]


@pytest.mark.parametrize(
    ("shape", "fragment"),
    [
        ((1, 3, 2, 64), "sources names 2 stem.* the model returned 3"),
        ((1, 2, 2, 32), r"returned 'stems' of shape \(1, 2, 2, 32\)"),
    ],
)
def test_output_shapes_are_checked_on_every_run(tmp_path: Path, shape: tuple[int, ...], fragment: str) -> None:
    path = gain_model(tmp_path / "g2.onnx", np.ones((2, 2, 2)), segment=64)
    separator = _load(path, sources="vocals,drums")
    parts = separator._parts(("vocals", "drums"))
    run = separator._runner(parts, [(_Session(shape), None)], 64)
    with pytest.raises(ConfigError, match=fragment):
        run(np.zeros((1, 2, 64), dtype=np.float32))


def test_a_model_with_a_dynamic_length_runs_in_demucs_segments(tmp_path: Path, wav, noise) -> None:
    gains = np.stack([np.eye(2, dtype=np.float32) * 0.5, np.eye(2, dtype=np.float32) * 0.5])
    path = gain_model(tmp_path / "dynlen.onnx", gains, segment="n")
    separator = _load(path, sources="vocals,instrumental")
    assert separator.capabilities.extra["segment_seconds"] == pytest.approx(7.8)
    audio = noise(2, 3000)
    stems = separator.separate(wav(audio))
    np.testing.assert_allclose(stems["instrumental"].audio[:, 1:], audio[:, 1:] * 0.5, atol=1e-7)


def test_a_file_that_is_not_onnx_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.onnx"
    path.write_text("not a model")
    with pytest.raises(ConfigError, match=r"notes\.onnx is not a loadable ONNX model"):
        _load(path)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model file .*nowhere\.onnx does not exist"):
        _load(tmp_path / "nowhere.onnx")


def test_a_custom_model_needs_its_sources(tmp_path: Path) -> None:
    path = gain_model(tmp_path / "g.onnx", np.ones((4, 2, 2)), segment=64)
    with pytest.raises(ConfigError, match=r"\?sources=drums,bass,other,vocals"):
        _load(path, sources=None)


@pytest.mark.parametrize(
    ("sources", "fragment"),
    [("vocals,kazoo", "'kazoo' is not a stem name"), ("vocals,voice", "'vocals' is listed twice")],
)
def test_sources_must_be_distinct_known_stems(tmp_path: Path, sources: str, fragment: str) -> None:
    path = gain_model(tmp_path / "g2.onnx", np.ones((2, 2, 2)), segment=64)
    with pytest.raises(ConfigError, match=fragment):
        _load(path, sources=sources)


def test_provider_aliases_in_sources_map_to_canonical_stems(tmp_path: Path, wav, noise) -> None:
    path = gain_model(tmp_path / "g2.onnx", np.ones((2, 2, 2)), segment=64)
    separator = _load(path, sources="vocals,accompaniment")
    assert separator.capabilities.combinations == (("vocals", "instrumental"),)
    stems = separator.separate(wav(noise(2, 300)))
    assert stems["instrumental"].provider_name == "accompaniment"


def test_precision_is_refused_for_a_custom_file(tmp_path: Path) -> None:
    path = gain_model(tmp_path / "g.onnx", np.ones((4, 2, 2)), segment=64)
    with pytest.raises(ConfigError, match="precision= picks a registry download"):
        _load(path, precision="fp16weights")


def test_sources_is_refused_for_a_registry_model() -> None:
    with pytest.raises(ConfigError, match=r"sources= is for a custom \.onnx file; htdemucs produces"):
        stemkit.load("onnx:htdemucs?sources=vocals")


def test_an_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown model 'htdemucs_9s'; known models: htdemucs_ft, "):
        stemkit.load("onnx:htdemucs_9s")


@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        ("device=tpu", "device"),
        ("threads=0", "threads"),
        ("precision=int8", "precision"),
        ("color=red", "unknown option"),
    ],
)
def test_bad_options_are_config_errors(option: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        stemkit.load(f"onnx:htdemucs?{option}")
