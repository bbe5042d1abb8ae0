"""Validated input events: the Python side of the wire contract (DESIGN.md §2).

Instances are built only from payloads that passed the JSON Schemas in this folder, so every
field already has its documented type. Timestamps are normalised to integer epoch milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Campaign:
    """The optional `campaign` object of a page view; each non-empty field overrides the URL."""

    source: str | None = None
    medium: str | None = None
    name: str | None = None
    term: str | None = None
    content: str | None = None


@dataclass(frozen=True, slots=True)
class PageView:
    event_id: str
    ts: int
    anonymous_id: str
    user_id: str | None
    url: str
    referrer: str | None
    campaign: Campaign | None = None


@dataclass(frozen=True, slots=True)
class Traits:
    """Firmographics sent with a signup; every field optional, later non-null values win."""

    company: str | None = None
    company_size: int | None = None
    industry: str | None = None
    plan: str | None = None
    country: str | None = None


@dataclass(frozen=True, slots=True)
class Signup:
    event_id: str
    ts: int
    anonymous_id: str
    user_id: str
    traits: Traits


@dataclass(frozen=True, slots=True)
class Payment:
    event_id: str
    ts: int
    user_id: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class Refund:
    event_id: str
    ts: int
    user_id: str
    amount_minor: int
    currency: str
    refund_of: str


@dataclass(frozen=True, slots=True)
class SubscriptionChange:
    event_id: str
    ts: int
    user_id: str
    subscription_id: str
    plan: str
    mrr_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class Spend:
    """What one campaign cost on one UTC day (`ts` is the day's start)."""

    event_id: str
    ts: int
    source: str
    medium: str
    campaign: str
    amount_minor: int
    currency: str

    @property
    def key(self) -> str:
        """The topic's key: `source/medium/campaign`."""
        return f"{self.source}/{self.medium}/{self.campaign}"


BillingEvent = Payment | Refund | SubscriptionChange
Event = PageView | Signup | BillingEvent
"""An event of the product's instrumentation (the person pipeline's input)."""
InputEvent = Event | Spend
"""Anything an input topic carries."""
