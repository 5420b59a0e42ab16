"""The spend budget's arithmetic: reservations, charges for each way an attempt ends, the stop message, and what a
manifest carries over."""

from __future__ import annotations

import asyncio

import pytest

from rowloom.config import DatasetConfig
from rowloom.config.pricing import BudgetConfig, Pricing
from rowloom.errors import BudgetReached, ConfigError
from rowloom.models.budget import Spend, SpendBudget, spend_from_manifest
from rowloom.models.types import ChatRequest, Usage

PRICES = Pricing(input_per_mtok=1_000_000.0, output_per_mtok=2_000_000.0, cached_input_per_mtok=500_000.0)


def budget(**limits) -> SpendBudget:
    return SpendBudget(BudgetConfig(**limits), {"m": PRICES})


def test_pricing_charges_cached_prompt_tokens_at_their_own_price():
    assert PRICES.cost(10, 5, cached_tokens=4) == 6 * 1.0 + 4 * 0.5 + 5 * 2.0
    assert Pricing(input_per_mtok=1e6, output_per_mtok=0).cost(10, 0, cached_tokens=4) == 10.0  # unset: input
    assert PRICES.cost(3, 0, cached_tokens=99) == 1.5  # never more cached than prompt


async def test_an_attempt_without_room_beside_the_worst_cases_in_flight_waits_for_them_to_settle():
    spend = budget(max_cost=100.0)
    held = await spend.reserve("m", lambda: (10, 20))  # 10 + 40 = 50
    assert spend.reserved.cost == 50.0 and spend.spent.cost == 0.0
    waiting = asyncio.create_task(spend.reserve("m", lambda: (10, 21)))  # 10 + 42 = 52: no room beside the 50
    await asyncio.sleep(0)  # one loop turn: the second attempt finds no room and waits for a settlement
    assert not waiting.done() and spend.reserved.cost == 50.0
    spend.settle(held, usage=Usage(prompt_tokens=10, completion_tokens=5))  # cost 20, nothing held any more
    second = await waiting
    assert spend.reserved.cost == 52.0 and spend.spent == Spend(cost=20.0, tokens=15, requests=1)
    spend.settle(held, usage=Usage(prompt_tokens=10, completion_tokens=5))  # twice: charged once
    assert spend.spent.requests == 1
    # What is spent leaves no room for this one, whatever settles: refused at once.
    with pytest.raises(BudgetReached) as caught:
        await spend.reserve("m", lambda: (41, 20))  # 20 + 81 > 100
    assert caught.value.limit == "max_cost"
    spend.settle(second, billed=False)
    assert spend.reserved == Spend()


@pytest.mark.parametrize(
    ("usage", "billed", "charged"),
    [
        (Usage(known=False), True, Spend(cost=50.0, tokens=30, requests=1)),  # a reply without usage: worst case
        (None, True, Spend(cost=50.0, tokens=30, requests=1)),  # a timeout, a reply cut off: maybe billed
        (None, False, Spend(requests=1)),  # a 429 or a 503: turned away, only the request counts
    ],
)
async def test_an_attempt_without_reported_usage_is_charged_its_worst_case_unless_it_was_turned_away(
    usage, billed, charged
):
    spend = budget(max_requests=5)
    spend.settle(await spend.reserve("m", lambda: (10, 20)), usage=usage, billed=billed)
    assert spend.spent == charged


async def test_every_limit_is_checked_and_a_model_without_prices_costs_nothing():
    spend = SpendBudget(BudgetConfig(max_tokens=100, max_requests=2), {"m": None})
    spend.settle(await spend.reserve("m", lambda: (40, 0)), usage=Usage(prompt_tokens=40))
    with pytest.raises(BudgetReached, match=r"40 of 100 tokens spent") as caught:
        await spend.reserve("m", lambda: (30, 31))
    assert caught.value.limit == "max_tokens"
    spend.settle(await spend.reserve("m", lambda: (1, 0)), billed=False)
    with pytest.raises(BudgetReached, match="2 of 2 requests"):
        await spend.reserve("m", lambda: (1, 0))
    assert spend.spent.cost == 0.0


async def test_without_limits_every_attempt_is_charged_and_none_refused():
    spend = SpendBudget(None, {"m": PRICES}, before=Spend(cost=7.0, tokens=3, requests=1))
    for _ in range(3):
        spend.settle(await spend.reserve("m", lambda: (10**9, 10**9)), usage=Usage(prompt_tokens=1))
    assert spend.spent == Spend(cost=10.0, tokens=6, requests=4)


async def test_the_stop_message_says_what_was_spent_written_and_what_to_do():
    spend = SpendBudget(BudgetConfig(max_cost=12.0), {"m": Pricing(input_per_mtok=1e6, output_per_mtok=1e6)})
    spend.settle(await spend.reserve("m", lambda: (11, 0)), usage=Usage(prompt_tokens=11, completion_tokens=1))
    with pytest.raises(BudgetReached) as caught:
        await spend.reserve("m", lambda: (1, 0))
    assert str(spend.reached(caught.value, 8412, 20000)) == (
        "budget reached: 12.00 of 12.00 USD spent; 8,412 of 20,000 records written; "
        "raise run.budget.max_cost and run the same command to resume"
    )


def test_a_manifest_carries_the_spend_over_and_an_older_one_its_ledger():
    assert spend_from_manifest({"spend": {"cost": 1.5, "tokens": 10, "requests": 2}}) == Spend(1.5, 10, 2)
    older = {"ledger": {"totals": {"cost": 0.25, "total_tokens": 30, "requests": 3}}}
    assert spend_from_manifest(older) == Spend(0.25, 30, 3)
    assert spend_from_manifest(None) == spend_from_manifest({"spend": "junk"}) == Spend()
    assert spend_from_manifest({"spend": {"cost": -1, "tokens": "x", "requests": True}}) == Spend()


def test_the_prompt_bound_is_never_below_a_byte_level_token_count():
    request = ChatRequest(
        model="m",
        messages=({"role": "system", "content": "Be brief."}, {"role": "user", "content": "héllo 世界 " * 50}),
        params={"max_tokens": 64},
        json_schema={"type": "object"},
    )
    prompt, completion = request.token_bounds()
    text = "Be brief." + "héllo 世界 " * 50 + '{"type":"object"}'
    assert prompt >= len(text.encode()) and completion == 64
    assert ChatRequest(model="m", messages=()).token_bounds()[1] == 0  # no max_tokens: no bound


# ---------------------------------------------------------------- config


def config_with(tmp_path, pricing=None, budget=None, model_id="gpt-x") -> DatasetConfig:
    model = {"alias": "m", "provider": "p", "model": model_id}
    if pricing is not None:
        model["pricing"] = pricing
    data = {
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:9/v1"}],
        "models": [model],
        "columns": [{"name": "a", "type": "llm_text", "model": "m", "prompt": "hi"}],
    }
    if budget is not None:
        data["run"] = {"budget": budget}
    return DatasetConfig.from_dict(data)


def test_prices_come_from_the_config_or_a_shared_pricing_file(tmp_path):
    inline = config_with(tmp_path, {"input_per_mtok": 1, "output_per_mtok": 2})
    assert inline.models[0].prices == Pricing(input_per_mtok=1, output_per_mtok=2)
    prices = tmp_path / "prices.yaml"
    prices.write_text("currency: EUR\nmodels:\n  gpt-x: {input_per_mtok: 3, output_per_mtok: 4}\n")
    shared = config_with(tmp_path, str(prices), budget={"max_cost": 5})
    assert shared.models[0].prices == Pricing(input_per_mtok=3, output_per_mtok=4, currency="EUR")
    assert shared.to_dict()["models"][0]["pricing"] == str(prices)  # saved as the file's path
    # Prices and budgets decide no row: changing them never blocks a resume.
    assert shared.fingerprint() == inline.fingerprint() == config_with(tmp_path).fingerprint()


@pytest.mark.parametrize(
    ("text", "fix"),
    [
        (None, "cannot read the pricing file"),
        ("models: [1]\n", "has no `models:` mapping"),
        ("models: {other: {input_per_mtok: 1, output_per_mtok: 1}}\n", "lists no model 'gpt-x' (it lists: other)"),
        ("models: {gpt-x: {input_per_mtok: -1, output_per_mtok: 1}}\n", "models.gpt-x.input_per_mtok"),
        ("model: {}\n", "unknown key(s) model"),
    ],
)
def test_a_pricing_file_that_does_not_serve_the_model_is_a_config_error_at_its_field(tmp_path, text, fix):
    path = tmp_path / "prices.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        config_with(tmp_path, str(path))
    (problem,) = caught.value.problems
    assert problem.path == "models[0] (m).pricing" and fix in problem.message


def test_a_cost_budget_needs_prices_and_a_budget_needs_a_limit(tmp_path):
    with pytest.raises(ConfigError, match=r"models\[0\] \(m\)\.pricing: is not set, but run.budget.max_cost"):
        config_with(tmp_path, budget={"max_cost": 5})
    with pytest.raises(ConfigError, match=r"run.budget: .*set one or remove `budget`"):
        config_with(tmp_path, budget={})
    assert config_with(tmp_path, budget={"max_tokens": 10}).run.budget.max_tokens == 10


async def test_the_forecast_lets_a_run_near_its_budget_finish_what_it_started_before_starting_more():
    spend = budget(max_tokens=1000)
    assert spend.room_for(100, 0, 0)  # nothing finished yet: no forecast
    spend.settle(
        await spend.reserve("m", lambda: (1, 0)), usage=Usage(prompt_tokens=200)
    )  # 10 finished rows cost 200: 20 a row
    assert spend.room_for(new_rows=20, unfinished_rows=10, finished_rows=10)  # 200 + 20 × 30 = 800
    assert not spend.room_for(new_rows=20, unfinished_rows=30, finished_rows=10)  # 200 + 20 × 50 = 1200
    assert SpendBudget(None, {}).room_for(10**9, 10**9, 1)  # no limits: always room


async def test_without_limits_an_attempt_works_out_its_worst_case_only_when_it_is_charged_it():
    calls = []

    def bounds() -> tuple[int, int]:
        calls.append(1)
        return 10, 20

    spend = SpendBudget(None, {"m": PRICES})
    spend.settle(await spend.reserve("m", bounds), usage=Usage(prompt_tokens=3, completion_tokens=4))
    spend.settle(await spend.reserve("m", bounds), billed=False)
    assert not calls and spend.reserved == Spend()
    spend.settle(await spend.reserve("m", bounds), usage=Usage(known=False))  # no usage reported: its worst case
    assert calls == [1] and spend.spent == Spend(cost=3 + 8 + 10 + 40, tokens=7 + 30, requests=3)
