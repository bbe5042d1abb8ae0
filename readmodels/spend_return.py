"""Spend and return by channel: CAC, ROAS per attribution model, LTV:CAC and payback.

One function, `spend_rows`, computes the table from per-channel totals; the report builds the
totals from the output topics and the spend topic, the API from the worker's aggregate cells
(`totals_from_cells`), so both answer with the same figures. Amounts are reporting minor units;
ratios are exact fractions, rounded only for display (`as_dict`). All-time figures:

- **CAC** = spend / new customers acquired by the channel (their acquisition channel, the first
  touch of the journey to the first payment). Per channel only: spend is bought per campaign,
  and allocating a channel's spend to segments by their share of its new customers gives every
  segment the channel's CAC (s·k/n / k = s/n), so a segment CAC would add nothing but a look of
  precision. A segment's LTV against its channel's CAC is in the channel × segment matrix.
- **ROAS** (per model) = revenue the model credits to the channel / spend.
- **LTV:CAC** = (lifetime revenue of the channel's customers / customers) / CAC, which is that
  revenue / spend.
- **Payback months** = CAC / (current MRR of the channel's customers / customers) = spend / MRR:
  months of today's recurring revenue that earn the acquisition cost back.
- A figure without a denominator (no customers, no spend, no MRR) is None, never infinite.
- **Small numbers**: n is the channel's new customers; below `min_customers` a row is
  low-confidence and ranked after every confident row (as in readmodels/report.py).

Rows: every channel with spend, by LTV:CAC among the confident first, then among the
low-confidence, then the rows without one; ties by channel name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from processors.aggregates import (
    Cells,
    channel_segment_report,
    ltv_by_channel,
    mrr_movements,
    spend_by_channel,
)


@dataclass(frozen=True, slots=True)
class ChannelTotals:
    """What one channel cost and brought, all-time."""

    spend_minor: int = 0
    customers: int = 0
    revenue_minor: int = 0
    """Payments minus refunds of the customers the channel acquired."""
    mrr_minor: int = 0
    """Current MRR of those customers."""
    attributed_minor: Mapping[str, int] | None = None
    """Model → revenue credited to the channel's touches."""


@dataclass(frozen=True, slots=True)
class SpendRow:
    channel: str
    totals: ChannelTotals
    low_confidence: bool

    @property
    def cac(self) -> Fraction | None:
        t = self.totals
        return Fraction(t.spend_minor, t.customers) if t.customers else None

    @property
    def ltv(self) -> Fraction | None:
        t = self.totals
        return Fraction(t.revenue_minor, t.customers) if t.customers else None

    @property
    def ltv_to_cac(self) -> Fraction | None:
        cac, ltv = self.cac, self.ltv
        return None if cac is None or ltv is None or not cac else ltv / cac

    @property
    def payback_months(self) -> Fraction | None:
        cac, t = self.cac, self.totals
        return None if cac is None or t.mrr_minor <= 0 else cac / Fraction(t.mrr_minor,
                                                                           t.customers)

    def roas(self, model: str) -> Fraction | None:
        t = self.totals
        attributed = (t.attributed_minor or {}).get(model, 0)
        return Fraction(attributed, t.spend_minor) if t.spend_minor else None


def spend_rows(totals: Mapping[str, ChannelTotals], min_customers: int) -> tuple[SpendRow, ...]:
    """The table: every channel with spend, ranked as the module says."""
    rows = [SpendRow(channel, t, t.customers < min_customers)
            for channel, t in totals.items() if t.spend_minor]

    def rank(row: SpendRow) -> tuple:
        ratio = row.ltv_to_cac
        return (ratio is None, row.low_confidence, -(ratio or 0), row.channel)

    return tuple(sorted(rows, key=rank))


def best_channel(rows: Sequence[SpendRow]) -> SpendRow | None:
    """The channel with the best LTV:CAC among the confident ones; None when none is."""
    return next((r for r in rows if not r.low_confidence and r.ltv_to_cac is not None), None)


def totals_from_cells(cells: Cells, models: Sequence[str]) -> dict[str, ChannelTotals]:
    """Per-channel totals from all-time aggregate cells (segments added up)."""
    acc: dict[str, dict[str, Any]] = {}

    def channel(name: str) -> dict[str, Any]:
        return acc.setdefault(name, {"spend_minor": 0, "customers": 0, "revenue_minor": 0,
                                     "mrr_minor": 0, "attributed_minor": dict.fromkeys(models, 0)})

    for name, amount in spend_by_channel(cells).items():
        channel(name)["spend_minor"] += amount
    for row in ltv_by_channel(cells):
        channel(row.channel)["customers"] += row.customers
        channel(row.channel)["revenue_minor"] += row.lifetime_revenue_minor
    for mrr in mrr_movements(cells):
        channel(mrr.channel)["mrr_minor"] += mrr.mrr_minor
    for model in models:
        for credited in channel_segment_report(cells, model):
            channel(credited.channel)["attributed_minor"][model] += credited.revenue_minor
    return {name: ChannelTotals(**values) for name, values in acc.items()}


def _ratio(value: Fraction | None, digits: int) -> dict[str, Any] | None:
    """An exact ratio and its display value."""
    if value is None:
        return None
    return {"numerator": value.numerator, "denominator": value.denominator,
            "value": round(float(value), digits)}


def as_dict(rows: Sequence[SpendRow], models: Sequence[str]) -> list[dict[str, Any]]:
    """The table as JSON-able records: every amount an integer, every ratio exact with its
    rounded display value."""
    return [{
        "channel": r.channel, "n": r.totals.customers, "low_confidence": r.low_confidence,
        "spend_minor": r.totals.spend_minor, "customers": r.totals.customers,
        "lifetime_revenue_minor": r.totals.revenue_minor, "mrr_minor": r.totals.mrr_minor,
        "attributed_minor": {m: (r.totals.attributed_minor or {}).get(m, 0) for m in models},
        "cac_minor": _ratio(r.cac, 2), "ltv_minor": _ratio(r.ltv, 2),
        "ltv_to_cac": _ratio(r.ltv_to_cac, 4), "payback_months": _ratio(r.payback_months, 2),
        "roas": {m: _ratio(r.roas(m), 4) for m in models},
    } for r in rows]


def spend_answer(cells: Cells, models: Sequence[str], currency: str,
                 min_customers: int) -> dict[str, Any]:
    """The API's answer from all-time aggregate cells."""
    rows = spend_rows(totals_from_cells(cells, models), min_customers)
    return {"reporting_currency": currency, "min_customers": min_customers,
            "channels": as_dict(rows, models)}
