"""The demo's answer as tables: who the best customers are and where they came from.

Pure folds and functions over what the pipeline published, so the report is tested without a
broker. Two books fold the output topics: `ProfileBook` keeps the latest `profile/1` record per
person (the compacted topic's meaning), `CreditBook` the `credit/1` records de-duplicated by
`credit_id`. Both may be limited to a population (the simulated people of one run), so other
data on the same topics does not leak into the answer. `build_report` turns them, and optionally
the simulator's ground truth, into frozen tables.

Rules, so every figure can be recomputed by hand:
- A **customer** is a person whose latest profile has a `conversion_ts`; their revenue is the
  profile's `lifetime_revenue_minor` (reporting currency) and their channel its
  `acquisition_channel` (the first touch of the acquisition journey).
- **LTV** is lifetime revenue over customers, rounded half away from zero to a minor unit.
- The **top share** is the ceiling of `top_percent` % of the customers, richest first.
- The **power segment** is the segment with the highest LTV: the few who bring the most each.
- **Small numbers**: a segment or channel with fewer than `min_customers` customers (default
  `MIN_CUSTOMERS`) is `low_confidence`. Its figures are shown with their n and marked, but it
  never leads a ranking: channels rank by LTV among the confident ones first, and the power
  segment is chosen among confident segments only (none when no segment has enough).
- **Percentiles** are nearest-rank (the value at rank ⌈p·n/100⌉ of the sorted values), so every
  figure is a real customer's; the median of an even count is the lower middle.
- **Time to conversion** is `conversion_ts − first_touch_ts`, over customers whose first touch
  is at or before their conversion.
- **Retention** (NRR, GRR, logo retention) follows `readmodels/retention.py`: by conversion
  cohort, complete months only, pooled over the cohorts old enough; groups rank by NRR with the
  same small-numbers rule.
- **Ideal customer profile** follows `readmodels/icp.py`: trait values by lift among the top
  customers over all customers, with an interval; the same small-numbers rule.
- **Truth**: the pipeline agrees with the simulator on a customer when the acquisition channels
  are equal; people on a shared device (`ambiguous`) are compared apart, because the identity
  rules may rightly give their visits to the other person.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from processors.channels import UNATTRIBUTED
from processors.months import month_of
from processors.person import profile_is_empty
from readmodels.customers import Customer, customers_of, group_by, segment_order, top_count
from readmodels.icp import IdealCustomerProfile, ideal_customer_profile
from readmodels.ledger import Ledger
from readmodels.mrr_bridge import BridgeMonth, bridge
from readmodels.retention import Retention, retention_of
from readmodels.spend_return import ChannelTotals, SpendRow, spend_rows

TOP_PERCENT = 20
MIN_CUSTOMERS = 10
"""Below this many customers a segment's or channel's averages are low-confidence: one large
deal can make a channel of three customers look like the best."""
CURVE_POINTS = 100
"""The concentration curve is sampled at this many customer ranks at most."""


# ------------------------------------------------------------------------------------ books


@dataclass
class ProfileBook:
    """The latest `profile/1` record per person, as a compacted topic means it."""

    population: frozenset[str] | None = None
    """When set, only these persons are kept; the others are counted in `ignored`."""
    latest: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    ignored: int = 0

    def add(self, record: Mapping[str, Any]) -> bool:
        """Keep `record` as its person's current profile (an empty one removes it); False when
        outside the population."""
        person_id = record["person_id"]
        if self.population is not None and person_id not in self.population:
            self.ignored += 1
            return False
        if profile_is_empty(record):
            self.latest.pop(person_id, None)
        else:
            self.latest[person_id] = record
        return True


@dataclass
class CreditBook:
    """Credits folded into a `Ledger` (corrections included), plus each person's revenue
    events in their original currency, which the simulator's books can be checked against."""

    population: frozenset[str] | None = None
    """When set, only these persons' credits are counted; the others are counted in `ignored`."""
    ledger: Ledger = field(default_factory=Ledger)
    ignored: int = 0
    _events: dict[str, dict[str, tuple[int, str]]] = field(default_factory=dict, repr=False)

    def add(self, record: Mapping[str, Any]) -> bool:
        """Fold one credit in; False when it is a duplicate or outside the population."""
        person_id = record["person_id"]
        if self.population is not None and person_id not in self.population:
            self.ignored += 1
            return False
        if not self.ledger.add(record):
            return False
        if record.get("op", "assert") == "assert":
            self._events.setdefault(person_id, {})[record["revenue_event_id"]] = (
                record["amount_minor"], record["currency"])
        return True

    def revenue_by_person(self) -> dict[str, dict[str, int]]:
        """Person → currency → payments minus refunds, each revenue event counted once whatever
        the number of models that credited it."""
        result: dict[str, dict[str, int]] = {}
        for person_id, events in self._events.items():
            amounts: dict[str, int] = defaultdict(int)
            for amount, currency in events.values():
                amounts[currency] += amount
            result[person_id] = dict(amounts)
        return result


# ----------------------------------------------------------------------------------- tables


@dataclass(frozen=True, slots=True)
class ConversionTime:
    customers: int
    """Customers measured (those with a first touch at or before their conversion)."""
    median_ms: int
    p90_ms: int


@dataclass(frozen=True, slots=True)
class SegmentRow:
    segment: str
    customers: int
    subscribers: int
    """Customers with MRR > 0."""
    revenue_minor: int
    mrr_minor: int
    customer_share: float
    revenue_share: float
    ltv_minor: int
    low_confidence: bool
    """Fewer customers than the report's minimum: marked, never the power segment."""


@dataclass(frozen=True, slots=True)
class Concentration:
    """How unevenly revenue is spread: the power law the report must make visible."""

    customers: int
    revenue_minor: int
    top_percent: int
    top_customers: int
    top_revenue_share: float
    power_segment: SegmentRow | None
    curve: tuple[tuple[float, float], ...]
    """(share of customers, share of revenue), richest first, from (0, 0) to (1, 1)."""


@dataclass(frozen=True, slots=True)
class ChannelRow:
    """One channel: the customers it acquired (first touch) and the credit each model gives it."""

    channel: str
    customers: int
    subscribers: int
    revenue_minor: int
    mrr_minor: int
    customer_share: float
    revenue_share: float
    ltv_minor: int | None
    """None when the channel acquired nobody (it only appears later in journeys)."""
    attributed_minor: Mapping[str, int]
    """Model → revenue credited to this channel's touches (payments minus refunds)."""
    conversion: ConversionTime | None
    low_confidence: bool
    """Fewer customers than the report's minimum: marked, ranked after the confident ones."""


@dataclass(frozen=True, slots=True)
class MatrixCell:
    customers: int = 0
    revenue_minor: int = 0


@dataclass(frozen=True, slots=True)
class ChannelSegmentMatrix:
    channels: tuple[str, ...]
    """In the order of the channel table (by LTV); only channels that acquired customers."""
    segments: tuple[str, ...]
    cells: Mapping[tuple[str, str], MatrixCell]

    def cell(self, channel: str, segment: str) -> MatrixCell:
        return self.cells.get((channel, segment), MatrixCell())


@dataclass(frozen=True, slots=True)
class TruthPerson:
    """One signed-up person of the simulator's truth file (docs/simulator.md §4)."""

    user_id: str
    acquisition_channel: str | None
    ambiguous: bool
    first_visit_channel: str
    currency: str | None
    revenue_minor: int

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TruthPerson:
        return cls(user_id=data["user_id"], acquisition_channel=data["acquisition_channel"],
                   ambiguous=data["ambiguous"], first_visit_channel=data["first_visit_channel"],
                   currency=data["currency"], revenue_minor=data["revenue_minor"])

    @property
    def is_customer(self) -> bool:
        return self.acquisition_channel is not None


@dataclass(frozen=True, slots=True)
class ChannelDifference:
    person_id: str
    pipeline_channel: str
    truth_channel: str
    first_visit_channel: str


@dataclass(frozen=True, slots=True)
class TruthComparison:
    truth_customers: int
    pipeline_customers: int
    missing: tuple[str, ...]
    """Customers in the truth without a converted profile."""
    unexpected: tuple[str, ...]
    """Converted profiles of people the truth says never paid."""
    compared: int
    """Unambiguous customers present on both sides."""
    matched: int
    differences: tuple[ChannelDifference, ...]
    """Unambiguous customers whose channels differ."""
    ambiguous_compared: int
    ambiguous_matched: int
    """Shared-device customers whose channel equals the truth's (the identity rules' answer)."""
    ambiguous_first_visit_matched: int
    """Shared-device customers whose channel equals where their own first visit came from."""
    revenue_matched: int
    """Customers on both sides whose credits sum, in the original currency, to the truth's
    revenue exactly."""

    @property
    def match_share(self) -> float:
        return _share(self.matched, self.compared)


@dataclass(frozen=True, slots=True)
class Report:
    currency: str
    exponent: int
    """Minor-unit exponent of `currency` (2 for USD)."""
    models: tuple[str, ...]
    people: int
    """Known persons (profiles), customers or not."""
    min_customers: int
    """Segments and channels with fewer customers are low-confidence."""
    concentration: Concentration
    segments: tuple[SegmentRow, ...]
    """By revenue, largest first."""
    channels: tuple[ChannelRow, ...]
    """By LTV, highest first; channels that acquired nobody last, by first-model credit."""
    matrix: ChannelSegmentMatrix
    conversion: ConversionTime | None
    """Over every measured customer."""
    credited_minor: Mapping[str, int]
    """Model → total credited (payments minus refunds)."""
    mrr_movements: Mapping[str, int]
    """Movement kind → how many, as the worker counted them (empty when unknown)."""
    mrr_bridge: tuple[BridgeMonth, ...]
    """MRR from each calendar month's opening to its closing, over every customer."""
    retention: Retention
    """NRR, GRR and logo retention by conversion cohort, segment and channel."""
    icp: IdealCustomerProfile
    """The traits the top customers share more than customers do, and who brings them."""
    truth: TruthComparison | None
    spend: tuple[SpendRow, ...] = ()
    """Spend and return by channel, by LTV:CAC (readmodels/spend_return.py); empty without
    spend."""

    @property
    def mrr_minor(self) -> int:
        return sum(row.mrr_minor for row in self.segments)

    def rank(self, model: str) -> dict[str, int]:
        """Channel → its rank (1 = most credit) under `model`."""
        ordered = sorted(self.channels, key=lambda row: (-row.attributed_minor.get(model, 0),
                                                         row.channel))
        return {row.channel: place for place, row in enumerate(ordered, start=1)}


# ------------------------------------------------------------------------------- arithmetic


def mean_minor(total: int, count: int) -> int:
    """`total / count` rounded half away from zero (count > 0)."""
    quotient = Fraction(total, count)
    magnitude = int(abs(quotient) + Fraction(1, 2))
    return magnitude if quotient >= 0 else -magnitude


def percentile(values: Sequence[int], percent: int) -> int:
    """Nearest rank: the value at rank ⌈percent·n/100⌉ (at least 1) of the sorted values."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, -(-percent * len(ordered) // 100))
    return ordered[rank - 1]


def _share(part: int, whole: int) -> float:
    return part / whole if whole > 0 else 0.0


# -------------------------------------------------------------------------------- computing


def conversion_time(customers: Iterable[Customer]) -> ConversionTime | None:
    durations = [c.conversion_ms for c in customers if c.conversion_ms is not None]
    if not durations:
        return None
    return ConversionTime(len(durations), percentile(durations, 50), percentile(durations, 90))


def segment_rows(customers: Sequence[Customer],
                 min_customers: int = MIN_CUSTOMERS) -> tuple[SegmentRow, ...]:
    """Customers, revenue, LTV and MRR by segment, largest revenue first."""
    total_revenue = sum(c.revenue_minor for c in customers)
    rows = []
    for segment, members in group_by(customers, lambda c: c.segment).items():
        revenue = sum(c.revenue_minor for c in members)
        rows.append(SegmentRow(
            segment=segment, customers=len(members),
            subscribers=sum(c.mrr_minor > 0 for c in members), revenue_minor=revenue,
            mrr_minor=sum(c.mrr_minor for c in members),
            customer_share=_share(len(members), len(customers)),
            revenue_share=_share(revenue, total_revenue),
            ltv_minor=mean_minor(revenue, len(members)),
            low_confidence=len(members) < min_customers))
    return tuple(sorted(rows, key=lambda r: (-r.revenue_minor, segment_order(r.segment))))


def concentration(customers: Sequence[Customer], segments: Sequence[SegmentRow],
                  top_percent: int = TOP_PERCENT,
                  points: int = CURVE_POINTS) -> Concentration:
    """The share of revenue from the top `top_percent` % of customers, the power segment and
    the concentration curve (a Lorenz curve read from the richest customer down)."""
    revenues = sorted((c.revenue_minor for c in customers), reverse=True)
    total = sum(revenues)
    top = top_count(len(revenues), top_percent)
    running = [0]
    for revenue in revenues:
        running.append(running[-1] + revenue)
    count = len(revenues)
    ranks = sorted({count * step // points for step in range(points + 1)}) if count else [0]
    curve = tuple((_share(rank, count), _share(running[rank], total)) for rank in ranks)
    power = max((r for r in segments if not r.low_confidence),
                key=lambda r: (r.ltv_minor, r.revenue_minor), default=None)
    return Concentration(customers=count, revenue_minor=total, top_percent=top_percent,
                         top_customers=top, top_revenue_share=_share(running[top], total),
                         power_segment=power, curve=curve)


def channel_rows(customers: Sequence[Customer], ledger: Ledger, models: Sequence[str],
                 min_customers: int = MIN_CUSTOMERS) -> tuple[ChannelRow, ...]:
    """Every channel that acquired a customer or was credited by a model: by LTV among those
    with enough customers, then by LTV among the low-confidence ones, then the rest."""
    by_channel = group_by(customers, lambda c: c.acquisition_channel)
    credited = {channel for _, channel in ledger.by_model_channel}
    total_revenue = sum(c.revenue_minor for c in customers)
    rows = []
    for channel in by_channel.keys() | credited:
        members = by_channel.get(channel, [])
        revenue = sum(c.revenue_minor for c in members)
        rows.append(ChannelRow(
            channel=channel, customers=len(members),
            subscribers=sum(c.mrr_minor > 0 for c in members), revenue_minor=revenue,
            mrr_minor=sum(c.mrr_minor for c in members),
            customer_share=_share(len(members), len(customers)),
            revenue_share=_share(revenue, total_revenue),
            ltv_minor=mean_minor(revenue, len(members)) if members else None,
            attributed_minor={m: ledger.by_model_channel.get((m, channel), 0) for m in models},
            conversion=conversion_time(members),
            low_confidence=len(members) < min_customers))
    first_model = models[0] if models else None
    return tuple(sorted(rows, key=lambda r: (
        r.ltv_minor is None, r.low_confidence, -(r.ltv_minor or 0),
        -r.attributed_minor.get(first_model, 0) if first_model else 0, r.channel)))


def channel_segment_matrix(customers: Sequence[Customer],
                           channels: Sequence[ChannelRow]) -> ChannelSegmentMatrix:
    """Customers and revenue by acquisition channel × segment."""
    cells: dict[tuple[str, str], MatrixCell] = {}
    for key, members in group_by(customers, lambda c: (c.acquisition_channel, c.segment)).items():
        cells[key] = MatrixCell(len(members), sum(c.revenue_minor for c in members))
    present = {segment for _, segment in cells}
    return ChannelSegmentMatrix(
        channels=tuple(row.channel for row in channels if row.customers),
        segments=tuple(sorted(present, key=segment_order)), cells=cells)


def compare_with_truth(customers: Sequence[Customer], truth: Iterable[TruthPerson],
                       revenue: Mapping[str, Mapping[str, int]]) -> TruthComparison:
    """How the pipeline's customers, acquisition channels and revenue agree with the truth.

    `revenue` is person → currency → revenue in minor units (`CreditBook.revenue_by_person`).
    """
    truth_customers = {t.user_id: t for t in truth if t.is_customer}
    ours = {c.person_id: c for c in customers}
    both = sorted(ours.keys() & truth_customers.keys())
    clear = [p for p in both if not truth_customers[p].ambiguous]
    shared = [p for p in both if truth_customers[p].ambiguous]

    def agrees(person_id: str) -> bool:
        return ours[person_id].acquisition_channel == truth_customers[person_id].acquisition_channel

    def books_agree(person_id: str) -> bool:
        expected = truth_customers[person_id]
        credited = {code: amount for code, amount in revenue.get(person_id, {}).items() if amount}
        wanted = {expected.currency: expected.revenue_minor} if expected.revenue_minor else {}
        return credited == wanted

    return TruthComparison(
        truth_customers=len(truth_customers), pipeline_customers=len(ours),
        missing=tuple(sorted(truth_customers.keys() - ours.keys())),
        unexpected=tuple(sorted(ours.keys() - truth_customers.keys())),
        compared=len(clear), matched=sum(map(agrees, clear)),
        differences=tuple(
            ChannelDifference(p, ours[p].acquisition_channel,
                              truth_customers[p].acquisition_channel or UNATTRIBUTED,
                              truth_customers[p].first_visit_channel)
            for p in clear if not agrees(p)),
        ambiguous_compared=len(shared), ambiguous_matched=sum(map(agrees, shared)),
        ambiguous_first_visit_matched=sum(
            ours[p].acquisition_channel == truth_customers[p].first_visit_channel
            for p in shared),
        revenue_matched=sum(map(books_agree, both)))


def build_report(profiles: ProfileBook, credits: CreditBook, *, models: Sequence[str],
                 currency: str, exponent: int, truth: Iterable[TruthPerson] | None = None,
                 mrr_movements: Mapping[str, int] | None = None,
                 top_percent: int = TOP_PERCENT, min_customers: int = MIN_CUSTOMERS,
                 as_of_ms: int | None = None,
                 spend_minor: Mapping[str, int] | None = None) -> Report:
    """Every table of the report from the two books (and the truth, when there is one);
    retention as of `as_of_ms`, by default as of the profiles' own clock; spend and return
    from `spend_minor` (channel → spend, `processors.spend.SpendBook`)."""
    customers = customers_of(profiles.latest.values())
    segments = segment_rows(customers, min_customers)
    channels = channel_rows(customers, credits.ledger, models, min_customers)
    return Report(
        currency=currency, exponent=exponent, models=tuple(models),
        people=len(profiles.latest), min_customers=min_customers,
        concentration=concentration(customers, segments, top_percent),
        segments=segments, channels=channels,
        matrix=channel_segment_matrix(customers, channels),
        conversion=conversion_time(customers),
        credited_minor={m: credits.ledger.by_model.get(m, 0) for m in models},
        mrr_movements=dict(mrr_movements or {}),
        mrr_bridge=bridge((month_of(ts), kind, delta) for c in customers
                          for ts, kind, delta in c.mrr_movements),
        retention=retention_of(profiles.latest.values(), min_customers=min_customers,
                               as_of_ms=as_of_ms),
        icp=ideal_customer_profile(profiles.latest.values(), min_customers=min_customers,
                                   top_percent=top_percent),
        truth=None if truth is None else compare_with_truth(
            customers, truth, credits.revenue_by_person()),
        spend=spend_and_return(channels, spend_minor or {}, min_customers))


# ------------------------------------------------------------------------- spend and return


def spend_and_return(channels: Sequence[ChannelRow], spend_minor: Mapping[str, int],
                     min_customers: int = MIN_CUSTOMERS) -> tuple[SpendRow, ...]:
    """The spend table from the channel table and each channel's spend: the API computes the
    same rows from the aggregate cells (`readmodels.spend_return.totals_from_cells`)."""
    rows = {row.channel: row for row in channels}
    return spend_rows({channel: _totals(rows.get(channel), spend)
                       for channel, spend in spend_minor.items()}, min_customers)


def _totals(row: ChannelRow | None, spend: int) -> ChannelTotals:
    if row is None:
        return ChannelTotals(spend_minor=spend)
    return ChannelTotals(spend, row.customers, row.revenue_minor, row.mrr_minor,
                         dict(row.attributed_minor))
