"""``stemkit doctor``'s findings for the onnx provider (entry point ``stemkit.diagnostics: onnx``).

Which onnxruntime build is installed, which execution providers it offers, which one ``device=auto``
picks; for a spec, which one that spec would use — and a warning when it asked for a GPU and the CPU
will run, which is the mistake this exists to catch before a long separation does. When the model's
weights are already on disk the check goes one step further and builds the session, because a GPU
build can offer CUDA and still fail to start it (missing CUDA or cuDNN libraries).
"""

from __future__ import annotations

import warnings
from typing import Any

from stemkit.config import ProviderSpec
from stemkit.errors import StemkitError
from stemkit_onnx import hub, uvr
from stemkit_onnx._devices import (
    CPU,
    GPU_RECIPE,
    available_providers,
    conflicting_builds,
    onnxruntime_build,
    select_device,
    session_fallback,
)
from stemkit_onnx._offline import offline_reason

__all__ = ["diagnose"]

_NOT_GPUS = {CPU, "AzureExecutionProvider"}


def _f(level: str, topic: str, message: str) -> dict[str, str]:
    return {"level": level, "topic": topic, "message": message}


def diagnose(spec: ProviderSpec | None) -> list[dict[str, str]]:
    """Findings about this machine's onnxruntime and, given a spec, about what that spec would run on."""
    available = available_providers()
    gpus = [p for p in available if p not in _NOT_GPUS]
    out = [
        _f("ok", "onnxruntime", onnxruntime_build()),
        _f("info", "execution providers", ", ".join(available)),
    ]
    clash = conflicting_builds()
    if clash:
        fix = "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"
        out.append(_f("warning", "onnxruntime builds", f"{' and '.join(clash)} are both installed and overwrite "
                      f"each other's files (the module is whichever was installed last); keep one, e.g. {fix}"))
    if not gpus:
        out.append(_f("info", "GPU", f"this onnxruntime build has no GPU provider; for an NVIDIA GPU: {GPU_RECIPE}"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto = select_device("auto").names[0]
    out.append(_f("info", "device=auto", f"would use {auto}"))
    offline = offline_reason()
    out.append(_f("info", "downloads", f"off: {offline}" if offline else "allowed (models not cached are fetched)"))
    if spec is None:
        out.append(_f("info", "caches", f"HT-Demucs {hub.cache_root()}; MDX-Net {uvr.cache_folder()}"))
        return out
    return out + _for_spec(spec, offline)


def _for_spec(spec: ProviderSpec, offline: str | None) -> list[dict[str, str]]:
    from stemkit_onnx.separator import OnnxSeparator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the finding below says it, once
        try:
            sep = OnnxSeparator.from_spec(spec)
        except StemkitError as exc:
            return [_f("error", "spec", str(exc))]
    out = []
    choice = sep.device_choice
    if choice.fallback is not None:
        if choice.required:
            out.append(_f("error", f"device={choice.requested}", f"{choice.fallback}; with require_device=true a "
                          "run fails (a chain moves on)"))
        else:
            out.append(_f("warning", f"device={choice.requested}", f"{choice.fallback}. The CPU ({CPU}) will run"))
    else:
        chain = " then ".join(choice.names)
        out.append(_f("ok", f"device={choice.requested}", f"would use {choice.names[0]} (providers: {chain})"))
    out.append(_f("info", "model", f"{sep.model_label} ({sep.capabilities.extra['architecture']})"))
    files = sep.local_files()
    if files is None:
        level = "warning" if offline else "info"
        what = f"{offline}: a run fails at once (a chain moves on)" if offline else "the first run downloads them"
        out.append(_f(level, "weights", f"not cached; {what} (`stemkit models pull` fetches them ahead of time)"))
        out.append(_f("info", "session", "not checked: the weights are not on disk"))
        return out
    out.append(_f("ok", "weights", ", ".join(str(p) for p in files)))
    out.append(_session_check(sep, files[0], choice))
    return out


def _session_check(sep: Any, path: Any, choice: Any) -> dict[str, str]:
    """Build the session the spec would build (it is cached for the run that follows) and read what it got."""
    from stemkit_onnx._sessions import load_session

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            session, _ = load_session(path, choice.providers, threads=sep.options.threads, label=sep.model_label)
    except StemkitError as exc:
        return _f("error", "session", str(exc))
    got = list(session.get_providers())
    problem = session_fallback(choice, got)
    if problem is not None:
        return _f("error" if choice.required else "warning", "session", problem)
    return _f("ok", "session", f"built on this model: runs on {got[0]}")
