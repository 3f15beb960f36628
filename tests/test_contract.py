"""The one contract, enforced in the core (issue 11): each test is a regression test of something that broke.

One implementation per path means sync and async cannot disagree: the scenarios run both ways. The error
boundary means nothing but a stemkit error leaves the public API, whatever a plugin or a server does."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
import soundfile as sf

import stemkit
from stemkit._boundary import as_stemkit_error
from stemkit.cli import main as cli_main
from stemkit.errors import (
    AllProvidersFailedError,
    ConfigError,
    InputError,
    OutputError,
    ProtocolError,
    ProviderError,
    ProviderUnavailableError,
)
from stemkit.hosted import PollPolicy, RetryPolicy, Secret, read_key
from stemkit.protocol import Capabilities
from stemkit.provider import RawResult, SeparationJob, SeparatorBase
from stemkit.routing import BreakerSettings, Chain, CircuitBreaker, reset_breakers
from stemkit_stemsplit.emulator import DEFAULT_API_KEY, EmulatorConfig, StemSplitEmulator

RETRY = RetryPolicy(max_attempts=2, backoff_initial=0.01, backoff_max=0.02, jitter=0.0)
POLL = PollPolicy(initial=0.01, multiplier=1.5, max_interval=0.05, min_interval=0.005)
BOTH_WAYS = pytest.mark.parametrize("flavour", ["sync", "async"])


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    reset_breakers()
    yield
    reset_breakers()


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stemkit.demo import make_demo

    return make_demo(tmp_path_factory.mktemp("song"), seconds=1.0)


def _copy(song: Path, folder: Path) -> Path:
    """Another file with the song's audio (a batch separates one file named twice only once)."""
    copy = folder / "copy" / song.name
    copy.parent.mkdir(exist_ok=True)
    copy.write_bytes(song.read_bytes())
    return copy


def _separate(flavour: str, separator: Any, audio: Any, **kwargs: Any) -> stemkit.StemSet:
    if flavour == "sync":
        return separator.separate(audio, **kwargs)  # type: ignore[no-any-return]
    return asyncio.run(separator.aseparate(audio, **kwargs))  # type: ignore[no-any-return]


# -- separators that misbehave the way plugins do --------------------------------------------------------------------
class _Local(SeparatorBase):
    """A local provider whose work is whatever ``behaviour`` does (the stems: half the mixture each)."""

    name = "local-test"

    def __init__(self, behaviour: Any = None) -> None:
        super().__init__()
        self.behaviour = behaviour
        self.calls = 0

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(combinations=(("vocals", "instrumental"),))

    def _separate(self, job: SeparationJob) -> RawResult:
        self.calls += 1
        if self.behaviour is not None:
            self.behaviour(job)
        audio = job.source.read()
        return RawResult(stems={"vocals": audio * 0.5, "instrumental": audio * 0.5}, sample_rate=job.source.sample_rate)


def _raise(exc: BaseException) -> Any:
    def behaviour(job: SeparationJob) -> None:
        raise exc

    return behaviour


@BOTH_WAYS
@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("boom"),
        KeyError("missing"),
        ExceptionGroup("many", [ValueError("a"), TypeError("b")]),
        OSError(28, "No space left on device"),
    ],
    ids=["runtime", "keyerror", "group", "oserror"],
)
def test_a_plugin_bug_is_a_provider_error_and_a_chain_moves_on(flavour: str, exc: BaseException, song: Path) -> None:
    with pytest.raises(ProviderError) as info:
        _separate(flavour, _Local(_raise(exc)), song)
    assert not isinstance(info.value, BaseExceptionGroup)
    result = _separate(flavour, Chain([_Local(_raise(exc)), stemkit.load("dsp")]), song, stems=["vocals"])
    assert result.provider == "dsp"
    assert [a.outcome for a in result.attempts] == ["failed", "ok"]


def test_the_boundary_unwraps_groups_to_what_the_caller_must_fix_first() -> None:
    group = ExceptionGroup("x", [ProviderUnavailableError("down"), ExceptionGroup("y", [InputError("bad audio")])])
    assert isinstance(as_stemkit_error(group), InputError)
    cancelled = BaseExceptionGroup("c", [KeyboardInterrupt()])
    assert as_stemkit_error(cancelled) is cancelled


def test_an_httpx_or_pydantic_error_from_a_plugin_is_typed() -> None:
    import httpx
    from pydantic import BaseModel

    class M(BaseModel):
        x: int

    from pydantic import ValidationError

    with pytest.raises(ValidationError) as validation:
        M.model_validate({"x": "no"})
    assert isinstance(as_stemkit_error(validation.value, provider="p"), ProtocolError)
    assert isinstance(as_stemkit_error(httpx.TooManyRedirects("loop"), provider="p"), ProtocolError)
    assert isinstance(as_stemkit_error(httpx.DecodingError("gzip"), provider="p"), ProtocolError)
    assert isinstance(as_stemkit_error(httpx.ConnectError("refused"), provider="p"), ProviderUnavailableError)


# -- the async download failure that escaped as an ExceptionGroup ----------------------------------------------------
@pytest.fixture
def dropping_stemsplit(monkeypatch: pytest.MonkeyPatch) -> Iterator[StemSplitEmulator]:
    from stemkit.hosted.faults import FaultPlan

    emulator = StemSplitEmulator(EmulatorConfig(faults=FaultPlan.parse(["drop-download:after=0.3"]),
                                                processing_seconds=0.02, queue_seconds=0.0))  # fmt: skip
    with emulator.serve() as server:
        monkeypatch.setenv("STEMSPLIT_BASE_URL", server.base_url)
        monkeypatch.setenv("STEMSPLIT_API_KEY", DEFAULT_API_KEY)
        yield emulator


def _chain() -> Any:
    return stemkit.load("stemsplit?format=wav | dsp", provider_kwargs={"stemsplit": {"retry": RETRY, "poll": POLL}})


@BOTH_WAYS
def test_a_download_that_keeps_failing_falls_back(flavour: str, song: Path, dropping_stemsplit: Any) -> None:
    with _chain() as chain:
        result = _separate(flavour, chain, song, stems=["vocals", "instrumental"])
    assert result.provider == "dsp"
    assert result.attempts[0].error_class == "ProviderUnavailableError"


def test_a_failing_download_does_not_stop_a_batch(song: Path, dropping_stemsplit: Any, tmp_path: Path) -> None:
    with _chain() as chain:
        items = list(stemkit.separate_many([song, _copy(song, tmp_path)], chain, stems=["vocals"],
                                           output_dir=tmp_path / "out"))  # fmt: skip
    assert [item.ok for item in items] == [True, True]
    assert {item.provider for item in items} == {"dsp"}


def test_the_cli_falls_back_without_a_traceback(
    song: Path, dropping_stemsplit: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(["separate", str(song), "-p", "stemsplit?format=wav | dsp", "-o", str(tmp_path), "--timeout", "60"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "Traceback" not in out.err + out.out


# -- deadlines -------------------------------------------------------------------------------------------------------
def test_timeout_is_checked_and_zero_means_already_expired(song: Path) -> None:
    with pytest.raises(ConfigError, match="timeout"):
        stemkit.separate(song, timeout=-1)
    with pytest.raises(stemkit.SeparationTimeout):
        stemkit.separate(song, timeout=0)


def test_a_cpu_bound_provider_can_stop_at_the_deadline(song: Path) -> None:
    def slow(job: SeparationJob) -> None:
        while True:
            job.check_deadline()

    with pytest.raises(stemkit.SeparationTimeout, match=r"within 0\.2 s"):
        _Local(slow).separate(song, timeout=0.2)


# -- keys ------------------------------------------------------------------------------------------------------------
def test_a_key_read_with_its_newline_is_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_TEST_KEY", "  sk_live_abcdef123456\n")
    key = read_key(None, env="X_TEST_KEY", provider="x")
    assert key is not None
    assert key.reveal() == "sk_live_abcdef123456"


def test_a_key_with_control_characters_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        read_key("sk_live_abc\x07def123456", env="X_TEST_KEY", provider="x")
    assert "sk_live" not in str(info.value)
    assert "position 12" in str(info.value)


def test_a_bad_key_in_the_environment_is_a_config_error_of_the_separator(
    monkeypatch: pytest.MonkeyPatch, song: Path
) -> None:
    monkeypatch.setenv("STEMSPLIT_API_KEY", "sk_live_with\ttab_0123456")
    with pytest.raises(ConfigError) as info:
        stemkit.separate(song, "stemsplit")
    assert "tab_0123456" not in str(info.value)
    assert "STEMSPLIT_API_KEY" in str(info.value)


def test_a_secret_is_scrubbed_from_any_stemkit_error_message() -> None:
    Secret("sk_scrub_me_0123456789")
    exc = as_stemkit_error(ProviderError("server said: Bearer sk_scrub_me_0123456789", provider="p"))
    assert "sk_scrub_me" not in str(exc)
    bug = as_stemkit_error(RuntimeError("header value b'Bearer sk_scrub_me_0123456789\\n' is invalid"))
    assert "sk_scrub_me" not in str(bug)


# -- the circuit breaker's probe -------------------------------------------------------------------------------------
class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _half_open(clock: _Clock) -> BreakerSettings:
    settings = BreakerSettings(failures=1, cooldown=10.0, clock=clock)
    return settings


def test_a_cancelled_probe_releases_the_breaker(song: Path) -> None:
    clock = _Clock()
    entered = anyio.Event()

    class _Hosted(_Local):
        hang = False

        async def _aseparate(self, job: SeparationJob) -> RawResult:
            if self.hang:
                entered.set()
                await anyio.sleep_forever()
            return await super()._aseparate(job)

    flaky = _Hosted(_raise(RuntimeError("down")))
    chain = Chain([flaky, stemkit.load("dsp")], breaker=_half_open(clock))
    chain.separate(song)  # opens the breaker
    clock.now = 20.0  # half-open: the next call is a probe
    flaky.behaviour, flaky.hang = None, True

    async def cancel_the_probe() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: chain.aseparate(song))
            await entered.wait()
            group.cancel_scope.cancel()  # the caller gives up (e.g. its own move_on_after)

    anyio.run(cancel_the_probe)
    breaker: CircuitBreaker = chain._breaker(flaky)
    assert breaker.allow()  # the probe was given back, so a new probe may go through


def test_a_probe_that_raises_a_non_stemkit_error_releases_the_breaker(song: Path) -> None:
    clock = _Clock()
    flaky = _Local(_raise(RuntimeError("down")))
    chain = Chain([flaky, stemkit.load("dsp")], breaker=_half_open(clock))
    chain.separate(song)
    clock.now = 20.0
    flaky.behaviour = _raise(ZeroDivisionError("bug"))
    assert chain.separate(song).provider == "dsp"  # the bug is a ProviderError: the chain moved on
    clock.now = 40.0
    flaky.behaviour = None
    assert chain.separate(song).provider == "local-test"  # and the breaker probes (and closes) again


# -- what a chain hands its members ----------------------------------------------------------------------------------
class _ProtocolOnly:
    """A provider written to the Separator protocol alone (not on stemkit's base class)."""

    name = "protocol-only"
    spec = "protocol-only"
    capabilities = Capabilities(combinations=(("vocals", "instrumental"),))

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def separate(self, audio: Any, **kwargs: Any) -> stemkit.StemSet:
        return stemkit.separate(audio, _Local(), **kwargs)

    async def aseparate(self, audio: Any, **kwargs: Any) -> stemkit.StemSet:
        self.seen.append(audio)
        return await stemkit.aseparate(audio, _Local(), **kwargs)

    def close(self) -> None:
        pass

    def __enter__(self) -> _ProtocolOnly:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@BOTH_WAYS
def test_a_chain_hands_a_protocol_provider_a_public_input(flavour: str, song: Path) -> None:
    member = _ProtocolOnly()
    _separate(flavour, Chain([member]), str(song))
    assert member.seen == [str(song)]
    rate = sf.info(song).samplerate
    array, _ = sf.read(song, dtype="float32", always_2d=True)
    _separate(flavour, Chain([member]), array.T, sample_rate=rate)
    assert isinstance(member.seen[-1], np.ndarray)


@BOTH_WAYS
def test_a_chains_temporary_copy_of_a_file_object_goes_with_the_result(flavour: str, song: Path) -> None:
    member = _ProtocolOnly()
    result = _separate(flavour, Chain([member]), io.BytesIO(song.read_bytes()))
    copy = member.seen[-1]
    assert isinstance(copy, Path)
    assert copy.exists()  # a file object can be read once: members get a copy
    result.close()
    assert not copy.exists()


def test_a_chain_with_an_array_writes_no_file_on_the_event_loop(song: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writes_on_loop: list[bool] = []
    real_write = sf.write

    def spy(*args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
            writes_on_loop.append(True)
        except RuntimeError:
            writes_on_loop.append(False)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(sf, "write", spy)
    array, rate = sf.read(song, dtype="float32", always_2d=True)

    class _NeedsAFile(_Local):
        @property
        def capabilities(self) -> Capabilities:  # a size limit: judging it needs the array as a file
            return Capabilities(combinations=(("vocals", "instrumental"),), max_file_bytes=1 << 30)

        def _separate(self, job: SeparationJob) -> RawResult:
            _ = job.source.path  # like a hosted upload: the array becomes a temporary WAV
            return super()._separate(job)

    asyncio.run(Chain([_NeedsAFile()]).aseparate(array.T, sample_rate=rate))
    assert writes_on_loop
    assert not any(writes_on_loop)


# -- batches ---------------------------------------------------------------------------------------------------------
def test_one_items_output_failure_never_stops_the_batch(song: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first, second = tmp_path / "first.wav", tmp_path / "second.wav"
    first.write_bytes(song.read_bytes())
    second.write_bytes(song.read_bytes())

    def block_the_folder(job: SeparationJob) -> None:
        # After the batch's own checks passed: something else takes the place of this input's folder.
        if job.source.name.endswith("first.wav"):
            out.mkdir(exist_ok=True)
            (out / "first").write_text("a file where the item's folder should be")

    items = list(stemkit.separate_many([first, second], _Local(block_the_folder), stems=["vocals"], output_dir=out))
    by_name = {item.name: item for item in items}
    assert by_name["second"].ok
    assert isinstance(by_name["first"].error, OutputError)


def test_an_unwritable_output_is_refused_before_any_separation(song: Path, tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file, not a folder")
    provider = _Local()
    with pytest.raises(OutputError):
        list(stemkit.separate_many([song], provider, output_dir=tmp_path / "out"))
    assert provider.calls == 0


def test_a_batch_items_seconds_count_only_its_own_work(song: Path, tmp_path: Path) -> None:
    gate = threading.Event()

    def wait(job: SeparationJob) -> None:
        gate.wait(5)

    slow = _Local(wait)
    inputs = [song, _copy(song, tmp_path)]  # two files: the same one twice would be separated once
    threading.Timer(0.5, gate.set).start()
    items = list(stemkit.separate_many(inputs, slow, concurrency=1))
    assert items[1].seconds < 0.4  # the second waited ~0.5 s for its turn; that is not its own work


def test_a_batch_with_a_plugin_bug_reports_it_per_item(song: Path) -> None:
    items = list(stemkit.separate_many([song], _Local(_raise(RuntimeError("boom")))))
    assert isinstance(items[0].error, ProviderError)
    assert "bug" in str(items[0].error)


def test_every_provider_failing_is_one_error_with_the_trail(song: Path) -> None:
    with pytest.raises(AllProvidersFailedError) as info:
        Chain([_Local(_raise(RuntimeError("a"))), _Local(_raise(RuntimeError("b")))]).separate(song)
    assert len(info.value.attempts) == 2


def test_a_fit_keyword_goes_through_the_result_cache(song: Path, tmp_path: Path) -> None:
    first = stemkit.separate(song, provider="dsp", cache=tmp_path / "cache", fit="off", stems=["vocals"])
    again = stemkit.separate(song, provider="dsp", cache=tmp_path / "cache", fit="off", stems=["vocals"])
    assert again.provenance.cache is not None
    np.testing.assert_array_equal(first["vocals"].audio, again["vocals"].audio)
