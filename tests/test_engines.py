"""Execution engines: found through the entry-point group ``stemkit.engines`` (a test plugin stands for a Dask
or Spark engine), handed a request the core has checked, and ``local`` stays the default."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import stemkit
from stemkit.engines import BatchRequest, engines, load_engine
from stemkit.errors import ConfigError, OutputError

from .conftest import installed

ENGINE = Path(__file__).parent / "plugins" / "stemkit-inline-engine"


@pytest.fixture
def inline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with installed(ENGINE, tmp_path_factory.mktemp("site")) as groups:
        assert set(groups) == {"stemkit.engines"}
        from stemkit_inline_engine import InlineEngine

        InlineEngine.requests.clear()
        yield InlineEngine


def test_an_engine_plugin_runs_the_batch_it_is_handed(inline: Any, demo_dir: Path, tmp_path: Path) -> None:
    song = demo_dir / "mixture.wav"
    items = list(stemkit.separate_many(song, "dsp", stems="vocals,instrumental", output_dir=tmp_path,
                                       engine="inline", engine_options={"workers": 3}))  # fmt: skip
    assert [item.ok for item in items] == [True]
    assert sorted(p.name for p in items[0].paths.values()) == ["instrumental.wav", "vocals.wav"]
    (request, options), = inline.requests
    assert isinstance(request, BatchRequest)
    assert request.inputs == (song,)
    assert request.stems == ("vocals", "instrumental")  # normalized once, in the core
    assert options == {"workers": 3}
    assert "inline" in engines()


def test_the_request_is_checked_before_any_engine_runs(inline: Any, demo_dir: Path, tmp_path: Path) -> None:
    song = demo_dir / "mixture.wav"
    with pytest.raises(ConfigError, match="concurrency"):
        list(stemkit.separate_many(song, "dsp", concurrency=0, engine="inline"))
    with pytest.raises(OutputError, match="format"):
        list(stemkit.separate_many(song, "dsp", format="ogg", engine="inline"))
    with pytest.raises(OutputError, match="template"):
        list(stemkit.separate_many(song, "dsp", template="{nope}", engine="inline"))
    with pytest.raises(ConfigError, match=r"engine .inline.: .*wokers"):
        list(stemkit.separate_many(song, "dsp", engine="inline", engine_options={"wokers": 2}))
    assert inline.requests == []


def test_an_engine_that_is_not_installed_names_those_that_are() -> None:
    with pytest.raises(ConfigError, match=r"engine 'spark' is not installed; installed engines: .*stemkit.engines"):
        load_engine("spark")
    with pytest.raises(ConfigError, match="engine_options"):
        list(stemkit.separate_many("song.wav", "dsp", engine_options={"actors": 2}))
    assert engines()[0] == "local"
