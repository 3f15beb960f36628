"""The report's picture (matplotlib, an optional extra) and its self-contained HTML page."""

from __future__ import annotations

import base64
import html
import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stemkit.errors import ConfigError

if TYPE_CHECKING:
    from stemkit.evaluate.report import Report

__all__ = ["html_report", "plot_report"]


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


def _png(report: Report, dpi: int) -> bytes:
    _, figure_class, canvas_class = _pyplot()
    from stemkit.evaluate.report import METRIC_LABELS, SONG

    metrics = report.table_metrics
    if not metrics:
        raise ConfigError("report: nothing to plot; the comparison computed no per-stem metric")
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
    data = _png(report, dpi)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
th { background: #f3f3f3; }
caption, .caption { color: #555; font-style: italic; }
img { max-width: 100%; }
"""


def html_report(report: Report) -> str:
    """One HTML page, no external resources: tables, agreement matrices, runs, and the plot inline."""
    image = base64.b64encode(_png(report, 110)).decode("ascii")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>stemkit compare</title>',
        f"<style>{_STYLE}</style></head><body>",
        "<h1>stemkit compare</h1>",
        f'<p class="caption">{html.escape(report.caption())}</p>',
        "<h2>Scores</h2>",
        _html_table(*report.summary_rows()),
    ]
    for stem, header, rows in report.agreement_tables():
        parts += [
            f"<h2>Agreement: {html.escape(stem)}</h2>",
            "<p class=\"caption\">SDR (dB) of the column's stem against the row's</p>",
            _html_table(header, rows),
        ]
    parts += [
        "<h2>Runs</h2>",
        '<p class="caption">wall s: total over tracks; RTF: wall seconds per audio second</p>',
        _html_table(*report.run_rows()),
        "<h2>Plot</h2>",
        f'<img alt="scores per stem and provider" src="data:image/png;base64,{image}">',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
