"""The result of :func:`stemkit.compare`: every score, every run, and the ways people read them.

Scores are long-format rows (track × provider × stem × metric). Two kinds are kept apart everywhere they
are shown: **scores** measured against reference stems (SDR, SI-SDR, BSSEval v4) and **indicators** that need
no reference (mixture consistency, agreement and consensus between providers, leakage between a provider's
stems, peak level, clipping, loudness, activity). Aggregates use the **median over tracks**, as SiSEC
reports, with the **mean** beside it, labelled. The pseudo-stem ``song`` holds a track's score over all its
stems (the MDX challenge's song score: the mean over stems) and, for ``consistency``, the whole separation's
value.

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
    from stemkit.evaluate.listening import Listening

__all__ = ["INDICATORS", "METRIC_INFO", "METRIC_LABELS", "SCORES", "SONG", "Aggregate", "Report", "RunRecord", "Score"]

SONG = "song"


@dataclass(frozen=True)
class MetricInfo:
    label: str
    unit: str
    kind: str  # "score" (against references) | "indicator" (no references)
    meaning: str


#: Every metric stemkit reports: its column label, unit, kind and a one-line meaning.
METRIC_INFO: dict[str, MetricInfo] = {
    "sdr": MetricInfo(
        "SDR",
        "dB",
        "score",
        "signal-to-distortion ratio as the Music Demixing Challenge scores it: "
        "reference energy over the energy of everything that differs from it; higher is better",
    ),
    "si-sdr": MetricInfo(
        "SI-SDR",
        "dB",
        "score",
        "scale-invariant SDR: the same after the best gain is applied to the "
        "reference, so a wrong overall level is not counted; higher is better",
    ),
    "bss-sdr": MetricInfo(
        "BSS SDR",
        "dB",
        "score",
        "BSSEval v4 SDR (SiSEC 2018): distortion of any kind, median over 1 s frames; higher is better",
    ),
    "bss-sir": MetricInfo(
        "BSS SIR",
        "dB",
        "score",
        "BSSEval v4 source-to-interference ratio: how little of the other stems leaked in; higher is better",
    ),
    "bss-isr": MetricInfo(
        "BSS ISR",
        "dB",
        "score",
        "BSSEval v4 image-to-spatial distortion ratio: how faithful the stereo image is; higher is better",
    ),
    "bss-sar": MetricInfo(
        "BSS SAR",
        "dB",
        "score",
        "BSSEval v4 source-to-artefacts ratio: how little was added that no "
        "reference explains (musical noise, smearing); higher is better",
    ),
    "consistency": MetricInfo(
        "consistency",
        "dB",
        "indicator",
        "how well the stems add back up to the input "
        "(input energy over what the stems' sum leaves out); ~100+ dB is exact, but an even "
        "split of the input would score it too: not a quality score",
    ),
    "agreement": MetricInfo(
        "agreement",
        "dB",
        "indicator",
        "SDR of one provider's stem against another's, as if it "
        "were the reference: high means the two make the same choices, not that either is right",
    ),
    "consensus": MetricInfo(
        "consensus",
        "dB",
        "indicator",
        "SDR of the stem against the sample-wise median of the "
        "other providers' same stem: the odd one out scores far below the rest",
    ),
    "leakage": MetricInfo(
        "leakage",
        "dB",
        "indicator",
        "share of the stem's energy that is the waveform of the same "
        "provider's other stems (per 1 s); lower is better, -30 dB or less is clean",
    ),
    "peak": MetricInfo(
        "peak",
        "dBFS",
        "indicator",
        "sample peak; at or above 0 dBFS the stem clips when written to WAV PCM, FLAC or MP3",
    ),
    "clipped": MetricInfo(
        "clipped",
        "samples",
        "indicator",
        "samples (per channel) at or beyond full scale: each one clips when the stem is written at full scale",
    ),
    "loudness": MetricInfo(
        "loudness",
        "LUFS",
        "indicator",
        "integrated loudness (EBU R128 / ITU-R BS.1770-4, gated); -inf when the stem never rises above -70 LUFS",
    ),
    "activity": MetricInfo(
        "activity",
        "%",
        "indicator",
        "share of 100 ms blocks louder than -60 dBFS: 0 % is a silent stem; compare it with what you hear in the song",
    ),
}
SCORES = tuple(m for m, info in METRIC_INFO.items() if info.kind == "score")
INDICATORS = tuple(m for m, info in METRIC_INFO.items() if info.kind == "indicator")
METRIC_LABELS = {name: info.label for name, info in METRIC_INFO.items()}
#: What the other columns and words of a report mean.
TERMS = {
    "song": "a track's value over all its stems: the mean over stems (the MDX challenge's song score); for "
    "consistency, the whole separation",
    "scored on": "the stems a provider was scored on: those it produces or derives among the reference stems; "
    "* marks a reference derived from the reference files (instrumental = the sum of the non-vocal stems)",
    "median (mean)": "over several tracks, the median over tracks (as SiSEC reports) with the mean in parentheses",
    "ok": "separations that succeeded, out of those attempted",
    "wall s": "wall-clock seconds of the separations, summed over tracks (when first made, if cached)",
    "RTF": "real-time factor: wall seconds per second of audio, median over tracks (below 1 is faster than real time)",
    "cost": "what the provider reported it charged, summed over tracks",
    "cached": "separations served from the cache instead of being made again",
    "mixture": "baseline: the mixture as the estimate of every stem; any separator should beat it",
    "oracle": "baseline: ideal ratio masks built from the references; roughly what a mask-based separator could reach",
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
    stems: tuple[str, ...] = ()

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


def _fmt_metric(metric: str, value: float | None) -> str:
    """A value in its metric's own format (counts as integers, activity as a percentage)."""
    if value is None or not math.isfinite(value):
        return _fmt(value)
    if metric == "clipped":
        return f"{value:.0f}"
    if metric == "activity":
        return f"{value:.0f}%"
    if metric in {"peak", "loudness"}:
        return f"{value:.1f}"
    return _fmt(value)


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
    specs: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    derived_references: list[str] = field(default_factory=list)
    listening: Listening | None = field(default=None, repr=False, compare=False)

    def add_note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

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
        """Reference-based metrics shown per provider and stem."""
        return [m for m in self.metrics if m in SCORES]

    @property
    def indicator_metrics(self) -> list[str]:
        """Indicators shown per provider and stem (agreement is a matrix of its own)."""
        return [m for m in self.metrics if m in INDICATORS and m != "agreement"]

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

    def _rows(self, metrics: Sequence[str], stems: Sequence[str]) -> list[list[str]]:
        many = len(self.tracks) > 1
        cells: dict[tuple[str, str], dict[str, str]] = {}
        for agg in self.aggregates():
            if agg.metric not in metrics or agg.against is not None:
                continue
            text = _fmt_metric(agg.metric, agg.median)
            if many:
                text += f" ({_fmt_metric(agg.metric, agg.mean)})"
            cells.setdefault((agg.provider, agg.stem), {})[agg.metric] = text
        rows = []
        for provider in self.providers:
            for stem in stems:
                row = cells.get((provider, stem))
                if row:
                    rows.append([provider, stem, *(row.get(m, "-") for m in metrics)])
        return rows

    def summary_rows(self) -> tuple[list[str], list[list[str]]]:
        """Reference-based scores, provider × stem rows: "median (mean)" when there are several tracks."""
        metrics = self.table_metrics
        header = ["provider", "stem", *(METRIC_LABELS.get(m, m) for m in metrics)]
        return header, self._rows(metrics, [*self.stems, SONG])

    def indicator_rows(self) -> tuple[list[str], list[list[str]]]:
        """Reference-free indicators, provider × stem rows (``song`` holds consistency)."""
        metrics = self.indicator_metrics
        header = ["provider", "stem", *(f"{METRIC_LABELS.get(m, m)} ({METRIC_INFO[m].unit})" for m in metrics)]
        return header, self._rows(metrics, [*self.stems, SONG])

    def _scored_on(self, provider: str) -> str:
        stems: list[str] = []
        for run in self.runs:
            if run.provider == provider and run.ok:
                stems += [s for s in run.stems if s not in stems]
        marked = [f"{s}*" if s in self.derived_references else s for s in stems]
        return ", ".join(marked) or "-"

    def overview_rows(self) -> tuple[list[str], list[list[str]]]:
        """One row per provider: what it was scored on, its song scores, and what it took (time, cost)."""
        metrics = self.table_metrics
        many = len(self.tracks) > 1
        song = {(a.provider, a.metric): a for a in self.aggregates() if a.stem == SONG and a.against is None}
        header = ["provider", *(["scored on"] if self.references else [])]
        header += [f"song {METRIC_LABELS.get(m, m)}" for m in metrics]
        header += ["ok", "wall s", "RTF", "cost", "cached"]
        _, runs = self.run_rows()
        by_provider = {row[0]: row for row in runs}
        rows = []
        for provider in self.providers:
            row = [provider, *([self._scored_on(provider)] if self.references else [])]
            for metric in metrics:
                agg = song.get((provider, metric))
                text = "-" if agg is None else _fmt_metric(metric, agg.median)
                if agg is not None and many:
                    text += f" ({_fmt_metric(metric, agg.mean)})"
                row.append(text)
            run = by_provider[provider]
            row += [run[1], run[2], run[3], run[4], run[5]]
            rows.append(row)
        return header, rows

    def legend(self) -> list[tuple[str, str]]:
        """(term, meaning) for every column and metric this report shows."""
        out = [(f"{METRIC_LABELS.get(m, m)} ({METRIC_INFO[m].unit})", METRIC_INFO[m].meaning) for m in self.metrics]
        terms = ["song", *(["scored on"] if self.references else []), "median (mean)"] if self.metrics else []
        terms += ["ok", "wall s", "RTF", "cost", "cached"]
        terms += [b for b in ("mixture", "oracle") if b in self.providers]
        out += [(term, TERMS[term]) for term in terms if term != "median (mean)" or len(self.tracks) > 1]
        return out

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

    def indicator_caption(self) -> str:
        agg = "median over tracks (mean)" if len(self.tracks) > 1 else "one track"
        return f"no references needed; {agg}; each column has its own unit and meaning (see the legend)"

    def failure_lines(self) -> list[str]:
        return [f"{r.provider} on {r.track}: {r.error_class}: {r.error}" for r in self.failures]

    # -- writing ----------------------------------------------------------------------------------------
    def sections(self) -> list[tuple[str, str, list[str], list[list[str]]]]:
        """(title, caption, header, rows) of every table, in reading order."""
        out = []
        header, rows = self.overview_rows()
        out.append(("overview", "song scores, and what each provider took (time, cost)", header, rows))
        if self.table_metrics:
            header, rows = self.summary_rows()
            out.append(("scores (against references)", self.caption(), header, rows))
        if self.indicator_metrics:
            header, rows = self.indicator_rows()
            if rows:
                out.append(("indicators (no references needed)", self.indicator_caption(), header, rows))
        for stem, agree_header, agree_rows in self.agreement_tables():
            out.append(
                (f"agreement: {stem}", "SDR (dB) of the column's stem against the row's", agree_header, agree_rows)
            )
        return out

    def renderables(self) -> list[RenderableType]:
        """rich tables for a terminal (what :meth:`table` renders to text)."""
        from rich.table import Table
        from rich.text import Text

        out: list[RenderableType] = []
        for title, caption, header, rows in self.sections():
            table = Table(*header, title=title, caption=caption)
            for row in rows:
                table.add_row(*row)
            out.append(table)
        for line in self.failure_lines():
            out.append(Text(f"failed: {line}"))
        for note in self.notes:
            out.append(Text(f"note: {note}"))
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
            record["spec"] = self.specs.get(run.provider, run.provider)
            runs.append(clean(record))
        listening = None
        if self.listening is not None:
            listening = {
                "track": self.listening.track,
                "start": self.listening.start,
                "end": self.listening.end,
                "chosen": self.listening.chosen,
                "clips": [
                    {"stem": c.stem, "source": c.source, "mime": c.mime, "bytes": len(c.audio)}
                    for c in self.listening.clips
                ],
            }
        return {
            "format": "stemkit.compare/2",
            "unit": "dB unless the metric says otherwise (metric_info)",
            "aggregation": "median over tracks (mean also given)",
            "references": self.references,
            "tracks": list(self.tracks),
            "providers": list(self.providers),
            "specs": {label: self.specs.get(label, label) for label in self.providers},
            "stems": list(self.stems),
            "derived_references": list(self.derived_references),
            "metrics": list(self.metrics),
            "metric_info": {
                m: {
                    "label": METRIC_INFO[m].label,
                    "unit": METRIC_INFO[m].unit,
                    "kind": METRIC_INFO[m].kind,
                    "meaning": METRIC_INFO[m].meaning,
                }
                for m in self.metrics
                if m in METRIC_INFO
            },
            "aggregate": [clean(asdict(a)) for a in self.aggregates()],
            "scores": [clean(asdict(s)) for s in self.scores],
            "runs": runs,
            "notes": list(self.notes),
            "listening": listening,
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
        """Every table, then the notes and the legend, as GitHub-flavoured Markdown."""
        parts: list[str] = []
        for title, caption, header, rows in self.sections():
            parts += [f"**{title}** ({caption})", "", _md_table(header, rows), ""]
        for line in self.failure_lines():
            parts.append(f"- failed: {line}")
        for note in self.notes:
            parts.append(f"- note: {note}")
        if self.failures or self.notes:
            parts.append("")
        parts += ["**legend**", ""]
        parts += [f"- **{term}**: {meaning}" for term, meaning in self.legend()]
        return "\n".join(parts) + "\n"

    def plot(self, path: str | Path, *, dpi: int = 110) -> Path:
        """Write a PNG: grouped bars per stem (median over tracks), error bars from the first to the third
        quartile over tracks; one panel per metric. Needs matplotlib (the ``plot`` extra)."""
        from stemkit.evaluate.plot import plot_report

        return plot_report(self, Path(path), dpi=dpi)

    def to_html(self) -> str:
        """A self-contained HTML page that works offline: the tables, the legend, the plot (with matplotlib),
        and, when the comparison kept an excerpt, a player per provider and stem with A/B switching."""
        from stemkit.evaluate.html import html_report

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
