"""The report's picture (matplotlib, an optional extra): grouped bars of the reference-based scores."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stemkit.errors import ConfigError

if TYPE_CHECKING:
    from stemkit.evaluate.report import Report

__all__ = ["plot_report", "report_png"]


def _pyplot() -> Any:
    from stemkit.evaluate.report import PLOT_EXTRA_HINT

    try:
        import matplotlib
    except ModuleNotFoundError:
        raise ConfigError(
            f"report: plots (.png, .html) need the optional matplotlib package, which is not installed; "
            f"{PLOT_EXTRA_HINT}, or write .json, .csv or .md instead"
        ) from None
    # A library must not change the caller's backend; render through the non-interactive Agg canvas.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    return matplotlib, Figure, FigureCanvasAgg


def report_png(report: Report, dpi: int) -> bytes:
    _, figure_class, canvas_class = _pyplot()
    from stemkit.evaluate.report import METRIC_LABELS, SONG

    metrics = report.table_metrics
    if not metrics:
        raise ConfigError(
            "report: nothing to plot; the comparison computed no reference-based score (the plot shows sdr, "
            "si-sdr and bss against references)"
        )
    aggregates = report.aggregates()
    panels = len(metrics)
    fig = figure_class(figsize=(max(6.0, 1.6 * (len(report.stems) + 1) + 2.0), 2.8 * panels + 0.6), dpi=dpi)
    canvas_class(fig)
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    providers = report.providers
    width = 0.8 / max(1, len(providers))
    colors = [f"C{i % 10}" for i in range(len(providers))]
    for ax, metric in zip(axes, metrics, strict=True):
        stems = [SONG] if metric == "consistency" else [*report.stems, SONG]
        by_key = {(a.provider, a.stem): a for a in aggregates if a.metric == metric}
        stems = [s for s in stems if any((p, s) in by_key for p in providers)]
        for i, provider in enumerate(providers):
            xs, heights, lower, upper = [], [], [], []
            for j, stem in enumerate(stems):
                agg = by_key.get((provider, stem))
                if agg is None or not math.isfinite(agg.median):
                    continue
                xs.append(j + (i - (len(providers) - 1) / 2) * width)
                heights.append(agg.median)
                lo = agg.median - agg.q25 if math.isfinite(agg.q25) else 0.0
                hi = agg.q75 - agg.median if math.isfinite(agg.q75) else 0.0
                lower.append(max(lo, 0.0))
                upper.append(max(hi, 0.0))
            if xs:
                spread_bars = [lower, upper] if len(report.tracks) > 1 else None
                ax.bar(xs, heights, width * 0.95, yerr=spread_bars, capsize=3, color=colors[i], label=provider)
        ax.set_xticks(range(len(stems)))
        ax.set_xticklabels(stems)
        ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)} (dB)")
        ax.axhline(0.0, color="0.6", linewidth=0.8)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    spread = "bars: median over tracks; whiskers: 1st-3rd quartile" if len(report.tracks) > 1 else "one track"
    fig.suptitle(f"stemkit compare ({spread})", fontsize="medium")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def plot_report(report: Report, path: Path, *, dpi: int = 110) -> Path:
    data = report_png(report, dpi)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path
