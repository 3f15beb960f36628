"""Every kind of bad input gets a clear stemkit error that names it and says what to do — no traceback,
no output written."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import stemkit
from stemkit.errors import ConfigError, InputError

from .conftest import tone


def test_a_missing_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(InputError, match=r"nope\.wav: no such file"):
        stemkit.separate(missing)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        stemkit.separate(tmp_path)


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.touch()
    with pytest.raises(InputError, match=r"empty\.wav: the file is empty"):
        stemkit.separate(empty)


def test_a_text_file_named_wav_is_not_audio(tmp_path: Path) -> None:
    fake = tmp_path / "notes.wav"
    fake.write_text("these are my lyrics, not audio\n" * 20)
    with pytest.raises(InputError, match=r"notes\.wav: not a readable audio file") as info:
        stemkit.separate(fake)
    assert "0x" not in str(info.value)  # no object reprs in a user-facing message


def test_a_truncated_wav_is_refused(tmp_path: Path, write_wav) -> None:  # type: ignore[no-untyped-def]
    whole = write_wav(tone(0.5), subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[:30])  # the header is not even complete
    with pytest.raises(InputError, match=r"cut\.wav"):
        stemkit.separate(cut)


def test_a_wav_whose_data_stops_early_still_separates_what_is_there(write_wav, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    whole = write_wav(tone(0.5), subtype="PCM_16")
    cut = tmp_path / "short.wav"
    cut.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
    frames = sf.info(cut).frames
    result = stemkit.separate(cut)
    assert result.frames == frames > 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_samples_are_refused(bad: float, write_wav) -> None:  # type: ignore[no-untyped-def]
    audio = tone(0.2)
    audio[0, 100] = bad
    with pytest.raises(InputError, match="NaN or infinite"):
        stemkit.separate(audio, sample_rate=44_100)
    with pytest.raises(InputError, match="NaN or infinite"):
        stemkit.separate(write_wav(audio))


@pytest.mark.parametrize("frames", [0, 1])
def test_zero_or_one_sample_signals_are_too_short(frames: int) -> None:
    with pytest.raises(InputError, match="at least 2 samples"):
        stemkit.separate(np.zeros((2, frames), dtype=np.float32), sample_rate=44_100)


def test_more_than_two_channels_is_a_clear_error(write_wav) -> None:  # type: ignore[no-untyped-def]
    path = write_wav(np.zeros((6, 4410), dtype=np.float32), name="surround.wav")
    with pytest.raises(InputError, match=r"surround\.wav: has 6 channels.*mix it down"):
        stemkit.separate(path)


def test_an_array_in_samples_by_channels_order_is_spotted() -> None:
    with pytest.raises(InputError, match=r"pass array\.T"):
        stemkit.separate(np.zeros((4410, 2), dtype=np.float32), sample_rate=44_100)


def test_an_array_needs_its_sample_rate() -> None:
    with pytest.raises(ConfigError, match="sample_rate"):
        stemkit.separate(np.zeros((2, 4410), dtype=np.float32))


def test_an_unsupported_container_without_pyav_names_the_extra(tmp_path: Path) -> None:
    m4a = tmp_path / "song.m4a"
    m4a.write_bytes(b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 200)
    script = (
        "import sys; sys.modules['av'] = None\n"
        "import stemkit\n"
        f"stemkit.separate({str(m4a)!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert "InputError" in proc.stderr
    assert 'pip install "stemkit[av]"' in proc.stderr


def test_an_m4a_file_decodes_through_pyav(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    path = tmp_path / "song.m4a"
    rate = 44_100
    audio = tone(1.0, rate)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio), format="fltp", layout="stereo")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    result = stemkit.separate(path)
    assert result.sample_rate == rate
    assert result.channels == 2
    assert abs(result.frames - audio.shape[1]) < 4096  # AAC priming/padding: what the container says is there


def test_a_text_mode_file_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    path.write_text("hello")
    with path.open("r") as handle, pytest.raises(InputError, match="text mode"):
        stemkit.separate(handle)


def test_bytes_that_are_not_audio_are_refused() -> None:
    with pytest.raises(InputError, match="<bytes>: not a readable audio file"):
        stemkit.separate(b"definitely not audio" * 10)


def test_an_unknown_provider_lists_the_installed_ones() -> None:
    with pytest.raises(ConfigError, match=r"'nosuch' is not installed; installed providers: .*dsp"):
        stemkit.separate(tone(0.1), provider="nosuch", sample_rate=44_100)


def test_an_unknown_option_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown option\(s\) 'colour'; known options: bass_hz, center"):
        stemkit.load("dsp?colour=blue")


def test_an_invalid_option_value_says_which_and_why() -> None:
    with pytest.raises(ConfigError, match=r"kernel='1'"):
        stemkit.load("dsp?kernel=1")


def test_an_unusable_object_is_refused() -> None:
    with pytest.raises(InputError, match="cannot use a int"):
        stemkit.separate(42)


def test_a_file_like_object_is_separated(write_wav) -> None:  # type: ignore[no-untyped-def]
    data = write_wav(tone(0.3)).read_bytes()
    result = stemkit.separate(io.BytesIO(data))
    assert result.frames == int(0.3 * 44_100)
