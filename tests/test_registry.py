"""Plugin discovery through entry points: a provider installed only for this test is found, listed without
importing it, loaded by name, and used like any built-in one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = '''
import numpy as np
from stemkit.protocol import Capabilities
from stemkit.provider import RawResult, SeparatorBase


class HalfSeparator(SeparatorBase):
    """Splits the mix into two equal halves called 'voice' and 'backing' (the provider's own names)."""

    name = "halves"
    stem_aliases = {"backing": "instrumental", "voice": "vocals"}

    @property
    def capabilities(self):
        return Capabilities(combinations=(("vocals", "instrumental"),))

    def _separate(self, job):
        audio = job.source.read()
        return RawResult({"voice": audio / 2, "backing": audio / 2}, sample_rate=job.source.sample_rate)
'''


def _install(site: Path, dist: str, module: str, source: str, entry: str) -> None:
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\nSummary: A test provider ({module}).\n"
    )
    (info / "entry_points.txt").write_text(f"[stemkit.separators]\n{entry}\n")
    (info / "RECORD").write_text("")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    _install(site, "stemkit-halves", "stemkit_halves", PLUGIN, "halves = stemkit_halves:HalfSeparator")
    _install(site, "stemkit-broken", "stemkit_broken", "raise RuntimeError('imported!')\n",
             "broken = stemkit_broken:Nothing")
    return site


def _run(site: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, check=False)


def test_listing_finds_installed_providers_without_importing_them(site: Path) -> None:
    proc = _run(site, """
        import json, sys, stemkit
        found = {p.name: p.to_dict() for p in stemkit.providers()}
        loaded = [m for m in ("stemkit_halves", "stemkit_broken", "stemkit_dsp") if m in sys.modules]
        print(json.dumps({"found": found, "loaded": loaded}))
    """)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["loaded"] == []
    assert out["found"]["halves"]["distribution"] == "stemkit-halves"
    assert out["found"]["halves"]["version"] == "0.3"
    assert out["found"]["halves"]["summary"] == "A test provider (stemkit_halves)."
    assert {"dsp", "broken"} <= set(out["found"])


def test_a_provider_installed_for_the_test_separates_with_its_names_mapped(site: Path, demo_dir: Path) -> None:
    proc = _run(site, f"""
        import stemkit
        result = stemkit.separate({str(demo_dir / 'mixture.wav')!r}, provider="halves")
        print(sorted(result), result["instrumental"].provider_name, result.provider)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["['instrumental',", "'vocals']", "backing", "halves"]


def test_a_plugin_that_fails_to_import_gives_a_config_error(site: Path) -> None:
    proc = _run(site, """
        import stemkit
        try:
            stemkit.load("broken")
        except stemkit.ConfigError as exc:
            print("ConfigError:", exc)
    """)
    assert "ConfigError: provider 'broken' is installed but failed to import (RuntimeError: imported!)" in proc.stdout


def test_the_cli_lists_providers_as_json(site: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-m", "stemkit", "providers", "--json"], capture_output=True,
                          text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    names = [p["name"] for p in json.loads(proc.stdout)]
    assert "halves" in names
    assert "dsp" in names
