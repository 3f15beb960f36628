"""``stemkit doctor``: the environment, and each plugin's findings through the ``stemkit.diagnostics`` group."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stemkit.cli import main

PLUGIN = '''
def diagnose(spec):
    if spec is None:
        return [{"level": "ok", "topic": "engine", "message": "all good"}]
    if spec.options.get("mode") == "broken":
        raise RuntimeError("the plugin's own bug")
    if spec.options.get("mode") == "odd":
        return [{"level": "shrug", "topic": "x", "message": "y"}]
    return [
        {"level": "info", "topic": "spec", "message": spec.render()},
        {"level": "warning", "topic": "device=gpu", "message": "no GPU here; the CPU will run"},
    ]
'''


@pytest.fixture
def doctor_plugin(tmp_path: Path) -> Iterator[None]:
    """A distribution on sys.path with a provider entry point and a diagnostics entry point (nothing else)."""
    site = tmp_path / "site"
    info = site / "stemkit_doctortest-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: stemkit-doctortest\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        "[stemkit.separators]\ndoctortest = stemkit_doctortest:Separator\n\n"
        "[stemkit.diagnostics]\ndoctortest = stemkit_doctortest:diagnose\n"
    )
    (site / "stemkit_doctortest.py").write_text(PLUGIN)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(site))
        yield
    sys.modules.pop("stemkit_doctortest", None)


@pytest.mark.usefixtures("doctor_plugin")
def test_doctor_prints_the_environment_and_every_plugin_s_findings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("stemkit ")
    assert "doctortest (stemkit-doctortest 0.1.0)" in out
    assert "STEMKIT_OFFLINE: not set" in out
    section = out[out.index("\ndoctortest\n") :]
    assert "ok  engine  all good" in section


@pytest.mark.usefixtures("doctor_plugin")
def test_doctor_hands_each_chain_member_its_spec_and_shows_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "-p", "doctortest:model?device=gpu | doctortest"]) == 0
    out = capsys.readouterr().out
    assert "doctortest:model?device=gpu\n" in out
    assert re.search(r"--\s+spec\s+doctortest:model\?device=gpu", out)
    assert "WARN  device=gpu" in out


@pytest.mark.usefixtures("doctor_plugin")
def test_doctor_json_is_typed_and_a_broken_plugin_is_a_finding_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--json", "-p", "doctortest?mode=broken | doctortest?mode=odd | nosuchprovider"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert isinstance(report["environment"]["offline"], bool)
    broken, odd, missing = report["sections"]
    assert broken["findings"] == [
        {"level": "error", "topic": "diagnostics",
         "message": "the doctortest plugin's diagnostics failed: RuntimeError: the plugin's own bug"}
    ]
    assert odd["findings"][0]["level"] == "error"
    assert "level 'shrug'" in odd["findings"][0]["message"]
    assert missing["provider"] == "nosuchprovider"
    assert "'nosuchprovider' is not installed" in missing["findings"][0]["message"]


def test_doctor_reports_a_plugin_without_diagnostics_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("stemkit_dsp")
    assert main(["doctor", "-p", "dsp"]) == 0
    assert "the dsp plugin offers no diagnostics" in capsys.readouterr().out


def test_doctor_with_a_bad_spec_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "-p", "dsp |"]) == 2
    assert "empty link" in capsys.readouterr().err
