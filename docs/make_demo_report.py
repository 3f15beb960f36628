"""Regenerate the demo report shown in docs/comparing-quality.md.

    .venv/bin/python docs/make_demo_report.py

Synthesizes the 30-second demo song (deterministic), compares ``dsp`` and ``dsp?kernel=31`` against its
reference stems with the mixture and oracle baselines, and writes docs/assets/demo-report.png and
docs/_snippets/demo-report.md (the page includes the Markdown). Takes about half a minute.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from stemkit.demo import make_demo
from stemkit.evaluate import compare

DOCS = Path(__file__).resolve().parent
PROVIDERS = ("dsp", "dsp?kernel=31")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="stemkit-docs-") as tmp:
        song = Path(tmp) / "demo-song"
        make_demo(song)
        report = compare(song / "mixture.wav", list(PROVIDERS), references=song)
        report.raise_for_failures()
        png = report.plot(DOCS / "assets" / "demo-report.png", dpi=80)
        markdown = DOCS / "_snippets" / "demo-report.md"
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(report.to_markdown(), encoding="utf-8")
    print(f"wrote {png.relative_to(DOCS.parent)} and {markdown.relative_to(DOCS.parent)}")


if __name__ == "__main__":
    main()
