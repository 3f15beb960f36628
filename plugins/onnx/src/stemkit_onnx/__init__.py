"""stemkit's local provider: HT-Demucs (demucs-onnx's registry) and UVR's MDX-Net models on onnxruntime.

``stemkit.separate("song.wav", provider="onnx:htdemucs_ft", stems=["vocals"])``; the entry point
``onnx`` names :class:`OnnxSeparator`, ``stemkit models list|pull`` comes from :mod:`.cli` and
``stemkit doctor``'s findings from :mod:`.diagnostics`. The names below load on first use, so that
building the ``stemkit`` command (which imports :mod:`.cli`) does not import onnxruntime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stemkit_onnx._sessions import clear_sessions
    from stemkit_onnx.separator import OnnxOptions, OnnxSeparator

__all__ = ["OnnxOptions", "OnnxSeparator", "clear_sessions"]


def __getattr__(name: str) -> Any:
    if name in ("OnnxOptions", "OnnxSeparator"):
        from stemkit_onnx import separator

        return getattr(separator, name)
    if name == "clear_sessions":
        from stemkit_onnx._sessions import clear_sessions

        return clear_sessions
    raise AttributeError(f"module 'stemkit_onnx' has no attribute {name!r}")
