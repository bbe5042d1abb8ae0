"""Revenue retention by conversion cohort: NRR, GRR and logo retention.

A customer's **cohort** is the calendar month (UTC) of their conversion. Their MRR at the end of
a month is the sum of the deltas of their `mrr_movements` up to that month's end (a
subscription started before the first payment included). The **starting MRR** is the MRR at the
end of the cohort month, **MRR(k)** the MRR at the end of cohort month + k. Customers who start
at 0 have nothing to retain and are not measured. Over the measured customers of a set:

    NRR(k) = Σ MRR(k) / Σ start    GRR(k) = Σ min(MRR(k), start) / Σ start    (GRR ≤ 1, ≤ NRR)
    logo retention(k) = #{MRR(k) > 0} / #measured

**Complete months only**: a month counts once the clock (`as_of_ms`; by default the newest time
the profiles show) has reached its end, and a cohort is measured at age k only when its month
+ k is complete: no cohort is measured at an age it has not reached.

**Pooling**: a figure over several cohorts (a segment, a channel, everyone at 3, 6 or 12 months)
sums the numerators and the denominators of the cohorts measured at that age. Every customer
counts once, weighted by their starting MRR, and a cohort too young for the age takes no part.

Sums are exact integers (minor units of the reporting currency, counts); ratios are `Fraction`s,
rounded only when shown (`tenths_of_percent`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from processors.months import add_months, month_of, months_between
from readmodels.customers import Customer, customers_of, group_by, segment_order

AGES = (3, 6, 12)
"""Months since conversion at which segments and channels are compared."""
EVERYONE = "All customers"


@dataclass(frozen=True, slots=True)
class Retained:
    """What a set of measured customers kept at one age, as exact sums: two disjoint sets'
    figures are the sums of their fields (`+`)."""

    customers: int = 0
    """Measured customers: starting MRR > 0. The denominator of logo retention."""
    starting_minor: int = 0
    """Σ starting MRR: the denominator of NRR and GRR."""
    retained_minor: int = 0
    """Σ MRR(k): the numerator of NRR."""
    gross_retained_minor: int = 0
    """Σ min(MRR(k), starting MRR): the numerator of GRR (expansion not counted)."""
    logos: int = 0
    """Customers with MRR(k) > 0: the numerator of logo retention."""

    def __add__(self, other: Retained) -> Retained:
        return Retained(*(a + b for a, b in zip(_fields(self), _fields(other), strict=True)))

    @property
    def nrr(self) -> Fraction | None:
        return _ratio(self.retained_minor, self.starting_minor)

    @property
    def grr(self) -> Fraction | None:
        return _ratio(self.gross_retained_minor, self.starting_minor)

    @property
    def logo_retention(self) -> Fraction | None:
        return _ratio(self.logos, self.customers)


@dataclass(frozen=True, slots=True)
class Cohort:
    month: str
    converted: int
    """Customers who converted in the month, measured or not (starting MRR 0)."""
    ages: tuple[Retained, ...]
    """Index k: the cohort's measured customers at age k, for every complete month + k."""


@dataclass(frozen=True, slots=True)
class Pooled:
    """A group's figure at one age, pooled over the cohorts measured at that age."""

    age: int
    cohorts: int
    """Cohorts old enough for `age` that have measured customers of the group."""
    retained: Retained
    low_confidence: bool
    """Fewer measured customers than the report's minimum: shown and marked, never ranked
    first."""


@dataclass(frozen=True, slots=True)
class GroupRetention:
    name: str
    customers: int
    """Measured customers of the group, at any age."""
    figures: tuple[Pooled, ...]
    """At the compared ages the group's cohorts have reached (none for a group too young)."""

    def at(self, age: int) -> Pooled | None:
        return next((f for f in self.figures if f.age == age), None)


@dataclass(frozen=True, slots=True)
class Retention:
    as_of_ms: int | None
    """The clock: months ending at or before it are complete (None: no data, nothing shown)."""
    last_complete_month: str | None
    ages: tuple[int, ...]
    min_customers: int
    ranked_by: int | None
    """The age groups are ranked at (NRR, confident groups first): the longest compared age
    any cohort has reached; None when none has."""
    cohorts: tuple[Cohort, ...]
    """Oldest first; only cohorts whose month is complete."""
    overall: GroupRetention
    segments: tuple[GroupRetention, ...]
    channels: tuple[GroupRetention, ...]


@dataclass(frozen=True, slots=True)
class _Measured:
    customer: Customer
    cohort: str
    month_end_mrr: tuple[int, ...]
    """MRR at the end of the cohort month + k, for k up to the last complete month."""

    def at(self, age: int) -> Retained:
        start, now = self.month_end_mrr[0], self.month_end_mrr[age]
        return Retained(1, start, now, min(now, start), int(now > 0))


# -------------------------------------------------------------------------------- computing


def retention(customers: Iterable[Customer], *, as_of_ms: int | None, min_customers: int,
              ages: Sequence[int] = AGES) -> Retention:
    """The cohort table and the pooled figures of `customers` as of `as_of_ms`."""
    last = None if as_of_ms is None else add_months(month_of(as_of_ms), -1)
    converted: dict[str, int] = defaultdict(int)
    measured: list[_Measured] = []
    for customer in customers:
        cohort = month_of(customer.conversion_ts)
        if last is None or cohort > last:
            continue
        converted[cohort] += 1
        series = month_end_mrr(customer.mrr_movements, cohort, last)
        if series[0] > 0:
            measured.append(_Measured(customer, cohort, series))
    by_cohort = group_by(measured, lambda m: m.cohort)
    cohorts = tuple(
        Cohort(month, count, tuple(_sum(m.at(age) for m in by_cohort.get(month, ()))
                                   for age in range(months_between(month, last) + 1)))
        for month, count in sorted(converted.items()) if last is not None)
    overall = _group(EVERYONE, measured, ages, min_customers)
    ranked_by = max((f.age for f in overall.figures), default=None)
    return Retention(
        as_of_ms=as_of_ms, last_complete_month=last, ages=tuple(ages),
        min_customers=min_customers, ranked_by=ranked_by, cohorts=cohorts, overall=overall,
        segments=_groups(measured, lambda m: m.customer.segment, ages, min_customers, ranked_by),
        channels=_groups(measured, lambda m: m.customer.acquisition_channel, ages,
                         min_customers, ranked_by))


def month_end_mrr(movements: Iterable[tuple[int, str, int]], first: str,
                  last: str) -> tuple[int, ...]:
    """MRR at the end of each month from `first` to `last`: the running sum of the deltas,
    movements before `first` counted in its opening."""
    months = months_between(first, last) + 1
    deltas = [0] * months
    for ts, _, delta in movements:
        index = max(0, months_between(first, month_of(ts)))
        if index < months:
            deltas[index] += delta
    running, series = 0, []
    for delta in deltas:
        running += delta
        series.append(running)
    return tuple(series)


def data_clock(profiles: Iterable[Mapping[str, Any]]) -> int | None:
    """The newest event time the profiles show (first touch, journey touches, conversion, MRR
    movements): with no other clock, the months that ended before it are complete."""
    times = (ts for p in profiles for ts in (
        p.get("first_touch_ts"), p.get("conversion_ts"),
        *(t["ts"] for t in p.get("journey", ())),
        *(m["ts"] for m in p.get("mrr_movements", ()))) if ts is not None)
    return max(times, default=None)


def retention_of(profiles: Iterable[Mapping[str, Any]], *, min_customers: int,
                 as_of_ms: int | None = None) -> Retention:
    """Retention of the current profiles as of `as_of_ms`, or as of their own clock: the one
    function behind the report and the API, so both give the same figures."""
    profiles = list(profiles)
    clock = data_clock(profiles) if as_of_ms is None else as_of_ms
    return retention(customers_of(profiles), as_of_ms=clock, min_customers=min_customers)


def tenths_of_percent(share: Fraction) -> int:
    """`share` in tenths of a percent, rounded half away from zero (1.2345 → 1235)."""
    tenths = share * 1000
    magnitude = int(abs(tenths) + Fraction(1, 2))
    return magnitude if tenths >= 0 else -magnitude


def as_dict(result: Retention) -> dict[str, Any]:
    """JSON-ready: every numerator and denominator, with the ratios in percent to one decimal
    (null when the denominator is 0)."""
    return {
        "as_of_ms": result.as_of_ms, "last_complete_month": result.last_complete_month,
        "ages": list(result.ages), "min_customers": result.min_customers,
        "ranked_by_age": result.ranked_by,
        "cohorts": [{"cohort": c.month, "converted": c.converted,
                     "ages": [{"age": age, **_retained_dict(r)} for age, r in enumerate(c.ages)]}
                    for c in result.cohorts],
        "overall": _group_dict(result.overall),
        "segments": [_group_dict(g) for g in result.segments],
        "channels": [_group_dict(g) for g in result.channels]}


# ---------------------------------------------------------------------------------- helpers


def _groups(measured: Sequence[_Measured], key: Callable[[_Measured], str], ages: Sequence[int],
            min_customers: int, ranked_by: int | None) -> tuple[GroupRetention, ...]:
    """One group per key, by NRR at `ranked_by`: confident groups first, then low-confidence
    ones, then those not measured at that age."""
    groups = [_group(name, members, ages, min_customers)
              for name, members in group_by(measured, key).items()]

    def rank(group: GroupRetention) -> tuple:
        figure = None if ranked_by is None else group.at(ranked_by)
        nrr = None if figure is None else figure.retained.nrr
        if figure is None or nrr is None:
            return (2, 0, segment_order(group.name))
        return (int(figure.low_confidence), -nrr, segment_order(group.name))

    return tuple(sorted(groups, key=rank))


def _group(name: str, members: Sequence[_Measured], ages: Sequence[int],
           min_customers: int) -> GroupRetention:
    figures = []
    for age in ages:
        old_enough = [m for m in members if len(m.month_end_mrr) > age]
        if old_enough:
            total = _sum(m.at(age) for m in old_enough)
            figures.append(Pooled(age, len({m.cohort for m in old_enough}), total,
                                  total.customers < min_customers))
    return GroupRetention(name, len(members), tuple(figures))


def _sum(parts: Iterable[Retained]) -> Retained:
    return sum(parts, Retained())


def _fields(retained: Retained) -> tuple[int, ...]:
    return (retained.customers, retained.starting_minor, retained.retained_minor,
            retained.gross_retained_minor, retained.logos)


def _ratio(part: int, whole: int) -> Fraction | None:
    return Fraction(part, whole) if whole > 0 else None


def _percent(share: Fraction | None) -> float | None:
    return None if share is None else tenths_of_percent(share) / 10


def _retained_dict(r: Retained) -> dict[str, Any]:
    return {**asdict(r), "nrr_percent": _percent(r.nrr), "grr_percent": _percent(r.grr),
            "logo_retention_percent": _percent(r.logo_retention)}


def _group_dict(group: GroupRetention) -> dict[str, Any]:
    return {"name": group.name, "customers": group.customers,
            "figures": [{"age": f.age, "cohorts": f.cohorts, "low_confidence": f.low_confidence,
                         **_retained_dict(f.retained)} for f in group.figures]}
