"""The marketing spend of the simulated population, and its truth.

Each paid channel buys its share of first visits at a cost per visit: a day's spend is the
day's expected first visits from the channel (people / days × traffic share) × that cost, in
the currency the ad account bills in, as one `spend/1` line per channel and UTC day. The
lines carry the utm values the channel's landing pages carry (population.py `_landing`), so
the pipeline classifies them onto the same channel. Deterministic: no draw, so the people of a
seed are the same with spend or without.

Truth: a channel's true CAC is its spend (in the reporting currency, converted line by line as
the pipeline converts) over the customers the simulator acquired through it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from personify.sdk import spend_payload
from personify.simulator.population import (
    CHANNEL_PROFILES,
    DAY_MS,
    Prices,
    SimEvent,
    SimulationConfig,
)
from processors.money import default_currency_table, to_reporting

REPORTING_CURRENCY = "USD"
"""The pipeline's default reporting currency, which the truth is written in."""


@dataclass(frozen=True, slots=True)
class PaidChannel:
    source: str
    medium: str
    campaign: str
    currency: str
    usd_per_visit: float


PAID_CHANNELS: Mapping[str, PaidChannel] = {
    "Paid Search": PaidChannel("google", "cpc", "brand", "USD", 6.0),
    "Paid Social": PaidChannel("linkedin", "paid_social", "q1-pipeline", "EUR", 3.5),
    "Display": PaidChannel("criteo", "display", "retargeting", "GBP", 1.2),
    "Affiliates": PaidChannel("partnerstack", "affiliate", "", "USD", 4.0),
}
"""The channels the simulated company pays for, and what a first visit costs there."""


def spend_events(config: SimulationConfig) -> Iterator[SimEvent]:
    """One line per paid channel and simulated day, at the day's start."""
    visits_per_day = config.people / config.days
    for day in range(config.days):
        ts = config.start_ms - config.start_ms % DAY_MS + day * DAY_MS
        for channel, paid in PAID_CHANNELS.items():
            amount = Prices(paid.currency).from_usd(
                visits_per_day * CHANNEL_PROFILES[channel].traffic * paid.usd_per_visit)
            campaign_key = f"{paid.source}/{paid.medium}/{paid.campaign}"
            yield SimEvent(ts, config.topics.spend, campaign_key, spend_payload(
                event_id=f"{campaign_key}@{ts}", ts=ts, source=paid.source, medium=paid.medium,
                campaign=paid.campaign, amount_minor=amount, currency=paid.currency))


def channel_of_line(value: Mapping[str, Any]) -> str:
    """The channel a simulated spend line is bought for."""
    return next(channel for channel, paid in PAID_CHANNELS.items()
                if (paid.source, paid.medium, paid.campaign)
                == (value["source"], value["medium"], value["campaign"]))


def reporting_amount(value: Mapping[str, Any]) -> int:
    return to_reporting(value["amount_minor"], value["currency"], default_currency_table(),
                        REPORTING_CURRENCY)


def spend_truth(spend_minor: Mapping[str, int],
                customers: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """Channel → spend, customers acquired and true CAC (minor units, exact when whole)."""
    return {channel: {"spend_minor": spend, "customers": customers.get(channel, 0),
                      "reporting_currency": REPORTING_CURRENCY,
                      "cac_minor": spend / customers[channel] if customers.get(channel)
                      else None}
            for channel, spend in sorted(spend_minor.items())}
