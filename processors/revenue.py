"""Revenue rules of one person: conversion basis, credits, refunds and MRR (DESIGN.md §5–§8, §10).

Pure functions over a person's facts; `processors/person.py` decides when to call them and
which records to emit.

- The **basis** is what a conversion fixes: the earliest payment, the journey as of it and every
  model's credit lines. Every payment, and every refund (negated), is split by those lines, so
  lifetime value flows back to the channels that acquired the customer and a full refund mirrors
  its payment to the cent.
- A **credit** is one revenue event under one model; a **retract** repeats an earlier credit
  with every amount negated, so summing all records of a credit id gives its current value.
- **MRR** is the sum of each subscription's latest `mrr_minor`, converted one subscription at a
  time; movements compare the person's totals before and after each change in event-time order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Literal

from processors.attribution import AttributionConfig, CreditLine, credit_lines
from processors.channels import UNATTRIBUTED
from processors.money import allocate_by_parts, integer_parts, to_reporting
from processors.touch import Touch, in_event_time
from schemas.events import Payment, Refund, SubscriptionChange

CREDIT_SCHEMA = "credit/2"

RevenueKind = Literal["payment", "refund"]
MovementKind = Literal["new", "expansion", "contraction", "churn", "reactivation"]
Op = Literal["assert", "retract"]
CorrectionCause = Literal["late_touch", "late_link", "late_signup", "earlier_payment",
                          "identity_move"]
CORRECTION_CAUSES: tuple[CorrectionCause, ...] = (
    "earlier_payment", "identity_move", "late_link", "late_touch", "late_signup")
"""Every cause a correction names, most decisive first (a batch with several names the first)."""
RejectionReason = Literal[
    "unknown_currency",
    "refund_unknown_payment",
    "refund_currency_mismatch",
    "refund_before_payment",
    "refund_exceeds_payment",
]
REJECTION_REASONS: tuple[RejectionReason, ...] = (
    "unknown_currency",
    "refund_unknown_payment",
    "refund_currency_mismatch",
    "refund_before_payment",
    "refund_exceeds_payment",
)
"""Every reason the person step rejects billing with: a closed set, fit for metric labels."""


# ---------------------------------------------------------------------------------------------
# The conversion basis.


@dataclass(frozen=True, slots=True)
class Basis:
    """What the person's conversion fixes for every credit."""

    conversion_event_id: str
    conversion_ts: int
    lines: Mapping[str, tuple[CreditLine, ...]]
    """Per model, the touches with a positive weight, in journey order."""
    acquisition_channel: str
    """Channel of the journey's first touch (`Unattributed` if empty)."""
    acquisition_campaign: str | None
    first_touch_ts: int | None
    """Time of the journey's first touch; None when Unattributed."""
    key: tuple[Any, ...]
    """What the lines were computed from, the rules included: equal keys give equal lines."""

    def to_dict(self) -> dict[str, Any]:
        """Weights are exact fractions as text (`"3/10"`): a time-decay weight's numerator and
        denominator outgrow 64-bit JSON integers."""
        return {
            "conversion_event_id": self.conversion_event_id,
            "conversion_ts": self.conversion_ts,
            "lines": {model: [_line_to_list(line) for line in lines]
                      for model, lines in self.lines.items()},
            "acquisition_channel": self.acquisition_channel,
            "acquisition_campaign": self.acquisition_campaign,
            "first_touch_ts": self.first_touch_ts,
            "key": _jsonable(self.key),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Basis:
        return cls(
            conversion_event_id=data["conversion_event_id"],
            conversion_ts=data["conversion_ts"],
            lines={model: tuple(_line_from_list(line) for line in lines)
                   for model, lines in data["lines"].items()},
            acquisition_channel=data["acquisition_channel"],
            acquisition_campaign=data["acquisition_campaign"],
            first_touch_ts=data["first_touch_ts"],
            key=_tupled(data["key"]),
        )


def _jsonable(value: Any) -> Any:
    return [_jsonable(v) for v in value] if isinstance(value, tuple) else value


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def _line_to_list(line: CreditLine) -> list[Any]:
    return [line.touch_event_id, line.touch_ts, line.channel, line.source, line.medium,
            line.campaign, str(line.weight)]


def _line_from_list(values: list[Any]) -> CreditLine:
    *rest, weight = values
    return CreditLine(*rest, weight=Fraction(weight))


def acquisition_journey(touches: Iterable[tuple[Touch, int]], conversion_ts: int,
                        lookback_ms: int) -> tuple[Touch, ...]:
    """The journey as of the conversion: touches in `[conversion − lookback, conversion]` that
    were the person's by then (`known_at`, the second of each pair, at or before it), in
    `(ts, event_id)` order."""
    start = conversion_ts - lookback_ms
    return tuple(sorted((touch for touch, known_at in touches
                         if start <= touch.ts <= conversion_ts and known_at <= conversion_ts),
                        key=in_event_time))


def signup_milestone(journey: Sequence[Touch], signup_ts: int | None) -> int:
    """Index of the W-shaped signup touch: the last at or before the first signup, else t1."""
    if signup_ts is None:
        return 0
    at_or_before = [index for index, touch in enumerate(journey) if touch.ts <= signup_ts]
    return at_or_before[-1] if at_or_before else 0


def make_basis(conversion: Payment, journey: tuple[Touch, ...], signup_ts: int | None,
               config: AttributionConfig, previous: Basis | None = None) -> Basis:
    """The basis of a conversion; `previous` is reused when computed from the same inputs."""
    key = (conversion.event_id, conversion.ts, tuple(t.event_id for t in journey),
           signup_milestone(journey, signup_ts), tuple(config.models), config.half_life_ms,
           tuple(str(w) for w in (*config.position_based_weights, *config.w_shaped_weights)))
    if previous is not None and previous.key == key:
        return previous
    first = journey[0] if journey else None
    return Basis(
        conversion_event_id=conversion.event_id,
        conversion_ts=conversion.ts,
        lines={model: credit_lines(model, journey, conversion.ts, signup_ts, config)
               for model in config.models},
        acquisition_channel=first.channel if first else UNATTRIBUTED,
        acquisition_campaign=first.campaign if first else None,
        first_touch_ts=first.ts if first else None,
        key=key,
    )


# ---------------------------------------------------------------------------------------------
# Credits.


@dataclass(frozen=True, slots=True)
class CreditedLine:
    """A line with its share of one revenue event, original and reporting currency."""

    line: CreditLine
    amount_minor: int
    reporting_amount_minor: int


@dataclass(frozen=True, slots=True)
class Credit:
    """One record of a revenue event under one model; refund amounts are negative.

    The lines' amounts sum to `amount_minor` and their reporting amounts to
    `reporting_amount_minor`, exactly (invariant 1). A `retract` repeats the assert of the same
    revision with every amount negated.
    """

    revenue_event_id: str
    person_id: str
    model: str
    kind: RevenueKind
    revenue_ts: int
    amount_minor: int
    currency: str
    reporting_amount_minor: int
    reporting_currency: str
    segment: str
    acquisition_channel: str
    lines: tuple[CreditedLine, ...]
    op: Op = "assert"
    revision: int = 1
    cause: CorrectionCause | None = None

    @property
    def credit_id(self) -> str:
        """Deterministic from event and model: every record of one credit set shares it."""
        return f"{self.revenue_event_id}/{self.model}"

    @property
    def sign(self) -> int:
        return -1 if self.op == "retract" else 1


def credit(event: Payment | Refund, basis: Basis, model: str, *, person_id: str, segment: str,
           config: AttributionConfig) -> Credit:
    """The assert of `event` under `model`, split by the basis's lines (revision 1)."""
    amount = event.amount_minor if isinstance(event, Payment) else -event.amount_minor
    reporting = to_reporting(amount, event.currency, config.currency_table,
                             config.reporting_currency)
    return Credit(
        revenue_event_id=event.event_id,
        person_id=person_id,
        model=model,
        kind="payment" if isinstance(event, Payment) else "refund",
        revenue_ts=event.ts,
        amount_minor=amount,
        currency=event.currency,
        reporting_amount_minor=reporting,
        reporting_currency=config.reporting_currency,
        segment=segment,
        acquisition_channel=basis.acquisition_channel,
        lines=_split(basis.lines[model], amount, reporting),
    )


def retraction(previous: Credit) -> Credit:
    """The record that cancels `previous` exactly: same revision and lines, amounts negated."""
    return replace(
        previous,
        op="retract",
        amount_minor=-previous.amount_minor,
        reporting_amount_minor=-previous.reporting_amount_minor,
        lines=tuple(CreditedLine(c.line, -c.amount_minor, -c.reporting_amount_minor)
                    for c in previous.lines),
    )


def _split(
    lines: tuple[CreditLine, ...], amount_minor: int, reporting_amount_minor: int
) -> tuple[CreditedLine, ...]:
    """Two independent largest-remainder splits with the same weights, so both sums are exact."""
    parts = integer_parts([line.weight for line in lines])
    amounts = allocate_by_parts(amount_minor, parts)
    reporting_amounts = allocate_by_parts(reporting_amount_minor, parts)
    return tuple(
        CreditedLine(line, amount, reporting)
        for line, amount, reporting in zip(lines, amounts, reporting_amounts, strict=True)
    )


def credit_record(credit: Credit) -> dict[str, Any]:
    """The `credit/2` message; line weights are the exact weights as floats."""
    return {
        "schema": CREDIT_SCHEMA,
        "credit_id": credit.credit_id,
        "op": credit.op,
        "revision": credit.revision,
        "cause": credit.cause,
        "revenue_event_id": credit.revenue_event_id,
        "person_id": credit.person_id,
        "model": credit.model,
        "kind": credit.kind,
        "revenue_ts": credit.revenue_ts,
        "amount_minor": credit.amount_minor,
        "currency": credit.currency,
        "reporting_amount_minor": credit.reporting_amount_minor,
        "reporting_currency": credit.reporting_currency,
        "segment": credit.segment,
        "acquisition_channel": credit.acquisition_channel,
        "lines": [
            {
                "touch_event_id": credited.line.touch_event_id,
                "touch_ts": credited.line.touch_ts,
                "channel": credited.line.channel,
                "source": credited.line.source,
                "medium": credited.line.medium,
                "campaign": credited.line.campaign,
                "weight": float(credited.line.weight),
                "amount_minor": credited.amount_minor,
                "reporting_amount_minor": credited.reporting_amount_minor,
            }
            for credited in credit.lines
        ],
    }


# ---------------------------------------------------------------------------------------------
# Refunds.


@dataclass(frozen=True, slots=True)
class Rejection:
    """The event is invalid for this person (dead-letter it)."""

    reason: RejectionReason
    message: str


def refund_rejection(payments: Mapping[str, Payment], refunded_minor: int,
                     refund: Refund) -> Rejection | None:
    """Why the refund cannot apply to the person's payments, checked in this order, or None.

    `refunded_minor` is what earlier accepted refunds already took back from the same payment.
    """
    payment = payments.get(refund.refund_of)
    if payment is None:
        return Rejection(
            "refund_unknown_payment",
            f"refund {refund.event_id} refers to unknown payment {refund.refund_of}",
        )
    if refund.currency != payment.currency:
        return Rejection(
            "refund_currency_mismatch",
            f"refund {refund.event_id} is in {refund.currency}, "
            f"payment {refund.refund_of} in {payment.currency}",
        )
    if refund.ts < payment.ts:
        return Rejection(
            "refund_before_payment",
            f"refund {refund.event_id} at {refund.ts} precedes payment {refund.refund_of} "
            f"at {payment.ts}",
        )
    if refunded_minor + refund.amount_minor > payment.amount_minor:
        return Rejection(
            "refund_exceeds_payment",
            f"refund {refund.event_id} of {refund.amount_minor} would bring refunds of payment "
            f"{refund.refund_of} above its {payment.amount_minor} ({refunded_minor} "
            f"already refunded)",
        )
    return None


# ---------------------------------------------------------------------------------------------
# MRR.


@dataclass(frozen=True, slots=True)
class MrrStep:
    """One subscription change's effect on the person's total MRR (reporting minor units)."""

    change: SubscriptionChange
    kind: MovementKind | None
    """None when the total did not change."""
    delta_reporting_minor: int
    mrr_reporting_minor: int


def mrr_steps(changes: Iterable[SubscriptionChange], config: AttributionConfig) -> list[MrrStep]:
    """Each change's movement, in `(ts, event_id)` order; the last total is the current MRR."""
    latest: dict[str, int] = {}
    total, churned = 0, False
    steps = []
    for change in sorted(changes, key=in_event_time):
        latest[change.subscription_id] = to_reporting(
            change.mrr_minor, change.currency, config.currency_table, config.reporting_currency)
        after = sum(latest.values())
        steps.append(MrrStep(change, _movement_kind(total, after, churned), after - total,
                             after))
        churned = after == 0 and (churned or total > 0)
        total = after
    return steps


def _movement_kind(before: int, after: int, churned: bool) -> MovementKind | None:
    if after == before:
        return None
    if before == 0:
        return "reactivation" if churned else "new"
    if after == 0:
        return "churn"
    return "expansion" if after > before else "contraction"
