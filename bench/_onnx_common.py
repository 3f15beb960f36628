"""Shared set-up for the onnx benchmarks: a generated model served as ``htdemucs`` to both stemkit and demucs-onnx.

Model weights cannot be downloaded here, so the benchmark model is generated (``stemkit_onnx.testing.
bench_model``: conv 2->48 (kernel 129), tanh, conv 48->8, on the real 343,980-sample segment), about
0.1 s per segment on one core of the reference machine — the same order as a small real network (HT-Demucs
itself takes seconds per segment on a CPU). Both sides load it through their own registry code with
``huggingface_hub.hf_hub_download`` patched to return it, so they run the same file with the same
onnxruntime session options.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

RATE = 44_100
MODEL_KW: dict[str, Any] = {"width": 48, "kernel": 129}


def work_dir() -> Path:
    root = Path(tempfile.gettempdir()) / "stemkit-bench-onnx"
    root.mkdir(exist_ok=True)
    return root


def bench_model_path() -> Path:
    from stemkit_onnx.testing import bench_model

    path = work_dir() / f"bench_w{MODEL_KW['width']}_k{MODEL_KW['kernel']}.onnx"
    if not path.exists():
        bench_model(path, **MODEL_KW)
    return path


def song(seconds: float, *, subtype: str = "PCM_16") -> Path:
    """A stereo 44.1 kHz WAV of band-limited noise with a beat, written in blocks (no big array)."""
    path = work_dir() / f"song_{int(seconds)}s_{subtype}.wav"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    frames = int(seconds * RATE)
    block = RATE * 10
    with sf.SoundFile(path, "w", samplerate=RATE, channels=2, subtype=subtype) as fh:
        for start in range(0, frames, block):
            n = min(block, frames - start)
            t = (start + np.arange(n)) / RATE
            beat = np.sin(2 * np.pi * 55.0 * t) * (np.mod(t, 0.5) < 0.1)
            hiss = rng.standard_normal((n, 2)) * 0.05
            fh.write((0.3 * beat[:, None] + hiss).astype(np.float32))
    return path


def serve_model(model: Path) -> None:
    """Patch the hub download (where demucs-onnx calls it) to return ``model`` for htdemucs."""
    import huggingface_hub

    def download(repo_id: str, filename: str, **_: Any) -> str:
        if (repo_id, filename) != ("StemSplitio/htdemucs-onnx", "htdemucs.onnx"):
            raise RuntimeError(f"benchmark serves only htdemucs, not {repo_id}/{filename}")
        return str(model)

    huggingface_hub.hf_hub_download = download  # type: ignore[assignment]


def stemkit_spec() -> str:
    return f"onnx:htdemucs?device=cpu&cache_dir={work_dir() / 'hf-cache'}"


def demucs_kwargs() -> dict[str, Any]:
    return {"model": "htdemucs", "providers": "cpu", "progress": False, "cache_dir": work_dir() / "hf-cache"}
