"""The per-person revenue step: conversion, credits and MRR movements (DESIGN.md §5–§8, §10).

`apply_billing(state, event, ...) -> (state, outputs)` is pure: it decides, the caller sends.

- The first payment processed converts the person: the acquisition journey is taken from the
  touches known then and every enabled model's credit lines are frozen. Every later payment, and
  every refund (negated), is split by those same lines, so lifetime value flows back to the
  channels that acquired the customer and a full refund mirrors its payment to the cent.
- A model enabled after the conversion is frozen the first time it is needed, from the touches
  known then and the original conversion time.
- An event id already accepted for this person (payment, refund or subscription change) yields a
  `Duplicate` and changes nothing, which makes replays idempotent. A rejected event claims no id.
- MRR is the sum of each subscription's latest `mrr_minor`, converted one subscription at a time;
  the stored total is the "before" of the next movement, so a person's movement deltas always sum
  to their current MRR.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Any, Literal

from processors.attribution import (
    AttributionConfig,
    CreditLine,
    acquisition_journey,
    credit_lines,
)
from processors.channels import UNATTRIBUTED
from processors.money import allocate_by_parts, integer_parts, to_reporting
from processors.touch import Touch
from schemas.events import Payment, Refund, SubscriptionChange

STATE_VERSION = 1
CREDIT_SCHEMA = "credit/1"

RevenueKind = Literal["payment", "refund"]
MovementKind = Literal["new", "expansion", "contraction", "churn", "reactivation"]
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
"""Every reason this step rejects with: a closed set, fit for metric labels."""


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """An accepted payment, kept so that refunds can be validated against it."""

    amount_minor: int
    currency: str
    ts: int
    refunded_minor: int = 0


@dataclass(frozen=True, slots=True)
class RefundRecord:
    refund_of: str
    amount_minor: int
    ts: int


@dataclass(frozen=True, slots=True)
class SubscriptionMrr:
    """A subscription's latest monthly recurring amount, in its own currency."""

    mrr_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class RevenueState:
    """One person's revenue facts. Reporting amounts are in the configured reporting currency."""

    conversion_ts: int | None = None
    credit_lines: Mapping[str, tuple[CreditLine, ...]] = field(default_factory=dict)
    """Per model, the lines frozen at conversion."""
    acquisition_channel: str | None = None
    """Channel of the journey's first touch (`Unattributed` if empty); None until conversion."""
    acquisition_campaign: str | None = None
    first_touch_ts: int | None = None
    """Time of the journey's first touch; None until conversion or when Unattributed."""
    payments: Mapping[str, PaymentRecord] = field(default_factory=dict)
    refunds: Mapping[str, RefundRecord] = field(default_factory=dict)
    subscriptions: Mapping[str, SubscriptionMrr] = field(default_factory=dict)
    subscription_change_ids: frozenset[str] = frozenset()
    mrr_reporting_minor: int = 0
    churned: bool = False
    """MRR went from positive to 0 and has not come back: the next rise is a reactivation."""
    lifetime_revenue_reporting_minor: int = 0
    """Payments minus refunds."""

    @property
    def payment_count(self) -> int:
        return len(self.payments)

    @property
    def refund_count(self) -> int:
        return len(self.refunds)

    def has_seen(self, event_id: str) -> bool:
        return (
            event_id in self.payments
            or event_id in self.refunds
            or event_id in self.subscription_change_ids
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; weights are exact fractions as text (`"3/10"`): a time-decay
        weight's numerator and denominator outgrow 64-bit JSON integers."""
        return {
            "v": STATE_VERSION,
            "conversion_ts": self.conversion_ts,
            "credit_lines": {
                model: [_line_to_dict(line) for line in lines]
                for model, lines in self.credit_lines.items()
            },
            "acquisition_channel": self.acquisition_channel,
            "acquisition_campaign": self.acquisition_campaign,
            "first_touch_ts": self.first_touch_ts,
            "payments": {key: asdict(record) for key, record in self.payments.items()},
            "refunds": {key: asdict(record) for key, record in self.refunds.items()},
            "subscriptions": {key: asdict(record) for key, record in self.subscriptions.items()},
            "subscription_change_ids": sorted(self.subscription_change_ids),
            "mrr_reporting_minor": self.mrr_reporting_minor,
            "churned": self.churned,
            "lifetime_revenue_reporting_minor": self.lifetime_revenue_reporting_minor,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RevenueState:
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"unsupported revenue state version {data.get('v')!r}")
        return cls(
            conversion_ts=data["conversion_ts"],
            credit_lines={
                model: tuple(_line_from_dict(line) for line in lines)
                for model, lines in data["credit_lines"].items()
            },
            acquisition_channel=data["acquisition_channel"],
            acquisition_campaign=data["acquisition_campaign"],
            first_touch_ts=data["first_touch_ts"],
            payments={key: PaymentRecord(**value) for key, value in data["payments"].items()},
            refunds={key: RefundRecord(**value) for key, value in data["refunds"].items()},
            subscriptions={
                key: SubscriptionMrr(**value) for key, value in data["subscriptions"].items()
            },
            subscription_change_ids=frozenset(data["subscription_change_ids"]),
            mrr_reporting_minor=data["mrr_reporting_minor"],
            churned=data["churned"],
            lifetime_revenue_reporting_minor=data["lifetime_revenue_reporting_minor"],
        )


def _line_to_dict(line: CreditLine) -> dict[str, Any]:
    return {
        "touch_event_id": line.touch_event_id,
        "touch_ts": line.touch_ts,
        "channel": line.channel,
        "source": line.source,
        "medium": line.medium,
        "campaign": line.campaign,
        "weight": str(line.weight),
    }


def _line_from_dict(data: Mapping[str, Any]) -> CreditLine:
    return CreditLine(
        touch_event_id=data["touch_event_id"],
        touch_ts=data["touch_ts"],
        channel=data["channel"],
        source=data["source"],
        medium=data["medium"],
        campaign=data["campaign"],
        weight=Fraction(data["weight"]),
    )


@dataclass(frozen=True, slots=True)
class CreditedLine:
    """A frozen line with its share of one revenue event, original and reporting currency."""

    line: CreditLine
    amount_minor: int
    reporting_amount_minor: int


@dataclass(frozen=True, slots=True)
class Credit:
    """One revenue event credited under one model; refund amounts are negative.

    The lines' amounts sum to `amount_minor` and their reporting amounts to
    `reporting_amount_minor`, exactly (invariant 1).
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

    @property
    def credit_id(self) -> str:
        """Deterministic from event and model, so a replayed credit overwrites itself downstream."""
        return f"{self.revenue_event_id}/{self.model}"


@dataclass(frozen=True, slots=True)
class MrrMovement:
    """A change of the person's total MRR; `delta_reporting_minor` is signed."""

    person_id: str
    event_id: str
    subscription_id: str
    kind: MovementKind
    ts: int
    delta_reporting_minor: int
    mrr_reporting_minor: int
    """The person's MRR after the movement."""
    reporting_currency: str
    segment: str
    acquisition_channel: str | None
    """None while the person has not converted."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """The event is invalid for this person (dead-letter it); the state did not change."""

    reason: RejectionReason
    message: str


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The event id was already accepted for this person; nothing was credited again."""

    event_id: str


RevenueOutput = Credit | MrrMovement | Rejection | Duplicate


def apply_billing(
    state: RevenueState | None,
    event: Payment | Refund | SubscriptionChange,
    *,
    person_id: str,
    touches: Iterable[Touch],
    signup_ts: int | None,
    segment: str,
    config: AttributionConfig,
) -> tuple[RevenueState, tuple[RevenueOutput, ...]]:
    """Apply one billing event to a person's revenue state.

    `touches` are the person's known touchpoints (read only when a journey is frozen),
    `signup_ts` their first signup (None if unknown), `segment` their current segment.
    """
    current = RevenueState() if state is None else state
    if current.has_seen(event.event_id):
        return current, (Duplicate(event.event_id),)
    if event.currency not in config.currency_table:
        return current, (Rejection("unknown_currency", f"unknown currency {event.currency!r}"),)
    if isinstance(event, SubscriptionChange):
        return _apply_subscription_change(current, event, person_id, segment, config)
    if isinstance(event, Refund):
        rejection = _refund_rejection(current, event)
        if rejection is not None:
            return current, (rejection,)
        frozen = _with_frozen_lines(current, event.ts, touches, signup_ts, config)
        return _apply_refund(frozen, event, person_id, segment, config)
    frozen = _with_frozen_lines(current, event.ts, touches, signup_ts, config)
    return _apply_payment(frozen, event, person_id, segment, config)


def _with_frozen_lines(
    state: RevenueState,
    event_ts: int,
    touches: Iterable[Touch],
    signup_ts: int | None,
    config: AttributionConfig,
) -> RevenueState:
    """The state converted (at `event_ts` if not yet) with lines for every enabled model."""
    missing = [model for model in config.models if model not in state.credit_lines]
    if state.conversion_ts is not None and not missing:
        return state
    conversion_ts = event_ts if state.conversion_ts is None else state.conversion_ts
    journey = acquisition_journey(touches, conversion_ts, config.lookback_ms)
    lines = dict(state.credit_lines)
    for model in missing:
        lines[model] = credit_lines(model, journey, conversion_ts, signup_ts, config)
    if state.conversion_ts is not None:
        return replace(state, credit_lines=lines)
    first = journey[0] if journey else None
    return replace(
        state,
        conversion_ts=conversion_ts,
        credit_lines=lines,
        acquisition_channel=first.channel if first else UNATTRIBUTED,
        acquisition_campaign=first.campaign if first else None,
        first_touch_ts=first.ts if first else None,
    )


def _apply_payment(
    state: RevenueState, payment: Payment, person_id: str, segment: str, config: AttributionConfig
) -> tuple[RevenueState, tuple[RevenueOutput, ...]]:
    reporting = to_reporting(
        payment.amount_minor, payment.currency, config.currency_table, config.reporting_currency
    )
    credits = _credits(
        state, payment, "payment", payment.amount_minor, reporting, person_id, segment, config
    )
    record = PaymentRecord(payment.amount_minor, payment.currency, payment.ts)
    return replace(
        state,
        payments={**state.payments, payment.event_id: record},
        lifetime_revenue_reporting_minor=state.lifetime_revenue_reporting_minor + reporting,
    ), credits


def _refund_rejection(state: RevenueState, refund: Refund) -> Rejection | None:
    """Why the refund cannot apply to this person's payments, checked in this order, or None."""
    payment = state.payments.get(refund.refund_of)
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
    if payment.refunded_minor + refund.amount_minor > payment.amount_minor:
        return Rejection(
            "refund_exceeds_payment",
            f"refund {refund.event_id} of {refund.amount_minor} would bring refunds of payment "
            f"{refund.refund_of} above its {payment.amount_minor} ({payment.refunded_minor} "
            f"already refunded)",
        )
    return None


def _apply_refund(
    state: RevenueState, refund: Refund, person_id: str, segment: str, config: AttributionConfig
) -> tuple[RevenueState, tuple[RevenueOutput, ...]]:
    amount = -refund.amount_minor
    reporting = to_reporting(
        amount, refund.currency, config.currency_table, config.reporting_currency
    )
    credits = _credits(state, refund, "refund", amount, reporting, person_id, segment, config)
    payment = state.payments[refund.refund_of]
    refunded = replace(payment, refunded_minor=payment.refunded_minor + refund.amount_minor)
    record = RefundRecord(refund.refund_of, refund.amount_minor, refund.ts)
    return replace(
        state,
        payments={**state.payments, refund.refund_of: refunded},
        refunds={**state.refunds, refund.event_id: record},
        lifetime_revenue_reporting_minor=state.lifetime_revenue_reporting_minor + reporting,
    ), credits


def _credits(
    state: RevenueState,
    event: Payment | Refund,
    kind: RevenueKind,
    amount_minor: int,
    reporting_amount_minor: int,
    person_id: str,
    segment: str,
    config: AttributionConfig,
) -> tuple[Credit, ...]:
    """One credit per enabled model, each split by that model's frozen lines."""
    assert state.acquisition_channel is not None, "credits exist only after conversion"
    return tuple(
        Credit(
            revenue_event_id=event.event_id,
            person_id=person_id,
            model=model,
            kind=kind,
            revenue_ts=event.ts,
            amount_minor=amount_minor,
            currency=event.currency,
            reporting_amount_minor=reporting_amount_minor,
            reporting_currency=config.reporting_currency,
            segment=segment,
            acquisition_channel=state.acquisition_channel,
            lines=_split(state.credit_lines[model], amount_minor, reporting_amount_minor),
        )
        for model in config.models
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


def _apply_subscription_change(
    state: RevenueState,
    change: SubscriptionChange,
    person_id: str,
    segment: str,
    config: AttributionConfig,
) -> tuple[RevenueState, tuple[RevenueOutput, ...]]:
    subscriptions = {
        **state.subscriptions,
        change.subscription_id: SubscriptionMrr(change.mrr_minor, change.currency),
    }
    before = state.mrr_reporting_minor
    after = sum(
        to_reporting(s.mrr_minor, s.currency, config.currency_table, config.reporting_currency)
        for s in subscriptions.values()
    )
    new_state = replace(
        state,
        subscriptions=subscriptions,
        subscription_change_ids=state.subscription_change_ids | {change.event_id},
        mrr_reporting_minor=after,
        churned=after == 0 and (state.churned or before > 0),
    )
    kind = _movement_kind(before, after, state.churned)
    if kind is None:
        return new_state, ()
    movement = MrrMovement(
        person_id=person_id,
        event_id=change.event_id,
        subscription_id=change.subscription_id,
        kind=kind,
        ts=change.ts,
        delta_reporting_minor=after - before,
        mrr_reporting_minor=after,
        reporting_currency=config.reporting_currency,
        segment=segment,
        acquisition_channel=state.acquisition_channel,
    )
    return new_state, (movement,)


def _movement_kind(before: int, after: int, churned: bool) -> MovementKind | None:
    """Compare the person's total MRR before and after: no movement when it did not change."""
    if after == before:
        return None
    if before == 0:
        return "reactivation" if churned else "new"
    if after == 0:
        return "churn"
    return "expansion" if after > before else "contraction"


def credit_record(credit: Credit) -> dict[str, Any]:
    """The `credit/1` message of DESIGN.md §7; line weights are the exact weights as floats."""
    return {
        "schema": CREDIT_SCHEMA,
        "credit_id": credit.credit_id,
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
