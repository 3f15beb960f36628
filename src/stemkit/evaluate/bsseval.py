"""BSSEval v4 (SDR, SIR, ISR, SAR) through museval, the SiSEC 2018 reference implementation.

museval is an optional extra (``pip install "stemkit[evaluate]"``). Its ``import`` pulls in musdb and stempeg,
and stempeg refuses to import unless ``ffmpeg`` and ``ffprobe`` are on ``PATH`` — even though the metrics
themselves decode nothing. Both failures become a :class:`~stemkit.errors.ConfigError` that says which one
it is and what to do; stemkit does not work around museval's import to keep the numbers museval's own.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stemkit.errors import ConfigError, InputError

__all__ = ["BSS_METRICS", "EXTRA_HINT", "bss_eval", "load_museval"]

#: Names of the four BSSEval v4 metrics, as stemkit reports them.
BSS_METRICS = ("bss-sdr", "bss-sir", "bss-isr", "bss-sar")
EXTRA_HINT = 'pip install "stemkit[evaluate]" (or: pip install museval)'


def load_museval() -> ModuleType:
    """Import museval or raise a ConfigError naming the missing piece (the package, or ffmpeg)."""
    try:
        import museval
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {"museval", "musdb", "stempeg"}:
            raise ConfigError(
                f"metrics: 'bss' (BSSEval v4) needs the optional museval package, which is not installed "
                f"(missing module {exc.name!r}); {EXTRA_HINT}, or leave 'bss' out of the metrics"
            ) from None
        raise ConfigError(
            f"metrics: 'bss' (BSSEval v4): museval is installed but a module it needs is missing ({exc.name!r}); "
            f"reinstall it with {EXTRA_HINT}, or leave 'bss' out of the metrics"
        ) from None
    except RuntimeError as exc:
        if "ffmpeg" not in str(exc).lower() and "ffprobe" not in str(exc).lower():
            raise
        missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
        what = " and ".join(missing) if missing else "ffmpeg/ffprobe"
        raise ConfigError(
            f"metrics: 'bss' (BSSEval v4) uses museval, whose import (through musdb and stempeg) requires "
            f"{what} on PATH, and {'they are' if len(missing) != 1 else 'it is'} not found. Install ffmpeg "
            "(Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg; conda: conda install ffmpeg), "
            "or leave 'bss' out of the metrics (sdr and si-sdr need no ffmpeg)"
        ) from None
    module: ModuleType = museval
    return module


def _silent(source: NDArray[np.float64]) -> bool:
    """museval's own test (``_any_source_silent``) for one (samples, channels) source."""
    return bool(np.all(np.sum(source, axis=1) == 0))


def _frame_median(values: NDArray[np.float64]) -> float:
    finite = values[~np.isnan(values)]
    return float(np.median(finite)) if finite.size else float("nan")


def bss_eval(
    references: Mapping[str, NDArray[Any]],
    estimates: Mapping[str, NDArray[Any]],
    sample_rate: int,
    *,
    window_seconds: float = 1.0,
    hop_seconds: float = 1.0,
) -> dict[str, dict[str, float]]:
    """BSSEval v4 of one song, aggregated as SiSEC 2018 reports it: the median over 1 s frames.

    ``references`` and ``estimates`` map stem → ``(channels, samples)`` audio, aligned and of equal shape;
    the stems are evaluated together (SIR depends on the other stems). museval leaves a frame undefined
    (NaN) when any stem is silent in it, and the median skips those frames, as museval's aggregation does.
    museval refuses a stem that is silent throughout (reference or estimate); stemkit leaves such a stem
    out of the joint evaluation and reports NaN for its four metrics (its SDR and SI-SDR are still defined,
    see :mod:`stemkit.evaluate.metrics`). Returns stem → {"bss-sdr", "bss-sir", "bss-isr", "bss-sar"} → dB.
    """
    names = [name for name in references if name in estimates]
    if not names:
        raise InputError(
            "bss_eval: no stem has both a reference and an estimate "
            f"(references: {', '.join(references) or 'none'}; estimates: {', '.join(estimates) or 'none'})"
        )
    refs = {n: np.asarray(references[n], dtype=np.float64).T for n in names}
    ests = {n: np.asarray(estimates[n], dtype=np.float64).T for n in names}
    for n in names:
        if refs[n].shape != ests[n].shape:
            raise InputError(
                f"bss_eval: stem {n!r}: reference {refs[n].T.shape} and estimate {ests[n].T.shape} differ; "
                "align them first (stemkit.evaluate.align.match)"
            )
    museval = load_museval()
    nan = float("nan")
    out = {n: dict.fromkeys(BSS_METRICS, nan) for n in names}
    usable = [n for n in names if not _silent(refs[n]) and not _silent(ests[n])]
    if not usable:
        return out
    win = max(1, round(window_seconds * sample_rate))
    hop = max(1, round(hop_seconds * sample_rate))
    sdr, isr, sir, sar = museval.evaluate(
        np.stack([refs[n] for n in usable]),
        np.stack([ests[n] for n in usable]),
        win=win,
        hop=hop,
        mode="v4",
        padding=True,
    )
    for i, name in enumerate(usable):
        for metric, values in zip(BSS_METRICS, (sdr, sir, isr, sar), strict=True):
            out[name][metric] = _frame_median(np.asarray(values[i], dtype=np.float64))
    return out
