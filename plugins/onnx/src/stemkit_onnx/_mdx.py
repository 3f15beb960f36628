"""MDX-Net: the STFT → model → iSTFT around a spectrogram model, and where its chunks go.

An MDX-Net model (UVR's vocal/instrumental models, kuielab's MDX challenge models) takes a
complex spectrogram and returns the target's: input and output ``(B, 4, dim_f, dim_t)``, channels
left real, left imaginary, right real, right imaginary. Around it, as Ultimate Vocal Remover and
python-audio-separator run it (and with the same numbers):

* a chunk is ``hop * (dim_t - 1)`` samples of 44.1 kHz stereo, so that a centred STFT (reflect
  padding, periodic Hann window of ``n_fft``, hop 1024) gives exactly ``dim_t`` frames;
* only the ``dim_f`` lowest bins go in, with the three lowest zeroed; the bins above ``dim_f`` of
  the output are zero before the inverse STFT (same window, same hop, the usual squared-window
  normalization);
* the target is the result times ``compensate`` (each model's measured level correction), and the
  other stem is the mixture minus the target — stemkit derives that one itself, exactly;
* chunks overlap-add with a Hann window (numpy's ``hanning``, zero at both ends; none with
  ``overlap=0``) and a step of ``chunk - n_fft`` samples (UVR's default; ``overlap=`` sets another:
  a step of ``int((1 - overlap) * chunk)``), with ``n_fft // 2`` zeros
  before the input so that its first samples sit inside the first chunk's window, not at its edge.

The one place stemkit differs from UVR: UVR gives a final chunk that the padded input cuts short a
shorter Hann window; stemkit zero-pads it to a full chunk and keeps the full window, as for every
other chunk (it changes the weighting of the last few seconds' overlap, nothing else).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from stemkit.errors import ConfigError
from stemkit_onnx._engine import Float32Array, SegmentPlan

__all__ = ["HOP", "MdxParams", "MdxTransform", "mdx_runner"]

#: UVR's and audio-separator's STFT hop for every MDX-Net model.
HOP = 1024
#: Bins zeroed at the bottom of the input spectrogram, as UVR does.
_LOW_BINS = 3


@dataclass(frozen=True)
class MdxParams:
    """One MDX-Net model's numbers. ``dim_t`` is in frames (UVR's model_data stores ``log2``: 8 means 256)."""

    n_fft: int
    dim_f: int
    dim_t: int
    compensate: float = 1.0
    hop: int = HOP

    def check(self, label: str) -> None:
        bins = self.n_fft // 2 + 1
        if self.n_fft < 16 or self.n_fft % 2:
            raise ConfigError(f"{label}: n_fft={self.n_fft} must be an even number of samples, at least 16")
        if not 1 <= self.dim_f <= bins:
            raise ConfigError(f"{label}: dim_f={self.dim_f} must be between 1 and n_fft/2+1 = {bins}")
        if self.hop < 1 or self.hop > self.n_fft:
            raise ConfigError(f"{label}: hop={self.hop} must be between 1 and n_fft={self.n_fft}")
        if self.dim_t < 2 or self.chunk <= self.n_fft:
            raise ConfigError(
                f"{label}: dim_t={self.dim_t} frames of hop {self.hop} make a chunk of {self.chunk} samples, "
                f"which must be longer than n_fft={self.n_fft}"
            )
        if not 0.0 < self.compensate < 10.0:
            raise ConfigError(
                f"{label}: compensate={self.compensate} must be a gain between 0 and 10 (UVR's are about 1.0-1.1)"
            )

    @property
    def chunk(self) -> int:
        """Samples per model run: the STFT of this many samples has exactly ``dim_t`` frames."""
        return self.hop * (self.dim_t - 1)

    @property
    def trim(self) -> int:
        """Zeros before the input (and output samples dropped): half an FFT, as UVR pads."""
        return self.n_fft // 2

    def plan(self, overlap: float | None) -> SegmentPlan:
        """UVR's default step (``chunk - n_fft``), or its ``overlap`` fraction (step ``int((1 - overlap) * chunk)``)."""
        if overlap is None:
            return SegmentPlan(self.chunk, self.chunk - self.n_fft)
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must be at least 0 and below 1, got {overlap}")
        return SegmentPlan(self.chunk, max(1, int((1.0 - overlap) * self.chunk)))

    def window(self, overlap: float | None = None) -> Float32Array:
        """The chunks' overlap-add window: numpy's (symmetric) Hann, as UVR; flat when chunks do not overlap."""
        if overlap == 0.0:
            return np.ones(self.chunk, dtype=np.float32)
        return np.hanning(self.chunk).astype(np.float32)


class MdxTransform:
    """The STFT and inverse STFT of one chunk, with the model's numbers (torch.stft/istft, centred, Hann)."""

    def __init__(self, params: MdxParams) -> None:
        self.p = params
        self._window = np.hanning(params.n_fft + 1)[:-1].astype(np.float32)  # periodic Hann

    @cached_property
    def _envelope(self) -> Float32Array:
        """Sum of squared windows over the frames of a chunk, the inverse STFT's normalization (centre part)."""
        p = self.p
        full = np.zeros(p.n_fft + p.hop * (p.dim_t - 1), dtype=np.float32)
        square = self._window * self._window
        for t in range(p.dim_t):
            full[t * p.hop : t * p.hop + p.n_fft] += square
        return full[p.n_fft // 2 : p.n_fft // 2 + p.chunk]

    def forward(self, chunk: Float32Array) -> Float32Array:
        """``(2, chunk)`` samples → the model's input ``(1, 4, dim_f, dim_t)`` (lowest bins zeroed)."""
        p = self.p
        padded = np.pad(chunk, ((0, 0), (p.n_fft // 2, p.n_fft // 2)), mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(padded, p.n_fft, axis=1)[:, :: p.hop]  # (2, T, n_fft)
        spectrum = np.fft.rfft(frames * self._window, axis=2)[:, :, : p.dim_f]  # (2, T, dim_f)
        out = np.empty((1, 4, p.dim_f, p.dim_t), dtype=np.float32)
        out[0, 0::2] = spectrum.real.transpose(0, 2, 1)
        out[0, 1::2] = spectrum.imag.transpose(0, 2, 1)
        out[0, :, :_LOW_BINS] = 0.0
        return out

    def inverse(self, spec: Float32Array) -> Float32Array:
        """The model's output ``(1, 4, dim_f, dim_t)`` → ``(2, chunk)`` samples (bins above ``dim_f`` are zero)."""
        p = self.p
        bins = p.n_fft // 2 + 1
        spectrum = np.zeros((2, p.dim_t, bins), dtype=np.complex64)
        spectrum[:, :, : p.dim_f] = (spec[0, 0::2] + 1j * spec[0, 1::2]).transpose(0, 2, 1)
        frames = np.fft.irfft(spectrum, n=p.n_fft, axis=2).astype(np.float32) * self._window  # (2, T, n_fft)
        full = np.zeros((2, p.n_fft + p.hop * (p.dim_t - 1)), dtype=np.float32)
        for t in range(p.dim_t):
            full[:, t * p.hop : t * p.hop + p.n_fft] += frames[:, t]
        out: Float32Array = full[:, p.n_fft // 2 : p.n_fft // 2 + p.chunk] / self._envelope
        return out


def mdx_runner(
    session: Any, signature_input: str, signature_output: str, params: MdxParams, *, denoise: bool = False
) -> Callable[[Float32Array], list[Float32Array]]:
    """A segment runner for the engine: ``(1, 2, chunk)`` waveform → ``[(2, chunk)]``, the compensated target.

    ``denoise`` runs the model on the spectrogram and on its negation and keeps the mean of the two
    answers (UVR's "denoise"): what is odd in the model's response — its noise — cancels; twice the work.
    """
    transform = MdxTransform(params)
    gain = np.float32(params.compensate)

    def run(x: Float32Array) -> list[Float32Array]:
        spec = transform.forward(x[0])
        out = session.run([signature_output], {signature_input: spec})[0]
        if out.shape != spec.shape:
            raise ConfigError(
                f"the model returned {signature_output!r} of shape {tuple(out.shape)} for an input of "
                f"{tuple(spec.shape)}; an MDX-Net model returns a spectrogram of its input's shape"
            )
        if denoise:
            negated = session.run([signature_output], {signature_input: -spec})[0]
            out = (np.asarray(out, dtype=np.float32) - np.asarray(negated, dtype=np.float32)) * np.float32(0.5)
        wave = transform.inverse(np.asarray(out, dtype=np.float32))
        wave *= gain
        return [wave]

    return run
