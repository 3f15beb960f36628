"""Shared fixtures: a short demo song on disk and helpers to write real audio files."""

from __future__ import annotations

import contextlib
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemkit.demo import make_demo


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-second demo song in MUSDB layout (the full 30 s one is for the README and benchmarks)."""
    root = tmp_path_factory.mktemp("demo")
    make_demo(root, seconds=4.0)
    return root


@pytest.fixture
def write_wav(tmp_path: Path) -> Callable[..., Path]:
    def write(audio: np.ndarray, rate: int = 44_100, name: str = "input.wav", subtype: str = "FLOAT") -> Path:
        path = tmp_path / name
        sf.write(path, np.asarray(audio).T, rate, subtype=subtype)
        return path

    return write


def tone(seconds: float = 0.5, rate: int = 44_100, channels: int = 2, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([mono * (1 - 0.2 * c) for c in range(channels)])


@contextlib.contextmanager
def installed(project: Path, site: Path) -> Iterator[dict[str, dict[str, str]]]:
    """Install the plugin project at ``project`` (a ``pyproject.toml`` and ``src/``) for the block, the way
    ``importlib.metadata`` sees any installed distribution: a ``.dist-info`` in ``site`` declaring its entry
    points, and its ``src`` on ``sys.path``. Nothing is built or copied; yields the entry-point groups."""
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    info = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\nSummary: {meta['description']}\n",
        encoding="utf-8",
    )
    groups: dict[str, dict[str, str]] = meta.get("entry-points", {})
    lines = [f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in groups.items()]
    (info / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")
    packages = [p.name for p in (project / "src").iterdir() if (p / "__init__.py").is_file()]
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.syspath_prepend(str(project / "src"))
            mp.syspath_prepend(str(site))
            yield groups
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] in packages]:
            del sys.modules[name]
