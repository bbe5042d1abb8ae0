"""Rolling business aggregates by acquisition channel × segment (DESIGN.md §6, §7, §9).

Tiny and pure, like an aggregator's initialize / agg / result: `initialize()` an empty
`Aggregate`, `fold` person-step outputs into it, read its `windows` (1 h, 24 h, 7 d, 30 d,
all-time) as `Cells`, and turn cells into typed report rows. The shell keeps one aggregate per
person-events partition (the table key includes the partition, so nothing is counted twice
across workers and a worker that loses a partition stops reporting it) and sums partitions with
`merge`. A whole aggregate is large (up to `MAX_BUCKETS` hours of cells), so `bucket_changes`
tells a shell that stores one record per hour which hours a fold rewrote.

Labels are the outputs' own: a credit's segment is the person's as of the revenue event, a
customer's as of their conversion, so segment-level averages mix the two when traits change
after conversion. Corrections arrive as outputs too (a retracted credit's negated amounts, a
conversion or movement with `sign` -1), so adding keeps every cell equal to the current
credits. MRR belongs to customers: movements come from the conversion on, under the acquisition
channel and the person's current segment, so a channel × segment's all-time MRR is the sum of
its customers' MRR (processors/person.py `MrrMovement`).

Event time, not wall clock: the aggregate's clock is the newest event time folded so far, so a
backfill of old data fills the windows it belongs to. Events are kept in hour buckets covering
the 30 days behind the clock (at most `MAX_BUCKETS`, pruned as the clock advances) plus the
all-time cells. A window of length L holds the events with `hour(clock) − L ≤ ts ≤ clock`: it
is rounded outwards to whole hours, so it never misses an event within L of the clock.

Cells are a flat mapping `measure key → int` (amounts in reporting minor units, durations in
milliseconds), JSON-able as is. A key is `measure|segment|channel`, or
`measure|qualifier|segment|channel` where the qualifier is a model, a movement kind or a
conversion-time bound. The channel comes last because it is the only label that may contain
`|` (custom channels are any printable text); `CellKey` and the report functions read keys,
so callers never parse them by hand.

Folding and merging only add, so the all-time cells and the buckets do not depend on the order
of the outputs, and a merge of partitions equals folding every output into one aggregate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

from processors.attribution import DAY_MS
from processors.channels import CHANNELS, UNATTRIBUTED
from processors.months import month_of
from processors.person import Converted, MrrMovement, PersonOutput
from processors.revenue import Credit, MovementKind
from processors.segments import SEGMENTS
from processors.spend import SpendRecorded

STATE_VERSION = 1
HOUR_MS = 3_600_000
RETENTION_MS = 30 * DAY_MS
"""Buckets older than the clock's hour minus this are dropped: the longest rolling window."""
MAX_BUCKETS = RETENTION_MS // HOUR_MS + 1

ALL_TIME = "all"
ROLLING_WINDOWS: tuple[tuple[str, int], ...] = (
    ("1h", HOUR_MS),
    ("24h", DAY_MS),
    ("7d", 7 * DAY_MS),
    ("30d", RETENTION_MS),
)
"""Window name → length, shortest first."""
WINDOWS: tuple[str, ...] = (*(name for name, _ in ROLLING_WINDOWS), ALL_TIME)
"""Every window name: a closed set, fit for metric labels."""

MOVEMENT_KINDS: tuple[MovementKind, ...] = get_args(MovementKind)
CONVERSION_TIME_BOUNDS: tuple[tuple[str, int | None], ...] = (
    ("1h", HOUR_MS),
    ("1d", DAY_MS),
    ("7d", 7 * DAY_MS),
    ("30d", 30 * DAY_MS),
    ("90d", 90 * DAY_MS),
    ("+Inf", None),
)
"""Histogram bounds of the time from first touch to conversion: a duration falls in the first
bucket whose bound it does not exceed (Prometheus `le`); None is unbounded."""

# Measures. Amounts are reporting minor units; all but ATTRIBUTED and MRR are non-negative.
ATTRIBUTED = "attributed"
"""Qualified by model: the credit lines' reporting amounts, by the line's channel (signed)."""
PAID = "paid"
"""Payments' reporting amounts by acquisition channel (one model's credits: no double count)."""
REFUNDED = "refunded"
"""Refunds' reporting amounts (positive) by acquisition channel."""
PAYMENTS = "payments"
REFUNDS = "refunds"
CUSTOMERS = "customers"
"""New customers (conversions) by acquisition channel."""
CONVERSION_MS = "conversion_ms"
"""Sum of first touch → conversion durations, over conversions with a first touch."""
CONVERSIONS_TIMED = "conversions_timed"
CONVERSION_BUCKET = "conversion_le"
"""Qualified by bound label: conversions whose duration falls in that histogram bucket."""
MRR = "mrr"
"""Sum of signed MRR deltas: all-time it is the current MRR, in a window its net change."""
MOVEMENTS = "movements"
"""Qualified by movement kind: how many."""
MOVEMENT_MINOR = "movement_minor"
"""Qualified by movement kind: sum of signed deltas."""
BRIDGE = "bridge"
"""All-time only, qualified by `kind@YYYY-MM`: sum of signed deltas of that kind in that
calendar month (UTC), the MRR bridge's input (readmodels/mrr_bridge.py)."""
SPEND = "spend"
"""Marketing spend by the channel its utm values classify to (processors/spend.py), under
`NO_SEGMENT`: spend is bought per campaign, not per segment."""
NO_SEGMENT = ""
_QUALIFIED = frozenset({ATTRIBUTED, CONVERSION_BUCKET, MOVEMENTS, MOVEMENT_MINOR, BRIDGE})
_SEPARATOR = "|"
_BRIDGE_PREFIX = BRIDGE + _SEPARATOR

Cells = Mapping[str, int]
Increments = list[tuple[str, int]]
"""(cell key, amount) pairs one output adds."""


@dataclass(frozen=True, slots=True)
class CellKey:
    """A cell's labels; `qualifier` is the model, movement kind or bound of qualified measures."""

    measure: str
    segment: str
    channel: str
    qualifier: str | None = None

    def encode(self) -> str:
        labels = (self.segment, self.channel)
        if self.qualifier is not None:
            labels = (self.qualifier, *labels)
        return _SEPARATOR.join((self.measure, *labels))

    @classmethod
    def parse(cls, key: str) -> CellKey:
        measure = key.split(_SEPARATOR, 1)[0]
        if measure in _QUALIFIED:
            _, qualifier, segment, channel = key.split(_SEPARATOR, 3)
            return cls(measure, segment, channel, qualifier)
        _, segment, channel = key.split(_SEPARATOR, 2)
        return cls(measure, segment, channel)


@dataclass(frozen=True, slots=True)
class AggregateConfig:
    ledger_model: str | None
    """The model whose credits count lifetime revenue, payments and refunds: every model's
    credit carries the same record totals, so counting one of them counts each event once.
    None when no model is enabled (there are no credits then)."""

    @classmethod
    def for_models(cls, models: Sequence[str]) -> AggregateConfig:
        """The first enabled model keeps the ledger."""
        return cls(models[0] if models else None)


@dataclass(frozen=True, slots=True)
class Aggregate:
    """One partition's aggregate. Treat the mappings as read-only: folding copies on write, and
    the buckets a fold did not touch are shared with the previous aggregate."""

    clock_ms: int | None = None
    """Newest event time folded; None before the first."""
    all_time: Cells = field(default_factory=dict)
    buckets: Mapping[int, Cells] = field(default_factory=dict)
    """Hour start (epoch ms) → the cells of the events in that hour, for the retained hours."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "clock_ms": self.clock_ms,
            "all_time": dict(self.all_time),
            "buckets": {str(start): dict(cells) for start, cells in self.buckets.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Aggregate:
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"Aggregate version {data.get('v')!r} is not {STATE_VERSION}")
        return cls(
            clock_ms=data["clock_ms"],
            all_time=dict(data["all_time"]),
            buckets={int(start): dict(cells) for start, cells in data["buckets"].items()},
        )


def initialize() -> Aggregate:
    return Aggregate()


# ------------------------------------------------------------------------------------ fold


Measured = PersonOutput | SpendRecorded


def fold(state: Aggregate | None, output: Measured, config: AggregateConfig) -> Aggregate:
    """`fold_many` of one output."""
    return fold_many(state, (output,), config)


def fold_many(
    state: Aggregate | None, outputs: Iterable[Measured], config: AggregateConfig
) -> Aggregate:
    """Add the measures of `Credit`, `Converted`, `MrrMovement` and `SpendRecorded` outputs;
    others carry none.

    Returns `state` itself when nothing was measured, so the caller can skip the table write.
    An event older than the retained hours counts only all-time.
    """
    current = initialize() if state is None else state
    measured = [m for m in (_measures(output, config) for output in outputs) if m is not None]
    if not measured:
        return current
    clock = max(ts for ts, _, _ in measured)
    if current.clock_ms is not None:
        clock = max(clock, current.clock_ms)
    oldest = _oldest_retained(clock)
    buckets = {start: cells for start, cells in current.buckets.items() if start >= oldest}
    all_time = dict(current.all_time)
    copied: dict[int, dict[str, int]] = {}
    for ts, increments, all_time_only in measured:
        _add(all_time, increments)
        _add(all_time, all_time_only)
        start = _hour(ts)
        if start < oldest:
            continue
        bucket = copied.get(start)
        if bucket is None:
            bucket = copied[start] = dict(buckets.get(start, {}))
            buckets[start] = bucket
        _add(bucket, increments)
    return Aggregate(clock, all_time, buckets)


def _measures(output: Measured, config: AggregateConfig
              ) -> tuple[int, Increments, Increments] | None:
    """The output's event time, what it adds to which cells, and what it adds to all-time
    cells only; None when it measures nothing."""
    if isinstance(output, Credit):
        return output.revenue_ts, _credit_increments(output, config), []
    if isinstance(output, Converted):
        return output.ts, _conversion_increments(output), []
    if isinstance(output, MrrMovement):
        return output.ts, *_movement_increments(output)
    if isinstance(output, SpendRecorded):
        return output.ts, [(CellKey(SPEND, NO_SEGMENT, output.channel).encode(),
                            output.amount_minor)], []
    return None


def _credit_increments(credit: Credit, config: AggregateConfig) -> Increments:
    segment = credit.segment
    increments = [
        (CellKey(ATTRIBUTED, segment, line.line.channel, credit.model).encode(),
         line.reporting_amount_minor)
        for line in credit.lines
    ]
    if credit.model == config.ledger_model:
        channel = credit.acquisition_channel
        if credit.kind == "payment":
            amount, count = PAID, PAYMENTS
        else:
            amount, count = REFUNDED, REFUNDS
        sign = credit.sign
        increments.append((CellKey(amount, segment, channel).encode(),
                           sign * abs(credit.reporting_amount_minor)))
        increments.append((CellKey(count, segment, channel).encode(), sign))
    return increments


def _conversion_increments(converted: Converted) -> Increments:
    segment, channel, sign = converted.segment, converted.acquisition_channel, converted.sign
    increments = [(CellKey(CUSTOMERS, segment, channel).encode(), sign)]
    if converted.first_touch_ts is not None:
        duration = converted.ts - converted.first_touch_ts
        increments += [
            (CellKey(CONVERSION_MS, segment, channel).encode(), sign * duration),
            (CellKey(CONVERSIONS_TIMED, segment, channel).encode(), sign),
            (CellKey(CONVERSION_BUCKET, segment, channel, _bound_label(duration)).encode(),
             sign),
        ]
    return increments


def _bound_label(duration_ms: int) -> str:
    return next(label for label, bound in CONVERSION_TIME_BOUNDS
                if bound is None or duration_ms <= bound)


def _movement_increments(movement: MrrMovement) -> tuple[Increments, Increments]:
    """A movement's cells, and its all-time bridge cell; one taken back from before
    conversions carried it has no channel and counted on `Unattributed`."""
    segment, kind, sign = movement.segment, movement.kind, movement.sign
    channel = movement.acquisition_channel or UNATTRIBUTED
    delta = sign * movement.delta_reporting_minor
    return [
        (CellKey(MRR, segment, channel).encode(), delta),
        (CellKey(MOVEMENTS, segment, channel, kind).encode(), sign),
        (CellKey(MOVEMENT_MINOR, segment, channel, kind).encode(), delta),
    ], [(CellKey(BRIDGE, segment, channel, f"{kind}@{month_of(movement.ts)}").encode(), delta)]


def _add(cells: dict[str, int], increments: Iterable[tuple[str, int]]) -> None:
    for key, value in increments:
        cells[key] = cells.get(key, 0) + value


def _hour(ts: int) -> int:
    return ts - ts % HOUR_MS


def _oldest_retained(clock_ms: int) -> int:
    """Start of the oldest hour the longest window ending at `clock_ms` reaches into."""
    return _hour(clock_ms) - RETENTION_MS


@dataclass(frozen=True, slots=True)
class BucketChanges:
    """What a caller storing one record per hour must do to go from one aggregate to the next."""

    written: Mapping[int, Cells]
    """Hour start → its new cells."""
    dropped: tuple[int, ...]
    """Hours pruned as the clock moved on."""


def bucket_changes(before: Aggregate | None, after: Aggregate) -> BucketChanges:
    """The hours `fold_many` rewrote or dropped between `before` and `after`.

    A whole aggregate holds up to `MAX_BUCKETS` hours, far too much to write on every event;
    a fold shares the buckets it did not touch, so the rewritten ones are found by identity.
    """
    old = {} if before is None else before.buckets
    return BucketChanges(
        written={hour: cells for hour, cells in after.buckets.items()
                 if old.get(hour) is not cells},
        dropped=tuple(hour for hour in old if hour not in after.buckets),
    )


# ------------------------------------------------------------------------- windows, merge


def windows(state: Aggregate, *, clock_ms: int | None = None) -> dict[str, dict[str, int]]:
    """Every window's cells, by window name (`WINDOWS`).

    Windows end at the state's clock, or at `clock_ms` when given (it may not precede the
    clock): summing partitions' windows taken at one common time equals the windows of their
    `merge` at that time, whatever each partition's own clock.
    """
    end = state.clock_ms if clock_ms is None else clock_ms
    if end is None:
        return {name: {} for name in WINDOWS}
    if state.clock_ms is not None and end < state.clock_ms:
        raise ValueError(f"windows end at {end}, before the newest event at {state.clock_ms}")
    result: dict[str, dict[str, int]] = {}
    running: dict[str, int] = {}
    newest_first = iter(sorted(state.buckets.items(), reverse=True))
    pending = next(newest_first, None)
    for name, length in ROLLING_WINDOWS:
        while pending is not None and pending[0] >= _hour(end) - length:
            _add(running, pending[1].items())
            pending = next(newest_first, None)
        result[name] = dict(running)
    result[ALL_TIME] = dict(state.all_time)
    return result


def merge(states: Iterable[Aggregate]) -> Aggregate:
    """The sum of several partitions' aggregates; the clock is the newest of theirs."""
    chosen = list(states)
    clocks = [s.clock_ms for s in chosen if s.clock_ms is not None]
    if not clocks:
        return initialize()
    clock = max(clocks)
    oldest = _oldest_retained(clock)
    buckets: dict[int, dict[str, int]] = {}
    for state in chosen:
        for start, cells in state.buckets.items():
            if start >= oldest:
                _add(buckets.setdefault(start, {}), cells.items())
    return Aggregate(clock, sum_cells(s.all_time for s in chosen), buckets)


def sum_cells(many: Iterable[Cells]) -> dict[str, int]:
    """Cells added key by key, e.g. one window's cells from every partition's report."""
    total: dict[str, int] = {}
    for cells in many:
        _add(total, cells.items())
    return total


# ------------------------------------------------------------------------------ read model


@dataclass(frozen=True, slots=True)
class AttributedRow:
    """Revenue credited to `channel` (the credit line's) under one model."""

    channel: str
    segment: str
    revenue_minor: int


@dataclass(frozen=True, slots=True)
class CustomerValueRow:
    """Customers acquired by `channel` and the revenue they brought."""

    channel: str
    segment: str
    customers: int
    payments: int
    refunds: int
    paid_minor: int
    refunded_minor: int

    @property
    def lifetime_revenue_minor(self) -> int:
        return self.paid_minor - self.refunded_minor

    @property
    def average_ltv_minor(self) -> float | None:
        """Lifetime revenue per new customer; None without customers. Meaningful all-time: in a
        window it divides that window's revenue by that window's conversions."""
        return self.lifetime_revenue_minor / self.customers if self.customers else None


@dataclass(frozen=True, slots=True)
class MrrRow:
    channel: str
    segment: str
    mrr_minor: int
    """Sum of signed deltas: the MRR all-time, its net change in a rolling window."""
    movements: Mapping[str, int]
    """Movement kind → how many, for every kind in `MOVEMENT_KINDS`."""
    movement_minor: Mapping[str, int]
    """Movement kind → sum of signed deltas, for every kind in `MOVEMENT_KINDS`."""


@dataclass(frozen=True, slots=True)
class ConversionTimeRow:
    """Time from first touch to conversion of the customers with a first touch."""

    channel: str
    segment: str
    count: int
    total_ms: int
    bucket_counts: tuple[int, ...]
    """Conversions per bucket of `CONVERSION_TIME_BOUNDS`, in its order (not cumulative)."""

    @property
    def mean_ms(self) -> float | None:
        return self.total_ms / self.count if self.count else None

    @property
    def cumulative_counts(self) -> tuple[int, ...]:
        """Conversions at or below each bound, as Prometheus histogram `le` buckets."""
        running, result = 0, []
        for count in self.bucket_counts:
            running += count
            result.append(running)
        return tuple(result)


def channel_segment_report(cells: Cells, model: str) -> tuple[AttributedRow, ...]:
    """Attributed revenue under `model`, by credited channel × segment."""
    return tuple(AttributedRow(channel, segment, row[ATTRIBUTED, model])
                 for (channel, segment), row in _rows(cells, {(ATTRIBUTED, model)}))


def ltv_by_channel(cells: Cells) -> tuple[CustomerValueRow, ...]:
    """Customers, payments, refunds and lifetime revenue by acquisition channel × segment."""
    columns = {(CUSTOMERS, None), (PAYMENTS, None), (REFUNDS, None), (PAID, None),
               (REFUNDED, None)}
    return tuple(
        CustomerValueRow(channel, segment, row[CUSTOMERS, None], row[PAYMENTS, None],
                         row[REFUNDS, None], row[PAID, None], row[REFUNDED, None])
        for (channel, segment), row in _rows(cells, columns)
    )


def mrr_movements(cells: Cells) -> tuple[MrrRow, ...]:
    """MRR and its movements by acquisition channel × segment."""
    columns = {(MRR, None)} | {(measure, kind) for measure in (MOVEMENTS, MOVEMENT_MINOR)
                               for kind in MOVEMENT_KINDS}
    return tuple(
        MrrRow(channel, segment, row[MRR, None],
               {kind: row[MOVEMENTS, kind] for kind in MOVEMENT_KINDS},
               {kind: row[MOVEMENT_MINOR, kind] for kind in MOVEMENT_KINDS})
        for (channel, segment), row in _rows(cells, columns)
    )


def bridge_movements(cells: Cells, *, channel: str | None = None,
                     segment: str | None = None) -> list[tuple[str, str, int]]:
    """The MRR bridge's input, `(month, kind, signed delta)`, from the all-time cells: of every
    acquisition channel and segment together, or of one channel and/or one segment."""
    movements = []
    for key, value in cells.items():
        if key.startswith(_BRIDGE_PREFIX):
            cell = CellKey.parse(key)
            if channel in (None, cell.channel) and segment in (None, cell.segment):
                kind, month = (cell.qualifier or "").split("@")
                movements.append((month, kind, value))
    return movements


def spend_by_channel(cells: Cells) -> dict[str, int]:
    """Channel → spend, in report order."""
    return {channel: row[SPEND, None] for (channel, _), row in _rows(cells, {(SPEND, None)})}


def time_to_conversion(cells: Cells) -> tuple[ConversionTimeRow, ...]:
    """Time-to-conversion sum, count and histogram by acquisition channel × segment."""
    bounds = [label for label, _ in CONVERSION_TIME_BOUNDS]
    columns = {(CONVERSIONS_TIMED, None), (CONVERSION_MS, None)} | {
        (CONVERSION_BUCKET, label) for label in bounds}
    return tuple(
        ConversionTimeRow(channel, segment, row[CONVERSIONS_TIMED, None], row[CONVERSION_MS, None],
                          tuple(row[CONVERSION_BUCKET, label] for label in bounds))
        for (channel, segment), row in _rows(cells, columns)
    )


Column = tuple[str, str | None]
"""A measure and its qualifier (None for unqualified measures)."""


def _rows(
    cells: Cells, columns: set[Column]
) -> list[tuple[tuple[str, str], defaultdict[Column, int]]]:
    """The wanted columns of the cells by (channel, segment), in report order; absent is 0."""
    rows: dict[tuple[str, str], defaultdict[Column, int]] = {}
    for key, value in cells.items():
        cell = CellKey.parse(key)
        column = (cell.measure, cell.qualifier)
        if column in columns:
            rows.setdefault((cell.channel, cell.segment), defaultdict(int))[column] += value
    return sorted(rows.items(), key=lambda item: _report_order(*item[0]))


def _report_order(channel: str, segment: str) -> tuple[int, int | str, int, str]:
    """GA4 channels in their order, then custom ones by name, `Unattributed` last; segments in
    `SEGMENTS` order."""
    if channel in CHANNELS:
        channel_rank: tuple[int, int | str] = (0, CHANNELS.index(channel))
    else:
        channel_rank = (2, "") if channel == UNATTRIBUTED else (1, channel)
    segment_rank = SEGMENTS.index(segment) if segment in SEGMENTS else len(SEGMENTS)
    return (*channel_rank, segment_rank, segment)
