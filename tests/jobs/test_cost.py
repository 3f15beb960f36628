"""Cost before spending: estimates per provider (StemSplit bills each job's seconds rounded up, EzStems counts
jobs against the plan, local providers cost compute time), what a fallback chain would run, cached and
resumable work at no cost; ``max_cost`` refuses before anything is billed, before the batch and before each
job; actual costs are summed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anyio
import pytest

import stemkit
from stemkit.budget import Budget, spending_limit
from stemkit.compose.fit import estimate_sent
from stemkit.cost import cost_from_capabilities
from stemkit.errors import BudgetExceededError, ConfigError
from stemkit.ledger import JobLedger
from stemkit.protocol import Capabilities
from stemkit.provenance import Cost

from ..conftest import installed
from .conftest import POLL, StemSplit, abandon_after_submission, write_song

INLINE_ENGINE = Path(__file__).parents[1] / "plugins" / "stemkit-inline-engine"


def test_stemsplit_estimates_each_job_rounded_up_to_a_second(song: Path, stemsplit: StemSplit) -> None:
    with stemsplit.load() as sep:
        (plan,) = stemkit.estimate(song, provider=sep, stems=["vocals", "piano"])
    assert plan.action == "submit"
    assert plan.cost == Cost(2.0, "seconds")  # 1.5 s of audio
    assert plan.combination == ("vocals", "drums", "bass", "other", "piano", "guitar")
    assert (plan.direct, plan.derived) == (("vocals", "piano"), ())
    assert plan.jobs == 1
    assert stemsplit.requests() == []


def test_an_estimate_says_what_is_cached_and_what_the_provider_already_holds(
    songs: list[Path], stemsplit: StemSplit
) -> None:
    with stemsplit.load() as sep:
        sep.separate(songs[0], stems="instrumental")
        job_id = abandon_after_submission(sep, songs[1], stems="instrumental")
        seen = len(stemsplit.requests())
        plan = stemkit.estimate(songs[:3], provider=sep, stems="instrumental")
    assert [p.action for p in plan] == ["cached", "resume", "submit"]
    assert plan[1].job_id == job_id
    assert plan[1].cost == Cost(0.0, "seconds")
    assert plan.totals() == {"seconds": 2.0}
    assert plan.tally() == {"cached": 1, "resume": 1, "submit": 1}
    assert len(stemsplit.requests()) == seen


def test_a_local_provider_costs_compute_time_from_its_measured_speed(song: Path) -> None:
    (plan,) = stemkit.estimate(song, provider="dsp", stems=["vocals", "instrumental"])
    assert plan.action == "run"
    assert plan.cost is None
    assert plan.compute_seconds == pytest.approx(0.03 * 1.5)
    assert plan.derived == ("instrumental",)  # dsp gives four stems: instrumental is their sum


def test_a_chain_is_estimated_as_the_provider_that_would_run(
    song: Path, stemsplit: StemSplit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STEMSPLIT_API_KEY", raising=False)
    (plan,) = stemkit.estimate(song, provider=f"{stemsplit.spec()} | dsp", stems="vocals")
    assert plan.action == "run"
    assert plan.provider == "dsp"
    assert plan.skipped == ((stemsplit.spec(), "no API key configured"),)


def test_ezstems_counts_jobs_against_the_plan_and_bills_nothing_per_job(song: Path, ezstems: Any) -> None:
    spec = f"ezstems?base_url={ezstems.base_url}"
    with stemkit.load(spec, api_key=ezstems.api_key, poll=POLL) as sep:
        (plan,) = stemkit.estimate(song, provider=sep, stems="vocals")
        assert (plan.cost, plan.plan_usage) == (None, Cost(1.0, "jobs"))
        assert "Basic (Premium) plan" in plan.note
        two = [song, write_song(song.with_name("b.wav"), 1.5, seed=3)]
        with pytest.raises(BudgetExceededError, match="2 jobs"):
            list(stemkit.separate_many(two, sep, stems="vocals", max_cost="1 job"))
        assert ezstems.count("POST", "upload") == 0
        done = list(stemkit.separate_many(two, sep, stems="vocals", max_cost=0))  # a bare number: money only
    assert all(item.ok for item in done)


def test_a_fitted_input_is_estimated_as_what_is_sent(tmp_path: Path) -> None:
    long = write_song(tmp_path / "long.wav", 16.0, seed=5)
    caps = Capabilities(combinations=(("vocals", "instrumental"),), local=False, max_duration_seconds=8.0,
                        cost_unit="seconds")  # fmt: skip
    sent = estimate_sent(caps, long)
    assert sent.jobs >= 2  # overlapping pieces that each fit
    spend = cost_from_capabilities(caps, sent)
    assert spend.cost == Cost(float(sum(math.ceil(s) for s in sent.job_seconds)), "seconds")
    assert spend.cost.amount > 16  # the overlaps are sent (and billed) twice


def test_max_cost_refuses_a_batch_over_budget_before_any_request(songs: list[Path], stemsplit: StemSplit) -> None:
    with stemsplit.load() as sep:
        with pytest.raises(BudgetExceededError, match="8 seconds") as caught:
            list(stemkit.separate_many(songs, sep, stems="vocals", max_cost=7))
        assert (caught.value.unit, caught.value.budget, caught.value.estimate) == ("seconds", 7.0, 8.0)
        assert isinstance(caught.value, ConfigError)
        assert stemsplit.requests() == []
        assert JobLedger().entries() == []
        done = list(stemkit.separate_many(songs, sep, stems="vocals", max_cost="8 seconds"))
    assert sum(item.cost.amount for item in done if item.cost) == 8.0
    assert stemsplit.jobs() == 4


def test_max_cost_refuses_a_batch_on_an_engine_before_the_engine_starts(
    songs: list[Path], stemsplit: StemSplit, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with installed(INLINE_ENGINE, tmp_path_factory.mktemp("site")):
        from stemkit_inline_engine import InlineEngine

        InlineEngine.requests.clear()
        ledger = tmp_path_factory.mktemp("ledger") / "jobs.sqlite3"
        with stemsplit.load() as sep:
            with pytest.raises(BudgetExceededError, match="8 seconds"):
                list(stemkit.separate_many(songs, sep, stems="vocals", max_cost=7, engine="inline"))
            assert InlineEngine.requests == []
            assert stemsplit.requests() == []
            done = list(stemkit.separate_many(songs[:1], sep, stems="vocals", max_cost="2 seconds",
                                              ledger=JobLedger(ledger), engine="inline"))  # fmt: skip
        (request, _), = InlineEngine.requests
    assert request.ledger == ledger  # the ledger's file, for workers in other processes to open
    assert [item.ok for item in done] == [True]
    assert [entry.status for entry in JobLedger(ledger).entries()] == ["finished"]


def test_work_already_paid_for_costs_nothing_against_a_budget(songs: list[Path], stemsplit: StemSplit) -> None:
    with stemsplit.load() as sep:
        list(stemkit.separate_many(songs[:2], sep, stems="vocals"))
        abandon_after_submission(sep, songs[2], stems="vocals")
        done = list(stemkit.separate_many(songs[:3], sep, stems="vocals", max_cost=0))
    assert sorted(item.origin or "" for item in done) == ["cached", "cached", "resumed"]


def test_each_job_reserves_its_estimate_before_it_is_submitted(song: Path, stemsplit: StemSplit) -> None:
    # No estimate up front (a Separator called directly): the lifecycle's own check refuses the job.
    async def main() -> None:
        with stemsplit.load(cache=False) as sep, spending_limit(Budget(default=1)):
            await sep.aseparate(song, stems="vocals")

    with pytest.raises(BudgetExceededError, match="not submitted"):
        anyio.run(main)
    assert stemsplit.requests() == []
    assert JobLedger().entries() == []  # the entry it began is gone again: nothing was sent


def test_a_url_whose_length_is_unknown_is_refused_under_a_budget(stemsplit: StemSplit) -> None:
    with stemsplit.load() as sep:
        (plan,) = stemkit.estimate("https://music.example/song.mp3", provider=sep)
        assert not plan.known
        with pytest.raises(BudgetExceededError, match="unknown"):
            stemkit.separate("https://music.example/song.mp3", provider=sep, max_cost=100)
    assert stemsplit.requests() == []


@pytest.mark.parametrize(
    ("value", "limits", "default"),
    [
        (600, {}, 600.0),
        ("600", {}, 600.0),
        ("600 seconds", {"seconds": 600.0}, None),
        ("600s, 10 jobs", {"seconds": 600.0, "jobs": 10.0}, None),
        ({"credits": 5}, {"seconds": 5.0}, None),
        (Cost(3, "jobs"), {"jobs": 3.0}, None),
    ],
)
def test_budgets_are_read_from_numbers_text_costs_and_mappings(
    value: Any, limits: dict[str, float], default: float | None
) -> None:
    budget = Budget.parse(value)
    assert budget is not None
    assert (budget.limits, budget.default) == (limits, default)


@pytest.mark.parametrize("value", [-1, "lots", True, float("nan"), "5 seconds, much"])
def test_a_budget_that_is_not_an_amount_is_a_config_error(value: Any) -> None:
    with pytest.raises(ConfigError, match="max_cost"):
        Budget.parse(value)


def test_a_bare_number_over_two_billing_units_is_ambiguous() -> None:
    from stemkit.cost import CostEstimate

    budget = Budget(default=10)
    budget.reserve(CostEstimate(Cost(2, "seconds")), what="a")
    with pytest.raises(ConfigError, match="ambiguous"):
        budget.reserve(CostEstimate(Cost(1, "dollars")), what="b")
