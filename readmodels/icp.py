"""The ideal customer profile: the traits the best customers share more often than customers do.

Over the customers among the current profiles (`readmodels/customers.py`), the **top** customers
are the ⌈`top_percent` %⌉ with the highest lifetime revenue (reporting currency), ties by person
id. Every customer has exactly one value per dimension (`DIMENSIONS`: industry, company-size
band, country, plan), `Unknown` when the trait was never sent. For one value, with n customers,
t of them top and r = n − t the rest, a top customers and c others holding it, b = a + c:

    share_top = a / t     share_all = b / n     lift = share_top / share_all = a·n / (t·b)

exact `Fraction`s. Its 95 % interval is the delta method on log(lift), the top and the rest taken
as two independent binomial samples (a of t, c of r):

    Var(log lift) ≈ c²·(t − a) / (a·t·b²) + c·(r − c) / (r·b²)
    interval = exp(log lift ± 1.96·√Var)

When a cell of the 2×2 table (a, t − a, c, r − c) is 0, every cell gets ½ for the interval
(Haldane–Anscombe), so a value held by the top alone, or by none of it, still gets a finite,
wide interval. The upper end is capped at n / t, the largest lift there can be (every
holder among the top). Floats are used for the interval only; with no rest (n = t) there is
none.

- **Small numbers**: a value held by fewer than `min_customers` top customers is
  `low_confidence`: shown with its n and marked, never part of the profile nor ranked before a
  confident value.
- **The ICP** is every value, `Unknown` excepted, that is confident and whose interval lies
  above 1 (so lift > 1). Values rank ICP first, then the other confident ones, then the
  low-confidence ones, each by lift.
- **ICP fit**: a customer matches k of the d dimensions the ICP covers (one value per
  dimension, so k ≤ d); **ICP-fit** when k = d, every dimension matched (nobody when the ICP
  is empty). Channels rank by their fit rate (ICP-fit customers / customers acquired), the
  confident ones (n ≥ `min_customers`) first.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist
from typing import Any

from readmodels.customers import customers_of, group_by, top_count
from readmodels.retention import tenths_of_percent

INDUSTRY, SIZE, COUNTRY, PLAN = "industry", "company_size", "country", "plan"
DIMENSIONS = (INDUSTRY, SIZE, COUNTRY, PLAN)
"""Trait names of the signup traits compared, in the order tables show them."""
UNKNOWN = "Unknown"
"""The value of a trait never sent (or null): shown, never part of the profile."""
SIZE_BANDS = ((10, "1-10"), (50, "11-50"), (200, "51-200"), (1000, "201-1000"),
              (5000, "1001-5000"))
"""(largest size, label) of each company-size band, smallest first; above the last: 5001+
(a size of 0 is in the first band)."""
LARGEST_BAND = "5001+"
CONFIDENCE = 0.95
_Z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)


# ----------------------------------------------------------------------------------- tables


@dataclass(frozen=True, slots=True)
class TraitLift:
    """How much one trait value over-indexes among the top customers."""

    dimension: str
    value: str
    top: int
    """Support: top customers holding the value (a)."""
    top_customers: int
    """Top customers (t)."""
    customers: int
    """Customers holding the value, top or not (b)."""
    all_customers: int
    """Customers (n)."""
    interval: tuple[float, float] | None
    """95 % interval of the lift (None when every customer is top)."""
    low_confidence: bool
    ideal: bool
    """Part of the ideal customer profile."""

    @property
    def share_top(self) -> Fraction:
        return Fraction(self.top, self.top_customers)

    @property
    def share_all(self) -> Fraction:
        return Fraction(self.customers, self.all_customers)

    @property
    def lift(self) -> Fraction:
        return self.share_top / self.share_all


@dataclass(frozen=True, slots=True)
class ChannelFit:
    """The ICP-fit customers an acquisition channel brought."""

    channel: str
    customers: int
    fits: int
    low_confidence: bool
    """Fewer customers than the minimum: marked, ranked after the confident channels."""

    @property
    def fit_rate(self) -> Fraction:
        return Fraction(self.fits, self.customers)


@dataclass(frozen=True, slots=True)
class IdealCustomerProfile:
    customers: int
    top_percent: int
    top_customers: int
    min_customers: int
    traits: tuple[TraitLift, ...]
    """Every value of every dimension: the ICP first, then confident, then low-confidence."""
    dimensions: int
    """d: dimensions the ICP covers; an ICP-fit customer matches all of them."""
    fit_counts: tuple[int, ...]
    """Index k: customers matching k of the ICP's dimensions."""
    channels: tuple[ChannelFit, ...]

    @property
    def profile(self) -> tuple[TraitLift, ...]:
        return tuple(row for row in self.traits if row.ideal)

    @property
    def fits(self) -> int:
        return self.fit_counts[self.dimensions] if self.dimensions else 0


# -------------------------------------------------------------------------------- computing


def size_band(size: int | None) -> str:
    """The company-size band of `size` employees (`Unknown` when absent)."""
    if size is None:
        return UNKNOWN
    return next((label for largest, label in SIZE_BANDS if size <= largest), LARGEST_BAND)


def trait_values(traits: Mapping[str, Any] | None) -> dict[str, str]:
    """Dimension → the customer's value, `Unknown` for a trait never sent."""
    traits = traits or {}
    values = {d: str(traits[d]) if traits.get(d) is not None else UNKNOWN
              for d in DIMENSIONS if d != SIZE}
    return {**values, SIZE: size_band(traits.get(SIZE))}


def lift_interval(a: int, t: int, c: int, r: int, z: float = _Z) -> tuple[float, float] | None:
    """The delta-method interval of the lift (module doc); None without a rest (r = 0)."""
    if r == 0 or t == 0:
        return None
    highest = (t + r) / t  # every holder among the top: the largest lift there can be
    cells = [float(cell) for cell in (a, t - a, c, r - c)]
    if 0 in cells:
        cells = [cell + 0.5 for cell in cells]
    top_with, top_without, rest_with, rest_without = cells
    top, rest, held = top_with + top_without, rest_with + rest_without, top_with + rest_with
    log_lift = math.log(top_with * (top + rest) / (top * held))
    spread = z * math.sqrt(rest_with ** 2 * top_without / (top_with * top * held ** 2)
                           + rest_with * rest_without / (rest * held ** 2))
    return (min(highest, math.exp(log_lift - spread)), min(highest, math.exp(log_lift + spread)))


def trait_lifts(top: Sequence[Mapping[str, str]], rest: Sequence[Mapping[str, str]],
                min_customers: int) -> tuple[TraitLift, ...]:
    """Every value of every dimension among `top` and `rest` (trait values per customer),
    ranked: the ICP first, then the other confident values, then the low-confidence ones."""
    rows = []
    for dimension in DIMENSIONS:
        held_top = Counter(v[dimension] for v in top)
        held_rest = Counter(v[dimension] for v in rest)
        for value in held_top.keys() | held_rest.keys():
            a, c = held_top.get(value, 0), held_rest.get(value, 0)
            interval = lift_interval(a, len(top), c, len(rest))
            low = a < min_customers
            rows.append(TraitLift(
                dimension=dimension, value=value, top=a, top_customers=len(top),
                customers=a + c, all_customers=len(top) + len(rest), interval=interval,
                low_confidence=low,
                ideal=not low and value != UNKNOWN and interval is not None and interval[0] > 1))
    return tuple(sorted(rows, key=lambda r: (not r.ideal, r.low_confidence, -r.lift, -r.top,
                                             DIMENSIONS.index(r.dimension), r.value)))


def fit_of(values: Mapping[str, str], profile: Iterable[TraitLift]) -> int:
    """ICP dimensions in which `values` hold an ICP value."""
    return len({row.dimension for row in profile if values[row.dimension] == row.value})


def ideal_customer_profile(profiles: Iterable[Mapping[str, Any]], *, min_customers: int,
                           top_percent: int) -> IdealCustomerProfile:
    """The ICP of the current profiles, the fit of each customer and the channels that bring
    ICP-fit customers: the one function behind the report and the API."""
    profiles = list(profiles)
    traits = {p["person_id"]: trait_values(p.get("traits")) for p in profiles}
    customers = customers_of(profiles)
    ranked = sorted(customers, key=lambda c: -c.revenue_minor)  # stable: ties by person id
    top = top_count(len(ranked), top_percent)
    rows = trait_lifts([traits[c.person_id] for c in ranked[:top]],
                       [traits[c.person_id] for c in ranked[top:]], min_customers)
    profile = [row for row in rows if row.ideal]
    dimensions = len({row.dimension for row in profile})
    fit = {c.person_id: fit_of(traits[c.person_id], profile) for c in customers}
    fit_counts = [0] * (dimensions + 1)
    for k in fit.values():
        fit_counts[k] += 1
    channels = [ChannelFit(channel, len(members),
                           sum(dimensions > 0 and fit[c.person_id] == dimensions for c in members),
                           len(members) < min_customers)
                for channel, members in group_by(customers,
                                                 lambda c: c.acquisition_channel).items()]
    return IdealCustomerProfile(
        customers=len(customers), top_percent=top_percent, top_customers=top,
        min_customers=min_customers, traits=rows, dimensions=dimensions,
        fit_counts=tuple(fit_counts),
        channels=tuple(sorted(channels, key=lambda ch: (ch.low_confidence, -ch.fit_rate,
                                                        -ch.fits, ch.channel))))


# ------------------------------------------------------------------------------------ serving


def icp_as_dict(icp: IdealCustomerProfile) -> dict[str, Any]:
    """JSON-ready: every count, shares in percent to one decimal, the lift to three decimals
    (both rounded half away from zero from the exact fractions), the interval to three."""
    return {
        "customers": icp.customers, "top_percent": icp.top_percent,
        "top_customers": icp.top_customers, "min_customers": icp.min_customers,
        "confidence": CONFIDENCE,
        "profile": [{"dimension": r.dimension, "value": r.value} for r in icp.profile],
        "traits": [{
            "dimension": r.dimension, "value": r.value, "top": r.top,
            "top_customers": r.top_customers, "customers": r.customers,
            "all_customers": r.all_customers, "top_share_percent": percent(r.share_top),
            "all_share_percent": percent(r.share_all), "lift": thousandths(r.lift),
            "interval": None if r.interval is None else [round(x, 3) for x in r.interval],
            "low_confidence": r.low_confidence, "ideal": r.ideal} for r in icp.traits],
        "dimensions": icp.dimensions, "fit_counts": list(icp.fit_counts),
        "fits": icp.fits,
        "channels": [{"channel": ch.channel, "customers": ch.customers, "fits": ch.fits,
                      "fit_rate_percent": percent(ch.fit_rate),
                      "low_confidence": ch.low_confidence} for ch in icp.channels]}


def percent(share: Fraction) -> float:
    """`share` in percent to one decimal, rounded half away from zero."""
    return tenths_of_percent(share) / 10


def thousandths(value: Fraction) -> float:
    """`value` to three decimals, rounded half away from zero (tenths of a percent are
    thousandths)."""
    return tenths_of_percent(value) / 1000
