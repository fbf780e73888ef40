"""Cost: a price table per model, a cost per row, and a job's cost range.

``PriceTable`` promises a cost in US dollars for a row whose model has a
price and whose usage is known, and ``None`` otherwise, never a silent 0.
Prices come from the job's ``prices`` and an optional ``prices_file``
(YAML or JSON, the same shape); the job's own entries win.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import TypeAdapter, ValidationError

from batchrun.config import Job, ModelSpec, Price
from batchrun.errors import JobError
from batchrun.record import Result

PER_TOKENS = 1_000_000
# Provider batch APIs answer at half the listed price unless the job says otherwise.
BATCH_DISCOUNT = 0.5
_PRICES = TypeAdapter(dict[str, Price])


class PriceTable:
    """Prices per model name (alias) or model id."""

    def __init__(self, prices: dict[str, Price]) -> None:
        self._prices = prices

    def price_of(self, model: ModelSpec) -> Price | None:
        """The price of a model, by its alias first, then its id."""
        return self._prices.get(model.name) or self._prices.get(model.id)

    def unpriced(self, models: list[ModelSpec]) -> list[str]:
        """Names of the models without a price."""
        return [m.name for m in models if self.price_of(m) is None]


def cost_usd(
    price: Price | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    cached_tokens: int | None = None,
    units: Units | None = None,
) -> float | None:
    """Dollars for one answer; None when the price or the usage is unknown.

    A price by the piece (``per_image``, ``per_second``, ``per_1k_chars``)
    needs its count in ``units``; tokens are then added where usage is known.
    """
    if price is not None and price.per_unit:
        return _unit_cost(price, units or Units(), prompt_tokens, completion_tokens, cached_tokens)
    if price is None or prompt_tokens is None or completion_tokens is None:
        return None
    cached = min(cached_tokens or 0, prompt_tokens)
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    dollars = (
        (prompt_tokens - cached) * price.input
        + cached * cached_rate
        + completion_tokens * price.output
    )
    return dollars / PER_TOKENS


def batch_price(price: Price | None) -> Price | None:
    """The price of a batch-mode row: ``batch_input``/``batch_output``, else half the listed one.

    Cached input tokens cost half their listed rate too.
    """
    if price is None:
        return None
    cached = price.cached_input * BATCH_DISCOUNT if price.cached_input is not None else None
    return Price(
        input=price.batch_input if price.batch_input is not None else price.input * BATCH_DISCOUNT,
        output=(
            price.batch_output if price.batch_output is not None else price.output * BATCH_DISCOUNT
        ),
        cached_input=cached,
    )


class Units(NamedTuple):
    """What an answer is priced by beyond tokens: images, seconds of media, characters."""

    images: int | None = None
    seconds: float | None = None
    chars: int | None = None


def _unit_cost(
    price: Price,
    units: Units,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    cached_tokens: int | None,
) -> float | None:
    """The pieces' cost (None if a priced count is unknown) plus any known tokens' cost."""
    total = 0.0
    for rate, count, per in (
        (price.per_image, units.images, 1),
        (price.per_second, units.seconds, 1),
        (price.per_1k_chars, units.chars, 1000),
    ):
        if rate is None:
            continue
        if count is None:
            return None
        total += rate * count / per
    if prompt_tokens is not None and completion_tokens is not None:
        total += (
            cost_usd(
                price.model_copy(
                    update={"per_image": None, "per_second": None, "per_1k_chars": None}
                ),
                prompt_tokens,
                completion_tokens,
                cached_tokens,
            )
            or 0.0
        )
    return total


def piece_estimate(price: Price, params: dict[str, Any], prompt_chars: float) -> float | None:
    """Dollars by the piece one request will cost, from its parameters; None if unknowable.

    Images count ``n`` (default 1), characters the prompt's, seconds the
    ``seconds`` or ``duration`` asked for (a transcription's audio is unknown).
    """
    total = 0.0
    if price.per_image is not None:
        count = params.get("n", 1)
        total += price.per_image * (count if isinstance(count, int) else 1)
    if price.per_1k_chars is not None:
        total += price.per_1k_chars * prompt_chars / 1000
    if price.per_second is not None:
        seconds = params.get("seconds", params.get("duration"))
        try:
            total += price.per_second * float(str(seconds))
        except ValueError:
            return None
    return total


def row_cost(price: Price, result: Result) -> float | None:
    """Dollars for one results row: its tokens, files, media seconds and characters."""
    images = result.artifact_paths
    units = Units(len(images) if images is not None else None, result.media_seconds)
    return cost_usd(
        price,
        result.prompt_tokens,
        result.completion_tokens,
        result.cached_tokens,
        units._replace(chars=result.input_chars),
    )


def load_prices(job: Job, base_dir: Path | None = None) -> PriceTable:
    """The job's price table, from ``prices_file`` overlaid with ``prices``."""
    table: dict[str, Price] = {}
    if job.prices_file:
        path = Path(job.prices_file)
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise JobError(f"prices_file: cannot read {path} ({exc.strerror or exc})") from None
        except yaml.YAMLError as exc:
            raise JobError(f"prices_file: {path} is not valid YAML or JSON ({exc})") from None
        try:
            table.update(_PRICES.validate_python(data or {}))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise JobError(f"prices_file: {path}: {where}: {first['msg']}") from None
    table.update(job.prices)
    return PriceTable(table)
