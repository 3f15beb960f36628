"""The HTML report: one self-contained page (no network, no CDN) with every table, the legend, the plot, and
the listening section — per stem, a player for each provider (and the reference) on the same excerpt, one
click to switch between them at the same playback position, and a spectrogram under each player.

Audio and images are inlined as ``data:`` URIs; the script is inline and small. The page logs nothing to the
console and loads nothing from elsewhere, which ``tests/evaluate/test_evaluate_browser.py`` checks in a real
(headless) Chromium.
"""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING

from stemkit.errors import ConfigError

if TYPE_CHECKING:
    from stemkit.evaluate.listening import Clip, Listening
    from stemkit.evaluate.report import Report

__all__ = ["html_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 80em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
th { background: #f3f3f3; }
.caption { color: #555; font-style: italic; }
img.plot { max-width: 100%; }
dl.legend dt { font-weight: 600; margin-top: 0.4em; }
dl.legend dd { margin-left: 1.5em; color: #333; }
section.stem { border-top: 1px solid #ddd; padding-top: 0.5em; margin-top: 1em; }
.switch button { font: inherit; margin: 0 0.3em 0.3em 0; padding: 0.25em 0.8em; border: 1px solid #888;
  border-radius: 1em; background: #fff; cursor: pointer; }
.switch button.active { background: #222; color: #fff; border-color: #222; }
.players { display: flex; flex-wrap: wrap; gap: 1em; }
figure.player { margin: 0; padding: 0.4em; border: 2px solid transparent; border-radius: 0.4em; }
figure.player.active { border-color: #222; }
figure.player figcaption { font-weight: 600; margin-bottom: 0.2em; }
figure.player audio { width: 320px; display: block; }
.spec { position: relative; width: 320px; height: 75px; margin-top: 0.3em; cursor: pointer; }
.spec img { width: 100%; height: 100%; display: block; }
.playhead { position: absolute; top: 0; bottom: 0; width: 2px; background: #0f0; left: 0; pointer-events: none; }
.notes li { color: #7a4b00; }
.failures li { color: #a00; }
"""

# A/B switching: one section per stem; a button per source. Switching pauses the current player and starts the
# chosen one at the same position (if the current one was playing). Starting any player pauses the others, so
# only one plays at a time; the spectrogram's playhead follows playback and a click on it seeks.
_SCRIPT = """
(function () {
  "use strict";
  var all = Array.prototype.slice.call(document.querySelectorAll("audio"));
  document.querySelectorAll("section.stem").forEach(function (section) {
    var figures = Array.prototype.slice.call(section.querySelectorAll("figure.player"));
    var audios = figures.map(function (f) { return f.querySelector("audio"); });
    var buttons = Array.prototype.slice.call(section.querySelectorAll(".switch button"));
    var current = 0;
    function mark(index) {
      current = index;
      buttons.forEach(function (b, i) { b.classList.toggle("active", i === index); });
      figures.forEach(function (f, i) { f.classList.toggle("active", i === index); });
    }
    function switchTo(index) {
      if (index === current) { return; }
      var from = audios[current], to = audios[index];
      var position = from.currentTime, playing = !from.paused;
      from.pause();
      to.currentTime = position;
      mark(index);
      if (playing) { to.play(); }
    }
    buttons.forEach(function (button, index) {
      button.addEventListener("click", function () { switchTo(index); });
    });
    audios.forEach(function (audio, index) {
      audio.addEventListener("play", function () {
        all.forEach(function (other) { if (other !== audio) { other.pause(); } });
        mark(index);
      });
      var head = figures[index].querySelector(".playhead");
      var spec = figures[index].querySelector(".spec");
      function update() {
        var d = audio.duration;
        head.style.left = (d && isFinite(d) ? 100 * audio.currentTime / d : 0) + "%";
      }
      audio.addEventListener("timeupdate", update);
      audio.addEventListener("seeked", update);
      spec.addEventListener("click", function (event) {
        var box = spec.getBoundingClientRect();
        if (audio.duration && isFinite(audio.duration)) {
          audio.currentTime = audio.duration * (event.clientX - box.left) / box.width;
        }
      });
    });
    mark(0);
  });
})();
"""


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _player(clip: Clip, index: int) -> str:
    label = html.escape(clip.source)
    return (
        f'<figure class="player" data-source="{label}" data-kind="{clip.kind}" data-index="{index}">'
        f"<figcaption>{label}</figcaption>"
        f'<audio controls preload="auto" data-duration="{clip.duration:.3f}" '
        f'src="{_data_uri(clip.mime.split(";")[0], clip.audio)}"></audio>'
        f'<div class="spec" title="spectrogram, 0-16 kHz; click to seek">'
        f'<img alt="spectrogram of {label}" src="{_data_uri("image/png", clip.spectrogram)}">'
        '<div class="playhead"></div></div></figure>'
    )


def _listening(listening: Listening) -> list[str]:
    how = "chosen automatically: the busiest stretch" if listening.chosen == "auto" else "as requested"
    parts = [
        '<h2 id="listen">Listen</h2>',
        f'<p class="caption">{html.escape(listening.track)}, {listening.start:.1f}-{listening.end:.1f} s ({how}). '
        "Click a name to switch sources: playback continues at the same position. Under each player, its "
        "spectrogram (0-16 kHz); click it to seek.</p>",
    ]
    for stem in ["mixture", *[s for s in listening.stems if s != "mixture"]]:
        clips = listening.for_stem(stem)
        if not clips:
            continue
        buttons = "".join(
            f'<button type="button" data-index="{i}">{html.escape(c.source)}</button>' for i, c in enumerate(clips)
        )
        players = "".join(_player(c, i) for i, c in enumerate(clips))
        parts.append(
            f'<section class="stem" data-stem="{html.escape(stem)}"><h3>{html.escape(stem)}</h3>'
            f'<div class="switch">{buttons}</div><div class="players">{players}</div></section>'
        )
    return parts


def _plot(report: Report) -> list[str]:
    if not report.table_metrics:
        return []
    from stemkit.evaluate.plot import report_png
    from stemkit.evaluate.report import PLOT_EXTRA_HINT

    try:
        image = report_png(report, 110)
    except ConfigError:
        return ["<h2>Plot</h2>", f'<p class="caption">The plot needs matplotlib: {html.escape(PLOT_EXTRA_HINT)}</p>']
    return [
        "<h2>Plot</h2>",
        f'<img class="plot" alt="scores per stem and provider" src="{_data_uri("image/png", image)}">',
    ]


def html_report(report: Report) -> str:
    """The page as a string."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>stemkit compare</title>',
        f"<style>{_STYLE}</style></head><body>",
        "<h1>stemkit compare</h1>",
        f'<p class="caption">{html.escape(", ".join(report.tracks))} · providers: '
        + html.escape(", ".join(f"{label} = {report.specs.get(label, label)}" for label in report.providers))
        + "</p>",
    ]
    if report.listening is not None:
        parts.append('<p><a href="#listen">Listen to the stems</a></p>')
    for title, caption, header, rows in report.sections():
        parts += [
            f"<h2>{html.escape(title[:1].upper() + title[1:])}</h2>",
            f'<p class="caption">{html.escape(caption)}</p>',
        ]
        parts.append(_table(header, rows))
    if report.failures:
        parts.append(
            '<ul class="failures">'
            + "".join(f"<li>failed: {html.escape(line)}</li>" for line in report.failure_lines())
            + "</ul>"
        )
    if report.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in report.notes) + "</ul>")
    if report.listening is not None:
        parts += _listening(report.listening)
    parts += _plot(report)
    parts.append("<h2>Legend</h2>")
    parts.append(
        '<dl class="legend">'
        + "".join(f"<dt>{html.escape(term)}</dt><dd>{html.escape(meaning)}</dd>" for term, meaning in report.legend())
        + "</dl>"
    )
    if report.listening is not None:
        parts.append(f"<script>{_SCRIPT}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
