"""onnxruntime sessions: a process-wide cache, and the check of a model's signature (HT-Demucs or MDX-Net).

Creating a session is the expensive part of a local run (graph optimization; a CoreML compile can
take minutes), and ``stemkit.separate(..., provider="onnx:...")`` loads and closes a separator on
every call, so sessions are cached per process, keyed by the file (path, size, mtime), the
execution providers and the thread count.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort
from demucs_onnx.inference import N_SAMPLES

from stemkit.errors import ConfigError

__all__ = [
    "DEFAULT_SEGMENT",
    "MdxSignature",
    "Signature",
    "clear_sessions",
    "inspect_signature",
    "load_session",
]

#: The segment length demucs-onnx's exports are fixed to (7.8 s at 44.1 kHz); used for dynamic-length models.
DEFAULT_SEGMENT: int = int(N_SAMPLES)
INPUT_NAME = "mix"
OUTPUT_NAME = "stems"
_MAX_SESSIONS = 8


@dataclass(frozen=True)
class Signature:
    """An HT-Demucs-shaped model (waveform in, waveforms out): the segment length and, if fixed, the stem count."""

    segment: int
    n_sources: int | None


@dataclass(frozen=True)
class MdxSignature:
    """An MDX-Net-shaped model (spectrogram in, spectrogram out): its tensor names and, if fixed, its dims.

    ``(batch, 4, dim_f, dim_t)``: the four channels are left real, left imaginary, right real, right
    imaginary; ``dim_f`` frequency bins of an ``n_fft`` STFT (the rest are zero), ``dim_t`` frames.
    """

    input_name: str
    output_name: str
    dim_f: int | None
    dim_t: int | None


def _dims(shape: Sequence[Any]) -> list[int | None]:
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


def _show(shape: Sequence[Any]) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) else (str(d) if d else "?") for d in shape) + ")"


_DEMUCS = "input 'mix' float32 (1, 2, N) and output 'stems' float32 (1, S, 2, N) (HT-Demucs)"
_MDX = "one input and one output float32 (B, 4, dim_f, dim_t) (MDX-Net)"


def inspect_signature(session: Any, label: str) -> Signature | MdxSignature:
    """Which of the two signatures a model has; each mismatch is a ConfigError saying what was expected and found."""
    inputs = list(session.get_inputs())
    if len(inputs) == 1 and inputs[0].name != INPUT_NAME and len(inputs[0].shape) == 4:
        return _inspect_mdx(session, label)
    return _inspect_demucs(session, label)


def _inspect_mdx(session: Any, label: str) -> MdxSignature:
    expected = f"expected {_MDX}"
    (spec,) = session.get_inputs()
    outputs = list(session.get_outputs())
    if len(outputs) != 1:
        found = ", ".join(f"{o.name!r} {_show(o.shape)}" for o in outputs) or "none"
        raise ConfigError(f"{label}: {expected}; found output(s) {found}")
    (out,) = outputs
    for role, tensor in (("input", spec), ("output", out)):
        if tensor.type != "tensor(float)":
            raise ConfigError(f"{label}: {role} {tensor.name!r} must be float32 (tensor(float)); found {tensor.type}")
        dims = _dims(tensor.shape)
        if len(dims) != 4 or dims[1] not in (None, 4):
            raise ConfigError(
                f"{label}: {role} {tensor.name!r} must be (B, 4, dim_f, dim_t) (left/right real/imaginary); "
                f"found {_show(tensor.shape)}"
            )
    in_dims, out_dims = _dims(spec.shape), _dims(out.shape)
    for axis, name in ((2, "dim_f"), (3, "dim_t")):
        if in_dims[axis] is not None and out_dims[axis] is not None and in_dims[axis] != out_dims[axis]:
            raise ConfigError(
                f"{label}: input {spec.name!r} has {name}={in_dims[axis]} but output {out.name!r} has "
                f"{out_dims[axis]}; an MDX-Net model returns a spectrogram of its input's shape"
            )
    return MdxSignature(spec.name, out.name, in_dims[2] or out_dims[2], in_dims[3] or out_dims[3])


def _inspect_demucs(session: Any, label: str) -> Signature:
    """Check ``mix`` float32 (1, 2, N) -> ``stems`` float32 (1, S, 2, N)."""
    expected = f"expected {_DEMUCS}, or {_MDX}"
    inputs = list(session.get_inputs())
    found_in = ", ".join(f"{i.name!r} {i.type} {_show(i.shape)}" for i in inputs) or "none"
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        raise ConfigError(f"{label}: {expected}; found input(s) {found_in}")
    mix = inputs[0]
    if mix.type != "tensor(float)":
        raise ConfigError(f"{label}: input {INPUT_NAME!r} must be float32 (tensor(float)); found {mix.type}")
    in_dims = _dims(mix.shape)
    if len(in_dims) != 3:
        raise ConfigError(
            f"{label}: input {INPUT_NAME!r} must have rank 3 (1, 2, N); found rank {len(in_dims)} {_show(mix.shape)}"
        )
    if in_dims[0] not in (None, 1) or in_dims[1] not in (None, 2):
        raise ConfigError(
            f"{label}: input {INPUT_NAME!r} must be (1, 2, N) (batch 1, stereo); found {_show(mix.shape)}"
        )
    outputs = {o.name: o for o in session.get_outputs()}
    if OUTPUT_NAME not in outputs:
        found_out = ", ".join(f"{o.name!r} {_show(o.shape)}" for o in outputs.values()) or "none"
        raise ConfigError(f"{label}: {expected}; found output(s) {found_out}")
    stems = outputs[OUTPUT_NAME]
    if stems.type != "tensor(float)":
        raise ConfigError(f"{label}: output {OUTPUT_NAME!r} must be float32 (tensor(float)); found {stems.type}")
    out_dims = _dims(stems.shape)
    if len(out_dims) != 4:
        raise ConfigError(
            f"{label}: output {OUTPUT_NAME!r} must have rank 4 (1, S, 2, N); "
            f"found rank {len(out_dims)} {_show(stems.shape)}"
        )
    if out_dims[0] not in (None, 1) or out_dims[2] not in (None, 2):
        raise ConfigError(f"{label}: output {OUTPUT_NAME!r} must be (1, S, 2, N); found {_show(stems.shape)}")
    n_in, n_out = in_dims[2], out_dims[3]
    if n_in is not None and n_out is not None and n_in != n_out:
        raise ConfigError(
            f"{label}: input {INPUT_NAME!r} has {n_in} samples per segment but output {OUTPUT_NAME!r} has {n_out}; "
            "they must be equal"
        )
    segment = n_in or n_out or DEFAULT_SEGMENT
    if segment < 4:
        raise ConfigError(f"{label}: a segment of {segment} samples is too short; export with at least 4")
    return Signature(segment=segment, n_sources=out_dims[1])


@dataclass(frozen=True)
class _Key:
    path: str
    size: int
    mtime_ns: int
    providers: tuple[str, ...]  # repr of each (name or (name, options))
    threads: int | None


_cache: OrderedDict[_Key, tuple[Any, Signature | MdxSignature]] = OrderedDict()
_lock = threading.Lock()


def load_session(
    path: Path,
    providers: Sequence[Any],
    *,
    threads: int | None,
    label: str,
    broken: type[Exception] = ConfigError,
    fresh: bool = False,
) -> tuple[Any, Signature | MdxSignature]:
    """A (cached) session for ``path`` and its checked signature.

    ``providers`` as onnxruntime takes them: names, or ``(name, options)`` pairs.

    A file onnxruntime cannot load raises ``broken`` (ConfigError for a user's file; the provider
    passes ProviderUnavailableError for a registry model whose cached copy is damaged). ``fresh``
    builds a new session and leaves the cache alone.
    """
    try:
        stat = path.stat()
    except OSError as exc:
        raise ConfigError(f"{label}: model file {path} cannot be read ({exc.strerror}); check the path") from exc
    key = _Key(str(path.resolve()), stat.st_size, stat.st_mtime_ns, tuple(repr(p) for p in providers), threads)
    with _lock:
        hit = None if fresh else _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise broken(f"{label}: {path} is not a loadable ONNX model ({text}); re-export or re-download it") from exc
    entry = (session, inspect_signature(session, label))
    if fresh:
        return entry
    with _lock:
        _cache[key] = entry
        while len(_cache) > _MAX_SESSIONS:
            _cache.popitem(last=False)
    return entry


def clear_sessions() -> None:
    """Drop every cached session (frees onnxruntime's memory)."""
    with _lock:
        _cache.clear()


def cached_session_count() -> int:
    with _lock:
        return len(_cache)
