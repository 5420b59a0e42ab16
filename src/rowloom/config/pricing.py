"""Prices the user gives (per model, or a pricing file several configs share) and the run's spend budget.

rowloom has no price list of its own: a guessed price is worse than none. Without prices it counts tokens only.
A pricing file is YAML (or JSON) listing prices by the model id sent to the provider:

    currency: USD            # optional, the default
    models:
      gpt-4o-mini: {input_per_mtok: 0.15, output_per_mtok: 0.60, cached_input_per_mtok: 0.075}
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from rowloom.config.base import ConfigModel
from rowloom.errors import ConfigProblem

DEFAULT_CURRENCY = "USD"
MAX_PRICING_FILE_BYTES = 1024 * 1024


class Pricing(ConfigModel):
    """What a model costs per million tokens, in `currency` (a label: rowloom converts nothing)."""

    input_per_mtok: float = Field(ge=0, description="Price of a million prompt tokens.")
    output_per_mtok: float = Field(ge=0, description="Price of a million completion tokens (reasoning included).")
    cached_input_per_mtok: float | None = Field(
        None, ge=0, description="Price of a million cached prompt tokens; unset = the input price."
    )
    currency: str = Field(DEFAULT_CURRENCY, min_length=1, max_length=12, description="Label of the prices.")
    batch_discount: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="Share off every price for requests sent through a batch API, e.g. 0.5 for half price.",
    )
    batch_input_per_mtok: float | None = Field(
        None, ge=0, description="Price of a million prompt tokens in a batch (instead of batch_discount)."
    )
    batch_output_per_mtok: float | None = Field(
        None, ge=0, description="Price of a million completion tokens in a batch (instead of batch_discount)."
    )

    @model_validator(mode="after")
    def _one_batch_price(self) -> Pricing:
        explicit = (self.batch_input_per_mtok is None, self.batch_output_per_mtok is None)
        if explicit[0] != explicit[1]:
            raise ValueError("set both batch_input_per_mtok and batch_output_per_mtok, or neither")
        if self.batch_discount is not None and not explicit[0]:
            raise ValueError("set batch_discount or batch prices (batch_input_per_mtok...), not both; remove one")
        return self

    def for_batch(self) -> Pricing:
        """The prices of requests sent through a batch API: the explicit batch prices, else these less
        `batch_discount`, else these (a batch is never priced below what the user said it costs)."""
        if self.batch_input_per_mtok is not None and self.batch_output_per_mtok is not None:
            return Pricing(
                input_per_mtok=self.batch_input_per_mtok,
                output_per_mtok=self.batch_output_per_mtok,
                currency=self.currency,
            )
        keep = 1.0 - (self.batch_discount or 0.0)
        return Pricing(
            input_per_mtok=self.input_per_mtok * keep,
            output_per_mtok=self.output_per_mtok * keep,
            cached_input_per_mtok=None if self.cached_input_per_mtok is None else self.cached_input_per_mtok * keep,
            currency=self.currency,
        )

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """The price of one usage (`cached_tokens` is part of `prompt_tokens`, as providers report it)."""
        cached = min(max(cached_tokens, 0), prompt_tokens)
        cached_price = self.input_per_mtok if self.cached_input_per_mtok is None else self.cached_input_per_mtok
        return (
            (prompt_tokens - cached) * self.input_per_mtok
            + cached * cached_price
            + completion_tokens * self.output_per_mtok
        ) / 1e6


def read_pricing_file(path: str, model_id: str) -> Pricing:
    """The prices of `model_id` in the pricing file at `path` (relative paths from the working directory).

    Raises ValueError with what is wrong and how to fix it (the config loader turns it into a problem at the
    model's `pricing` field)."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_PRICING_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read the pricing file {path} ({exc.strerror or exc}); check the path") from None
    if len(raw) > MAX_PRICING_FILE_BYTES:
        raise ValueError(f"the pricing file {path} is over 1 MiB; a pricing file lists prices per model id")
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"the pricing file {path} is not valid YAML ({str(exc).splitlines()[0]})") from None
    shape = "write `models: {MODEL_ID: {input_per_mtok: ..., output_per_mtok: ...}}`"
    unknown = sorted(str(k) for k in data if k not in ("currency", "models")) if isinstance(data, dict) else []
    if unknown:
        raise ValueError(f"the pricing file {path} has unknown key(s) {', '.join(unknown)}; {shape}")
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ValueError(f"the pricing file {path} has no `models:` mapping; {shape}")
    entry = data["models"].get(model_id)
    if entry is None:
        listed = ", ".join(sorted(map(str, data["models"]))[:8]) or "(none)"
        raise ValueError(f"the pricing file {path} lists no model {model_id!r} (it lists: {listed}); add its prices")
    if not isinstance(entry, dict):
        raise ValueError(f"the pricing file {path}: models.{model_id} must be a mapping; {shape}")
    try:
        return Pricing.model_validate({"currency": data.get("currency", DEFAULT_CURRENCY), **entry})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"the pricing file {path}: models.{model_id}.{where}: {first['msg']}") from None


class BudgetConfig(ConfigModel):
    """The most a run (with every run it resumes) may spend; each limit is optional.

    Request admission reserves each request's worst case (its prompt's upper bound plus `max_tokens`) before
    sending it, so with `max_tokens` set no limit is ever exceeded. When the next request cannot fit, the run
    lets the requests in flight finish, writes every complete row group and stops; raise the limit and run the
    same command to resume."""

    max_cost: float | None = Field(None, gt=0, description="Most money, in the models' pricing currency.")
    max_tokens: int | None = Field(None, gt=0, description="Most tokens, prompt and completion together.")
    max_requests: int | None = Field(None, gt=0, description="Most request attempts (retries included).")

    @model_validator(mode="after")
    def _some_limit(self) -> BudgetConfig:
        if self.max_cost is None and self.max_tokens is None and self.max_requests is None:
            raise ValueError("a budget sets max_cost, max_tokens or max_requests; set one or remove `budget`")
        return self


def pricing_problems(models: Sequence[Any], columns: Sequence[Any], budget: Any) -> list[ConfigProblem]:
    """Prices that cannot add up (two currencies among the models in use) and a cost budget without a price for
    every model in use. Entries may be unparsed (their fields None)."""
    used = {getattr(c, "model_alias", None) for c in columns}
    problems: list[ConfigProblem] = []
    currencies: dict[str, str] = {}
    unpriced: list[str] = []
    for i, model in enumerate(models):
        alias = getattr(model, "alias", None)
        if alias is None or alias not in used or not hasattr(model, "prices"):
            continue  # not in use, or did not parse (its own problem says why)
        prices = model.prices
        if prices is None:
            unpriced.append(f"models[{i}] ({alias})")
        else:
            currencies.setdefault(prices.currency, f"models[{i}] ({alias}).pricing")
    if len(currencies) > 1:
        first, *others = sorted(currencies.items(), key=lambda kv: kv[1])
        for currency, path in others:
            problems.append(
                ConfigProblem(
                    path,
                    f"is in {currency} while {first[1]} is in {first[0]}; costs in two currencies do not add up",
                    "give every model's prices in one currency",
                )
            )
    if getattr(budget, "max_cost", None) is not None and unpriced:
        for path in unpriced:
            problems.append(
                ConfigProblem(
                    f"{path}.pricing",
                    "is not set, but run.budget.max_cost needs the price of every model in use",
                    "add `pricing: {input_per_mtok: ..., output_per_mtok: ...}` (or a pricing file's path), "
                    "or budget tokens with run.budget.max_tokens instead",
                )
            )
    return problems


def budget_warnings(config: Any) -> list[str]:
    """What weakens a valid config's budget: a model in use without `max_tokens`, whose replies in flight when the
    budget stops the run can pass it by their length (at most this many of them at once)."""
    budget = config.run.budget
    if budget is None or (budget.max_cost is None and budget.max_tokens is None):
        return []
    used = {c.model_alias for c in config.columns if c.model_alias}
    default = config.run.request_admission.default_max_parallel_requests
    found = []
    for i, model in enumerate(config.models):
        params = model.inference
        if model.alias not in used or params.max_tokens is not None or "max_completion_tokens" in params.extra:
            continue
        at_once = 0  # over a pool's endpoints
        for member in model.members():
            provider = config.provider(member.model.provider)
            at_once += member.model.max_parallel_requests or provider.default_max_parallel_requests() or default
        found.append(
            f"models[{i}] ({model.alias}).inference.max_tokens is not set, so run.budget is not a hard limit: when "
            f"it stops the run, up to {at_once} replies of {model.alias} still in flight can pass it by "
            "their length; set max_tokens to bound them"
        )
    return found
