"""The Report's formats and the ``stemkit compare`` command."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stemkit.cli import main
from stemkit.errors import ConfigError
from stemkit.evaluate import Report, RunRecord, Score, compare

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def report() -> Report:
    """Two tracks, two providers, one infinite and one undefined value, one failed run."""
    scores = [
        Score("t1", "a", "vocals", "sdr", 4.0),
        Score("t2", "a", "vocals", "sdr", 8.0),
        Score("t1", "b", "vocals", "sdr", 1.0),
        Score("t2", "b", "vocals", "sdr", 3.0),
        Score("t1", "a", "vocals", "si-sdr", math.inf),
        Score("t2", "a", "vocals", "si-sdr", math.nan),
        Score("t1", "b", "vocals", "agreement", 5.0, against="a"),
        Score("t1", "a", "vocals", "agreement", 6.0, against="b"),
    ]
    runs = [
        RunRecord("t1", "a", duration=10.0, seconds=2.0, cost_amount=10.0, cost_unit="seconds"),
        RunRecord("t2", "a", duration=10.0, seconds=4.0, cached=True, cost_amount=10.0, cost_unit="seconds"),
        RunRecord("t1", "b", duration=10.0, seconds=1.0),
        RunRecord("t2", "b", duration=10.0, error="server down", error_class="ProviderUnavailableError"),
    ]
    return Report(["t1", "t2"], ["a", "b"], ["vocals"], ["sdr", "si-sdr", "agreement"], scores, runs, True)


def test_aggregates_are_the_median_over_tracks_with_the_mean_beside_it(report: Report) -> None:
    aggs = {(a.provider, a.metric, a.against): a for a in report.aggregates()}
    a_sdr = aggs[("a", "sdr", None)]
    assert (a_sdr.median, a_sdr.mean, a_sdr.n) == (6.0, 6.0, 2)
    assert (a_sdr.q25, a_sdr.q75) == (5.0, 7.0)
    si = aggs[("a", "si-sdr", None)]
    assert si.median == math.inf  # inf is kept, NaN is left out of the count
    assert si.n == 1
    text = report.table()
    assert "6.00 (6.00)" in text
    assert "median over tracks (mean)" in text


def test_the_runs_table_sums_wall_time_and_cost_and_names_failures(report: Report) -> None:
    header, rows = report.run_rows()
    row_a = dict(zip(header, rows[0], strict=True))
    assert row_a["ok"] == "2/2"
    assert row_a["wall s"] == "6.0"
    assert row_a["RTF (median)"] == "0.300"
    assert row_a["cost"] == "20 seconds"
    assert row_a["cached"] == "1"
    row_b = dict(zip(header, rows[1], strict=True))
    assert row_b["ok"] == "1/2"
    assert "t2: ProviderUnavailableError: server down" in row_b["failures"]


def test_json_is_standard_and_keeps_infinities_and_nans_distinguishable(report: Report) -> None:
    text = report.to_json()
    data = json.loads(text)  # would fail on NaN/Infinity tokens with a strict parser below
    json.loads(text, parse_constant=lambda token: pytest.fail(f"non-standard JSON token {token}"))
    values = {(s["track"], s["metric"]): s["value"] for s in data["scores"] if s["provider"] == "a"}
    assert values[("t1", "si-sdr")] == "inf"
    assert values[("t2", "si-sdr")] is None
    assert data["runs"][0]["rtf"] == pytest.approx(0.2)
    assert data["format"] == "stemkit.compare/2"


def test_csv_has_one_score_per_row(report: Report) -> None:
    rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert len(rows) == len(report.scores)
    assert rows[0] == {"track": "t1", "provider": "a", "stem": "vocals", "metric": "sdr", "value": "4.0", "against": ""}
    assert {r["value"] for r in rows if r["metric"] == "si-sdr"} == {"inf", "nan"}


def test_markdown_has_the_score_agreement_and_run_tables(report: Report) -> None:
    md = report.to_markdown()
    assert "| provider | stem | SDR | SI-SDR |" in md
    assert "**agreement: vocals**" in md
    assert "| a | - | 5.00 |" in md  # row a: its stem as the reference, b scored against it
    assert "| b | 6.00 | - |" in md
    assert "**overview**" in md
    # time and cost sit in the same row as the song scores
    assert "| a | - | - | - | 2/2 | 6.0 | 0.300 | 20 seconds | 1 |" in md
    assert "- failed: b on t2: ProviderUnavailableError: server down" in md


def test_plot_and_html_are_self_contained(report: Report, tmp_path: Path) -> None:
    png = report.plot(tmp_path / "plot.png")
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    page = report.save(tmp_path / "report.html").read_text(encoding="utf-8")
    match = re.search(r'src="data:image/png;base64,([^"]+)"', page)
    assert match is not None
    assert base64.b64decode(match.group(1)).startswith(PNG_SIGNATURE)
    assert "<table>" in page
    assert "http" not in page.split("<style>")[0]  # no external resources


def test_save_picks_the_format_from_the_suffix(report: Report, tmp_path: Path) -> None:
    assert json.loads(report.save(tmp_path / "r.json").read_text())["tracks"] == ["t1", "t2"]
    assert report.save(tmp_path / "r.md").read_text().startswith("**overview**")
    with pytest.raises(ConfigError, match=r"r\.txt.*use \.html, \.png, \.json, \.csv or \.md"):
        report.save(tmp_path / "r.txt")


def test_without_matplotlib_plots_are_a_config_error_and_html_says_why_it_has_none(
    report: Report, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import matplotlib` sees when it is absent
    with pytest.raises(ConfigError, match=r"stemkit\[plot\].*or write \.json, \.csv or \.md"):
        report.plot(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
    page = report.to_html()
    assert "The plot needs matplotlib" in page
    assert "<table>" in page


def test_import_stemkit_does_not_import_evaluate_or_matplotlib() -> None:
    code = (
        "import sys, stemkit\n"
        "print(sorted(m for m in sys.modules if m.startswith(('stemkit.evaluate', 'matplotlib', 'museval'))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
    metrics_only = "import sys, stemkit.evaluate.metrics\nprint('stemkit.evaluate.comparison' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", metrics_only], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


def test_cli_compare_prints_the_table_and_writes_reports(
    demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    code = main(
        [
            "compare",
            str(demo_dir / "mixture.wav"),
            "-p",
            "dsp",
            "--references",
            str(demo_dir),
            "--metrics",
            "sdr",
            "--report",
            str(out_json),
            "--report",
            str(out_md),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    for provider in ("dsp", "mixture", "oracle"):
        assert provider in captured.out
    assert json.loads(out_json.read_text())["providers"] == ["dsp", "mixture", "oracle"]
    assert out_md.is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics", "loudnes"], "unknown metric 'loudnes'"),
        (["--label", "fast"], "--label fast: write NAME=SPEC"),
        (["--excerpt", "60:40", "--report", "r.html"], "excerpt: 60:40 is not a range"),
        (["--excerpt", "10:20"], "--excerpt: only the HTML report"),
        (["--references", "{demo}", "--musdb", "{demo}"], "--references and --musdb"),
        (["--report", "out.docx"], "--report out.docx: unknown format"),
        (["--metrics", "sdr"], "scores against references"),
    ],
)
def test_cli_compare_usage_errors_are_one_line_and_exit_2(
    demo_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    argv = ["compare", str(demo_dir / "mixture.wav"), *(a.format(demo=demo_dir) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_cli_compare_exits_1_when_a_provider_fails(
    demo_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from stemkit.errors import ProviderUnavailableError
    from stemkit.evaluate import comparison

    real = comparison.compare

    def with_failing(*args: Any, **kwargs: Any) -> Report:
        result = real(*args, **kwargs)
        result.runs.append(
            RunRecord("mixture", "dsp", 4.0, error="down", error_class=ProviderUnavailableError.__name__)
        )
        return result

    monkeypatch.setattr(comparison, "compare", with_failing)
    assert main(["compare", str(demo_dir / "mixture.wav"), "-p", "dsp"]) == 1
    assert "dsp failed on mixture: ProviderUnavailableError: down" in capsys.readouterr().err


def test_compare_report_round_trip_through_json_matches_the_table(demo_dir: Path) -> None:
    result = compare(demo_dir / "mixture.wav", ["dsp"], references=demo_dir, metrics="sdr", baselines=False)
    data = json.loads(result.to_json())
    agg = next(a for a in data["aggregate"] if (a["stem"], a["metric"]) == ("vocals", "sdr"))
    assert f"{agg['median']:.2f}" in result.table()
