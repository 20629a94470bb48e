"""What a configuration will spend a day: runs from each interval, tokens from each output cap, cost from each price."""

from __future__ import annotations

from dataclasses import dataclass

from monitor.dialects import make_dialect

from .models import MonitorConfig, TargetConfig

DAY = 86400.0


@dataclass(frozen=True)
class Estimate:
    """One target's day. `tokens` is the output cap (the most one run's answer can use), None without one; `cost` the
    day's output tokens at the cap at the target's price, None without a cap or a price."""

    name: str
    runs: float
    tokens: int | None
    cost: float | None
    currency: str | None


def estimate(target: TargetConfig) -> Estimate:
    spec = target.to_spec()
    runs = DAY / target.interval
    tokens = make_dialect(spec).max_output_tokens()
    price = spec.price
    cost = None if tokens is None or price is None else runs * tokens * price.output_per_million / 1_000_000
    return Estimate(target.name, runs, tokens, cost, price.currency if price is not None else None)


def estimate_lines(config: MonitorConfig) -> list[str]:
    """The estimate as `check-config` prints it: a line per target and a total, in columns."""
    if not config.targets:
        return []
    rows = [estimate(target) for target in config.targets]
    table = [("per day", "runs", "output tokens", "output cost (input tokens not counted)")]
    for row in rows:
        tokens = f"at most {row.runs * row.tokens:,.0f}" if row.tokens is not None else "unknown (no cap)"
        cost = (f"at most {_money(row.cost)} {row.currency}" if row.cost is not None
                else "no price" if row.currency is None else "unknown (no cap)")
        table.append((row.name, f"{row.runs:,.0f}", tokens, cost))
    table.append(("total", f"{sum(r.runs for r in rows):,.0f}", _total_tokens(rows), _total_cost(rows)))
    widths = [max(len(line[i]) for line in table) for i in range(3)]
    return [f"  {a:<{widths[0]}}  {b:>{widths[1]}}  {c:<{widths[2]}}  {d}".rstrip() for a, b, c, d in table]


def _total_tokens(rows: list[Estimate]) -> str:
    capped = [r for r in rows if r.tokens is not None]
    if not capped:
        return "unknown"
    total = f"{sum(r.runs * r.tokens for r in capped):,.0f}"
    return f"at most {total}" if len(capped) == len(rows) else f"{total} + unknown"


def _total_cost(rows: list[Estimate]) -> str:
    by_currency: dict[str, float] = {}
    for row in rows:
        if row.cost is not None:
            by_currency[row.currency] = by_currency.get(row.currency, 0.0) + row.cost
    if not by_currency:
        return "no price" if all(r.currency is None for r in rows) else "unknown"
    total = " + ".join(f"{_money(amount)} {currency}" for currency, amount in sorted(by_currency.items()))
    unpriced = any(r.cost is None for r in rows)
    return f"at most {total}" + (" (and targets without a price or cap)" if unpriced else "")


def _money(amount: float) -> str:
    return f"{amount:,.2f}" if amount >= 0.01 or amount == 0 else f"{amount:.2g}"
