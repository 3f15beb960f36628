"""The onnx provider passes stemkit's provider conformance suite, on a generated model with the real
signature (weights cannot be downloaded here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import stemkit
from stemkit.protocol import Separator
from stemkit.testing import ProviderConformance
from stemkit_onnx.testing import gain_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Four stems that split the mix by fixed gains (summing to one), in HT-Demucs' stem order.
    gains = np.array([0.4, 0.3, 0.2, 0.1], dtype=np.float32)
    matrix = gains[:, None, None] * np.eye(2, dtype=np.float32)[None]
    return gain_model(tmp_path_factory.mktemp("model") / "split.onnx", matrix, segment=8192)


class TestOnnxConformance(ProviderConformance):
    @pytest.fixture
    def separator(self, model: Path) -> Iterator[Separator]:
        with stemkit.load(f"onnx:{model}?sources=drums,bass,other,vocals&device=cpu") as separator:
            yield separator


@pytest.fixture(scope="module")
def mdx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stemkit_onnx.testing import mdx_model

    gains = np.linspace(0.2, 0.9, 700, dtype=np.float32)
    return mdx_model(tmp_path_factory.mktemp("model") / "mdx.onnx", gains, dim_t=16)


class TestOnnxMdxConformance(ProviderConformance):
    """An MDX-Net model: one stem estimated, the other derived by the core."""

    @pytest.fixture
    def separator(self, mdx: Path) -> Iterator[Separator]:
        spec = f"onnx:{mdx}?n_fft=2048&compensate=1.02&primary=instrumental&device=cpu"
        with stemkit.load(spec) as separator:
            yield separator
