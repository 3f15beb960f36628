"""Output options of ``StemSet.save``, ``separate_many`` and ``stemkit separate``: bit depth, MP3 bit rate and VBR
quality, clip handling, peak and loudness normalization, output sample rate, the ``{model}`` field.

Every format × option combination is written, read back by libsndfile and compared with the same processing
done the straightforward way (the whole signal at once: soxr, one gain, clamping), within what the format can
hold. Settings the encoder refuses are OutputErrors before any separation starts.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stemkit
from stemkit.cli import main
from stemkit.errors import OutputError, ProviderError
from stemkit.output import CLIP_MODES, check_output, mp3_bitrates, output_settings
from stemkit.protocol import Capabilities
from stemkit.provenance import Provenance
from stemkit.stemset import Stem, StemSet

RATE = 44_100
STEMS = ("vocals", "drums", "bass", "other")


def loud_set(peak: float = 1.77, seconds: float = 0.6, rate: int = RATE, channels: int = 2, seed: int = 0) -> StemSet:
    """Four stems (tones and noise) summing to a mixture, the loudest reaching ``peak``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    parts = []
    for index in range(len(STEMS)):
        wave = np.sin(2 * np.pi * (220 * (index + 1)) * t) + 0.1 * rng.standard_normal(t.size)
        parts.append(np.stack([wave * (1 - 0.2 * c) for c in range(channels)]).astype(np.float32))
    scale = peak / max(float(np.abs(p).max()) for p in parts)
    parts = [np.ascontiguousarray(p * np.float32(scale)) for p in parts]
    mixture = np.sum(parts, axis=0, dtype=np.float32)
    stems = [Stem.from_array(name, audio, rate) for name, audio in zip(STEMS, parts, strict=True)]
    return StemSet(stems, provenance=Provenance(provider="test", model="tones", input_name="song.wav"),
                   mixture=Stem.from_array("mixture", mixture, rate))  # fmt: skip


def read(path: Path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    return data.T, int(rate)


def expected(stems: StemSet, name: str, *, rate: int | None, gain: float, clamp: bool) -> np.ndarray:
    """The stem processed the straightforward way: the whole array resampled, scaled and clamped at once."""
    audio = stems[name].audio
    if rate is not None and rate != stems.sample_rate:
        audio = np.ascontiguousarray(soxr.resample(audio.T, stems.sample_rate, rate, quality="HQ").T)
    out = (audio * np.float32(gain)).astype(np.float32)
    return np.clip(out, -0.99, 0.99) if clamp else out


def quantum(subtype: str) -> float:
    return {"PCM_16": 1 / 32768, "PCM_24": 1 / 8388608, "FLOAT": 0.0}[subtype]


FORMATS = [("wav", 16), ("wav", 24), ("wav", 32), ("wav", None), ("flac", 16), ("flac", 24), ("flac", None),
           ("mp3", None)]  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fmt_depth=st.sampled_from(FORMATS),
    clip=st.sampled_from(CLIP_MODES),
    normalize=st.sampled_from([None, "peak", "peak:-6", "loudness", "loudness:-20"]),
    rate=st.sampled_from([None, 48_000, 32_000]),
    peak=st.sampled_from([0.5, 1.77]),
    channels=st.sampled_from([1, 2]),
)
def test_every_format_and_option_round_trips(
    tmp_path_factory: pytest.TempPathFactory, fmt_depth: tuple[str, int | None], clip: str, normalize: str | None,
    rate: int | None, peak: float, channels: int,
) -> None:  # fmt: skip
    fmt, depth = fmt_depth
    stems = loud_set(peak, channels=channels)
    out = tmp_path_factory.mktemp("out")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # clip="none" on a format that clips says so; checked on its own below
        saved = stems.save(out, fmt, bit_depth=depth, clip=clip, normalize=normalize, sample_rate=rate)
    chosen = output_settings(fmt, bit_depth=depth, clip=clip, normalize=normalize, sample_rate=rate)
    levels = saved.levels
    out_rate = rate or RATE
    assert saved.sample_rate == out_rate
    assert levels.clamp == (chosen.clip_mode == "clamp")
    if chosen.clip_mode == "rescale":
        assert levels.peak is not None
        assert levels.peak * levels.gain <= 1 / 1.01 + 1e-6  # nothing left above full scale
    if normalize is None and chosen.clip_mode != "rescale":
        assert levels.gain == 1.0
    for name in STEMS:
        data, got_rate = read(saved[name])
        reference = expected(stems, name, rate=rate, gain=levels.gain, clamp=levels.clamp)
        assert got_rate == out_rate
        assert data.shape == reference.shape  # exact length at the output rate, channels kept
        info = sf.info(saved[name])
        if fmt == "mp3":
            if float(np.abs(reference).max()) > 1:
                continue  # clip="none": what the encoder makes of samples above full scale is its own business
            # lossy: the same signal, not the same samples
            clipped = np.clip(reference, -1, 1)
            noise = float(np.mean((data - clipped) ** 2))
            assert 10 * math.log10(float(np.mean(clipped**2)) / max(noise, 1e-20)) > 15
            continue
        assert info.subtype == chosen.subtype
        if chosen.holds_overs:
            np.testing.assert_allclose(data, reference, rtol=0, atol=2e-7 * max(1.0, float(np.abs(reference).max())))
        else:
            # an integer format holds what is within full scale, to its quantization step
            np.testing.assert_allclose(data, np.clip(reference, -1, 1), rtol=0, atol=quantum(info.subtype) * 1.01)


def test_the_stems_still_sum_to_the_mixture_after_a_rescale(tmp_path: Path) -> None:
    stems = loud_set(1.77)
    saved = stems.save(tmp_path, "flac")  # the default clip mode rescales the whole set for flac
    assert saved.levels.reasons == ("rescaled to avoid clipping",)
    total = sum(read(saved[name])[0] for name in STEMS)
    np.testing.assert_allclose(total, stems.mixture.audio * saved.levels.gain, atol=4 * 2**-23)
    assert max(float(np.abs(read(saved[n])[0]).max()) for n in STEMS) <= 1 / 1.01 + 2**-23


def test_a_flac_stem_above_full_scale_is_rescaled_by_default_not_clipped(tmp_path: Path) -> None:
    stems = loud_set(1.77)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "will clip" warning: nothing clips any more
        saved = stems.save(tmp_path, "flac")
    vocals, _ = read(saved["vocals"])
    gain = 1 / (1.77 * 1.01)
    assert saved.levels.gain == pytest.approx(gain)
    np.testing.assert_allclose(vocals, stems["vocals"].audio * gain, atol=2 * 2**-23)


def test_clip_none_keeps_the_old_behaviour_and_says_it_clips(tmp_path: Path) -> None:
    stems = loud_set(1.77)
    with pytest.warns(UserWarning, match="exceeds full scale and will clip in flac"):
        saved = stems.save(tmp_path, "flac", clip="none")
    assert float(np.abs(read(saved["vocals"])[0]).max()) == pytest.approx(1.0, abs=1e-6)


def test_float_wav_keeps_samples_above_full_scale_exactly_by_default(tmp_path: Path) -> None:
    stems = loud_set(1.77)
    saved = stems.save(tmp_path)
    assert saved.levels.gain == 1.0
    np.testing.assert_array_equal(read(saved["vocals"])[0], stems["vocals"].audio)


def test_clamp_holds_samples_within_099_and_leaves_the_rest(tmp_path: Path) -> None:
    stems = loud_set(1.77)
    saved = stems.save(tmp_path, "wav", clip="clamp")
    data = read(saved["vocals"])[0]
    source = stems["vocals"].audio
    assert float(np.abs(data).max()) == pytest.approx(0.99)
    inside = np.abs(source) < 0.99
    np.testing.assert_array_equal(data[inside], source[inside])


def test_peak_normalization_puts_the_loudest_sample_of_the_set_at_the_target(tmp_path: Path) -> None:
    stems = loud_set(0.3)
    saved = stems.save(tmp_path, "wav", normalize="peak:-3")
    peaks = {name: float(np.abs(read(saved[name])[0]).max()) for name in STEMS}
    assert max(peaks.values()) == pytest.approx(10 ** (-3 / 20), rel=1e-5)
    ratios = {name: peaks[name] / float(np.abs(stems[name].audio).max()) for name in STEMS}
    assert max(ratios.values()) == pytest.approx(min(ratios.values()), rel=1e-5)  # one gain for every stem


def test_loudness_normalization_brings_the_mixture_to_the_target(demo_dir: Path, tmp_path: Path) -> None:
    pyloudnorm = pytest.importorskip("pyloudnorm")
    stems = stemkit.separate(demo_dir / "mixture.wav", provider="dsp")  # dsp's stems sum to the mixture
    saved = stems.save(tmp_path, "wav", normalize="loudness:-20")
    total = sum(read(saved[name])[0] for name in stems)
    measured = pyloudnorm.Meter(stems.sample_rate).integrated_loudness(total.T)
    assert measured == pytest.approx(-20.0, abs=0.05)
    before = pyloudnorm.Meter(stems.sample_rate).integrated_loudness(stems.mixture.audio.T)
    assert saved.levels.loudness == pytest.approx(before, abs=0.01)


def test_the_loudness_meter_agrees_with_pyloudnorm_at_any_rate() -> None:
    pyloudnorm = pytest.importorskip("pyloudnorm")
    from stemkit.loudness import integrated_loudness

    rng = np.random.default_rng(3)
    for rate, channels in ((44_100, 2), (48_000, 1), (22_050, 2), (11_025, 1)):
        t = np.arange(rate * 3) / rate
        audio = np.stack([np.sin(2 * np.pi * 300 * t) * (0.1 + 0.1 * np.sin(t)) + 0.02 * rng.standard_normal(t.size)
                          for _ in range(channels)]).astype(np.float32)  # fmt: skip
        blocks = (audio[:, i : i + 4096] for i in range(0, audio.shape[1], 4096))
        ours = integrated_loudness(blocks, rate, channels)
        assert ours == pytest.approx(pyloudnorm.Meter(rate).integrated_loudness(audio.T), abs=1e-4)


def test_loudness_of_silence_leaves_the_level_alone_and_says_so(tmp_path: Path) -> None:
    silent = StemSet([Stem.from_array("vocals", np.zeros((2, 4000), np.float32), RATE)],
                     provenance=Provenance(provider="test", input_name="quiet.wav"))  # fmt: skip
    with pytest.warns(RuntimeWarning, match="loudness cannot be measured"):
        saved = silent.save(tmp_path, "flac", normalize="loudness")
    assert saved.levels.gain == 1.0


@pytest.mark.parametrize("kbps", [320, 192, 128, 64])
def test_mp3_has_the_constant_bit_rate_asked_for(tmp_path: Path, kbps: int) -> None:
    av = pytest.importorskip("av")
    saved = loud_set(0.5, seconds=2.0).save(tmp_path, "mp3", bitrate=kbps, template="{stem}.{ext}")
    with av.open(str(saved["vocals"])) as container:
        assert container.streams.audio[0].bit_rate == kbps * 1000
    assert "mp3 " + str(kbps) + " kbps" in saved.describe()


def test_mp3_defaults_to_320_kbps_and_takes_a_lower_rate_at_low_sample_rates(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    stems = loud_set(0.5, seconds=1.0)
    for rate, kbps in ((None, 320), (22_050, 160)):
        saved = stems.save(tmp_path / str(rate), "mp3", sample_rate=rate)
        with av.open(str(saved["vocals"])) as container:
            assert container.streams.audio[0].bit_rate == kbps * 1000


def test_mp3_vbr_quality_trades_size_for_quality(tmp_path: Path) -> None:
    stems = loud_set(0.5, seconds=2.0)
    sizes = {q: stems.save(tmp_path / str(q), "mp3", vbr_quality=q)["vocals"].stat().st_size for q in (0, 4, 9)}
    assert sizes[0] > sizes[4] > sizes[9]


def test_the_output_sample_rate_resamples_every_stem_to_the_exact_length(tmp_path: Path) -> None:
    stems = loud_set(0.5, seconds=0.7)
    for rate in (48_000, 22_050, 8_000):
        saved = stems.save(tmp_path / str(rate), "wav", sample_rate=rate)
        data, got = read(saved["drums"])
        whole = soxr.resample(stems["drums"].audio.T, RATE, rate, quality="HQ")
        assert got == rate
        assert data.shape[1] == whole.shape[0]
        np.testing.assert_allclose(data, whole.T, atol=1e-6)


def test_model_and_provider_fields_name_files(tmp_path: Path, demo_dir: Path) -> None:
    stems = stemkit.separate(demo_dir / "mixture.wav", provider="dsp", stems="vocals")
    saved = stems.save(tmp_path, "wav", "{provider}/{model}/{input}-{stem}.{ext}")
    assert saved["vocals"] == tmp_path / "dsp" / str(stems.provenance.model) / "mixture-vocals.wav"


def test_a_model_file_path_gives_its_name_to_the_model_field(tmp_path: Path) -> None:
    stems = loud_set(0.5)
    renamed = stems.with_provenance(Provenance(provider="onnx", model="/models/my model.onnx"))
    saved = renamed.save(tmp_path, "wav", "{model}/{stem}.{ext}")
    assert saved["vocals"].parent.name == "my model"


def test_saving_with_a_normalization_streams_file_backed_stems(tmp_path: Path, demo_dir: Path) -> None:
    stems = stemkit.separate(demo_dir / "mixture.wav", provider="dsp", stems=["vocals", "instrumental"])
    saved = stems.save(tmp_path, "flac", normalize="peak", sample_rate=48_000)
    assert not stems["instrumental"].is_loaded  # derived block by block, in both passes
    assert sf.info(saved["instrumental"]).samplerate == 48_000


def test_a_stem_with_nan_found_while_measuring_writes_nothing(tmp_path: Path) -> None:
    bad = np.zeros((2, 1000), np.float32)
    bad[0, 10] = np.nan
    stems = StemSet([Stem.from_array("vocals", np.ones((2, 1000), np.float32) * 0.1, RATE),
                     Stem.from_array("drums", bad, RATE)],
                    provenance=Provenance(provider="test", input_name="song.wav"))  # fmt: skip
    with pytest.raises(ProviderError, match="'drums' has 1 NaN or infinite sample"):
        stems.save(tmp_path / "out", "flac", normalize="peak")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# -- refused early ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"format": "flac", "bit_depth": 32}, r"flac holds 16 or 24-bit samples, not 32-bit; for 32-bit float use wav"),
        ({"format": "wav", "bit_depth": 8}, r"wav holds 16, 24 or 32-bit samples, not 8-bit"),
        ({"format": "mp3", "bit_depth": 16}, r"mp3 has no bit depth; set its quality with bitrate="),
        ({"format": "wav", "bitrate": 192}, r"bitrate: only mp3 has a bit rate"),
        ({"format": "mp3", "bitrate": 100}, r"100 kbps is not an MP3 bit rate"),
        ({"format": "mp3", "bitrate": 320, "vbr_quality": 2}, r"give one, a constant bit rate or a variable one"),
        ({"format": "mp3", "vbr_quality": 12}, r"outside LAME's scale"),
        ({"format": "mp3", "bitrate": 320, "sample_rate": 22_050}, r"an MP3 at 22050 Hz carries 8 to 160 kbps"),
        ({"format": "mp3", "sample_rate": 96_000}, r"the mp3 encoder refuses 96000 Hz"),
        ({"clip": "soft"}, r"clip: 'soft' is not a clip mode; use auto, rescale, clamp, none"),
        ({"normalize": "lufs"}, r"normalize: 'lufs' is not a normalization"),
        ({"normalize": "peak:+3"}, r"a peak target of 3 dBFS is outside -60 to 0 dBFS"),
        ({"sample_rate": 0}, r"sample_rate: 0 is not a positive number of Hz"),
    ],
)
def test_settings_the_encoder_cannot_honour_are_output_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(OutputError, match=message):
        output_settings(**options)


class _MustNotRun:
    """A Separator that fails the test if anything asks it to separate."""

    name = "must-not-run"
    capabilities = Capabilities(combinations=(("vocals", "instrumental"),))

    async def aseparate(self, audio: Any, /, **kwargs: Any) -> StemSet:
        raise AssertionError("separated although the output settings were refused")

    def separate(self, audio: Any, /, **kwargs: Any) -> StemSet:
        raise AssertionError("separated although the output settings were refused")

    def close(self) -> None:
        return None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"format": "mp3", "bitrate": 320}, r"an MP3 at 22050 Hz carries 8 to 160 kbps"),  # the input's rate
        ({"format": "flac", "bit_depth": 32}, r"flac holds 16 or 24-bit"),
        ({"format": "mp3", "output_sample_rate": 88_200}, r"the mp3 encoder refuses 88200 Hz"),
        ({"normalize": "loud"}, r"not a normalization"),
        ({"offset": -2}, r"offset: -2 s is before the start"),
    ],
)
def test_a_batch_refuses_output_settings_before_any_separation(
    tmp_path: Path, write_wav: Any, options: dict[str, Any], message: str
) -> None:
    song = write_wav(np.zeros((2, 22_050), np.float32), rate=22_050, name="low.wav")
    with pytest.raises(OutputError if "offset" not in options else stemkit.ConfigError, match=message):
        list(stemkit.separate_many([song], _MustNotRun(), output_dir=tmp_path / "out", **options))
    assert not (tmp_path / "out").exists()


def test_loudness_without_scipy_is_refused_before_separating(tmp_path: Path, write_wav: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import builtins

    real_import = builtins.__import__

    def no_scipy(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "scipy" or name.startswith("scipy."):
            raise ImportError("No module named 'scipy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    song = write_wav(np.zeros((2, 4410), np.float32))
    with pytest.raises(OutputError, match=r'pip install "stemkit\[loudness\]"'):
        list(stemkit.separate_many([song], _MustNotRun(), output_dir=tmp_path / "out", normalize="loudness"))


def test_check_output_takes_the_settings(tmp_path: Path) -> None:
    check_output(tmp_path, "mp3", sample_rate=48_000, settings=output_settings("mp3", bitrate=256))
    with pytest.raises(OutputError, match="carries 8 to 160 kbps"):
        check_output(tmp_path, "mp3", sample_rate=24_000, settings=output_settings("mp3", bitrate=256))
    assert mp3_bitrates(8_000)[-1] == 64


# -- the command line ----------------------------------------------------------------------------------------


def test_the_cli_writes_16_bit_flac_at_another_rate_and_says_what_saving_did(
    demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["separate", str(demo_dir / "mixture.wav"), "-o", str(tmp_path), "--format", "flac", "--bit-depth", "16",
            "--sample-rate", "48000", "--normalize", "peak:-0.5", "--template", "{model}/{stem}.{ext}"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    files = sorted(tmp_path.rglob("*.flac"))
    assert len(files) == 4
    assert {sf.info(f).subtype for f in files} == {"PCM_16"}
    assert {sf.info(f).samplerate for f in files} == {48_000}
    assert "normalized to a peak of -0.5 dBFS" in out


def test_the_cli_writes_mp3_at_a_bit_rate(demo_dir: Path, tmp_path: Path) -> None:
    assert main(["separate", str(demo_dir / "mixture.wav"), "-o", str(tmp_path), "--format", "mp3",
                 "--bitrate", "128", "--stems", "vocals"]) == 0  # fmt: skip
    assert sf.info(tmp_path / "mixture" / "vocals.mp3").format == "MP3"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "flac", "--bit-depth", "32"], "for 32-bit float use wav"),
        (["--format", "mp3", "--bitrate", "100"], "100 kbps is not an MP3 bit rate"),
        (["--clip", "soft"], "not a clip mode"),
        (["--normalize", "lufs"], "not a normalization"),
        (["--offset", "abc"], "offset: 'abc' is not a time"),
    ],
)
def test_the_cli_refuses_bad_output_settings_with_exit_2(
    demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["separate", str(demo_dir / "mixture.wav"), "-o", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def _blocks(audio: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, audio.shape[1], size):
        yield audio[:, start : start + size]


def test_streamed_resampling_equals_resampling_the_whole_signal() -> None:
    from stemkit._levels import resampled

    audio = np.random.default_rng(5).standard_normal((2, 50_001)).astype(np.float32) * 0.1
    whole = soxr.resample(audio.T, 44_100, 48_000, quality="HQ").T
    for size in (1, 777, 4096, 60_000):
        streamed = np.concatenate(list(resampled(_blocks(audio, size), 44_100, 48_000, 2)), axis=1)
        np.testing.assert_array_equal(streamed, whole)


def test_mp3_files_decode_to_the_exact_length(tmp_path: Path) -> None:
    stems = loud_set(0.5, seconds=1.234)
    saved = stems.save(tmp_path, "mp3", bitrate=256)
    assert sf.info(saved["vocals"]).frames == stems.frames
    buffer = io.BytesIO(saved["vocals"].read_bytes())
    assert sf.info(buffer).samplerate == RATE
