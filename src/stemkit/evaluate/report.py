"""The result of :func:`stemkit.compare`: every score, every run, and the ways people read them.

Scores are long-format rows (track × provider × stem × metric). Aggregates use the **median over tracks**,
as SiSEC reports, with the **mean** beside it, labelled. The pseudo-stem ``song`` holds a track's score over
all its stems (the MDX challenge's song score: the mean over stems) and, for ``consistency``, the whole
separation's value.

Non-finite values are kept, not hidden: JSON writes NaN as ``null`` and ±inf as the strings ``"inf"`` and
``"-inf"``; CSV, Markdown and the terminal table write ``nan``, ``inf`` and ``-inf``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stemkit.errors import ConfigError, StemkitError

if TYPE_CHECKING:
    from rich.console import RenderableType

    from stemkit.cache import ResultCache

__all__ = ["METRIC_LABELS", "SONG", "Aggregate", "Report", "RunRecord", "Score"]

SONG = "song"
METRIC_LABELS = {
    "sdr": "SDR",
    "si-sdr": "SI-SDR",
    "bss-sdr": "BSS SDR",
    "bss-sir": "BSS SIR",
    "bss-isr": "BSS ISR",
    "bss-sar": "BSS SAR",
    "consistency": "consistency",
    "agreement": "agreement",
}
PLOT_EXTRA_HINT = 'pip install "stemkit[plot]" (or: pip install matplotlib)'


@dataclass(frozen=True)
class Score:
    """One number: ``metric`` of ``provider``'s ``stem`` on ``track`` in dB (``against``: the other provider
    of an agreement score, whose stem served as the reference)."""

    track: str
    provider: str
    stem: str
    metric: str
    value: float
    against: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """One separation: how long it took (wall seconds, as first made when it came from the cache), what it
    cost, how much it was shifted to align with the references, or why it failed."""

    track: str
    provider: str
    duration: float
    seconds: float | None = None
    cached: bool = False
    cost_amount: float | None = None
    cost_unit: str | None = None
    model: str | None = None
    lag_seconds: float | None = None
    error: str | None = None
    error_class: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def rtf(self) -> float | None:
        """Real-time factor: wall seconds per second of audio (below 1 is faster than real time)."""
        if self.seconds is None or self.duration <= 0:
            return None
        return self.seconds / self.duration


@dataclass(frozen=True)
class Aggregate:
    """A metric of one provider and stem over tracks: median (the headline), mean, quartiles, count."""

    provider: str
    stem: str
    metric: str
    median: float
    mean: float
    q25: float
    q75: float
    n: int
    against: str | None = None


def _aggregate(values: Sequence[float]) -> tuple[float, float, float, float, int]:
    arr = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if arr.size == 0:
        nan = float("nan")
        return nan, nan, nan, nan, 0
    with np.errstate(invalid="ignore"):
        # Sorting puts ±inf at the ends, so the median and quartiles stay meaningful unless most are inf.
        median = float(np.median(arr))
        q25, q75 = (float(q) for q in np.percentile(arr, [25, 75], method="linear"))
        mean = float(np.mean(arr))
    return median, mean, q25, q75, int(arr.size)


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def _json_number(value: float | None) -> float | str | None:
    if value is None or math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


@dataclass
class Report:
    """Scores and runs of one comparison. Build it with :func:`stemkit.compare`."""

    tracks: list[str]
    providers: list[str]
    stems: list[str]
    metrics: list[str]
    scores: list[Score] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)
    references: bool = False
    cache: ResultCache | None = field(default=None, repr=False, compare=False)

    # -- reading ----------------------------------------------------------------------------------------
    @property
    def failures(self) -> list[RunRecord]:
        return [run for run in self.runs if not run.ok]

    def raise_for_failures(self) -> None:
        """Raise a StemkitError listing every failed separation (the report keeps the rest)."""
        if self.failures:
            lines = [f"{len(self.failures)} separation(s) failed:"]
            lines += [f"  - {r.provider} on {r.track}: {r.error_class}: {r.error}" for r in self.failures]
            raise StemkitError("\n".join(lines))

    def value(self, track: str, provider: str, stem: str, metric: str, against: str | None = None) -> float:
        """One score; KeyError if it was not computed."""
        for s in self.scores:
            if (s.track, s.provider, s.stem, s.metric, s.against) == (track, provider, stem, metric, against):
                return s.value
        raise KeyError(f"no {metric} score for {provider} / {stem} on {track}")

    @property
    def table_metrics(self) -> list[str]:
        """The metrics shown per provider and stem (agreement is a matrix of its own)."""
        return [m for m in self.metrics if m != "agreement"]

    def aggregates(self) -> list[Aggregate]:
        """Every (provider, stem, metric[, against]) over tracks, in provider, stem and metric order."""
        groups: dict[tuple[str, str, str, str | None], list[float]] = {}
        for s in self.scores:
            groups.setdefault((s.provider, s.stem, s.metric, s.against), []).append(s.value)
        stem_order = {name: i for i, name in enumerate([*self.stems, SONG])}
        metric_order = {name: i for i, name in enumerate(self.metrics)}
        provider_order = {name: i for i, name in enumerate(self.providers)}

        def order(key: tuple[str, str, str, str | None]) -> tuple[int, int, int, int]:
            provider, stem, metric, against = key
            return (
                provider_order.get(provider, 99),
                stem_order.get(stem, 99),
                metric_order.get(metric, 99),
                provider_order.get(against, -1) if against else -1,
            )

        out = []
        for key in sorted(groups, key=order):
            median, mean, q25, q75, n = _aggregate(groups[key])
            out.append(Aggregate(key[0], key[1], key[2], median, mean, q25, q75, n, key[3]))
        return out

    def summary_rows(self) -> tuple[list[str], list[list[str]]]:
        """Provider × stem rows, one column per table metric: "median (mean)" when there are several tracks."""
        many = len(self.tracks) > 1
        cells: dict[tuple[str, str], dict[str, str]] = {}
        for agg in self.aggregates():
            if agg.metric == "agreement":
                continue
            text = _fmt(agg.median) if not many else f"{_fmt(agg.median)} ({_fmt(agg.mean)})"
            cells.setdefault((agg.provider, agg.stem), {})[agg.metric] = text
        header = ["provider", "stem", *(METRIC_LABELS.get(m, m) for m in self.table_metrics)]
        rows = []
        for provider in self.providers:
            for stem in [*self.stems, SONG]:
                row = cells.get((provider, stem))
                if row:
                    rows.append([provider, stem, *(row.get(m, "-") for m in self.table_metrics)])
        return header, rows

    def run_rows(self) -> tuple[list[str], list[list[str]]]:
        header = ["provider", "ok", "wall s", "RTF (median)", "cost", "cached", "failures"]
        rows = []
        for provider in self.providers:
            runs = [r for r in self.runs if r.provider == provider]
            ok = [r for r in runs if r.ok]
            wall = sum(r.seconds for r in ok if r.seconds is not None)
            rtfs = [r.rtf for r in ok if r.rtf is not None]
            costs: dict[str, float] = {}
            for r in ok:
                if r.cost_amount is not None and r.cost_unit:
                    costs[r.cost_unit] = costs.get(r.cost_unit, 0.0) + r.cost_amount
            cost = ", ".join(f"{amount:g} {unit}" for unit, amount in costs.items()) or "-"
            failed = "; ".join(f"{r.track}: {r.error_class}: {r.error}" for r in runs if not r.ok) or "-"
            rows.append(
                [
                    provider,
                    f"{len(ok)}/{len(runs)}",
                    _fmt(wall, 1) if ok else "-",
                    _fmt(float(np.median(rtfs)), 3) if rtfs else "-",
                    cost,
                    str(sum(r.cached for r in ok)),
                    failed,
                ]
            )
        return header, rows

    def agreement_tables(self) -> list[tuple[str, list[str], list[list[str]]]]:
        """Per stem: rows = the provider used as reference, columns = the provider scored against it."""
        aggs = [a for a in self.aggregates() if a.metric == "agreement"]
        out = []
        for stem in self.stems:
            here = [a for a in aggs if a.stem == stem]
            if not here:
                continue
            names = [p for p in self.providers if any(p in (a.provider, a.against) for a in here)]
            values = {(a.against, a.provider): a.median for a in here}
            rows = [[ref, *(("-" if ref == est else _fmt(values.get((ref, est)))) for est in names)] for ref in names]
            out.append((stem, ["reference \\ estimate", *names], rows))
        return out

    def caption(self) -> str:
        track_word = "track" if len(self.tracks) == 1 else "tracks"
        agg = "median over tracks (mean)" if len(self.tracks) > 1 else "one track"
        ref = "against references" if self.references else "without references"
        return f"dB, {agg}; {len(self.tracks)} {track_word}, {ref}; higher is better"

    # -- writing ----------------------------------------------------------------------------------------
    def renderables(self) -> list[RenderableType]:
        """rich tables for a terminal (what :meth:`table` renders to text)."""
        from rich.table import Table

        out: list[RenderableType] = []
        header, rows = self.summary_rows()
        scores = Table(*header, title="scores", caption=self.caption())
        for row in rows:
            scores.add_row(*row)
        out.append(scores)
        for stem, agree_header, agree_rows in self.agreement_tables():
            agreement = Table(*agree_header, title=f"agreement: {stem} (SDR dB, median over tracks)")
            for row in agree_rows:
                agreement.add_row(*row)
            out.append(agreement)
        run_header, run_rows = self.run_rows()
        runs = Table(*run_header, title="runs", caption="wall s: total over tracks; RTF: wall / audio seconds")
        for row in run_rows:
            runs.add_row(*row)
        out.append(runs)
        return out

    def table(self, width: int = 120) -> str:
        """The report as plain text tables for a terminal."""
        from rich.console import Console

        buffer = io.StringIO()
        console = Console(file=buffer, width=width, color_system=None, highlight=False)
        for renderable in self.renderables():
            console.print(renderable)
        return buffer.getvalue()

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        def clean(record: dict[str, Any]) -> dict[str, Any]:
            return {k: (_json_number(v) if isinstance(v, float) else v) for k, v in record.items()}

        runs = []
        for run in self.runs:
            record = asdict(run)
            record["rtf"] = run.rtf
            runs.append(clean(record))
        return {
            "format": "stemkit.compare/1",
            "unit": "dB",
            "aggregation": "median over tracks (mean also given)",
            "references": self.references,
            "tracks": list(self.tracks),
            "providers": list(self.providers),
            "stems": list(self.stems),
            "metrics": list(self.metrics),
            "aggregate": [clean(asdict(a)) for a in self.aggregates()],
            "scores": [clean(asdict(s)) for s in self.scores],
            "runs": runs,
        }

    def to_json(self, indent: int | None = 2) -> str:
        """Standard JSON (NaN → null, ±inf → "inf"/"-inf")."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_csv(self) -> str:
        """Every score, one per row: track, provider, stem, metric, value, against."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["track", "provider", "stem", "metric", "value", "against"])
        for s in self.scores:
            value = _fmt(s.value, 6) if not math.isfinite(s.value) else repr(s.value)
            writer.writerow([s.track, s.provider, s.stem, s.metric, value, s.against or ""])
        return buffer.getvalue()

    def to_markdown(self) -> str:
        """The score table, agreement matrices and run table as GitHub-flavoured Markdown."""
        parts = [f"_{self.caption()}_", "", _md_table(*self.summary_rows())]
        for stem, header, rows in self.agreement_tables():
            parts += [
                "",
                f"**agreement: {stem}** (SDR dB of the column's stem against the row's)",
                "",
                _md_table(header, rows),
            ]
        parts += [
            "",
            "**runs** (wall s: total over tracks; RTF: wall / audio seconds)",
            "",
            _md_table(*self.run_rows()),
        ]
        return "\n".join(parts) + "\n"

    def plot(self, path: str | Path, *, dpi: int = 110) -> Path:
        """Write a PNG: grouped bars per stem (median over tracks), error bars from the first to the third
        quartile over tracks; one panel per metric. Needs matplotlib (the ``plot`` extra)."""
        from stemkit.evaluate.plot import plot_report

        return plot_report(self, Path(path), dpi=dpi)

    def to_html(self) -> str:
        """A self-contained HTML page: the tables and the plot (embedded PNG). Needs matplotlib."""
        from stemkit.evaluate.plot import html_report

        return html_report(self)

    def save(self, path: str | Path) -> Path:
        """Write the report in the format the suffix names: .html, .png, .json, .csv or .md."""
        target = Path(path)
        suffix = target.suffix.lower()
        writers = {".json": self.to_json, ".csv": self.to_csv, ".md": self.to_markdown, ".html": self.to_html}
        if suffix == ".png":
            return self.plot(target)
        if suffix not in writers:
            raise ConfigError(
                f"report: {target.name}: unknown report format {suffix or '(no suffix)'!r}; "
                "use .html, .png, .json, .csv or .md"
            )
        text = writers[suffix]()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
        return target


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
