"""A file-object input is copied to a temporary file with a size limit: an endless stream is an InputError that
names the limit and what to do, and leaves nothing behind, instead of filling the disk."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest
import soundfile as sf

import stemkit
from stemkit.audio import DEFAULT_MAX_INPUT_BYTES, MAX_INPUT_BYTES_ENV, max_input_bytes, open_source
from stemkit.errors import ConfigError, InputError

from .conftest import tone


class Endless(io.RawIOBase):
    """A binary stream that never ends (a pipe from a process that never stops); counts what was read."""

    name = "<endless>"

    def __init__(self) -> None:
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        view[:] = b"\x01" * len(view)
        self.served += len(view)
        return len(view)


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary files go to a folder of the test's own, so what is left behind can be seen."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_an_endless_file_object_is_an_input_error_naming_the_limit(
    private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MAX_INPUT_BYTES_ENV, "2M")
    stream = Endless()
    with pytest.raises(InputError) as caught:
        stemkit.separate(io.BufferedReader(stream))
    message = str(caught.value)
    assert "more than 2 MiB" in message
    assert "pass the file's path instead" in message
    assert f"{MAX_INPUT_BYTES_ENV}" in message
    assert stream.served <= 2 * 1024**2 + 2 * (1 << 20)  # it stopped reading at the limit
    assert list(private_tmp.iterdir()) == []  # the partial copy is gone


def test_the_default_limit_is_4_gib_and_the_variable_takes_units(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_INPUT_BYTES_ENV, raising=False)
    assert max_input_bytes() == DEFAULT_MAX_INPUT_BYTES == 4 * 1024**3
    for raw, expected in [("1000", 1000), ("64k", 64 * 1024), ("500M", 500 * 1024**2), ("8GiB", 8 * 1024**3)]:
        monkeypatch.setenv(MAX_INPUT_BYTES_ENV, raw)
        assert max_input_bytes() == expected
    for bad in ("lots", "-5", "0", "1.5G"):
        monkeypatch.setenv(MAX_INPUT_BYTES_ENV, bad)
        with pytest.raises(ConfigError, match=f"{MAX_INPUT_BYTES_ENV}=.* is not a positive size"):
            max_input_bytes()


def test_a_file_object_under_the_limit_is_separated(
    tmp_path: Path, private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "song.wav"
    sf.write(path, tone(0.5, 16_000).T, 16_000, subtype="PCM_16")
    monkeypatch.setenv(MAX_INPUT_BYTES_ENV, str(path.stat().st_size))  # exactly the file's size is allowed
    with path.open("rb") as handle:
        result = stemkit.separate(handle, stems="vocals")
    assert result.frames == 8_000
    monkeypatch.setenv(MAX_INPUT_BYTES_ENV, str(path.stat().st_size - 1))
    with path.open("rb") as handle, pytest.raises(InputError, match="holds more than"):
        open_source(handle)
