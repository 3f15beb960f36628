"""The one contract, against a hostile server: whatever StemSplit's API (or something posing as it) answers,
only stemkit errors leave the public API — sync and async, alone and inside ``stemsplit | dsp`` (which must
then succeed through dsp) — no file is written outside the job's folder, and the key never leaves the API's
own origin. Hypothesis draws the misbehaviour; the server is real HTTP on loopback (``hostile.py``)."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import stemkit
import stemkit.audio
from stemkit.errors import ProtocolError, ProviderError, RateLimitError, SeparationTimeout, StemkitError
from stemkit.hosted import Limits, PollPolicy, RetryPolicy
from stemkit.hosted.emulator import run_in_thread
from stemkit.routing import Chain, reset_breakers
from stemkit.stemset import StemSet
from stemkit_stemsplit import StemSplitSeparator

from .hostile import STEPS, HostileStemSplit, Misbehaviour, OtherHost

KEY = "sk_hostile_test_key_0123456789"
RATE = 8_000
CALL_TIMEOUT = 6.0
LIMITS = Limits(max_json_bytes=64 << 10, max_error_bytes=8 << 10, request_seconds=1.0, min_transfer_rate=4 << 20)
RETRY = RetryPolicy(max_attempts=2, backoff_initial=0.01, backoff_max=0.02, jitter=0.0, max_retry_after=5.0)
POLL = PollPolicy(initial=0.01, multiplier=1.0, max_interval=0.02, progress_interval=0.02)
_JSON_STEPS = ("upload", "create", "status")


@dataclass
class World:
    app: HostileStemSplit
    other: OtherHost
    base_url: str
    song: Path
    sentinel: Path


def _wav(audio: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio.T, RATE, format="WAV", subtype="FLOAT")
    return buf.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("hostile")
    t = np.arange(RATE) / RATE
    mix = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sin(2 * np.pi * 330 * t)]).astype(np.float32)
    song = root / "song.wav"
    sf.write(song, mix.T, RATE, subtype="FLOAT")
    sentinel = root / "sentinel"
    sentinel.mkdir()
    app = HostileStemSplit(outputs={"vocals": _wav(mix * 0.5), "instrumental": _wav(mix * 0.5)})
    other = OtherHost()
    with run_in_thread(app) as main, run_in_thread(other, host="127.0.0.2") as second:  # type: ignore[arg-type]
        app.origin, app.other_origin = main.url, second.url
        yield World(app, other, main.url + "/api/v1", song, sentinel)


def _separator(world: World) -> StemSplitSeparator:
    return StemSplitSeparator(
        options={"base_url": world.base_url, "format": "wav"}, api_key=KEY, retry=RETRY, poll=POLL, limits=LIMITS
    )


def _run(world: World, mode: str, stems: list[str]) -> StemSet:
    """One separation in ``mode`` (sync|async × direct|chain); the caller checks what comes out."""
    reset_breakers()
    direct = _separator(world)
    separator: Any = direct if mode.endswith("direct") else Chain([direct, stemkit.load("dsp")])
    with separator:
        if mode.startswith("sync"):
            return separator.separate(world.song, stems=stems, timeout=CALL_TIMEOUT)  # type: ignore[no-any-return]
        return asyncio.run(separator.aseparate(world.song, stems=stems, timeout=CALL_TIMEOUT))  # type: ignore[no-any-return]


def _misbehaviours() -> st.SearchStrategy[Misbehaviour]:
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=10,
    )
    shapes = st.sampled_from([
        [], "job1", {"id": 5}, {"id": "job1", "status": "WEIRD"}, {"uploadUrl": 3, "uploadKey": None},
        {"id": "job1", "status": "COMPLETED", "outputs": "nope"}, {"id": "job1", "status": "COMPLETED", "outputs": []},
        {"id": "job1", "status": "COMPLETED", "outputs": {"vocals": "x"}}, {"id": "job1", "status": "COMPLETED"},
        {"uploadKey": "k1"}, {"id": "job1", "status": "FAILED", "errorMessage": "nope"},
        {"id": "job1", "status": "EXPIRED"},
    ])  # fmt: skip

    def build(step: str) -> st.SearchStrategy[Misbehaviour]:
        big = 8_000_000 if step == "download" else 200_000
        kinds: list[st.SearchStrategy[tuple[str, Any]]] = [
            st.tuples(st.just("status"), st.sampled_from([400, 401, 402, 403, 404, 409, 418, 429, 500, 502, 503])),
            st.tuples(st.just("retry_after"), st.sampled_from([60, 3600])),
            st.tuples(st.just("redirect_loop"), st.none()),
            st.tuples(st.just("redirect_other"), st.none()),
            st.tuples(st.just("redirect_bad"), st.sampled_from(["ftp://example.invalid/x", "http://[::1",
                                                                 "http://127.0.0.1:1/refused", "//"])),
            st.tuples(st.just("truncate"), st.none()),
            st.tuples(st.just("garbage"), st.binary(max_size=64)),
            st.tuples(st.just("oversized"), st.just(big)),
            st.tuples(st.just("gzip_corrupt"), st.none()),
            st.tuples(st.just("gzip_bomb"), st.just(big * 2)),
            st.tuples(st.just("slow"), st.just(0.3)),
            st.tuples(st.just("never"), st.none()),
            st.tuples(st.just("endless"), st.none()),
        ]  # fmt: skip
        if step in _JSON_STEPS:
            kinds.append(st.tuples(st.just("json"), json_values | shapes))
        if step == "status":
            kinds.append(st.tuples(st.just("outputs"), st.deferred(lambda: _hostile_outputs)))
        return st.tuples(st.one_of(kinds), st.none() | st.just(1)).map(
            lambda pair: Misbehaviour(step, pair[0][0], pair[0][1], pair[1])
        )

    return st.sampled_from(STEPS).flatmap(build)


_ORIGIN = "{origin}"
_hostile_outputs = st.dictionaries(
    st.sampled_from(["vocals", "instrumental", "fullAudio", "../../../../../../..{sentinel}/evil", "{sentinel}/evil",
                     "vocals/../../../evil", "evil\x00name", ""]),
    st.fixed_dictionaries({"url": st.sampled_from([
        "{origin}/storage/out/vocals.wav", "{origin}/storage/out/instrumental.wav", "not a url", "ftp://x/y",
        "{other}/steal.wav", "http://127.0.0.1:1/refused.wav", "{origin}/storage/out/../../../etc/passwd",
    ])}),
    max_size=4,
)  # fmt: skip


def _fill(world: World, script: Misbehaviour) -> Misbehaviour:
    """Put the live addresses into a drawn misbehaviour's templated strings."""
    if script.kind != "outputs":
        return script
    subs = {"{origin}": world.app.origin, "{other}": world.app.other_origin, "{sentinel}": str(world.sentinel)}

    def fill(text: str) -> str:
        for k, v in subs.items():
            text = text.replace(k, v)
        return text

    value = {fill(k): {"url": fill(v["url"])} for k, v in script.value.items()}
    return Misbehaviour(script.step, script.kind, value, script.times)


def _check_world(world: World) -> None:
    """No file outside the job's folder; the key never off the API's origin."""
    assert list(world.sentinel.iterdir()) == []
    assert not list(Path("/tmp").glob("evil*"))
    for request in world.other.requests:
        assert KEY not in " ".join(request.headers.values()), request
    for request in world.app.requests:
        if not request.path.startswith("/api/v1/"):
            assert "authorization" not in request.headers, request


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])  # fmt: skip
@given(script=_misbehaviours(), mode=st.sampled_from(["sync-direct", "async-direct", "sync-chain", "async-chain"]))
@example(Misbehaviour("status", "outputs", {
    "../../../../../../..{sentinel}/evil": {"url": "{origin}/storage/out/vocals.wav"},
    "{sentinel}/evil": {"url": "{origin}/storage/out/vocals.wav"},
}), "sync-direct")  # fmt: skip
@example(Misbehaviour("status", "redirect_other"), "async-direct")
@example(Misbehaviour("status", "redirect_loop"), "sync-chain")
@example(Misbehaviour("status", "json", []), "async-chain")
@example(Misbehaviour("status", "json", {"id": "job1", "status": "WEIRD"}), "sync-direct")
@example(Misbehaviour("upload", "json", {"uploadKey": "k1"}), "sync-direct")
@example(Misbehaviour("status", "json", {"id": "job1", "status": "COMPLETED", "outputs": "nope"}), "async-direct")
@example(Misbehaviour("download", "gzip_corrupt"), "async-chain")
@example(Misbehaviour("download", "gzip_bomb", 16_000_000), "sync-direct")
@example(Misbehaviour("status", "gzip_bomb", 2_000_000), "sync-direct")
@example(Misbehaviour("download", "truncate"), "async-chain")
@example(Misbehaviour("create", "status", 401), "sync-chain")
@example(Misbehaviour("create", "retry_after", 60), "sync-direct")
@example(Misbehaviour("download", "slow", 0.3), "async-direct")
@example(Misbehaviour("status", "outputs", {"vocals": {"url": "not a url"}}), "sync-direct")
def test_only_stemkit_errors_escape_and_nothing_leaks(world: World, script: Misbehaviour, mode: str) -> None:
    script = _fill(world, script)
    world.app.reset(script)
    world.other.requests.clear()
    started = time.monotonic()
    failure: StemkitError | None = None
    try:
        result = _run(world, mode, ["vocals", "instrumental"])
    except StemkitError as exc:
        failure = exc
    if failure is not None:
        assert mode.endswith("direct"), f"the chain did not fall back to dsp: {failure!r}"
        assert KEY not in str(failure)
        assert KEY not in repr(failure)
    else:
        assert set(result) == {"vocals", "instrumental"}
        assert result["vocals"].audio.shape == (2, RATE)
        assert np.isfinite(result["vocals"].audio).all()
        result.close()
    assert time.monotonic() - started < CALL_TIMEOUT + 5.0
    _check_world(world)


def test_a_hostile_output_name_is_never_a_path(world: World) -> None:
    script = _fill(world, Misbehaviour("status", "outputs", {
        "{sentinel}/evil": {"url": "{origin}/storage/out/vocals.wav"},
        "vocals": {"url": "{origin}/storage/out/vocals.wav"},
        "instrumental": {"url": "{origin}/storage/out/instrumental.wav"},
    }))  # fmt: skip
    world.app.reset(script)
    result = _run(world, "sync-direct", ["vocals", "instrumental"])
    downloaded = [r.path for r in world.app.requests if r.path.startswith("/storage/out/")]
    assert sorted(downloaded) == ["/storage/out/instrumental.wav", "/storage/out/vocals.wav"]  # only what was asked
    vocals = result["vocals"].path
    assert vocals is not None
    assert vocals.name == "vocals.wav"
    _check_world(world)


def test_an_echoed_key_is_scrubbed_from_the_error(world: World) -> None:
    world.app.reset(Misbehaviour("create", "status", 400))
    with pytest.raises(ProviderError) as info:
        _run(world, "sync-direct", ["vocals"])
    assert "denied for Bearer ***" in str(info.value)
    assert KEY not in str(info.value)


def test_a_retry_after_beyond_the_deadline_fails_at_once_with_it(world: World) -> None:
    world.app.reset(Misbehaviour("create", "retry_after", 60))
    started = time.monotonic()
    with pytest.raises(RateLimitError) as info:
        _run(world, "async-direct", ["vocals"])
    assert info.value.retry_after == 60
    assert time.monotonic() - started < 3.0  # no waiting out a minute of Retry-After inside a 6 s deadline
    assert sum(1 for r in world.app.requests if r.path == "/api/v1/jobs") == 1


def test_an_endless_stem_download_stops_at_what_the_duration_justifies(world: World) -> None:
    world.app.reset(Misbehaviour("download", "endless"))
    with pytest.raises(ProtocolError, match="larger than"):
        _run(world, "sync-direct", ["vocals"])


def test_a_job_stuck_processing_ends_at_the_deadline_naming_the_job(world: World) -> None:
    world.app.reset(Misbehaviour("status", "json", {"id": "job1", "status": "PROCESSING", "progress": 50}))
    separator = _separator(world)
    with separator, pytest.raises(SeparationTimeout, match="job1") as info:
        separator.separate(world.song, stems=["vocals"], timeout=1.0)
    assert info.value.job_id == "job1"


def test_hosted_separations_have_a_default_deadline(world: World) -> None:
    separator = _separator(world)
    source = stemkit.audio.open_source(world.song)
    assert separator.default_timeout(source) == pytest.approx(1800.0 + 2.0)


def test_a_rate_limited_upload_submits_no_job_after_the_deadline(world: World) -> None:
    world.app.reset(Misbehaviour("put", "retry_after", 3))
    separator = _separator(world)
    with separator, pytest.raises(StemkitError):
        separator.separate(world.song, stems=["vocals"], timeout=1.0)
    time.sleep(0.2)  # let any straggling request reach the server before counting
    assert not [r for r in world.app.requests if r.path == "/api/v1/jobs"]


def test_an_oversized_status_answer_is_refused_without_reading_it_all(world: World) -> None:
    world.app.reset(Misbehaviour("status", "oversized", 200_000))
    with pytest.raises(ProtocolError, match="larger than"):
        _run(world, "sync-direct", ["vocals"])
