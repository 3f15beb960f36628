"""The streaming overlap-add engine against independent references and demucs-onnx's own loop."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from demucs_onnx import inference as demucs_inference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stemkit_onnx._engine import (
    ArrayFrames,
    FrameSource,
    SegmentPlan,
    run_overlap_add,
    run_passes,
    transition_window,
)
from stemkit_onnx.testing import fir_model, fir_reference, gain_model

SEGMENT = 64  # stride 48, overlap 16: many segments from a few hundred samples
MATRIX = np.array(
    [
        [[1.0, 0.0], [0.0, 1.0]],
        [[0.5, 0.25], [-0.25, 0.5]],
        [[0.0, 2.0], [3.0, 0.0]],
    ],
    dtype=np.float32,
)
TAPS = np.array(
    [[1.0, -0.5, 0.25, 0.125, -1.0], [0.3, 0.3, 0.3, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]], dtype=np.float32
)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ort.InferenceSession]:
    root = tmp_path_factory.mktemp("engine-models")
    return {
        "gain": _session(gain_model(root / "gain.onnx", MATRIX, segment=SEGMENT)),
        "fir": _session(fir_model(root / "fir.onnx", TAPS, segment=SEGMENT)),
    }


def _runner(session: ort.InferenceSession) -> Callable[[np.ndarray], list[np.ndarray]]:
    def run(x: np.ndarray) -> list[np.ndarray]:
        y = session.run(["stems"], {"mix": x})[0][0]
        return [y[k] for k in range(y.shape[0])]

    return run


def _stemkit(session: ort.InferenceSession, audio: np.ndarray, *, background: bool = False) -> np.ndarray:
    blocks: list[np.ndarray] = []
    n_stems = session.get_outputs()[0].shape[1]
    total = run_overlap_add(
        ArrayFrames(audio),
        _runner(session),
        segment=SEGMENT,
        n_stems=n_stems,
        emit=blocks.append,
        background=background,
    )
    assert total == audio.shape[1]
    return np.concatenate(blocks, axis=2)


def _demucs(session: ort.InferenceSession, audio: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    """demucs-onnx's own chunked loop, with its segment constant set to the test model's."""
    monkeypatch.setattr(demucs_inference, "N_SAMPLES", SEGMENT)
    names = tuple(str(i) for i in range(session.get_outputs()[0].shape[1]))
    out = demucs_inference._chunked_separate_single(session, names, audio, progress=False)
    return np.stack([out[n] for n in names])


def _dense_fir_reference(audio: np.ndarray) -> np.ndarray:
    """Overlap-add written out the plain way: every segment, windowed, summed, divided. No streaming."""
    plan = SegmentPlan(SEGMENT)
    total = audio.shape[1]
    window = transition_window(SEGMENT).astype(np.float64)
    acc = np.zeros((TAPS.shape[0], 2, total))
    weight = np.zeros(total)
    for i in range(plan.count(total)):
        start = i * plan.stride
        seg = np.zeros((2, SEGMENT), dtype=np.float32)
        n = min(SEGMENT, total - start)
        seg[:, :n] = audio[:, start : start + n]
        acc[:, :, start : start + n] += fir_reference(TAPS, seg)[:, :, :n] * window[:n]
        weight[start : start + n] += window[:n]
    return (acc / np.maximum(weight, 1e-8)).astype(np.float32)


def test_window_fades_over_a_quarter_and_is_flat_between() -> None:
    w = transition_window(400)
    assert w.dtype == np.float32
    assert w[0] == 0.0
    assert w[-1] == 0.0
    np.testing.assert_allclose(w[:100], np.linspace(0, 1, 100))
    assert np.all(w[99:301] == 1.0)
    np.testing.assert_allclose(w[300:], np.linspace(1, 0, 100))


def test_segment_plan_matches_demucs_constants() -> None:
    plan = SegmentPlan(343980)
    assert (plan.overlap, plan.stride) == (85995, 257985)
    assert plan.count(0) == 1
    assert plan.count(257985) == 1
    assert plan.count(257986) == 2


LENGTHS = [1, 2, 15, 16, 17, 47, 48, 49, 63, 64, 65, 95, 96, 97, 1000, 1001]


@pytest.mark.parametrize("frames", LENGTHS)
def test_gain_model_output_is_the_gain_applied_to_the_input(
    models: dict[str, ort.InferenceSession], frames: int
) -> None:
    audio = np.random.default_rng(frames).standard_normal((2, frames)).astype(np.float32)
    out = _stemkit(models["gain"], audio)
    expected = np.einsum("soc,ct->sot", MATRIX, audio)
    # The window is 0 at a segment's first sample, so demucs-onnx's first output sample is 0.
    assert np.all(out[:, :, 0] == 0.0)
    np.testing.assert_allclose(out[:, :, 1:], expected[:, :, 1:], rtol=0, atol=2e-6)


@pytest.mark.parametrize("frames", LENGTHS)
def test_fir_model_matches_a_plain_overlap_add_reference(models: dict[str, ort.InferenceSession], frames: int) -> None:
    audio = np.random.default_rng(frames + 7).standard_normal((2, frames)).astype(np.float32)
    np.testing.assert_allclose(_stemkit(models["fir"], audio), _dense_fir_reference(audio), rtol=0, atol=1e-5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    frames=st.one_of(
        st.integers(1, 400),
        st.sampled_from([SEGMENT - 1, SEGMENT, SEGMENT + 1, 48 * 5, 48 * 5 + 1, 48 * 5 + 16]),
    ),
    kind=st.sampled_from(["gain", "fir"]),
    background=st.booleans(),
)
def test_streaming_output_equals_demucs_onnx_chunked_loop(
    models: dict[str, ort.InferenceSession], monkeypatch: pytest.MonkeyPatch, frames: int, kind: str, background: bool
) -> None:
    audio = np.random.default_rng(frames).standard_normal((2, frames)).astype(np.float32)
    ours = _stemkit(models[kind], audio, background=background)
    theirs = _demucs(models[kind], audio, monkeypatch)
    assert ours.shape == theirs.shape
    assert np.max(np.abs(ours - theirs)) <= 1e-5


class _CountingSource(FrameSource):
    """Serves frames a few at a time and records how far it has been read when each block is emitted."""

    def __init__(self, audio: np.ndarray, chunk: int) -> None:
        self.audio, self.chunk, self.pos = audio, chunk, 0

    def readinto(self, dst: np.ndarray, count: int) -> int:
        done = 0
        while done < count and self.pos < self.audio.shape[1]:
            n = min(self.chunk, count - done, self.audio.shape[1] - self.pos)
            dst[:, done : done + n] = self.audio[:, self.pos : self.pos + n]
            done += n
            self.pos += n
        return done


def test_blocks_are_emitted_while_the_input_is_still_being_read(models: dict[str, ort.InferenceSession]) -> None:
    audio = np.random.default_rng(3).standard_normal((2, 10_000)).astype(np.float32)
    source = _CountingSource(audio, chunk=7)
    read_at_emit: list[int] = []
    emitted: list[np.ndarray] = []

    def emit(block: np.ndarray) -> None:
        read_at_emit.append(source.pos)
        emitted.append(block)

    run_overlap_add(source, _runner(models["gain"]), segment=SEGMENT, n_stems=3, emit=emit)
    # One segment of look-ahead at most: the engine never holds more than a segment of input.
    for index, pos in enumerate(read_at_emit):
        assert pos <= min(audio.shape[1], index * 48 + SEGMENT)
    assert all(block.shape[2] <= 48 for block in emitted)
    np.testing.assert_array_equal(np.concatenate(emitted, axis=2), _stemkit(models["gain"], audio))


def test_on_segment_is_called_once_per_model_run(models: dict[str, ort.InferenceSession]) -> None:
    audio = np.zeros((2, 1000), dtype=np.float32)
    seen: list[int] = []
    run_overlap_add(
        ArrayFrames(audio),
        _runner(models["gain"]),
        segment=SEGMENT,
        n_stems=3,
        emit=lambda b: None,
        on_segment=seen.append,
    )
    assert seen == list(range(SegmentPlan(SEGMENT).count(1000)))


def test_window_rejects_segments_too_short_to_fade() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        transition_window(3)


def test_background_threads_emit_in_order_and_pass_errors_back(models: dict[str, ort.InferenceSession]) -> None:
    audio = np.random.default_rng(5).standard_normal((2, 5000)).astype(np.float32)
    np.testing.assert_array_equal(_stemkit(models["fir"], audio, background=True), _stemkit(models["fir"], audio))

    def failing_emit(block: np.ndarray) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run_overlap_add(
            ArrayFrames(audio), _runner(models["fir"]), segment=SEGMENT, n_stems=3, emit=failing_emit, background=True
        )

    class Broken(FrameSource):
        def readinto(self, dst: np.ndarray, count: int) -> int:
            raise ValueError("cannot decode")

    with pytest.raises(ValueError, match="cannot decode"):
        run_overlap_add(
            Broken(), _runner(models["fir"]), segment=SEGMENT, n_stems=3, emit=lambda b: None, background=True
        )


def test_a_stop_requested_between_segments_ends_the_background_threads(models: dict[str, ort.InferenceSession]) -> None:
    audio = np.zeros((2, 100_000), dtype=np.float32)

    def stop(index: int) -> None:
        if index == 2:
            raise TimeoutError("deadline")

    with pytest.raises(TimeoutError):
        run_overlap_add(
            ArrayFrames(audio),
            _runner(models["gain"]),
            segment=SEGMENT,
            n_stems=3,
            emit=lambda b: None,
            on_segment=stop,
            background=True,
        )
    assert not [t for t in threading.enumerate() if t.name.startswith("stemkit-onnx")]


# -- other overlaps, other windows, several delayed passes ------------------------------------------------


def _dense_reference(
    audio: np.ndarray, plan: SegmentPlan, window: np.ndarray, delays: tuple[int, ...] = (0,)
) -> np.ndarray:
    """Every pass written out the plain way: delay the input, overlap-add every segment, advance, average."""
    total = audio.shape[1]
    out = np.zeros((TAPS.shape[0], 2, total))
    for delay in delays:
        delayed = np.concatenate([np.zeros((2, delay), dtype=np.float32), audio], axis=1)
        n_total = delayed.shape[1]
        acc = np.zeros((TAPS.shape[0], 2, n_total))
        weight = np.zeros(n_total)
        for i in range(plan.count(n_total)):
            start = i * plan.stride
            seg = np.zeros((2, plan.segment), dtype=np.float32)
            n = min(plan.segment, n_total - start)
            seg[:, :n] = delayed[:, start : start + n]
            acc[:, :, start : start + n] += fir_reference(TAPS, seg)[:, :, :n] * window[:n]
            weight[start : start + n] += window[:n]
        out += (acc / np.maximum(weight, 1e-8))[:, :, delay:]
    return (out / len(delays)).astype(np.float32)


def _passes(
    session: ort.InferenceSession,
    audio: np.ndarray,
    plan: SegmentPlan,
    *,
    window: np.ndarray | None = None,
    delays: tuple[int, ...] = (0,),
    background: bool = False,
) -> np.ndarray:
    blocks: list[np.ndarray] = []
    total = run_passes(
        ArrayFrames(audio), _runner(session), plan=plan, n_stems=3, emit=blocks.append, delays=delays,
        window=window, background=background,
    )
    assert total == audio.shape[1]
    return np.concatenate(blocks, axis=2) if blocks else np.zeros((3, 2, 0), dtype=np.float32)


def test_overlap_sets_how_many_samples_consecutive_segments_share() -> None:
    assert SegmentPlan.for_overlap(343980, 0.25) == SegmentPlan(343980)  # demucs-onnx's plan
    assert SegmentPlan.for_overlap(64, 0.5).stride == 32
    assert SegmentPlan.for_overlap(64, 0.0).stride == 64
    assert SegmentPlan.for_overlap(64, 0.99).stride == 1
    with pytest.raises(ValueError, match="below 1"):
        SegmentPlan.for_overlap(64, 1.0)
    w = SegmentPlan.for_overlap(64, 0.75).demucs_window()  # fades are capped at half a segment: a triangle
    assert w[0] == w[-1] == 0.0
    assert w.max() == 1.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    frames=st.integers(1, 500),
    overlap=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.6, 0.75, 0.9]),
    background=st.booleans(),
)
def test_any_overlap_matches_a_plain_overlap_add(
    models: dict[str, ort.InferenceSession], frames: int, overlap: float, background: bool
) -> None:
    audio = np.random.default_rng(frames).standard_normal((2, frames)).astype(np.float32)
    plan = SegmentPlan.for_overlap(SEGMENT, overlap)
    ours = _passes(models["fir"], audio, plan, background=background)
    reference = _dense_reference(audio, plan, plan.demucs_window().astype(np.float64))
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5)


def test_the_default_overlap_is_bit_identical_to_the_one_pass_engine(models: dict[str, ort.InferenceSession]) -> None:
    audio = np.random.default_rng(11).standard_normal((2, 3000)).astype(np.float32)
    plan = SegmentPlan.for_overlap(SEGMENT, 0.25)
    np.testing.assert_array_equal(_passes(models["fir"], audio, plan), _stemkit(models["fir"], audio))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    frames=st.integers(1, 400),
    delays=st.lists(st.integers(0, 90), min_size=1, max_size=4).map(tuple),
    hann=st.booleans(),
    background=st.booleans(),
)
def test_delayed_passes_are_advanced_and_averaged(
    models: dict[str, ort.InferenceSession], frames: int, delays: tuple[int, ...], hann: bool, background: bool
) -> None:
    audio = np.random.default_rng(frames + 1).standard_normal((2, frames)).astype(np.float32)
    plan = SegmentPlan(SEGMENT, SEGMENT - 20 if hann else 0)
    window = np.hanning(SEGMENT).astype(np.float32) if hann else None
    ours = _passes(models["fir"], audio, plan, window=window, delays=delays, background=background)
    reference_window = (window if window is not None else plan.demucs_window()).astype(np.float64)
    np.testing.assert_allclose(ours, _dense_reference(audio, plan, reference_window, delays), rtol=0, atol=1e-5)


def test_passes_share_one_read_of_the_input_and_hold_only_their_spread(
    models: dict[str, ort.InferenceSession],
) -> None:
    audio = np.random.default_rng(4).standard_normal((2, 20_000)).astype(np.float32)
    source = _CountingSource(audio, chunk=5)
    emitted: list[int] = []
    read_at_emit: list[int] = []

    def emit(block: np.ndarray) -> None:
        emitted.append(block.shape[2])
        read_at_emit.append(source.pos)

    delays = (0, 30, 90)
    runs: list[int] = []
    run_passes(
        source, _runner(models["gain"]), plan=SegmentPlan(SEGMENT), n_stems=3, emit=emit, delays=delays,
        on_segment=runs.append,
    )
    assert sum(emitted) == audio.shape[1]
    assert source.pos == audio.shape[1]  # read once, to the end
    # Input read ahead of what has been emitted: at most the spread of the delays plus a couple of segments.
    done = 0
    for size, pos in zip(emitted, read_at_emit, strict=True):
        done += size
        assert pos - done <= max(delays) + 2 * SEGMENT
    plan = SegmentPlan(SEGMENT)
    assert len(runs) == sum(plan.count(audio.shape[1] + d) for d in delays)
