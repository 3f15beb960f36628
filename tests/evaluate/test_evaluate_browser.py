"""The HTML listening report in a real browser: Debian's Chromium, headless, driven through its chromedriver.

Nothing is downloaded: the system browser (/usr/bin/chromium) and driver are used, and the page itself loads
nothing from the network. Where Chromium is absent the test skips, unless STEMKIT_REQUIRE_BROWSER=1 (CI sets
it), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and Path(p).exists()), None)
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
REQUIRED = os.environ.get("STEMKIT_REQUIRE_BROWSER") == "1"

try:
    import selenium  # noqa: F401

    HAVE_SELENIUM = True
except ModuleNotFoundError:
    HAVE_SELENIUM = False

MISSING = [
    what for what, ok in (("chromium", CHROMIUM), ("chromedriver", DRIVER), ("selenium", HAVE_SELENIUM)) if not ok
]
if REQUIRED and MISSING:
    raise RuntimeError(
        f"STEMKIT_REQUIRE_BROWSER=1 but {', '.join(MISSING)} is missing (apt-get install chromium "
        "chromium-driver; pip install selenium)"
    )
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"no real browser here: {', '.join(MISSING)} missing")

EXCERPT = (2.0, 7.0)


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stemkit.demo import make_demo
    from stemkit.evaluate import compare

    folder = tmp_path_factory.mktemp("browser")
    make_demo(folder / "song", seconds=8.0)
    report = compare(
        folder / "song" / "mixture.wav",
        ["dsp", "dsp?kernel=31"],
        references=folder / "song",
        metrics="sdr,si-sdr,indicators",
        excerpt=EXCERPT,
    )
    return report.save(folder / "report.html")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--mute-audio",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(DRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, script: str, timeout: float = 60.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: d.execute_script(script))


def test_every_player_loads_with_the_excerpts_duration_and_the_page_logs_no_errors(
    browser: Any, report_page: Path
) -> None:
    browser.get(report_page.as_uri())
    _wait(browser, "return Array.from(document.querySelectorAll('audio')).every(a => a.readyState >= 1 || a.error)")
    players = browser.execute_script(
        "return Array.from(document.querySelectorAll('figure.player')).map(f => {"
        " const a = f.querySelector('audio'); const img = f.querySelector('img');"
        " return {source: f.dataset.source, stem: f.closest('section').dataset.stem, duration: a.duration,"
        " expected: parseFloat(a.dataset.duration), error: a.error && a.error.code,"
        " image: img.complete && img.naturalWidth > 0}; })"
    )
    stems = {p["stem"] for p in players}
    assert stems == {"mixture", "vocals", "drums", "bass", "other"}
    sources = {p["source"] for p in players if p["stem"] == "vocals"}
    assert sources == {"reference", "dsp", "dsp(kernel=31)", "oracle"}
    for player in players:
        assert player["error"] is None, player
        assert player["image"], player
        assert player["duration"] == pytest.approx(EXCERPT[1] - EXCERPT[0], abs=0.05), player
    severe = [entry for entry in browser.get_log("browser") if entry["level"] in {"SEVERE", "WARNING"}]
    assert severe == []


def test_switching_sources_keeps_the_playback_position(browser: Any, report_page: Path) -> None:
    browser.get(report_page.as_uri())
    _wait(browser, "return Array.from(document.querySelectorAll('audio')).every(a => a.readyState >= 2)")
    section = "document.querySelector('section[data-stem=\"vocals\"]')"
    # Start the first source (the reference) two seconds in, and wait until it is really playing.
    browser.execute_script(f"const a = {section}.querySelectorAll('audio')[0]; a.currentTime = 2.0; a.play();")
    _wait(browser, f"const a = {section}.querySelectorAll('audio')[0]; return !a.paused && a.currentTime > 2.2;")
    # Read the position and click in one script, so that the time the driver takes between two commands (long
    # on a loaded machine) is not mistaken for a jump.
    state = browser.execute_script(
        f"const s = {section}; const a = s.querySelectorAll('audio');"
        " const before = a[0].currentTime; s.querySelector('.switch button[data-index=\"1\"]').click();"
        " return {before: before, from_paused: a[0].paused, to_paused: a[1].paused, to_time: a[1].currentTime,"
        " active: s.querySelector('.switch button.active').dataset.index,"
        " playing: Array.from(document.querySelectorAll('audio')).filter(x => !x.paused).length};"
    )
    before = state["before"]
    assert state["from_paused"] is True
    assert state["to_paused"] is False
    assert state["active"] == "1"
    assert state["playing"] == 1
    assert state["to_time"] == pytest.approx(before, abs=0.05)  # it continues where the other one was
    # and it really plays on from there
    _wait(browser, f"return {section}.querySelectorAll('audio')[1].currentTime > {before} + 0.3;")
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []
