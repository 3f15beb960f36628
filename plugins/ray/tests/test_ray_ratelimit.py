"""The cluster-wide rate limiter: its window on its own (any arrival pattern stays within the limit; what a
server says pauses everyone), then the whole cluster against a StemSplit emulator that refuses requests over
its limit."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stemkit
from stemkit.errors import ConfigError
from stemkit.hosted import RateLimitInfo
from stemkit_ray import Rate, SlidingWindow, parse_rate


def _run(window: SlidingWindow, arrivals: list[float]) -> list[float]:
    """Grant times for requests arriving at ``arrivals`` (sorted), each waiting as the window says."""
    grants = []
    clock = 0.0
    for arrival in arrivals:
        clock = max(clock, arrival)
        clock += window.wait(clock)
        window.grant(clock)
        grants.append(clock)
    return grants


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 20),
    span=st.floats(0.5, 120.0),
    gaps=st.lists(st.floats(0.0, 5.0), min_size=1, max_size=200),
    start=st.floats(0.0, 1000.0),
)
def test_no_fixed_window_ever_sees_more_than_the_limit(
    limit: int, span: float, gaps: list[float], start: float
) -> None:
    arrivals = []
    clock = start
    for gap in gaps:
        clock += gap
        arrivals.append(clock)
    grants = _run(SlidingWindow(Rate(limit, span)), arrivals)
    # a server counting in fixed windows starting anywhere: any `limit + 1` consecutive grants span a window
    for i in range(len(grants) - limit):
        assert grants[i + limit] - grants[i] >= span - 1e-9
    assert all(g >= a for g, a in zip(grants, arrivals, strict=True))


def test_requests_within_the_limit_are_not_delayed() -> None:
    window = SlidingWindow(Rate(60, 60.0))
    assert _run(window, [float(i) for i in range(60)]) == [float(i) for i in range(60)]
    assert window.wait(60.0) == pytest.approx(0.0)  # the first grant left the window at t=60
    window.grant(60.0)
    assert window.wait(60.5) == pytest.approx(0.5)  # the second (t=1) leaves it at t=61


def test_a_retry_after_seen_by_any_worker_pauses_every_request() -> None:
    window = SlidingWindow(Rate(60, 60.0))
    window.observe(429, RateLimitInfo(retry_after=7.0), now=100.0)
    assert window.wait(100.0) == pytest.approx(7.0)
    assert window.wait(107.5) == 0.0


def test_an_exhausted_window_pauses_until_the_reset_and_a_lower_limit_is_adopted() -> None:
    window = SlidingWindow(Rate(60, 60.0), margin=0.5)
    window.observe(200, RateLimitInfo(limit=30, remaining=0, reset=130.0), now=100.0)
    assert window.rate == Rate(30, 60.0)
    assert window.wait(100.0) == pytest.approx(30.5)
    # a reset header far in the future (a skewed clock, a hostile server) is capped at one window
    window.observe(200, RateLimitInfo(remaining=0, reset=10_000.0), now=200.0)
    assert window.wait(200.0) == pytest.approx(60.5)


def test_a_429_without_retry_after_waits_out_a_window() -> None:
    window = SlidingWindow(Rate(10, 5.0))
    window.observe(429, RateLimitInfo(), now=0.0)
    assert window.wait(0.0) == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("text", "rate"),
    [("60/min", Rate(60, 60.0)), ("10/3s", Rate(10, 3.0)), ("1000/h", Rate(1000, 3600.0)), (60, Rate(60, 60.0)),
     ("5 / 2 minute", Rate(5, 120.0))],
)  # fmt: skip
def test_rates_are_written_as_requests_per_time(text: Any, rate: Rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "0/min", "60/0s", "60/fortnight", ""])
def test_a_rate_that_is_not_one_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="rate"):
        parse_rate(text)


@pytest.mark.usefixtures("ray_cluster")
def test_the_cluster_keeps_within_the_providers_limit_and_never_gets_a_429(
    short_songs: list[Any], tmp_path: Any, stemsplit_emulator: Any
) -> None:
    """Two actors, four jobs at once each, against a server allowing 4 API requests a second: eight songs
    need about 24 requests, so unthrottled they would burst past it; the server never refuses one."""
    emulated = stemsplit_emulator(rate_limit=4, rate_window=1.0)
    options = {"actors": 2, "calls_per_actor": 4, "task_cpus": 0.25, "progress_bar": False,
               "rate_limits": {"stemsplit": "4/1s"}, "rate_margin": 0.1}  # fmt: skip
    items = list(stemkit.separate_many(short_songs, emulated.spec(), output_dir=tmp_path, concurrency=8,
                                       engine="ray", engine_options=options))  # fmt: skip
    assert all(item.ok for item in items), [str(item.error) for item in items]
    api = [r for r in emulated.requests if "/api/v1" in r.path]
    assert len(api) >= 24  # six windows' worth at least
    assert [r.status for r in api if r.status == 429] == []
    arrivals = sorted(r.at for r in api)
    for i in range(len(arrivals) - 4):
        assert arrivals[i + 4] - arrivals[i] >= 1.0
