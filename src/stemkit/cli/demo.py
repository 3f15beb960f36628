"""``stemkit demo DIR``: synthesize the deterministic demo song in MUSDB18-HQ layout."""

from __future__ import annotations

from pathlib import Path

import typer

from stemkit.cli._console import console


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)


def demo_command(
    directory: Path = typer.Argument(..., metavar="DIR", help="Folder to write mixture.wav and the stems into."),
    seconds: float = typer.Option(30.0, "--seconds", metavar="SECONDS", help="Length of the song."),
    sample_rate: int = typer.Option(44_100, "--sample-rate", metavar="HZ", help="Sample rate in Hz."),
) -> None:
    """Write a synthesized demo song: mixture.wav plus vocals, drums, bass and other."""
    from stemkit.demo import DEMO_STEMS, make_demo

    mixture = make_demo(directory, seconds=seconds, sample_rate=sample_rate)
    console.print(f"demo song: {mixture}")
    console.print(f"reference stems: {', '.join(str(directory / f'{s}.wav') for s in DEMO_STEMS)}")
