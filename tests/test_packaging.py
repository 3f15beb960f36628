"""What ``pip install stemkit`` brings: the core wheel carries the embedded default (``stemkit_dsp``, registered
through the same entry-point group as every plugin), extras bring the other providers, and a user is told which
distribution brings which provider.

The real thing — every wheel built, installed in a fresh virtual environment outside the checkout, the default
separating a song, the extras registering — is ``.ci/wheel-smoke``, which CI runs; these tests check the built
core wheel's contents and the wiring, fast.
"""

from __future__ import annotations

import email
import tomllib
import zipfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest

import stemkit
from stemkit import registry
from stemkit.cli import main
from stemkit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PROVIDER_EXTRAS = {"onnx": "stemkit-onnx", "stemsplit": "stemkit-stemsplit", "ezstems": "stemkit-ezstems"}


@pytest.fixture(scope="module")
def core_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``stemkit`` wheel, built from this checkout by its own build backend."""
    builder = pytest.importorskip("hatchling.builders.wheel")
    out = tmp_path_factory.mktemp("wheel")
    (path,) = builder.WheelBuilder(str(ROOT)).build(directory=str(out), versions=["standard"])
    return Path(path)


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(archive.read(name))


def test_the_core_wheel_ships_the_embedded_default_and_registers_it(core_wheel: Path) -> None:
    with zipfile.ZipFile(core_wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert {"stemkit_dsp/__init__.py", "stemkit_dsp/masks.py", "stemkit_dsp/py.typed", "stemkit/py.typed"} <= names
    assert "[stemkit.separators]\ndsp = stemkit_dsp:DspSeparator" in entry_points
    assert "stemkit = stemkit.cli:main" in entry_points


def test_the_core_depends_on_no_plugin_and_each_extra_brings_its_provider(core_wheel: Path) -> None:
    meta = _metadata(core_wheel)
    requirements = meta.get_all("Requires-Dist") or []
    base = [r for r in requirements if "extra ==" not in r]
    assert not [r for r in base if r.startswith("stemkit")], "the core must not depend on a plugin (circular)"
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"onnx", "stemsplit", "ezstems", "gpu", "all", "emulators"} <= extras

    def wanted(extra: str) -> set[str]:
        return {r.split(";")[0].split(">=")[0].strip() for r in requirements if f"extra == '{extra}'" in r}

    for extra, distribution in PROVIDER_EXTRAS.items():
        assert distribution in wanted(extra)
    assert {"stemkit-onnx", "onnxruntime-gpu"} <= wanted("gpu")
    everything = wanted("all")
    for extra in extras - {"all", "gpu", "museval", "ray", "dev"}:
        assert wanted(extra) <= everything, f"stemkit[all] leaves out the {extra} extra"
    assert "onnxruntime-gpu" not in everything  # it replaces onnxruntime: a deliberate, separate step
    assert wanted("ray") == {"stemkit-ray"}  # an execution engine, its own extra (a cluster runtime, not in all)
    assert "stemkit-ray" not in everything


def test_the_installed_core_distribution_is_what_registers_dsp() -> None:
    found = {p.name: p for p in stemkit.providers()}
    assert found["dsp"].distribution == "stemkit"
    assert found["dsp"].target == "stemkit_dsp:DspSeparator"
    assert any(ep.name == "dsp" for ep in metadata.distribution("stemkit").entry_points)


def test_the_core_never_imports_the_baseline_by_name() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "src" / "stemkit").rglob("*.py")
                 if "stemkit_dsp" in p.read_text(encoding="utf-8")]  # fmt: skip
    assert not offenders, f"arrows point one way: the core may not import the dsp provider ({offenders})"


def test_no_distribution_depends_on_a_stemkit_dsp_package_and_there_is_one_emulator_extra() -> None:
    for pyproject in [ROOT / "pyproject.toml", *ROOT.glob("plugins/*/pyproject.toml"),
                      *ROOT.glob("tests/plugins/*/pyproject.toml")]:  # fmt: skip
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        extras = project.get("optional-dependencies", {})
        requirements = [*project.get("dependencies", []), *(r for group in extras.values() for r in group)]
        assert not [r for r in requirements if r.startswith("stemkit-dsp")], pyproject
        if pyproject.parent != ROOT:
            assert "emulator" not in project.get("optional-dependencies", {}), f"{pyproject}: use stemkit[emulators]"
    documented = [p for p in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
                  if "[emulator]" in p.read_text(encoding="utf-8")]  # fmt: skip
    assert not documented, f"one extra for the emulators, stemkit[emulators]: {documented}"


def test_ci_runs_the_wheel_smoke_test_of_the_built_wheels() -> None:
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    smoke = ROOT / ".ci" / "wheel-smoke"
    assert ".ci/wheel-smoke" in run
    assert smoke.stat().st_mode & 0o111, ".ci/wheel-smoke must be executable"
    script = smoke.read_text(encoding="utf-8")
    assert "python3 -m venv" in script
    assert "pip wheel" in script
    assert "-e " not in script.replace("set -euo", "")


@pytest.fixture
def without(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Hide installed providers from the registry, as if their distributions were not installed."""
    real = registry.entry_points

    def hide(*names: str) -> None:
        def entry_points(group: str) -> list[metadata.EntryPoint]:
            found = real(group)
            return [ep for ep in found if not (group == registry.PROVIDER_GROUP and ep.name in names)]

        monkeypatch.setattr(registry, "entry_points", entry_points)

    return hide


def test_providers_says_what_is_not_installed_and_how_to_get_it(
    without: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    without("onnx", "ezstems")
    assert main(["providers"]) == 0
    out = capsys.readouterr().out
    assert "Not installed:" in out
    assert 'pip install "stemkit[onnx]"' in out
    assert 'pip install "stemkit[ezstems]"' in out
    assert "stemkit[stemsplit]" not in out  # installed here
    assert main(["providers", "--json"]) == 0
    import json

    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["onnx"]["installed"] is False
    assert rows["onnx"]["install"] == 'pip install "stemkit[onnx]"'
    assert rows["dsp"]["installed"] is True
    assert rows["dsp"]["distribution"] == "stemkit"


def test_asking_for_a_provider_that_is_not_installed_says_which_extra_brings_it(
    without: Callable[..., None],
) -> None:
    without("onnx")
    expected = r"provider 'onnx' is not installed; install it with: pip install \"stemkit\[onnx\]\""
    with pytest.raises(ConfigError, match=expected):
        stemkit.load("onnx:htdemucs")
