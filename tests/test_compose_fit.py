"""Fitting an input to a provider's limits: the pure parts (chunk bounds, crossfades, stitching, encodings,
writing pieces, planning) and separations through a plan with local providers (dsp, and scripted ones)."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

import stemkit
from stemkit.audio import open_source
from stemkit.compose import Fitted, estimate_sent, plan_fit
from stemkit.compose._stitch import Stitcher, chunk_bounds, crossfade, stitch
from stemkit.compose._transcode import Encoding, lossless_subtype, mp3_encoding, write_pieces
from stemkit.compose.fit import CHUNK_ALIGN, MIN_CHUNK_SECONDS, fit_mode, fitted_capabilities
from stemkit.demo import synthesize
from stemkit.errors import ConfigError, JobFailedError, OutputError, ProviderLimitError, SeparationTimeout
from stemkit.evaluate.metrics import sdr
from stemkit.protocol import Capabilities, ProgressEvent
from stemkit.provider import RawResult, SeparationJob, SeparatorBase
from stemkit.routing import Chain, reset_breakers

RATE = 22_050


def song(seconds: float, rate: int = RATE) -> np.ndarray:
    return synthesize(seconds, rate)["mixture"]


def caps(**limits: Any) -> Capabilities:
    return Capabilities(combinations=(("vocals", "drums", "bass", "other"),), **limits)


class Limited(SeparatorBase):
    """A local provider with stated limits: halves the input into vocals and instrumental, fails on demand."""

    name = "limited"

    def __init__(self, *, fail_on: int | None = None, hang: bool = False, **limits: Any) -> None:
        super().__init__()
        self.limits = limits
        self.fail_on = fail_on
        self.hang = hang
        self.calls: list[tuple[int, int, str]] = []

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(combinations=(("vocals", "instrumental"),), **self.limits)

    def _separate(self, job: SeparationJob) -> RawResult:
        self.calls.append((job.source.sample_rate, job.source.frames, job.source.suffix))
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise JobFailedError("the model crashed", provider=self.name, job_id=f"job-{len(self.calls)}")
        audio = job.source.read()
        job.progress("separate", 1.0, "halved")
        return RawResult({"vocals": audio * 0.5, "instrumental": audio * 0.5}, sample_rate=job.source.sample_rate,
                         job_id=f"job-{len(self.calls)}")  # fmt: skip

    async def _aseparate(self, job: SeparationJob) -> RawResult:
        if self.hang:  # a hosted job that never finishes: only the deadline ends it
            await anyio.sleep_forever()
        return await super()._aseparate(job)


# -- chunk bounds ----------------------------------------------------------------------------------------------
@given(
    frames=st.integers(1, 400_000),
    max_frames=st.integers(50_000, 200_000),
    overlap=st.integers(0, 10_000),
    align=st.sampled_from([1, 512, 4096]),
)
def test_chunks_cover_the_input_within_the_limit_sharing_the_overlap_on_the_grid(
    frames: int, max_frames: int, overlap: int, align: int
) -> None:
    bounds = chunk_bounds(frames, max_frames, overlap, align)
    assert bounds[0][0] == 0
    assert bounds[-1][1] == frames
    assert all(0 < stop - start <= max_frames for start, stop in bounds)
    assert all(start % align == 0 for start, _ in bounds)
    for (_, stop), (start, _) in itertools.pairwise(bounds):
        assert stop - start == overlap
    for before, after in zip(bounds, bounds[2:], strict=False):
        assert after[0] >= before[1], "only neighbours overlap"
    if len(bounds) > 1:  # no more chunks than the limit needs (aligning may cost one frame of slack per chunk)
        assert len(bounds) == -(-(frames - overlap) // (max_frames - align + 1 - overlap))


def test_an_input_within_the_limit_is_one_chunk() -> None:
    assert chunk_bounds(1000, 1000, 100) == ((0, 1000),)


def test_chunk_bounds_refuse_an_overlap_that_would_reach_past_a_neighbour() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_bounds(10_000, 1000, 400)


# -- crossfades and stitching ----------------------------------------------------------------------------------
def test_the_amplitude_crossfade_sums_to_one_and_the_power_one_keeps_power() -> None:
    fade_out, fade_in = crossfade(1000)
    np.testing.assert_allclose(fade_out + fade_in, 1.0, atol=1e-6)
    assert fade_in[0] < 1e-5
    assert fade_out[-1] < 1e-5
    assert np.all(np.diff(fade_in) > 0)
    power_out, power_in = crossfade(1000, "power")
    np.testing.assert_allclose(power_out**2 + power_in**2, 1.0, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(frames=st.integers(2_000, 60_000), max_frames=st.integers(6_000, 20_000), overlap=st.integers(0, 1_500))
def test_stitching_chunks_of_one_signal_gives_the_signal_back_exactly(frames: int, max_frames: int,
                                                                     overlap: int) -> None:  # fmt: skip
    signal = np.random.default_rng(frames).standard_normal((2, frames)).astype(np.float32)
    bounds = chunk_bounds(frames, max_frames, overlap)
    out = stitch([signal[:, a:b] for a, b in bounds], bounds)
    assert out.shape == signal.shape
    np.testing.assert_allclose(out, signal, atol=1e-5)


def test_a_power_crossfade_would_lift_a_coherent_overlap_by_3_db() -> None:
    signal = np.ones((1, 30_000), dtype=np.float32)
    bounds = chunk_bounds(30_000, 16_000, 4_000)
    out = stitch([signal[:, a:b] for a, b in bounds], bounds, law="power")
    assert out.max() == pytest.approx(np.sqrt(2), rel=1e-3)  # why stemkit fades by amplitude


def test_stitching_is_linear_so_derived_stems_and_sums_survive_it() -> None:
    rng = np.random.default_rng(3)
    bounds = chunk_bounds(50_000, 20_000, 3_000)
    a = [rng.standard_normal((2, s - e)).astype(np.float32) for e, s in bounds]
    b = [rng.standard_normal((2, s - e)).astype(np.float32) for e, s in bounds]
    summed = stitch([x + y for x, y in zip(a, b, strict=True)], bounds)
    np.testing.assert_allclose(summed, stitch(a, bounds) + stitch(b, bounds), atol=1e-5)


def test_the_stitcher_takes_chunks_in_order_and_at_their_length() -> None:
    bounds = chunk_bounds(50_000, 20_000, 3_000)
    stitcher = Stitcher(bounds)
    with pytest.raises(ValueError, match="chunk 1 added, chunk 0 expected"):
        stitcher.add(1, np.zeros((1, bounds[1][1] - bounds[1][0]), dtype=np.float32))
    with pytest.raises(ValueError, match="frames"):
        stitcher.add(0, np.zeros((1, 10), dtype=np.float32))
    with pytest.raises(ValueError, match="neighbours"):
        Stitcher([(0, 100), (10, 200), (50, 300)])


# -- encodings and pieces --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rate", "expected_rate", "kbps"),
    [(44_100, 44_100, 320), (48_000, 48_000, 320), (96_000, 48_000, 320), (88_200, 44_100, 320),
     (22_050, 22_050, 160), (8_000, 8_000, 64), (37_800, 44_100, 320)],
)  # fmt: skip
def test_mp3_uses_the_highest_constant_bit_rate_at_a_rate_mpeg_supports(rate: int, expected_rate: int,
                                                                        kbps: int) -> None:  # fmt: skip
    encoding = mp3_encoding(rate)
    assert (encoding.sample_rate, encoding.bitrate_kbps, encoding.lossless) == (expected_rate, kbps, False)


@pytest.mark.parametrize("rate", [8_000, 22_050, 44_100, 96_000])
@pytest.mark.parametrize("channels", [1, 2])
def test_written_pieces_stay_within_their_size_bound_and_keep_their_length(tmp_path: Path, rate: int,
                                                                         channels: int) -> None:  # fmt: skip
    audio = (0.3 * np.random.default_rng(1).standard_normal((channels, rate * 3))).astype(np.float32)
    source = open_source(audio, sample_rate=rate)
    for encoding in (Encoding("wav", "PCM_16", rate), Encoding("flac", "PCM_24", rate), mp3_encoding(rate)):
        folder = tmp_path / f"{encoding.format}-{rate}-{channels}"
        folder.mkdir()
        (path,) = write_pieces(source, [(0, source.frames)], encoding, folder)
        assert path.stat().st_size <= encoding.size_bound(3.0, channels), encoding
        info = sf.info(path)
        assert info.samplerate == encoding.sample_rate
        assert abs(info.frames - 3 * encoding.sample_rate) <= 1, encoding  # MP3's encoder delay is trimmed
        assert [p.name for p in folder.iterdir()] == [path.name]  # no temporary file left behind


def test_lossless_pieces_are_the_inputs_samples_bit_for_bit_and_padding_is_silence(tmp_path: Path) -> None:
    audio = song(4.0)
    wav = tmp_path / "in.wav"
    sf.write(wav, audio.T, RATE, subtype="PCM_16")
    source = open_source(wav)
    assert lossless_subtype(source) == "PCM_16"
    bounds = chunk_bounds(source.frames, 40_000, 5_000)
    encoding = Encoding("wav", "PCM_16", RATE)
    paths = list(write_pieces(source, bounds, encoding, tmp_path, pad=1234))
    original = source.read()
    for (start, stop), path in zip(bounds, paths, strict=True):
        piece, _ = sf.read(path, dtype="float32", always_2d=True)
        extra = 1234 if path == paths[-1] else 0
        assert piece.shape[0] == stop - start + extra
        np.testing.assert_array_equal(piece.T[:, : stop - start], original[:, start:stop])
        assert not piece[stop - start :].any()


def test_the_lossless_sample_format_follows_the_input(tmp_path: Path) -> None:
    audio = song(1.0)
    for subtype, expected in (("PCM_24", "PCM_24"), ("FLOAT", "FLOAT"), ("PCM_U8", "PCM_16")):
        path = tmp_path / f"{subtype}.wav"
        sf.write(path, audio.T, RATE, subtype=subtype)
        assert lossless_subtype(open_source(path)) == expected
    ogg = tmp_path / "in.ogg"
    sf.write(ogg, audio.T, RATE, format="OGG", subtype="VORBIS")
    assert lossless_subtype(open_source(ogg)) == "PCM_24"  # decoded from a codec: 24 bits keep all of it
    assert lossless_subtype(open_source(audio, sample_rate=RATE)) == "FLOAT"


# -- planning --------------------------------------------------------------------------------------------------
@pytest.fixture
def flac_song(tmp_path: Path) -> Path:
    path = tmp_path / "song.flac"
    sf.write(path, song(20.0).T, RATE, subtype="PCM_16")
    return path


def test_an_input_within_the_limits_needs_no_plan(flac_song: Path) -> None:
    assert plan_fit(caps(input_formats=frozenset({"flac"})), open_source(flac_song)) is None


def test_a_refused_format_is_transcoded_losslessly_to_wav(flac_song: Path) -> None:
    plan = plan_fit(caps(input_formats=frozenset({"mp3", "wav", "m4a"})), open_source(flac_song))
    assert plan is not None
    assert (plan.encoding.format, plan.encoding.subtype, plan.chunked) == ("wav", "PCM_16", False)
    assert plan.reasons == (".flac input is not accepted (takes m4a, mp3, wav)",)


def test_flac_is_written_when_the_provider_takes_it_and_not_wav(tmp_path: Path) -> None:
    ogg = tmp_path / "song.ogg"
    sf.write(ogg, song(6.0).T, RATE, format="OGG", subtype="VORBIS")
    plan = plan_fit(caps(input_formats=frozenset({"flac"})), open_source(ogg))
    assert plan is not None
    assert plan.encoding.format == "flac"


def test_size_demands_mp3_in_auto_and_chunks_in_lossless(flac_song: Path) -> None:
    source = open_source(flac_song)
    wav_bytes = source.frames * 4 + 44
    limited = caps(input_formats=frozenset({"mp3", "wav"}), max_file_bytes=wav_bytes // 2)
    auto = plan_fit(limited, source)
    assert auto is not None
    assert (auto.encoding.format, auto.encoding.bitrate_kbps, len(auto.pieces)) == ("mp3", 160, 1)
    lossless = plan_fit(limited, source, "lossless")
    assert lossless is not None
    assert (lossless.encoding.format, len(lossless.pieces)) == ("wav", 3)
    assert all(lossless.encoding.size_bound((b - a) / RATE, 2) <= wav_bytes // 2 for a, b in lossless.pieces)
    with pytest.raises(ProviderLimitError, match="fit=transcode cannot make it fit: it would have to be split"):
        plan_fit(caps(input_formats=frozenset({"wav"}), max_file_bytes=wav_bytes // 2), source, "transcode")


def test_too_long_an_input_is_chunked_on_the_grid_with_the_overlap(flac_song: Path) -> None:
    plan = plan_fit(caps(max_duration_seconds=8.0), open_source(flac_song), overlap=1.0)
    assert plan is not None
    assert len(plan.pieces) == 3
    assert plan.overlap == RATE
    assert all(start % CHUNK_ALIGN == 0 for start, _ in plan.pieces)
    assert all((stop - start) / RATE <= 8.0 for start, stop in plan.pieces)
    assert plan.sent_seconds == pytest.approx(20.0 + 2 * 1.0, abs=1e-9)
    assert plan.describe() == "3 overlapping chunks (WAV PCM_16, 22050 Hz, 1 s overlap)"


def test_too_short_an_input_is_padded_to_the_minimum(tmp_path: Path) -> None:
    clip = tmp_path / "clip.wav"
    sf.write(clip, song(0.4).T, RATE)
    plan = plan_fit(caps(min_duration_seconds=1.0), open_source(clip))
    assert plan is not None
    assert not plan.chunked
    assert plan.job_seconds[0] >= 1.0
    assert plan.pad == plan.job_seconds[0] * RATE - open_source(clip).frames


def test_what_cannot_fit_is_refused_with_the_reason(flac_song: Path) -> None:
    source = open_source(flac_song)
    with pytest.raises(ProviderLimitError, match="none of which it takes") as info:
        plan_fit(caps(input_formats=frozenset({"m4a"})), source)
    assert info.value.code == "CANNOT_FIT"
    with pytest.raises(ProviderLimitError, match=f"shorter than {MIN_CHUNK_SECONDS:g} s"):
        plan_fit(caps(max_duration_seconds=2.0), source)
    with pytest.raises(ProviderLimitError, match="fitting is off"):
        plan_fit(caps(max_duration_seconds=8.0), source, "off")
    with pytest.raises(ConfigError, match="not a fit mode; use one of auto, lossless, transcode, off"):
        plan_fit(caps(), source, "sometimes")


def test_a_url_is_the_providers_to_judge() -> None:
    assert plan_fit(caps(max_duration_seconds=1.0), open_source("https://example.com/a.mp3")) is None


def test_chunk_seconds_splits_even_where_the_provider_states_no_limit(flac_song: Path) -> None:
    plan = plan_fit(caps(), open_source(flac_song), chunk_seconds=8.0)
    assert plan is not None
    assert len(plan.pieces) == 3


def test_capabilities_after_fitting_drop_what_fitting_meets() -> None:
    hosted = caps(input_formats=frozenset({"mp3", "wav"}), max_file_bytes=30 << 20, max_duration_seconds=3600.0,
                  min_duration_seconds=1.0)  # fmt: skip
    auto = fitted_capabilities(hosted, "auto")
    assert (auto.input_formats, auto.max_file_bytes, auto.max_duration_seconds, auto.min_duration_seconds) == (
        frozenset(), None, None, None)
    transcode = fitted_capabilities(hosted, "transcode")
    assert transcode.max_duration_seconds == pytest.approx((30 << 20) / 40_400, rel=0.01)  # 320 kbps MP3
    assert fitted_capabilities(hosted, "off") == hosted
    assert fitted_capabilities(caps(input_formats=frozenset({"m4a"})), "auto").input_formats == {"m4a"}


def test_the_audio_a_fitted_request_sends_counts_overlaps_and_jobs(flac_song: Path) -> None:
    sent = estimate_sent(caps(max_duration_seconds=8.0), flac_song, mode="auto", overlap=1.0)
    assert (sent.jobs, round(sent.seconds, 6)) == (3, 22.0)
    assert len(sent.job_seconds) == 3
    assert sum(sent.job_seconds) == pytest.approx(sent.seconds)
    as_is = estimate_sent(caps(), flac_song)
    assert (as_is.jobs, as_is.plan, as_is.bytes) == (1, None, flac_song.stat().st_size)
    assert estimate_sent(Limited(max_duration_seconds=8.0), flac_song).jobs == 3  # the provider's own fit mode


# -- the fit option --------------------------------------------------------------------------------------------
def test_fit_is_a_reserved_option_of_every_provider_spec() -> None:
    with stemkit.load("dsp?fit=lossless") as sep:
        assert sep.fit_mode == "lossless"  # type: ignore[attr-defined]
        assert sep.spec == "dsp?fit=lossless"
    with stemkit.load("dsp") as sep:
        assert sep.fit_mode == "auto"  # type: ignore[attr-defined]
        assert sep.spec == "dsp"
    with pytest.raises(ConfigError, match="'maybe' is not a fit mode"):
        stemkit.load("dsp?fit=maybe")
    assert fit_mode(" Auto ") == "auto"
    with stemkit.load("dsp?fit=off&kernel=9") as sep:
        fitted = Fitted(sep, "lossless", chunk_seconds=30)
        assert fitted.spec == "dsp?kernel=9&fit=lossless"
        assert fitted.capabilities.max_duration_seconds is None
        assert Fitted(sep, "off").spec == "dsp?kernel=9&fit=off"


def test_fit_off_as_a_call_keyword_refuses_what_auto_fits(tmp_path: Path) -> None:
    clip = tmp_path / "clip.flac"
    sf.write(clip, song(6.0).T, RATE)
    sep = Limited(input_formats=frozenset({"wav"}))
    with pytest.raises(ProviderLimitError, match="not accepted"):
        sep.separate(clip, fit="off")
    assert sep.calls == []
    result = sep.separate(clip)
    assert sep.calls == [(RATE, 6 * RATE, ".wav")]
    assert result.provenance.extra["fit"]["format"] == "wav"
    with pytest.raises(ConfigError, match="is not a fit mode"):
        sep.separate(clip, fit="sideways")


# -- separations through a plan --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def forty_seconds() -> np.ndarray:
    return song(40.0, 44_100)


def test_chunked_dsp_matches_whole_file_dsp_at_the_seams(forty_seconds: np.ndarray) -> None:
    with stemkit.load("dsp") as dsp:
        whole = dsp.separate(forty_seconds, sample_rate=44_100)
        chunked = Fitted(dsp, chunk_seconds=16.0, overlap=3.0).separate(forty_seconds, sample_rate=44_100)
    assert chunked.provenance.extra["fit"]["chunks"] == 3
    assert (chunked.frames, chunked.channels, chunked.sample_rate) == (whole.frames, 2, 44_100)
    for name in whole:
        assert float(sdr(whole[name].audio, chunked[name].audio)) >= 30.0, name
    np.testing.assert_allclose(sum(chunked[n].audio for n in chunked), forty_seconds, atol=1e-5)


def test_a_fitted_stemset_keeps_derived_stems_and_records_every_piece(forty_seconds: np.ndarray) -> None:
    events: list[ProgressEvent] = []
    with stemkit.load("dsp") as dsp:
        result = Fitted(dsp, chunk_seconds=16.0, overlap=3.0).separate(
            forty_seconds, sample_rate=44_100, stems=["vocals", "instrumental"], progress=events.append
        )
    assert list(result) == ["vocals", "instrumental"]
    assert result["instrumental"].derived
    assert not result["vocals"].derived
    assert result.mixture is not None
    np.testing.assert_array_equal(result.mixture.audio, forty_seconds)
    record = result.provenance.extra["fit"]
    assert (record["chunks"], record["format"], record["subtype"], record["lossless"]) == (3, "wav", "FLOAT", True)
    assert len(record["jobs"]) == 3
    assert record["pieces"][-1][1] == pytest.approx(40.0)
    assert result.provenance.input_duration == pytest.approx(40.0)
    assert [e.stage for e in events].count("done") == 1
    assert events[-1].stage == "done"
    assert any(e.message.startswith("chunk 3/3") for e in events)
    assert {e.input_name for e in events} == {"<array>"}


def test_a_failing_piece_fails_the_whole_with_its_own_error(tmp_path: Path) -> None:
    clip = tmp_path / "clip.wav"
    sf.write(clip, song(30.0).T, RATE)
    sep = Limited(max_duration_seconds=12.0, fail_on=2)
    with pytest.raises(JobFailedError, match="the model crashed"):
        sep.separate(clip)
    assert not list(Path(clip.parent).glob("*.part"))


def test_a_deadline_bounds_every_piece_together(tmp_path: Path) -> None:
    clip = tmp_path / "clip.wav"
    sf.write(clip, song(30.0).T, RATE)
    sep = Limited(max_duration_seconds=12.0, hang=True)
    with pytest.raises(SeparationTimeout, match=r"did not finish within 0\.5 s \(0 of 3 fitted piece"):
        sep.separate(clip, timeout=0.5)


def test_async_and_sync_fitting_agree(tmp_path: Path) -> None:
    clip = tmp_path / "clip.wav"
    sf.write(clip, song(30.0).T, RATE)
    sep = Limited(max_duration_seconds=12.0)

    async def run() -> stemkit.StemSet:
        return await sep.aseparate(clip)

    a, b = sep.separate(clip), anyio.run(run)
    for name in a:
        np.testing.assert_array_equal(a[name].audio, b[name].audio)


def test_a_chain_fits_a_provider_before_skipping_it(tmp_path: Path) -> None:
    reset_breakers()
    clip = tmp_path / "clip.flac"
    sf.write(clip, song(6.0).T, RATE)
    picky = Limited(input_formats=frozenset({"wav"}))
    with Chain([picky, stemkit.load("dsp")]) as chain:
        result = chain.separate(clip, stems=["vocals"])
    assert result.provider == "limited"
    assert result.provenance.extra["fit"]["format"] == "wav"
    unfit = Limited(input_formats=frozenset({"m4a"}))
    with Chain([unfit, stemkit.load("dsp")]) as chain:
        result = chain.separate(clip, stems=["vocals"])
    assert result.provider == "dsp"
    assert result.attempts[0].outcome == "skipped"
    assert "fit=auto cannot make it fit" in result.attempts[0].reason


def test_no_room_for_the_fitted_pieces_is_an_output_error_naming_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = tmp_path / "clip.flac"
    sf.write(clip, song(6.0).T, RATE)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    with pytest.raises(OutputError, match=r"no-such-folder.*free space there or point TMPDIR"):
        Limited(input_formats=frozenset({"wav"})).separate(clip)
