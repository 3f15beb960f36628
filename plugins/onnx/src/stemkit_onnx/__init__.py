"""stemkit's local provider: HT-Demucs ONNX models (demucs-onnx's registry) on onnxruntime.

``stemkit.separate("song.wav", provider="onnx:htdemucs_ft", stems=["vocals"])``; the entry point
``onnx`` names :class:`OnnxSeparator`, and ``stemkit models list|pull`` comes from :mod:`.cli`.
"""

from stemkit_onnx._sessions import clear_sessions
from stemkit_onnx.separator import OnnxOptions, OnnxSeparator

__all__ = ["OnnxOptions", "OnnxSeparator", "clear_sessions"]
