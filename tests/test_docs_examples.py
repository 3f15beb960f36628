"""Every code example in docs/ runs, and the tutorial's example provider passes the conformance suite.

Conventions the docs follow (and this test enforces):

- a ```` ```python ```` block is executed; the blocks of one page run in order in one namespace, in a fresh
  working directory holding ``demo-song/`` (the demo song, shortened to a few seconds to keep this fast);
- a ```` ```sh ```` block holds ``stemkit`` commands (and comments), each run in-process through
  ``stemkit.cli.main`` and expected to exit 0 (``stemkit demo`` gets ``--seconds`` to stay short);
- a block that cannot run here (network, real API keys, package installs, servers that run until
  interrupted) is preceded by ``<!-- not-run: reason -->`` — and the reason must be given;
- a block made only of ``--8<--`` includes is a listing of a real file (checked to exist), exercised by the
  blocks that use it;
- other languages (``text``, ``toml``) are not executed.

The example provider (``examples/stemkit-example``) is made importable for the whole module without
installing anything: its ``src`` goes on ``sys.path`` next to a generated ``.dist-info`` that declares its
entry point, which is all ``importlib.metadata`` (and so stemkit's registry) needs.
"""

from __future__ import annotations

import re
import shlex
import shutil
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import stemkit
from stemkit.demo import make_demo
from stemkit.protocol import Separator
from stemkit.testing import ProviderConformance

from .conftest import installed

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLE = ROOT / "examples" / "stemkit-example"
DEMO_SECONDS = 4.0

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
_NOT_RUN = re.compile(r"<!--\s*not-run:(?P<reason>[^>]*)-->\s*$")
_SNIPPET = re.compile(r'^\s*--8<--\s+"(?P<path>[^"]+)"\s*$')
_ENV = (
    "STEMKIT_PROVIDER",
    "STEMKIT_OFFLINE",
    "STEMSPLIT_API_KEY",
    "STEMSPLIT_BASE_URL",
    "EZSTEMS_API_KEY",
    "EZSTEMS_BASE_URL",
)


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    body: str
    skip_reason: str | None

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def _blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    out = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").splitlines()
        previous = before[-1].strip() if before else ""
        marker = _NOT_RUN.search(previous)
        reason = marker.group("reason").strip() if marker else None
        lang = match.group("info").strip().split(" ")[0].lower()
        body = textwrap.dedent(match.group("body"))
        line = text.count("\n", 0, match.start()) + 1
        out.append(Block(str(page.relative_to(DOCS)), line, lang, body, reason))
    return out


PAGES = sorted(p for p in DOCS.rglob("*.md") if "_snippets" not in p.parts)
ALL_BLOCKS = [block for page in PAGES for block in _blocks(page)]
RUNNABLE_PAGES = sorted({b.page for b in ALL_BLOCKS if b.lang in ("python", "sh") and b.skip_reason is None})


def _is_listing(block: Block) -> bool:
    lines = [line for line in block.body.splitlines() if line.strip()]
    return bool(lines) and all(_SNIPPET.match(line) for line in lines)


# -- the example provider, importable without installing it -------------------------------------------------
@pytest.fixture(scope="module")
def example_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with installed(EXAMPLE, tmp_path_factory.mktemp("example-site")) as groups:
        assert "stemkit.separators" in groups, "examples/stemkit-example declares no stemkit.separators entry point"
        yield


@pytest.fixture(scope="module")
def demo_song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo") / "demo-song"
    make_demo(folder, seconds=DEMO_SECONDS)
    return folder


@pytest.fixture
def workdir(tmp_path: Path, demo_song: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(demo_song, tmp_path / "demo-song")
    monkeypatch.chdir(tmp_path)
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    from stemkit.routing import reset_breakers

    reset_breakers()
    return tmp_path


def _run_sh(block: Block) -> None:
    from stemkit.cli import main

    for raw in block.body.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        argv = shlex.split(line)
        assert argv[0] == "stemkit", (
            f"{block.where}: {line!r} is not a stemkit command; mark the block <!-- not-run: reason -->"
        )
        args = argv[1:]
        if args[:1] == ["demo"] and "--seconds" not in args:
            args += ["--seconds", str(DEMO_SECONDS)]
        status = main(args)
        assert status == 0, f"{block.where}: `{line}` exited with {status}"


# -- the tests -------------------------------------------------------------------------------------------
def test_docs_have_runnable_examples() -> None:
    assert len(RUNNABLE_PAGES) >= 10, RUNNABLE_PAGES


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.skip_reason is not None], ids=lambda b: b.where)
def test_every_skipped_example_says_why(block: Block) -> None:
    assert len(block.skip_reason or "") >= 8, f"{block.where}: give the reason the example is not run"


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if _is_listing(b)], ids=lambda b: b.where)
def test_listings_include_real_files(block: Block) -> None:
    for line in block.body.splitlines():
        match = _SNIPPET.match(line)
        if match:
            path = match.group("path").split(":", 1)[0]
            assert (ROOT / path).is_file() or (DOCS / "_snippets" / path).is_file(), f"{block.where}: {path}"


@pytest.mark.usefixtures("example_provider")
@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_page_examples_run(page: str, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": f"docs.{page}"}
    for block in (b for b in ALL_BLOCKS if b.page == page and b.skip_reason is None):
        if block.lang == "python" and not _is_listing(block):
            code = compile(block.body, block.where, "exec")
            try:
                exec(code, namespace)
            except BaseException as exc:
                raise AssertionError(f"{block.where} failed: {type(exc).__name__}: {exc}") from exc
        elif block.lang == "sh":
            _run_sh(block)
    capsys.readouterr()


def test_cli_reference_lists_every_option() -> None:
    import typer.main

    from stemkit.cli import build_app

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    command = typer.main.get_command(build_app())
    missing = []

    def visit(cmd: object, path: str) -> None:
        assert f"## {path}\n" in text, f"docs/cli.md has no section for `{path}`"
        for param in getattr(cmd, "params", []):
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt not in text:
                    missing.append(f"{path} {opt}")
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            visit(sub, f"{path} {name}")

    visit(command, "stemkit")
    assert not missing, f"docs/cli.md does not mention: {', '.join(missing)} (regenerate the help texts)"


def test_nav_names_every_page() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    unlisted = [str(p.relative_to(DOCS)) for p in PAGES if str(p.relative_to(DOCS)) not in nav]
    assert not unlisted, f"pages missing from the nav in mkdocs.yml: {unlisted}"


# -- the tutorial's provider against the conformance suite ------------------------------------------------
@pytest.mark.usefixtures("example_provider")
class TestExampleProviderConformance(ProviderConformance):
    @pytest.fixture
    def separator(self) -> Iterator[Separator]:
        with stemkit.load("bandsplit?low_hz=150&high_hz=5000") as sep:
            yield sep


def test_example_provider_is_found_through_its_entry_point(example_provider: None) -> None:
    info = {p.name: p for p in stemkit.providers()}["bandsplit"]
    assert (info.distribution, info.target) == ("stemkit-bandsplit", "stemkit_bandsplit:BandSplitSeparator")
