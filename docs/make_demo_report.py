"""Regenerate the demo report shown in docs/comparing-quality.md.

    .venv/bin/python docs/make_demo_report.py

Synthesizes the 30-second demo song (deterministic), compares ``dsp`` and ``dsp?kernel=31`` against its
reference stems with the mixture and oracle baselines (SDR, SI-SDR, native BSSEval v4 and the indicators),
and writes docs/_snippets/demo-report.md (the page includes the Markdown) and docs/assets/demo-report.png.
With Debian's Chromium and chromedriver installed (and selenium), it also opens the HTML listening report in
headless Chromium and saves docs/assets/demo-report-listening.png, a screenshot of its players.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from stemkit.demo import make_demo
from stemkit.evaluate import compare

DOCS = Path(__file__).resolve().parent
PROVIDERS = ("dsp", "dsp?kernel=31")


def screenshot(page: Path, target: Path, profile: Path) -> bool:
    """Screenshot the listening section of ``page`` in headless Chromium (the system one; nothing downloaded)."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        print("chromium/chromedriver not found: screenshot skipped")
        return False
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--mute-audio",
        f"--user-data-dir={profile}",
        "--window-size=1400,900",
        "--hide-scrollbars",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        driver.get(page.as_uri())
        WebDriverWait(driver, 60).until(
            lambda d: d.execute_script(
                "return Array.from(document.querySelectorAll('audio')).every(a => a.readyState >= 1)"
            )
        )
        driver.execute_script(
            "const s = document.querySelector('section[data-stem=\"vocals\"]');"
            "s.querySelector('.switch button[data-index=\"1\"]').click();"
            "document.getElementById('listen').scrollIntoView();"
        )
        target.write_bytes(driver.get_screenshot_as_png())
    finally:
        driver.quit()
    return True


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="stemkit-docs-") as tmp:
        song = Path(tmp) / "demo-song"
        make_demo(song)
        report = compare(
            song / "mixture.wav", list(PROVIDERS), references=song, metrics="sdr,si-sdr,bss,indicators", excerpt="auto"
        )
        report.raise_for_failures()
        png = report.plot(DOCS / "assets" / "demo-report.png", dpi=80)
        markdown = DOCS / "_snippets" / "demo-report.md"
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(report.to_markdown(), encoding="utf-8")
        page = report.save(Path(tmp) / "report.html")
        listening = report.listening
        assert listening is not None
        size = page.stat().st_size / 1e6
        span = f"{listening.start:.0f}-{listening.end:.0f} s"
        print(f"HTML report: {size:.2f} MB, {len(listening.clips)} players, excerpt {span}")
        shot = DOCS / "assets" / "demo-report-listening.png"
        if screenshot(page, shot, Path(tmp) / "profile"):
            print(f"wrote {shot.relative_to(DOCS.parent)}")
    print(f"wrote {png.relative_to(DOCS.parent)} and {markdown.relative_to(DOCS.parent)}")


if __name__ == "__main__":
    main()
