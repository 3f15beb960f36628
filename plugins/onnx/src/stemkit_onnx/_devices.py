"""Which onnxruntime execution provider runs a model: ``device=`` parsed, checked, and explained.

The complaint this answers (a top one in the field): asking for the GPU and silently getting the CPU.
So a GPU that this onnxruntime build cannot offer is never refused with a riddle nor dropped quietly:
by default the CPU runs and a warning says why and what to install (``require_device=true`` makes it
an error instead); after the session is built, the execution provider it actually got is what the
StemSet's provenance records, and a GPU provider that was offered but failed to start is reported the
same way. ``stemkit doctor`` shows all of it before anything runs.
"""

from __future__ import annotations

import platform
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import onnxruntime as ort

from stemkit.errors import ConfigError, ProviderUnavailableError

__all__ = [
    "CPU",
    "DEVICES",
    "GPU_RECIPE",
    "DeviceChoice",
    "available_providers",
    "conflicting_builds",
    "onnxruntime_build",
    "parse_device",
    "select_device",
    "session_fallback",
]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
COREML = "CoreMLExecutionProvider"
DML = "DmlExecutionProvider"

#: What ``device=`` accepts (``cuda`` and ``directml`` also take ``:N``, the GPU's index).
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "coreml", "directml", "directml:N", "dml")

_EP_FOR = {"cpu": CPU, "cuda": CUDA, "coreml": COREML, "directml": DML}
#: Both builds install the module ``onnxruntime``, and stemkit-onnx (through demucs-onnx) requires the CPU one,
#: so the GPU build is two steps: the extra, then the GPU build alone in place of both (docs: "Devices").
GPU_RECIPE = (
    'pip install "stemkit[gpu]", then pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu'
)
_GPU_HINT = {
    "cuda": f"install the GPU build: {GPU_RECIPE} (it needs an NVIDIA driver with CUDA 12 and cuDNN 9)",
    "directml": "install onnxruntime-directml in place of onnxruntime (Windows)",
    "coreml": "use onnxruntime >= 1.17 on macOS, whose wheels include CoreML",
}
#: The other builds of onnxruntime; each installs the module ``onnxruntime`` too.
_BUILDS = ("onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-silicon", "onnxruntime-openvino")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|coreml|directml|dml)(?::(\d+))?$")


def available_providers() -> list[str]:
    """The execution providers this onnxruntime build offers, best first."""
    return list(ort.get_available_providers())


def onnxruntime_build() -> str:
    """Which onnxruntime distribution is installed (``onnxruntime``, ``onnxruntime-gpu``, ...) and its version."""
    found = []
    for dist in (*_BUILDS, "onnxruntime"):
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found) if found else f"onnxruntime {ort.__version__}"


def conflicting_builds() -> list[str]:
    """The onnxruntime distributions installed side by side (e.g. ``onnxruntime`` and ``onnxruntime-gpu``).

    They install the same module, so whichever was installed last has overwritten the other's files: after
    ``pip install "stemkit[gpu]"`` alone that is often the CPU build, and CUDA is missing.
    """
    found = []
    for dist in ("onnxruntime", *_BUILDS):
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return found if len(found) > 1 else []


def parse_device(value: str) -> tuple[str, int | None]:
    """``"cuda:1"`` → ``("cuda", 1)``; ``dml`` is DirectML's short name. A ConfigError lists what is accepted."""
    match = _DEVICE_RE.match(value.strip().lower())
    if match is None:
        raise ConfigError(f"device: {value!r} is not a device; use one of {', '.join(DEVICES)}")
    kind, index = match.group(1), match.group(2)
    kind = "directml" if kind == "dml" else kind
    if index is not None and kind not in ("cuda", "directml"):
        raise ConfigError(f"device: {value!r}: only cuda and directml take a device index (cuda:1)")
    return kind, None if index is None else int(index)


@dataclass(frozen=True)
class DeviceChoice:
    """What ``device=`` resolved to on this machine.

    ``providers`` is what the session is built with (names, or ``(name, options)`` for a GPU index);
    ``fallback`` says why a GPU that was asked for is not among them (the CPU runs), else None;
    ``required``: ``require_device`` was set, so that is an error when the model runs.
    """

    requested: str
    providers: tuple[Any, ...]
    fallback: str | None = None
    available: tuple[str, ...] = field(default=())
    required: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p[0] if isinstance(p, tuple) else p for p in self.providers)

    def check(self) -> None:
        """Raise when a required device is not there (at run time, so that a fallback chain moves on)."""
        if self.required and self.fallback is not None:
            raise ProviderUnavailableError(
                f"{self.fallback}; or use device=cpu", provider="onnx", code="DEVICE_UNAVAILABLE", retryable=False
            )


def _auto(available: Sequence[str]) -> list[str]:
    """demucs-onnx's choice: CoreML on Apple silicon, CUDA on Linux, DirectML then CUDA on Windows, else CPU."""
    from demucs_onnx import providers as dproviders

    wanted = list(dproviders.auto_select_providers())
    return [p for p in wanted if p in available] or [CPU]


def select_device(device: str, *, require: bool = False, label: str = "onnx") -> DeviceChoice:
    """Resolve ``device`` against what this onnxruntime offers.

    A GPU it lacks: a RuntimeWarning and the CPU; with ``require`` no warning, and
    :meth:`DeviceChoice.check` raises ProviderUnavailableError when the model runs (a chain moves on).
    """
    kind, index = parse_device(device)
    available = tuple(available_providers())
    requested = kind if index is None else f"{kind}:{index}"
    if kind == "auto":
        return DeviceChoice(requested, tuple(_auto(available)), available=available)
    if kind == "cpu":
        return DeviceChoice(requested, (CPU,), available=available)
    provider = _EP_FOR[kind]
    if provider in available:
        first: Any = provider if index is None else (provider, {"device_id": index})
        return DeviceChoice(requested, (first, CPU), available=available)
    reason = (
        f"device={requested} needs {provider}, which this onnxruntime build ({onnxruntime_build()}) does not offer "
        f"(it has {', '.join(available)}); {_GPU_HINT[kind]}"
    )
    if not require:
        warnings.warn(
            f"{label}: {reason}. Running on the CPU ({CPU}) instead; `stemkit doctor` shows what is available, "
            "and require_device=true makes this an error.",
            RuntimeWarning,
            stacklevel=3,
        )
    return DeviceChoice(requested, (CPU,), fallback=reason, available=available, required=require)


def session_fallback(choice: DeviceChoice, session_providers: Sequence[str]) -> str | None:
    """Why a session runs without the provider ``choice`` asked for (onnxruntime falls back silently), or None.

    onnxruntime-gpu builds a session even when CUDA or cuDNN fail to load: it logs an error and leaves
    the provider out. Compare what was asked with what the session has.
    """
    wanted = choice.names[0]
    if wanted == CPU or wanted in session_providers:
        return None
    system = platform.system()
    cause = "usually CUDA 12 or cuDNN 9 libraries that could not be loaded" if wanted == CUDA else (
        f"the provider could not start on {system}"
    )
    return (
        f"device={choice.requested}: onnxruntime offers {wanted} but could not start it ({cause}; onnxruntime "
        f"logged the details), so the session runs on {session_providers[0] if session_providers else CPU}"
    )
