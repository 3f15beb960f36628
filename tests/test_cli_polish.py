"""The rough edges a new user meets on the command line, one test each (issue 16's list): readable help,
``--version``, ``--debug`` anywhere, emulators that print their key, result lines that survive the progress
bars, the provider that ran named on success, messages without doubled full stops or prefixes, the stem a
provider cannot make named, ``--jobs`` named, a file given twice separated once, the README's example, the docs'
tables and the generated CLI reference."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import stemkit
from stemkit.cli import build_command, main
from stemkit.demo import make_demo

ROOT = Path(__file__).resolve().parents[1]
TYPE_NAMES = re.compile(r"<(bool|str|int|float|path|list\[[^\]]*\]|[a-z]+ range)>")


def stemkit_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stemkit", *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})}, cwd=cwd)  # fmt: skip


def _paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in (getattr(command, "commands", None) or {}).items():
        yield from _paths(sub, (*path, name))


# -- help, --version, --debug ------------------------------------------------------------------------------


def test_no_help_shows_internal_type_names(capsys: pytest.CaptureFixture[str]) -> None:
    paths = list(_paths(build_command()))
    assert ("separate",) in paths
    for path in paths:
        assert main([*path, "--help"]) == 0
        text = capsys.readouterr().out
        assert not TYPE_NAMES.search(text), f"stemkit {' '.join(path)} --help shows {TYPE_NAMES.search(text)}"
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        assert "{" not in usage, usage
    main(["separate", "--help"])
    text = capsys.readouterr().out
    assert "Usage: stemkit separate [OPTIONS] INPUT..." in text
    assert re.search(r"--provider\s+-p\s+SPEC", text)
    assert re.search(r"--output\s+-o\s+DIR", text)
    assert re.search(r"--jobs\s+-j\s+N", text)
    assert re.search(r"--no-cache\s+Use no result cache", text)  # a flag: no type at all


def test_version_prints_the_installed_version() -> None:
    run = stemkit_cli("--version")
    assert run.returncode == 0
    assert run.stdout == f"stemkit {stemkit.__version__}\n"


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_works_before_or_after_the_command(tmp_path: Path, where: str) -> None:
    args = ["separate", str(tmp_path / "missing.wav")]
    run = stemkit_cli(*(["--debug", *args] if where == "before" else [*args, "--debug"]))
    assert run.returncode == 1
    assert "Traceback" in run.stderr
    assert "InputError" in run.stderr


# -- emulators ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def emulator(name: str, *args: str) -> Iterator[dict[str, str]]:
    """``stemkit emulate NAME`` in a subprocess: the variables it prints, until the block ends (then SIGTERM)."""
    proc = subprocess.Popen([sys.executable, "-m", "stemkit", "emulate", name, "--processing-seconds", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        printed = dict(line.removeprefix("export ").split("=", 1) for line in lines[1:])
        assert lines[0].startswith("http://127.0.0.1:")
        printed["url"] = lines[0]
        yield printed
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.parametrize(("name", "prefix"), [("stemsplit", "STEMSPLIT"), ("ezstems", "EZSTEMS")])
def test_emulate_prints_the_url_and_the_key_it_accepts(demo_dir: Path, tmp_path: Path, name: str,
                                                       prefix: str) -> None:  # fmt: skip
    with emulator(name) as printed:
        assert printed[f"{prefix}_BASE_URL"] == printed["url"]
        run = stemkit_cli("separate", str(demo_dir / "mixture.wav"), "-p", name, "--stems", "vocals", "-o",
                          str(tmp_path), env=printed)  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert f"by {name}" in run.stdout
        wrong = stemkit_cli("separate", str(demo_dir / "mixture.wav"), "-p", name, "-o", str(tmp_path / "x"),
                            env={**printed, f"{prefix}_API_KEY": "wrong"})  # fmt: skip
    assert wrong.returncode == 1
    assert f"`stemkit emulate {name}` prints" in wrong.stderr
    assert "stemsplit.io" not in wrong.stderr
    assert "EzStems' site" not in wrong.stderr


def test_emulate_prints_a_key_given_to_it() -> None:
    with emulator("stemsplit", "--api-key", "sk_mine") as printed:
        assert printed["STEMSPLIT_API_KEY"] == "sk_mine"


def test_a_wrong_key_for_the_real_service_points_to_its_settings_page() -> None:
    from stemkit.hosted.mapping import ErrorContext, RateLimitInfo
    from stemkit_stemsplit._errors import map_error

    def refused(url: str) -> str:
        body = {"error": {"code": "INVALID_API_KEY", "message": "Invalid API key."}}
        ctx = ErrorContext("stemsplit", "POST", url, 401, httpx.Headers(), body, json.dumps(body), None,
                           RateLimitInfo.from_headers(httpx.Headers()), True)  # fmt: skip
        error = map_error(ctx)
        assert error is not None
        return str(error)

    real = refused("https://stemsplit.io/api/v1/upload")
    assert "https://stemsplit.io/app/settings/api" in real
    assert "Invalid API key; set STEMSPLIT_API_KEY" in real  # the server's full stop is not doubled
    local = refused("http://127.0.0.1:8765/api/v1/upload")
    assert "stemsplit.io" not in local
    assert "`stemkit emulate stemsplit` prints" in local


def test_messages_have_no_doubled_full_stops_or_prefixes(demo_dir: Path, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    with emulator("stemsplit") as stemsplit, emulator("ezstems") as ezstems:
        env = {**stemsplit, **ezstems, "STEMSPLIT_API_KEY": "wrong.", "EZSTEMS_API_KEY": "wrong."}
        run = stemkit_cli("separate", str(demo_dir / "mixture.wav"), "-p", "stemsplit | ezstems", "-o",
                          str(tmp_path), env=env)  # fmt: skip
    assert run.returncode == 1
    text = run.stderr.replace("...", "")
    assert "every provider failed" in text
    assert not re.search(r"[^.]\.\.(?!\.)", text), text
    for name in ("stemsplit", "ezstems"):
        assert f"{name}: {name}:" not in text
        assert f"{name}: failed after" in text  # each trail line names the provider once


# -- the progress bars and the result lines -----------------------------------------------------------------


def _run_in_terminal(args: list[str], *, columns: int = 240, rows: int = 40) -> list[str]:
    """Run ``stemkit ARGS`` in a pseudo-terminal (stdout and stderr both the terminal, as a user has it) and
    return the screen it leaves, rendered by a VT100 emulator."""
    pyte = pytest.importorskip("pyte")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows)}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "stemkit", *args], stdin=slave, stdout=slave, stderr=slave,
                            env=env, close_fds=True)  # fmt: skip
    os.close(slave)
    output = b""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the other side closed: the process is done
                break
            if not chunk:
                break
            output += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=30) == 0, output.decode(errors="replace")[-2000:]
    screen = pyte.Screen(columns, rows)
    pyte.ByteStream(screen).feed(output)
    return [line.rstrip() for line in screen.display]


def test_on_a_terminal_result_lines_stay_whole_above_the_progress_bars(tmp_path: Path) -> None:
    inputs = []
    for index in range(4):
        folder = tmp_path / f"song{index}"
        make_demo(folder, seconds=2.0)
        inputs.append(folder / "mixture.wav")
    screen = _run_in_terminal(["separate", *map(str, inputs), "-o", str(tmp_path / "out"), "--stems", "vocals"])
    results = [line for line in screen if " -> " in line]
    for index, song in enumerate(inputs):
        expected = f"{song} -> {tmp_path / 'out' / f'mixture-{index + 1}' if index else tmp_path / 'out' / 'mixture'}/"
        matching = [line for line in results if line.startswith(expected)]
        assert matching, f"the result line of {song} is missing or broken:\n" + "\n".join(screen)
        assert matching[0].endswith("(vocals.wav) by dsp"), matching[0]
    bars = [line for line in screen if "━" in line]
    assert bars, "the progress bars are gone"
    assert not [line for line in bars if " -> " in line], "a result line is glued to a progress bar"


# -- what ran, what cannot be made, --jobs, inputs given twice ----------------------------------------------


def test_the_success_line_names_the_provider_and_a_fallback(demo_dir: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.delenv("STEMSPLIT_API_KEY", raising=False)
    assert main(["separate", str(demo_dir / "mixture.wav"), "-p", "stemsplit | dsp", "-o", str(tmp_path)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.endswith("(vocals.wav, drums.wav, bass.wav, other.wav) by dsp (stemsplit skipped)"), line


def test_a_stem_the_provider_cannot_make_is_the_one_named(demo_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert main(["separate", str(demo_dir / "mixture.wav"), "-p", "dsp", "--stems", "vocals,guitar", "-o",
                 str(tmp_path)]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "dsp: cannot produce or derive guitar (asked for vocals, guitar)" in err
    from stemkit.audio import open_source
    from stemkit.routing import skip_reason

    with stemkit.load("dsp") as dsp:
        reason = skip_reason(dsp, open_source(demo_dir / "mixture.wav"), ("vocals", "guitar"))
    assert reason == "cannot produce or derive guitar"


def test_jobs_zero_names_the_jobs_option(demo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["separate", str(demo_dir / "mixture.wav"), "-j", "0"]) == 2
    err = capsys.readouterr().err
    assert "--jobs" in err
    assert "concurrency" not in err


def test_a_file_given_directly_and_through_its_folder_is_separated_once(demo_dir: Path, tmp_path: Path) -> None:
    items = list(stemkit.separate_many([demo_dir, demo_dir / "mixture.wav", f"{demo_dir}/./mixture.wav"], "dsp",
                                       stems="vocals", output_dir=tmp_path))  # fmt: skip
    names = sorted(str(item.input) for item in items)
    assert len(names) == len(set(names)) == 5  # mixture + the four reference stems, each once
    assert not (tmp_path / "mixture-2").exists()


def test_models_list_fits_a_terminal_and_its_json_has_types(capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    pytest.importorskip("stemkit_onnx")
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert main(["models", "list", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)["models"]
    assert all(isinstance(m["cached"], bool) and isinstance(m["stems"], list) for m in models)


# -- docs ---------------------------------------------------------------------------------------------------


def test_the_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Using it") :]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None
    monkeypatch.chdir(tmp_path)
    make_demo(tmp_path / "demo", seconds=42.0)  # long enough for the example's excerpt at 0:30
    (tmp_path / "demo" / "mixture.wav").rename(tmp_path / "song.wav")
    namespace: dict[str, Any] = {"array": np.zeros((2, 44_100), np.float32)}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    assert namespace["rhythm"].shape == (namespace["stems"].channels, namespace["stems"].frames)


def test_no_docs_table_has_an_empty_header_row() -> None:
    empty = re.compile(r"^\|(\s*\|)+\s*$")
    offenders = []
    for page in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, (line, below) in enumerate(itertools.pairwise(lines), start=1):
            if empty.match(line) and re.match(r"^\|(\s*:?-+:?\s*\|)+\s*$", below):
                offenders.append(f"{page.relative_to(ROOT)}:{number}")
    assert not offenders, f"tables whose header row is empty: {offenders}"


def test_the_cli_reference_is_the_current_help() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_cli.py"), "--check"], capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
