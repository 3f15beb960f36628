"""Generate small ONNX models with the real signatures, for tests and benchmarks.

Real weights are hundreds of megabytes and need the network; these models are a few kilobytes,
run in milliseconds and have an output that can be computed independently with numpy, so the
chunked overlap-add around them can be checked to tight tolerances. They use the same signatures
as the real models: HT-Demucs' input ``mix`` float32 ``(1, 2, N)``, output ``stems`` float32
``(1, S, 2, N)``; MDX-Net's input ``input`` and output ``output`` float32 ``(batch, 4, dim_f, dim_t)``
(:func:`mdx_model`).

Needs the ``onnx`` package (``pip install 'stemkit-onnx[testing]'``); it is imported lazily so the
plugin itself does not depend on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

#: IR version and opset that every onnxruntime >= 1.17 can load.
_IR_VERSION = 9
_OPSET = 17

Dim = int | str | None


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "stemkit_onnx.testing needs the 'onnx' package to build models: pip install 'stemkit-onnx[testing]'"
        ) from exc
    return onnx


def _save(graph: Any, path: str | Path) -> Path:
    onnx = _onnx()
    model = onnx.helper.make_model(
        graph,
        opset_imports=[onnx.helper.make_opsetid("", _OPSET)],
        producer_name="stemkit_onnx.testing",
    )
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


def _value_info(name: str, shape: Sequence[Dim], elem_type: int | None = None) -> Any:
    onnx = _onnx()
    return onnx.helper.make_tensor_value_info(
        name, elem_type if elem_type is not None else onnx.TensorProto.FLOAT, list(shape)
    )


def _const(name: str, array: npt.NDArray[Any]) -> Any:
    onnx = _onnx()
    return onnx.helper.make_node(
        "Constant", [], [name], value=onnx.numpy_helper.from_array(np.ascontiguousarray(array), name)
    )


def gain_model(
    path: str | Path,
    matrix: npt.ArrayLike,
    *,
    segment: Dim = 4096,
    input_name: str = "mix",
    output_name: str = "stems",
) -> Path:
    """A per-sample linear map: ``stems[s, o, t] = sum_c matrix[s, o, c] * mix[c, t]``.

    ``matrix`` has shape ``(S, 2, 2)``. The output of a chunked run over such a model equals
    ``einsum('soc,ct->sot', matrix, mix)`` wherever the overlap-add weights are non-zero, so it
    checks the window, the padding of the last segment and the stem order exactly.
    """
    onnx = _onnx()
    m = np.asarray(matrix, dtype=np.float32)
    if m.ndim != 3 or m.shape[1:] != (2, 2):
        raise ValueError(f"matrix must have shape (S, 2, 2), got {m.shape}")
    n_stems = m.shape[0]
    nodes = [
        _const("w", m.reshape(n_stems * 2, 2)),
        _const("shape", np.array([1, n_stems, 2, -1], dtype=np.int64)),
        onnx.helper.make_node("MatMul", ["w", input_name], ["flat"]),  # (1, S*2, N)
        onnx.helper.make_node("Reshape", ["flat", "shape"], [output_name]),
    ]
    graph = onnx.helper.make_graph(
        nodes,
        "stemkit_gain",
        [_value_info(input_name, [1, 2, segment])],
        [_value_info(output_name, [1, n_stems, 2, segment])],
    )
    return _save(graph, path)


def fir_model(path: str | Path, taps: npt.ArrayLike, *, segment: Dim = 4096) -> Path:
    """A causal FIR filter bank: ``stems[s, c] = lfilter(taps[s], 1, mix[c])`` within one segment.

    ``taps`` has shape ``(S, K)``. Each segment starts from a zero filter state, so unlike
    :func:`gain_model` the output depends on where the segments begin: it checks that segment
    boundaries fall exactly where demucs-onnx puts them.
    """
    onnx = _onnx()
    h = np.asarray(taps, dtype=np.float32)
    if h.ndim != 2:
        raise ValueError(f"taps must have shape (S, K), got {h.shape}")
    n_stems, k = h.shape
    # Conv computes a correlation: flip the taps to get a convolution. Two groups (one per
    # channel), each producing S outputs: weight (2*S, 1, K), output (1, 2*S, N) ordered (c, s).
    weight = np.tile(h[:, ::-1], (2, 1)).reshape(2 * n_stems, 1, k)
    nodes = [
        _const("w", weight),
        _const("shape", np.array([1, 2, n_stems, -1], dtype=np.int64)),
        onnx.helper.make_node("Conv", ["mix", "w"], ["conv"], group=2, pads=[k - 1, 0], kernel_shape=[k]),
        onnx.helper.make_node("Reshape", ["conv", "shape"], ["by_channel"]),
        onnx.helper.make_node("Transpose", ["by_channel"], ["stems"], perm=[0, 2, 1, 3]),
    ]
    graph = onnx.helper.make_graph(
        nodes,
        "stemkit_fir",
        [_value_info("mix", [1, 2, segment])],
        [_value_info("stems", [1, n_stems, 2, segment])],
    )
    return _save(graph, path)


def fir_reference(taps: npt.ArrayLike, segment_input: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """What :func:`fir_model` computes for one ``(2, N)`` segment, with numpy only: ``(S, 2, N)``."""
    h = np.asarray(taps, dtype=np.float64)
    x = np.asarray(segment_input, dtype=np.float64)
    n = x.shape[-1]
    out = np.stack([[np.convolve(x[c], h[s])[:n] for c in range(x.shape[0])] for s in range(h.shape[0])])
    return out.astype(np.float32)


def bench_model(
    path: str | Path,
    *,
    n_stems: int = 4,
    width: int = 24,
    kernel: int = 33,
    segment: int = 343980,
    seed: int = 0,
) -> Path:
    """A model with realistic work per segment: conv(2->width, kernel) -> tanh -> conv(width->2*S, 1).

    The default size takes on the order of 100 ms per 7.8 s segment on one CPU core, the same
    order as the smallest real separation networks (HT-Demucs takes seconds).
    """
    onnx = _onnx()
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((width, 2, kernel)) / np.sqrt(2 * kernel)).astype(np.float32)
    w2 = (rng.standard_normal((2 * n_stems, width, 1)) / np.sqrt(width)).astype(np.float32)
    nodes = [
        _const("w1", w1),
        _const("w2", w2),
        _const("shape", np.array([1, n_stems, 2, -1], dtype=np.int64)),
        onnx.helper.make_node("Conv", ["mix", "w1"], ["h"], pads=[kernel // 2, kernel // 2], kernel_shape=[kernel]),
        onnx.helper.make_node("Tanh", ["h"], ["a"]),
        onnx.helper.make_node("Conv", ["a", "w2"], ["flat"], kernel_shape=[1]),
        onnx.helper.make_node("Reshape", ["flat", "shape"], ["stems"]),
    ]
    graph = onnx.helper.make_graph(
        nodes,
        "stemkit_bench",
        [_value_info("mix", [1, 2, segment])],
        [_value_info("stems", [1, n_stems, 2, segment])],
    )
    return _save(graph, path)


def raw_model(
    path: str | Path,
    *,
    inputs: Sequence[tuple[str, Sequence[Dim]]],
    outputs: Sequence[tuple[str, Sequence[Dim]]],
    input_type: int | None = None,
) -> Path:
    """A model with arbitrary input/output names and shapes, to test signature validation.

    Each output is a constant of its declared shape (symbolic dimensions become 1), so
    onnxruntime reports exactly the declared shapes; the model is not meant to be run.
    """
    onnx = _onnx()
    nodes = []
    for i, (name, shape) in enumerate(outputs):
        dims = np.array([d if isinstance(d, int) else 1 for d in shape], dtype=np.int64)
        nodes.append(_const(f"shape{i}", dims))
        nodes.append(onnx.helper.make_node("ConstantOfShape", [f"shape{i}"], [name]))
    graph = onnx.helper.make_graph(
        nodes,
        "stemkit_raw",
        [_value_info(n, s, input_type) for n, s in inputs],
        [_value_info(n, s) for n, s in outputs],
    )
    return _save(graph, path)


def mdx_model(
    path: str | Path,
    gains: npt.ArrayLike,
    *,
    dim_t: Dim = 256,
    squash: float | None = None,
    batch: Dim = "batch_size",
) -> Path:
    """An MDX-Net-shaped model: a real gain per frequency bin, ``output = gains[f] * input``.

    ``gains`` has ``dim_f`` entries. With ``squash`` the output is ``squash * tanh(gains[f] * input /
    squash)`` instead: odd and saturating, so it is not linear (UVR's ``denoise`` then changes it).
    Input ``input`` and output ``output`` float32 ``(batch, 4, dim_f, dim_t)`` as UVR's exports declare
    them; :func:`mdx_reference` computes the same with numpy.
    """
    onnx = _onnx()
    g = np.asarray(gains, dtype=np.float32).reshape(1, 1, -1, 1)
    dim_f = int(g.shape[2])
    nodes = [_const("gains", g)]
    if squash is None:
        nodes.append(onnx.helper.make_node("Mul", ["input", "gains"], ["output"]))
    else:
        nodes += [
            _const("inv", np.array(1.0 / squash, dtype=np.float32)),
            _const("scale", np.array(squash, dtype=np.float32)),
            onnx.helper.make_node("Mul", ["input", "gains"], ["scaled"]),
            onnx.helper.make_node("Mul", ["scaled", "inv"], ["narrow"]),
            onnx.helper.make_node("Tanh", ["narrow"], ["bent"]),
            onnx.helper.make_node("Mul", ["bent", "scale"], ["output"]),
        ]
    graph = onnx.helper.make_graph(
        nodes,
        "stemkit_mdx",
        [_value_info("input", [batch, 4, dim_f, dim_t])],
        [_value_info("output", [batch, 4, dim_f, dim_t])],
    )
    return _save(graph, path)


def mdx_reference(
    gains: npt.ArrayLike, spectrogram: npt.NDArray[np.float32], *, squash: float | None = None
) -> npt.NDArray[np.float32]:
    """What :func:`mdx_model` computes for one ``(B, 4, dim_f, dim_t)`` input, with numpy only."""
    g = np.asarray(gains, dtype=np.float64).reshape(1, 1, -1, 1)
    x = np.asarray(spectrogram, dtype=np.float64) * g
    out = x if squash is None else squash * np.tanh(x / squash)
    return out.astype(np.float32)


__all__ = ["bench_model", "fir_model", "fir_reference", "gain_model", "mdx_model", "mdx_reference", "raw_model"]
