"""Fallback chains with local providers: skipping by capability, moving on after provider errors, stopping at
once for input errors, circuit breaking, and the trail a StemSet records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

import stemkit
from stemkit.errors import (
    AllProvidersFailedError,
    AuthenticationError,
    ConfigError,
    InputError,
    ProviderUnavailableError,
)
from stemkit.protocol import Capabilities
from stemkit.provider import RawResult, SeparationJob, SeparatorBase
from stemkit.routing import BreakerSettings, Chain, reset_breakers

from .conftest import tone


class Scripted(SeparatorBase):
    """A local provider that fails with the given errors, in order, then succeeds."""

    name = "scripted"

    def __init__(self, label: str, errors: list[BaseException] | None = None, **caps: Any) -> None:
        super().__init__(label)
        self.errors = list(errors or [])
        self.calls = 0
        self._caps = caps

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(combinations=(("vocals", "instrumental"),), **self._caps)

    def _separate(self, job: SeparationJob) -> RawResult:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        audio = job.source.read()
        return RawResult({"vocals": audio * 0.5, "instrumental": audio * 0.5}, sample_rate=job.source.sample_rate)


@pytest.fixture(autouse=True)
def _fresh_breakers() -> None:
    reset_breakers()


AUDIO = tone(0.2)


def separate(chain: Chain, audio: Any = AUDIO, **kw: Any) -> stemkit.StemSet:
    return chain.separate(audio, sample_rate=44_100 if isinstance(audio, np.ndarray) else None, **kw)


def test_an_unavailable_provider_falls_back_to_the_next() -> None:
    down = Scripted("down", [ProviderUnavailableError("503", provider="down")])
    up = Scripted("up")
    result = separate(Chain([down, up]))
    assert result.provider == "scripted"
    assert [(a.provider, a.outcome) for a in result.attempts] == [("scripted:down", "failed"), ("scripted:up", "ok")]
    assert result.attempts[0].error_class == "ProviderUnavailableError"
    assert (down.calls, up.calls) == (1, 1)


def test_an_input_error_stops_the_chain_at_the_first_provider() -> None:
    first = Scripted("first", [InputError("the audio is corrupt")])
    second = Scripted("second")
    with pytest.raises(InputError, match="corrupt"):
        separate(Chain([first, second]))
    assert second.calls == 0


def test_bad_audio_fails_before_any_provider_is_called(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_text("nope")
    first = Scripted("first")
    with pytest.raises(InputError):
        Chain([first, Scripted("second")]).separate(bad)
    assert first.calls == 0


def test_a_file_too_large_for_a_provider_skips_it_without_a_call() -> None:
    small = Scripted("small", max_file_bytes=10)
    big = Scripted("big")
    result = separate(Chain([small, big]))
    assert small.calls == 0
    skipped = result.attempts[0]
    assert (skipped.outcome, skipped.seconds) == ("skipped", 0.0)
    assert "over the 0 MB limit" in skipped.reason


def test_a_provider_without_its_key_is_skipped() -> None:
    keyless = Scripted("keyless", needs_api_key=True, has_api_key=False)
    result = separate(Chain([keyless, Scripted("ok")]))
    assert result.attempts[0].reason == "no API key configured"
    assert keyless.calls == 0


def test_a_provider_that_cannot_produce_the_stems_is_skipped() -> None:
    result = separate(Chain([Scripted("two"), stemkit.load("dsp")]), stems=["drums"])
    assert result.provider == "dsp"
    assert result.attempts[0].reason == "cannot produce or derive drums"


def test_authentication_failures_move_on_loudly(caplog: pytest.LogCaptureFixture) -> None:
    bad_key = Scripted("badkey", [AuthenticationError("invalid API key", provider="badkey", status_code=401)])
    with caplog.at_level("WARNING", logger="stemkit.routing"):
        result = separate(Chain([bad_key, Scripted("ok")]))
    assert result.attempts[0].error_class == "AuthenticationError"
    assert any("check its API key" in r.getMessage() for r in caplog.records)


def test_when_every_provider_fails_the_error_lists_each_reason() -> None:
    a = Scripted("a", [ProviderUnavailableError("HTTP 503 from a", provider="a")])
    b = Scripted("b", max_duration_seconds=0.01)
    c = Scripted("c", [stemkit.JobFailedError("model crashed", job_id="j1", provider="c")])
    with pytest.raises(AllProvidersFailedError) as info:
        separate(Chain([a, b, c]))
    message = str(info.value)
    assert "scripted:a: failed" in message
    assert "HTTP 503 from a" in message
    assert "scripted:b: skipped" in message
    assert "model crashed" in message
    assert [type(x.error).__name__ for x in info.value.attempts] == [
        "ProviderUnavailableError", "NoneType", "JobFailedError"]


def test_the_breaker_opens_after_repeated_failures_then_half_opens() -> None:
    now = [0.0]
    settings = BreakerSettings(failures=2, cooldown=10.0, clock=lambda: now[0])
    flaky = Scripted("flaky", [ProviderUnavailableError("down")] * 3)
    backup = Scripted("backup")
    chain = Chain([flaky, backup], breaker=settings)
    separate(chain)
    separate(chain)
    assert flaky.calls == 2
    skipped = separate(chain)  # open: not called
    assert flaky.calls == 2
    assert "circuit open" in skipped.attempts[0].reason
    now[0] = 10.0  # cooldown over: one probe, which fails and re-opens the breaker
    separate(chain)
    assert flaky.calls == 3
    assert "circuit open" in separate(chain).attempts[0].reason
    now[0] = 20.0  # the next probe succeeds and closes it
    result = separate(chain)
    assert flaky.calls == 4
    assert result.attempts[-1].provider == "scripted:flaky"
    assert result.attempts[-1].outcome == "ok"


def test_chains_nest_and_report_the_inner_trail() -> None:
    inner = Chain([
        Scripted("x", [ProviderUnavailableError("x down")]),
        Scripted("y", [ProviderUnavailableError("y down")]),
    ])
    outer = Chain([inner, Scripted("z")])
    result = separate(outer)
    assert result.attempts[0].error_class == "AllProvidersFailedError"
    assert result.attempts[-1].provider == "scripted:z"


def test_a_chain_is_a_separator_with_the_union_of_capabilities() -> None:
    chain = Chain([Scripted("a", max_file_bytes=100, accepts_urls=True), stemkit.load("dsp")])
    caps = chain.capabilities
    assert ("vocals", "drums", "bass", "other") in caps.combinations
    assert caps.max_file_bytes is None
    assert caps.accepts_urls
    assert isinstance(chain, stemkit.Separator)


def test_load_of_a_chain_string_or_list_gives_a_chain() -> None:
    for spec in ("dsp | dsp?kernel=9", ["dsp", "dsp?kernel=9"]):
        with stemkit.load(spec) as chain:
            assert isinstance(chain, Chain)
            assert chain.spec == "dsp | dsp?kernel=9"


def test_separate_with_a_chain_uses_the_first_provider_that_works() -> None:
    result = stemkit.separate(AUDIO, provider="dsp | dsp?kernel=9", sample_rate=44_100)
    assert [a.outcome for a in result.attempts] == ["ok"]


def test_provider_options_cannot_go_to_a_whole_chain() -> None:
    with pytest.raises(ConfigError, match="put them in each provider's spec"):
        stemkit.separate(AUDIO, provider="dsp | dsp", sample_rate=44_100, kernel=9)


def test_an_unknown_provider_in_a_chain_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'nosuch' is not installed"):
        stemkit.load("dsp | nosuch")


def test_async_chain_falls_back_too() -> None:
    chain = Chain([Scripted("down", [ProviderUnavailableError("down")]), Scripted("up")])

    async def main() -> stemkit.StemSet:
        return await chain.aseparate(AUDIO, sample_rate=44_100)

    result = anyio.run(main)
    assert [a.outcome for a in result.attempts] == ["failed", "ok"]


def test_a_timeout_bounds_the_whole_chain_call() -> None:
    chain = Chain([Scripted("slow"), Scripted("next")])
    result = chain.separate(AUDIO, sample_rate=44_100, timeout=60)
    assert result.attempts[-1].outcome == "ok"
    with pytest.raises(AllProvidersFailedError, match="deadline has passed"):
        chain.separate(AUDIO, sample_rate=44_100, timeout=-1)
