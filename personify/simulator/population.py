"""The simulated population: people, their visits, signups and billing, with ground truth.

Pure and deterministic: every draw comes from the `random.Random` passed in (one derived
generator per household), time from the configured start, never from a clock. People arrive
spread evenly over the simulated days; a household is one person, or two who share a device.
Each household's events are built whole, then handed to the time-ordering merge.

The model (docs/simulator.md has the numbers and why):
- the first visit's channel is drawn by traffic share; the channel sets how likely the person
  signs up and pays, how long they research, and the mix of segments it brings;
- segments set the price (log-normal MRR), the billing cycle and the monthly odds of churn,
  expansion and contraction: revenue ends up concentrated in the largest customers;
- channels are written the way browsers and ad platforms write them (UTM parameters, click ids,
  referrers), so the pipeline's GA4 rules recover them;
- ground truth is computed with the pipeline's own rules (DESIGN.md §3-§5): visits per device,
  stitching by links, journey = touches within the lookback before the first payment.
"""

from __future__ import annotations

import calendar
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from personify.sdk import (
    TopicKind,
    kind_of_payload,
    page_view_payload,
    payment_payload,
    refund_payload,
    signup_payload,
    subscription_change_payload,
)
from processors.money import default_currency_table
from processors.segments import ENTERPRISE, MID_MARKET, SMB
from streams.topology import Topics

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
DEFAULT_START_MS = 1_735_689_600_000
"""2025-01-01T00:00:00Z: a fixed default, so a seed alone fixes the output."""

MARKETING_SITE = "https://www.example.com"
APP_SITE = "https://app.example.com"


@dataclass(frozen=True, slots=True)
class PlantedIcp:
    """An ideal customer profile planted in the population, for the report to find: signups
    from `industry` with `employees` (inclusive) pay `pay_rate_factor` times as often (at
    most 95 %) and at `mrr_factor` times the price of their segment."""

    industry: str = "Software"
    employees: tuple[int, int] = (201, 1000)
    pay_rate_factor: float = 2.0
    mrr_factor: float = 3.0

    def fits(self, traits: dict[str, Any]) -> bool:
        low, high = self.employees
        return traits["industry"] == self.industry and low <= traits["company_size"] <= high

    def pay_rate(self, rate: float) -> float:
        return min(0.95, rate * self.pay_rate_factor)


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """The knobs of a run; the seed is not here, it goes into the injected `random.Random`."""

    people: int = 1_000
    """People to generate (visitors; most never sign up)."""
    days: int = 90
    """Simulated period: arrivals spread over it, and nothing happens after it."""
    start_ms: int = DEFAULT_START_MS
    """Start of the period, epoch milliseconds."""
    malformed_share: float = 0.01
    """Share of all output events that are defective (malformed or duplicates)."""
    multi_device_share: float = 0.25
    """Share of people who sign up that also browse on a second device."""
    shared_device_share: float = 0.03
    """Share of households of two people sharing one device (their truth is ambiguous)."""
    lookback_days: int = 90
    """Attribution lookback the truth's acquisition channel is computed with."""
    session_timeout_ms: int = 30 * MINUTE_MS
    """Visit timeout the truth's touchpoints are computed with."""
    max_pending: int = 200_000
    """Events held in memory for time ordering before spilling a sorted run to disk."""
    spill_dir: Path | None = None
    """Where spilled runs go (a temporary directory inside it); the system default if None."""
    topics: Topics = field(default_factory=Topics)
    """Topic names written on each event."""
    icp: PlantedIcp = field(default_factory=PlantedIcp)
    """The planted ideal customer profile (written to the truth file's config)."""
    spend: bool = False
    """Also emit the daily marketing spend of the paid channels (personify/simulator/spend.py);
    off by default, so a seed's log without it stays the same."""

    def __post_init__(self) -> None:
        if self.people < 1 or self.days < 1 or self.lookback_days < 1:
            raise ValueError("people, days and lookback_days must be positive")
        if not 0 <= self.malformed_share < 1:
            raise ValueError("malformed_share must be in [0, 1)")
        for name in ("multi_device_share", "shared_device_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.days * DAY_MS


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One message for an input topic, at its position in the stream (`ts`).

    Well-formed events carry `value` (the contract payload; `ts` is its event time). Defective
    ones name their `defect`: a `duplicate` repeats an earlier value later in the stream; every
    other defect is a `raw` text the pipeline must dead-letter, sent under `key`.
    """

    ts: int
    topic: str
    key: str | None
    value: dict[str, Any] | None = None
    raw: str | None = None
    defect: str | None = None

    def to_line(self) -> dict[str, Any]:
        """The `personify send` line: `{"topic", "value"}` or `{"topic", "key", "raw"}`."""
        line: dict[str, Any] = {"topic": self.topic}
        if self.raw is not None:
            line["key"] = self.key
            line["raw"] = self.raw
        else:
            line["value"] = self.value
        if self.defect is not None:
            line["defect"] = self.defect
        return line


@dataclass(frozen=True, slots=True)
class PersonTruth:
    """What really happened to one person; `user_id` is None for people who never signed up.

    `acquisition_channel` follows DESIGN.md (channel of the first touch within the lookback
    before the first payment; `Unattributed` for an empty journey; None without a payment).
    `ambiguous` marks people on a shared device, whose touches the rules may give to the other
    person; `first_visit_channel` is where the person's own first visit came from.
    """

    user_id: str | None
    first_visit_channel: str
    acquisition_channel: str | None
    ambiguous: bool
    segment: str | None
    company_size: int | None
    industry: str | None
    plan: str | None
    country: str | None
    currency: str | None
    devices: int
    first_visit_ts: int
    signup_ts: int | None
    conversion_ts: int | None
    payments_minor: int
    refunds_minor: int
    mrr_minor: int
    icp_fit: bool = False
    """A signup matching the planted ideal customer profile (`PlantedIcp`)."""

    @property
    def revenue_minor(self) -> int:
        return self.payments_minor - self.refunds_minor

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "acquisition_channel": self.acquisition_channel,
            "ambiguous": self.ambiguous,
            "first_visit_channel": self.first_visit_channel,
            "segment": self.segment,
            "company_size": self.company_size,
            "industry": self.industry,
            "plan": self.plan,
            "country": self.country,
            "currency": self.currency,
            "revenue_minor": self.revenue_minor,
            "payments_minor": self.payments_minor,
            "refunds_minor": self.refunds_minor,
            "mrr_minor": self.mrr_minor,
            "devices": self.devices,
            "first_visit_ts": self.first_visit_ts,
            "signup_ts": self.signup_ts,
            "conversion_ts": self.conversion_ts,
            "icp_fit": self.icp_fit,
        }


# ------------------------------------------------------------------------ channel model


@dataclass(frozen=True, slots=True)
class ChannelProfile:
    """How people whose first visit came from this channel behave."""

    traffic: float
    """Share of first visits."""
    signup_rate: float
    """Share of those visitors who sign up."""
    pay_rate: float
    """Share of signups who pay."""
    segments: tuple[float, float, float]
    """Segment mix of signups: SMB, Mid-Market, Enterprise."""
    research_days: float
    """Median days from first visit to signup."""


CHANNEL_PROFILES: dict[str, ChannelProfile] = {
    "Organic Search": ChannelProfile(0.22, 0.10, 0.40, (0.45, 0.46, 0.09), 12),
    "Paid Search": ChannelProfile(0.18, 0.08, 0.35, (0.82, 0.15, 0.03), 20),
    "Paid Social": ChannelProfile(0.12, 0.05, 0.30, (0.85, 0.13, 0.02), 16),
    "Organic Social": ChannelProfile(0.07, 0.06, 0.35, (0.65, 0.30, 0.05), 12),
    "Direct": ChannelProfile(0.12, 0.12, 0.50, (0.45, 0.35, 0.20), 8),
    "Referral": ChannelProfile(0.06, 0.18, 0.60, (0.55, 0.37, 0.08), 3),
    "Email": ChannelProfile(0.06, 0.08, 0.40, (0.60, 0.32, 0.08), 9),
    "AI Assistants": ChannelProfile(0.05, 0.12, 0.45, (0.55, 0.38, 0.07), 6),
    "Display": ChannelProfile(0.07, 0.02, 0.25, (0.85, 0.13, 0.02), 25),
    "Affiliates": ChannelProfile(0.05, 0.07, 0.35, (0.80, 0.17, 0.03), 14),
}
"""Direct stands for events and direct sales too: those visitors type the address in."""

RETURN_VISIT_MIX: dict[str, float] = {
    "Direct": 0.35, "Organic Search": 0.20, "Email": 0.12, "Paid Search": 0.10,
    "Organic Social": 0.06, "Paid Social": 0.05, "Referral": 0.05, "AI Assistants": 0.05,
    "Display": 0.02,
}
"""Channels of later visits before signup (brand search, retargeting, nurture emails)."""

APP_VISIT_MIX: dict[str, float] = {"Direct": 0.75, "Email": 0.25}
"""Logged-in visits to the product: typed in, or from a product email."""

SEARCH_REFERRERS = ("https://www.google.com/", "https://www.google.co.uk/",
                    "https://www.google.de/", "https://www.bing.com/", "https://duckduckgo.com/")
SOCIAL_REFERRERS = ("https://www.linkedin.com/", "https://t.co/", "https://www.reddit.com/",
                    "https://news.ycombinator.com/")
AI_REFERRERS = ("https://chatgpt.com/", "https://www.perplexity.ai/", "https://claude.ai/",
                "https://gemini.google.com/")
PARTNER_REFERRERS = ("https://blog.northwind-partners.com/tools-we-use",
                     "https://www.saasweekly.io/issue-112", "https://www.g2.com/categories/analytics",
                     "https://www.revopsinsider.com/attribution-tools")
CAMPAIGNS = ("brand", "q1-pipeline", "revenue-analytics", "attribution-guide", "webinar-followup")
AFFILIATES = ("partnerstack", "impact", "saas-reviews")
AD_NETWORKS = ("adroll", "stackadapt", "criteo")
CONTENT_PATHS = ("/blog/revenue-attribution", "/blog/first-touch-vs-last-touch",
                 "/blog/saas-metrics", "/guides/ltv-cac", "/features", "/")
MARKETING_PATHS = ("/", "/pricing", "/features", "/features/integrations", "/customers",
                   "/security", "/docs/getting-started", "/blog/saas-metrics", "/about")
APP_PATHS = ("/dashboard", "/reports", "/reports/channels", "/customers", "/settings",
             "/settings/team", "/billing", "/integrations")


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(tuple(weights), tuple(weights.values()))[0]


def _landing(channel: str, rng: random.Random, path: str) -> tuple[str, str | None]:
    """(path with query, referrer) of a visit's first page, as the channel writes it."""
    campaign = rng.choice(CAMPAIGNS)
    if channel == "Organic Search":
        return path, rng.choice(SEARCH_REFERRERS)
    if channel == "Paid Search":
        return rng.choice((
            (f"{path}?utm_source=google&utm_medium=cpc&utm_campaign={campaign}"
             f"&utm_term=revenue+attribution", "https://www.google.com/"),
            (f"{path}?gclid={_token(rng, 24)}", "https://www.google.com/"),
            (f"{path}?utm_source=bing&utm_medium=cpc&utm_campaign={campaign}", None),
            (f"{path}?msclkid={_token(rng, 32)}", "https://www.bing.com/"),
        ))
    if channel == "Paid Social":
        source = rng.choice(("facebook", "linkedin", "instagram"))
        return f"{path}?utm_source={source}&utm_medium=paid_social&utm_campaign={campaign}", None
    if channel == "Organic Social":
        if rng.random() < 0.25:
            return f"{path}?fbclid={_token(rng, 30)}", "https://l.facebook.com/"
        return path, rng.choice(SOCIAL_REFERRERS)
    if channel == "Email":
        return f"{path}?utm_source=newsletter&utm_medium=email&utm_campaign={campaign}", None
    if channel == "Referral":
        return path, rng.choice(PARTNER_REFERRERS)
    if channel == "AI Assistants":
        if rng.random() < 0.5:
            return f"{path}?utm_source=chatgpt.com", "https://chatgpt.com/"
        return path, rng.choice(AI_REFERRERS)
    if channel == "Display":
        medium = rng.choice(("display", "banner"))
        source = rng.choice(AD_NETWORKS)
        return f"{path}?utm_source={source}&utm_medium={medium}&utm_campaign={campaign}", None
    if channel == "Affiliates":
        source = rng.choice(AFFILIATES)
        return f"{path}?utm_source={source}&utm_medium=affiliate&utm_campaign={campaign}", None
    if channel == "Direct":
        return path, None
    raise ValueError(f"the simulator does not write channel {channel!r}")


def landing_page(
    channel: str, rng: random.Random, site: str = MARKETING_SITE
) -> tuple[str, str | None]:
    """(URL, referrer) of the first page of a visit from `channel`: what the pipeline classifies."""
    paths = CONTENT_PATHS if site == MARKETING_SITE else APP_PATHS
    path, referrer = _landing(channel, rng, rng.choice(paths))
    return site + path, referrer


# ------------------------------------------------------------------------ segment model


@dataclass(frozen=True, slots=True)
class SegmentProfile:
    """Company size, price and retention of one segment (monthly odds, at each renewal)."""

    employees: tuple[int, int]
    mrr_usd_median: float
    mrr_usd_sigma: float
    annual_share: float
    plans: tuple[str, ...]
    churn: float
    expansion: float
    contraction: float
    app_visits_per_week: float
    add_on_share: float


SEGMENT_PROFILES: dict[str, SegmentProfile] = {
    SMB: SegmentProfile((2, 99), 130, 0.5, 0.03, ("starter", "team"), 0.035, 0.02, 0.015, 1.0, 0.0),
    MID_MARKET: SegmentProfile((100, 999), 600, 0.45, 0.05, ("business",), 0.015, 0.04, 0.015,
                               2.0, 0.12),
    ENTERPRISE: SegmentProfile((1000, 25000), 2500, 0.5, 0.15, ("enterprise",), 0.005, 0.07,
                               0.01, 3.0, 0.2),
}
SEGMENT_ORDER = (SMB, MID_MARKET, ENTERPRISE)

COUNTRIES: dict[str, tuple[float, str]] = {
    "US": (0.45, "USD"), "GB": (0.15, "GBP"), "DE": (0.10, "EUR"), "FR": (0.08, "EUR"),
    "NL": (0.05, "EUR"), "ES": (0.04, "EUR"), "IE": (0.03, "EUR"), "JP": (0.10, "JPY"),
}
"""Country → (share of signups, currency): a person pays in one currency for life."""

INDUSTRIES = ("Software", "Financial Services", "Healthcare", "Retail", "Manufacturing",
              "Education", "Media", "Logistics", "Professional Services")
COMPANY_WORDS = (("Blue", "Northern", "Bright", "Silver", "Quiet", "Rapid", "Open", "Iron"),
                 ("Harbor", "Peak", "Field", "Signal", "Ledger", "Forge", "Orbit", "Maple"),
                 ("Labs", "Systems", "Group", "Analytics", "Health", "Logistics", "Studio"))
ANNUAL_DISCOUNT = 0.85
REFUND_RATE = 0.03
REACTIVATION_RATE = 0.25


def _token(rng: random.Random, length: int) -> str:
    return f"{rng.getrandbits(4 * length):0{length}x}"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _log_uniform(rng: random.Random, low: int, high: int) -> int:
    return min(high, int(math.exp(rng.uniform(math.log(low), math.log(high + 1)))))


def _add_months(ts: int, months: int) -> int:
    """The same day and time `months` later, on the month's last day when it is shorter."""
    moment = datetime.fromtimestamp(ts / 1000, UTC)
    year, month_index = divmod(moment.month - 1 + months, 12)
    year += moment.year
    day = min(moment.day, calendar.monthrange(year, month_index + 1)[1])
    return int(moment.replace(year=year, month=month_index + 1, day=day).timestamp() * 1000)


def rfc3339(ts: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC with milliseconds (`2025-01-01T00:00:00.000Z`)."""
    moment = datetime.fromtimestamp(ts // 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ts % 1000:03d}Z"


class Prices:
    """List prices in a currency: USD amounts converted with the pipeline's rate table and
    rounded to whole major units (100 yen where there are no minor units)."""

    def __init__(self, currency: str) -> None:
        entry = default_currency_table()[currency]
        self.currency = currency
        self.step = 10**entry.exponent if entry.exponent else 100
        self._minor_per_usd = 10**entry.exponent / float(entry.usd_per_unit)

    def from_usd(self, usd: float) -> int:
        return self.round(usd * self._minor_per_usd)

    def round(self, minor: float) -> int:
        return max(self.step, round(minor / self.step) * self.step)


# ---------------------------------------------------------------------------- households


@dataclass(slots=True)
class _View:
    """What the truth needs of a page view: `marks_visit` when it carries campaign data or an
    external referrer, `channel` the channel it then expresses."""

    ts: int
    device: str
    user_id: str | None
    marks_visit: bool
    channel: str


@dataclass(slots=True)
class _Person:
    first_visit_channel: str
    arrival_ms: int
    devices: list[str]
    user_id: str | None = None
    segment: str | None = None
    traits: dict[str, Any] | None = None
    prices: Prices | None = None
    signup_ts: int | None = None
    conversion_ts: int | None = None
    payments_minor: int = 0
    refunds_minor: int = 0
    mrr_by_subscription: dict[str, int] = field(default_factory=dict)
    ambiguous: bool = False
    icp_fit: bool = False


class _Household:
    """Builds the events of one or two people and knows their truth."""

    def __init__(self, config: SimulationConfig, rng: random.Random, arrival_ms: int) -> None:
        self.config = config
        self.rng = rng
        self.arrival_ms = arrival_ms
        self.end_ms = config.end_ms
        self.events: list[SimEvent] = []
        self.views: list[_View] = []
        self.links: list[tuple[int, str, str]] = []
        self.people: list[_Person] = []

    # -- people

    def add_person(self, arrival_ms: int, primary_device: str,
                   shared_device: str | None = None) -> _Person:
        rng = self.rng
        channel = _pick(rng, {name: p.traffic for name, p in CHANNEL_PROFILES.items()})
        profile = CHANNEL_PROFILES[channel]
        person = _Person(channel, arrival_ms, [primary_device])
        self.people.append(person)
        signs_up = rng.random() < profile.signup_rate
        if signs_up and rng.random() < self.config.multi_device_share:
            person.devices.append(_uuid(rng))
        web_devices = person.devices + ([shared_device] if shared_device else [])
        self._visit(person, primary_device, arrival_ms, channel, MARKETING_SITE)
        if not signs_up:
            returns = rng.choice((0, 0, 1, 2))
            for offset_ms in sorted(rng.randint(HOUR_MS, 21 * DAY_MS) for _ in range(returns)):
                self._visit(person, rng.choice(web_devices), arrival_ms + offset_ms,
                            _pick(rng, RETURN_VISIT_MIX), MARKETING_SITE)
            return person
        research_ms = int(rng.lognormvariate(math.log(profile.research_days), 0.8) * DAY_MS)
        signup_visit_ts = arrival_ms + max(10 * MINUTE_MS, research_ms)
        visits_before = 0
        if research_ms > 2 * HOUR_MS:
            visits_before = min(12, int(research_ms / (3 * DAY_MS))) + rng.randint(0, 2)
        for visit_ts in sorted(rng.randint(arrival_ms + HOUR_MS, max(arrival_ms + HOUR_MS,
                               signup_visit_ts - HOUR_MS)) for _ in range(visits_before)):
            self._visit(person, rng.choice(web_devices), visit_ts, _pick(rng, RETURN_VISIT_MIX),
                        MARKETING_SITE)
        signup_device = rng.choice(web_devices)
        signup_channel = "Direct" if visits_before or research_ms > HOUR_MS else channel
        last_ts = self._visit(person, signup_device, signup_visit_ts, signup_channel,
                              MARKETING_SITE, final_paths=("/pricing", "/signup"))
        if last_ts + MINUTE_MS >= self.end_ms:
            return person
        self._sign_up(person, signup_device, last_ts + rng.randint(20, 90) * SECOND_MS, profile)
        self._after_signup(person, profile, signup_device, web_devices)
        return person

    def _sign_up(self, person: _Person, device: str, ts: int, profile: ChannelProfile) -> None:
        rng = self.rng
        segment = rng.choices(SEGMENT_ORDER, profile.segments)[0]
        segment_profile = SEGMENT_PROFILES[segment]
        country = _pick(rng, {code: share for code, (share, _) in COUNTRIES.items()})
        person.user_id = f"usr_{_token(rng, 12)}"
        person.segment = segment
        person.prices = Prices(COUNTRIES[country][1])
        person.signup_ts = ts
        person.traits = {
            "company": " ".join(rng.choice(words) for words in COMPANY_WORDS),
            "company_size": _log_uniform(rng, *segment_profile.employees),
            "industry": rng.choice(INDUSTRIES),
            "plan": rng.choice(segment_profile.plans),
            "country": country,
        }
        person.icp_fit = self.config.icp.fits(person.traits)
        self.links.append((ts, device, person.user_id))
        value = signup_payload(event_id=_uuid(rng), ts=rfc3339(ts), anonymous_id=device,
                               user_id=person.user_id, traits=person.traits)
        self._emit(ts, "signups", device, value)

    def _after_signup(self, person: _Person, profile: ChannelProfile, signup_device: str,
                      web_devices: list[str]) -> None:
        rng = self.rng
        assert person.signup_ts is not None and person.segment is not None
        segment = SEGMENT_PROFILES[person.segment]
        pay_rate = self.config.icp.pay_rate(profile.pay_rate) if person.icp_fit else \
            profile.pay_rate
        pays = rng.random() < pay_rate
        other_devices = [device for device in web_devices if device != signup_device]
        instant = not other_devices and rng.random() < 0.35
        trial_ms = rng.randint(2, 10) * MINUTE_MS if instant else rng.randint(3, 30) * DAY_MS
        conversion_ts = person.signup_ts + trial_ms
        pays = pays and conversion_ts < self.end_ms
        active_until = self.end_ms if pays else person.signup_ts + rng.randint(3, 30) * DAY_MS
        for device in other_devices:  # each device logs in before the first payment
            login_until = min(conversion_ts, active_until, self.end_ms) - HOUR_MS
            if login_until > person.signup_ts + HOUR_MS:
                self._visit(person, device, rng.randint(person.signup_ts + HOUR_MS, login_until),
                            _pick(rng, APP_VISIT_MIX), APP_SITE, logged_in=True)
        weeks = max(0.0, (min(active_until, self.end_ms) - person.signup_ts) / (7 * DAY_MS))
        for _ in range(int(weeks * segment.app_visits_per_week * rng.uniform(0.5, 1.5))):
            visit_ts = rng.randint(person.signup_ts + HOUR_MS, max(person.signup_ts + HOUR_MS,
                                   min(active_until, self.end_ms) - HOUR_MS))
            self._visit(person, rng.choice(web_devices), visit_ts, _pick(rng, APP_VISIT_MIX),
                        APP_SITE, logged_in=True)
        if pays:
            person.conversion_ts = conversion_ts
            self._billing(person, segment, conversion_ts)

    # -- web

    def _visit(self, person: _Person, device: str, start_ts: int, channel: str, site: str,
               *, logged_in: bool = False, final_paths: tuple[str, ...] = ()) -> int:
        """Emit one visit (a landing page, then internal navigation); returns its last ts."""
        rng = self.rng
        if start_ts >= self.end_ms:
            return start_ts
        user_id = person.user_id if logged_in else None
        url, referrer = landing_page(channel, rng, site)
        self._view(start_ts, device, user_id, url, referrer, channel,
                   marks_visit=channel != "Direct")
        ts = start_ts
        paths = MARKETING_PATHS if site == MARKETING_SITE else APP_PATHS
        navigation = [rng.choice(paths) for _ in range(min(8, int(rng.expovariate(0.6))))]
        for path in navigation + list(final_paths):
            ts += rng.randint(8 * SECOND_MS, 5 * MINUTE_MS)
            if ts >= self.end_ms:
                break
            self._view(ts, device, user_id, site + path, url, "Direct", marks_visit=False)
            url = site + path
        return ts

    def _view(self, ts: int, device: str, user_id: str | None, url: str, referrer: str | None,
              channel: str, *, marks_visit: bool) -> None:
        self.views.append(_View(ts, device, user_id, marks_visit, channel))
        if user_id is not None:
            self.links.append((ts, device, user_id))
        value = page_view_payload(event_id=_uuid(self.rng), ts=ts, anonymous_id=device,
                                  url=url, referrer=referrer, user_id=user_id)
        self._emit(ts, "page_views", device, value)

    # -- billing

    def _billing(self, person: _Person, segment: SegmentProfile, conversion_ts: int) -> None:
        rng = self.rng
        assert person.prices is not None and person.traits is not None
        mrr_usd = rng.lognormvariate(math.log(segment.mrr_usd_median), segment.mrr_usd_sigma)
        mrr = person.prices.from_usd(mrr_usd * (self.config.icp.mrr_factor if person.icp_fit
                                                else 1.0))
        annual = rng.random() < segment.annual_share
        self._subscription(person, segment, person.traits["plan"], mrr, annual, conversion_ts)
        if rng.random() < segment.add_on_share:
            start = conversion_ts + rng.randint(15, 60) * DAY_MS
            add_on_mrr = person.prices.round(mrr * rng.uniform(0.1, 0.3))
            self._subscription(person, segment, "analytics-add-on", add_on_mrr, False, start)

    def _subscription(self, person: _Person, segment: SegmentProfile, plan: str, mrr: int,
                      annual: bool, start_ts: int) -> None:
        """A subscription's life: a payment per term; at each month, maybe an expansion, and at
        each renewal maybe a contraction or churn (likelier after a contraction), and after a
        churn maybe a reactivation."""
        rng = self.rng
        assert person.prices is not None
        if start_ts >= self.end_ms:
            return
        subscription_id = f"sub_{_token(rng, 12)}"
        term_months = 12 if annual else 1
        churn = segment.churn
        anchor, month = start_ts, 0
        self._change(person, start_ts, subscription_id, plan, mrr)
        self._pay(person, start_ts + 2 * SECOND_MS, self._term_amount(person, mrr, annual))
        while True:
            month_start, month_end = _add_months(anchor, month), _add_months(anchor, month + 1)
            moment = rng.randint(month_start + HOUR_MS, month_end - HOUR_MS)
            if moment >= self.end_ms:
                return
            renews = (month + 1) % term_months == 0
            roll = rng.random()
            if renews and roll < churn:
                self._change(person, moment, subscription_id, plan, 0)
                anchor = moment + rng.randint(7, 45) * DAY_MS
                if rng.random() >= REACTIVATION_RATE or anchor >= self.end_ms:
                    return
                mrr = person.prices.round(mrr * rng.uniform(0.8, 1.1))
                churn, month = segment.churn, 0
                self._change(person, anchor, subscription_id, plan, mrr)
                self._pay(person, anchor + 2 * SECOND_MS, self._term_amount(person, mrr, annual))
                continue
            roll -= churn
            if 0 <= roll < segment.expansion:
                expanded = person.prices.round(mrr * rng.uniform(1.1, 1.7))
                self._change(person, moment, subscription_id, plan, expanded)
                months_left = term_months - 1 - month % term_months
                if annual and months_left:
                    self._pay(person, moment + 2 * SECOND_MS, (expanded - mrr) * months_left)
                mrr = expanded
            elif renews and 0 <= roll - segment.expansion < segment.contraction:
                contracted = person.prices.round(mrr * rng.uniform(0.55, 0.9))
                if contracted < mrr:
                    self._change(person, moment, subscription_id, plan, contracted)
                    mrr, churn = contracted, segment.churn * 3
            month += 1
            if renews:
                renewal = _add_months(anchor, month)
                if renewal >= self.end_ms:
                    return
                self._pay(person, renewal, self._term_amount(person, mrr, annual))

    @staticmethod
    def _term_amount(person: _Person, mrr: int, annual: bool) -> int:
        assert person.prices is not None
        return person.prices.round(mrr * 12 * ANNUAL_DISCOUNT) if annual else mrr

    def _change(self, person: _Person, ts: int, subscription_id: str, plan: str,
                mrr: int) -> None:
        assert person.user_id is not None and person.prices is not None
        person.mrr_by_subscription[subscription_id] = mrr
        value = subscription_change_payload(
            event_id=_uuid(self.rng), ts=ts, user_id=person.user_id,
            subscription_id=subscription_id, plan=plan, mrr_minor=mrr,
            currency=person.prices.currency)
        self._emit(ts, "billing", person.user_id, value)

    def _pay(self, person: _Person, ts: int, amount: int) -> None:
        """A payment, and with `REFUND_RATE` a full or one or two partial refunds of it."""
        assert person.user_id is not None and person.prices is not None
        rng = self.rng
        if ts >= self.end_ms:
            return
        payment_id = _uuid(rng)
        currency = person.prices.currency
        self._emit(ts, "billing", person.user_id, payment_payload(
            event_id=payment_id, ts=ts, user_id=person.user_id, amount_minor=amount,
            currency=currency))
        person.payments_minor += amount
        if rng.random() >= REFUND_RATE:
            return
        if rng.random() < 0.4:
            refunds = [amount]
        else:
            refunds = [max(1, int(amount * rng.uniform(0.1, 0.5)))
                       for _ in range(rng.choice((1, 1, 1, 2)))]
        refund_ts, refundable = ts, amount
        for refund in refunds:
            refund_ts += rng.randint(2 * HOUR_MS, 20 * DAY_MS)
            refund = min(refund, refundable)
            if refund_ts >= self.end_ms or refund <= 0:
                return
            self._emit(refund_ts, "billing", person.user_id, refund_payload(
                event_id=_uuid(rng), ts=refund_ts, user_id=person.user_id, amount_minor=refund,
                currency=currency, refund_of=payment_id))
            person.refunds_minor += refund
            refundable -= refund

    def _emit(self, ts: int, kind: TopicKind, key: str, value: dict[str, Any]) -> None:
        self.events.append(SimEvent(ts, getattr(self.config.topics, kind), key, value))

    # -- truth

    def truths(self) -> list[PersonTruth]:
        """Each person's truth, acquisition channels by the pipeline's rules (module doc)."""
        touches = self._touches()
        lookback_ms = self.config.lookback_days * DAY_MS
        result = []
        for person in self.people:
            channel = None
            if person.conversion_ts is not None:
                journey = [t for t in touches if t[1] == person.user_id
                           and person.conversion_ts - lookback_ms <= t[0] <= person.conversion_ts]
                channel = min(journey)[2] if journey else "Unattributed"
            traits = person.traits or {}
            result.append(PersonTruth(
                user_id=person.user_id, first_visit_channel=person.first_visit_channel,
                acquisition_channel=channel, ambiguous=person.ambiguous,
                segment=person.segment, company_size=traits.get("company_size"),
                industry=traits.get("industry"), plan=traits.get("plan"),
                country=traits.get("country"),
                currency=person.prices.currency if person.prices else None,
                devices=len(person.devices), first_visit_ts=person.arrival_ms,
                signup_ts=person.signup_ts, conversion_ts=person.conversion_ts,
                payments_minor=person.payments_minor, refunds_minor=person.refunds_minor,
                mrr_minor=sum(person.mrr_by_subscription.values()), icp_fit=person.icp_fit))
        return result

    def _touches(self) -> list[tuple[int, str, str]]:
        """(ts, owner user id, channel) of every stitched touchpoint of the household.

        A view starts a visit when it is its device's first, marks a visit itself, or comes
        `session_timeout_ms` after the device's previous view; a logged-in view belongs to its
        user, an anonymous one to the person most recently linked to the device at its time,
        else to the first person ever linked to it, else to nobody."""
        links: dict[str, list[tuple[int, str]]] = {}
        for ts, device, user_id in sorted(self.links):
            links.setdefault(device, []).append((ts, user_id))
        previous: dict[str, int] = {}
        touches = []
        for view in sorted(self.views, key=lambda v: v.ts):
            before = previous.get(view.device)
            previous[view.device] = view.ts
            starts = (before is None or view.marks_visit
                      or view.ts - before >= self.config.session_timeout_ms)
            owner = view.user_id or _owner_at(links.get(view.device, []), view.ts)
            if starts and owner is not None:
                touches.append((view.ts, owner, view.channel if view.marks_visit else "Direct"))
        return touches


def _owner_at(links: list[tuple[int, str]], ts: int) -> str | None:
    owner = links[0][1] if links else None
    for link_ts, user_id in links:
        if link_ts > ts:
            break
        owner = user_id
    return owner


# ------------------------------------------------------------------------------ defects

DEFECTS: dict[TopicKind, tuple[str, ...]] = {
    "page_views": ("bad_json", "missing_field", "wrong_type", "ts_out_of_range", "duplicate"),
    "signups": ("bad_json", "missing_field", "wrong_type", "junk_user_id", "ts_out_of_range",
                "duplicate"),
    "billing": ("bad_json", "missing_field", "wrong_type", "non_positive_amount",
                "unknown_currency", "junk_user_id", "unknown_refund", "ts_out_of_range",
                "duplicate"),
}
"""What can go wrong per topic. All but `duplicate` must be dead-lettered by the pipeline."""

JUNK_USER_IDS = ("", "0", "-1", "null", "undefined", "anonymous",
                 "00000000-0000-0000-0000-000000000000")
_REQUIRED = {"page_view/1": ("event_id", "ts", "anonymous_id", "url"),
             "signup/1": ("event_id", "ts", "anonymous_id", "user_id"),
             "payment": ("event_id", "ts", "user_id", "amount_minor", "currency"),
             "refund": ("event_id", "user_id", "amount_minor", "currency", "refund_of"),
             "subscription_change": ("event_id", "ts", "user_id", "subscription_id", "mrr_minor")}
_WRONG_TYPES = {"page_view/1": {"anonymous_id": 12345, "url": 42, "ts": "yesterday"},
                "signup/1": {"user_id": 1042, "traits": "large company", "ts": "last week"},
                "payment": {"amount_minor": "49.00", "ts": "1/2/2025"},
                "refund": {"amount_minor": 12.5, "refund_of": 7},
                "subscription_change": {"mrr_minor": "99", "subscription_id": None}}
_OUT_OF_RANGE_TS = (86_400_000, 4_102_444_800_000)
"""1970-01-02 and 2100-01-01: outside any sane acceptance window."""


def _defective(event: SimEvent, kind: TopicKind, rng: random.Random) -> SimEvent:
    """A defective sibling of a well-formed event, a little later in the stream."""
    assert event.value is not None
    defect = rng.choice(DEFECTS[kind])
    if defect == "duplicate":
        later = event.ts + rng.randint(SECOND_MS, 6 * HOUR_MS)
        return SimEvent(later, event.topic, event.key, event.value, defect=defect)
    value = dict(event.value, event_id=_uuid(rng))
    rule = value["schema"] if kind != "billing" else value["kind"]
    key = event.key
    if defect == "missing_field":
        del value[rng.choice(_REQUIRED[rule])]
    elif defect == "wrong_type":
        name, wrong = rng.choice(tuple(_WRONG_TYPES[rule].items()))
        value[name] = wrong
    elif defect == "ts_out_of_range":
        value["ts"] = rng.choice(_OUT_OF_RANGE_TS)
    elif defect == "junk_user_id":
        value["user_id"] = rng.choice(JUNK_USER_IDS)
        key = value["user_id"] if kind == "billing" else key
    elif defect == "non_positive_amount":
        field_name = "mrr_minor" if rule == "subscription_change" else "amount_minor"
        value[field_name] = -abs(value[field_name]) if rng.random() < 0.7 else 0
        if field_name == "mrr_minor" and value[field_name] == 0:
            value[field_name] = -1
    elif defect == "unknown_currency":
        value["currency"] = rng.choice(("ZZZ", "QQQ", "usd", "EURO"))
    elif defect == "unknown_refund":
        value = refund_payload(event_id=value["event_id"], ts=value["ts"],
                               user_id=value["user_id"], amount_minor=100,
                               currency=value["currency"], refund_of=_uuid(rng))
    raw = orjson.dumps(value).decode()
    if defect == "bad_json":
        raw = raw[: rng.randint(1, len(raw) - 1)]
    return SimEvent(event.ts + rng.randint(1, 5 * SECOND_MS), event.topic, key, raw=raw,
                    defect=defect)


def _with_defects(events: list[SimEvent], share: float, rng: random.Random) -> list[SimEvent]:
    """Add a defective sibling to each event with odds `share / (1 - share)`, so that defects
    make up `share` of the output."""
    if share <= 0:
        return events
    odds = share / (1 - share)
    extra = [_defective(event, kind_of_payload(event.value), rng)
             for event in events if event.value is not None and rng.random() < odds]
    return events + extra


# ----------------------------------------------------------------------------- population


@dataclass(frozen=True, slots=True)
class Household:
    """A household's arrival (no event of it is earlier), its events, and its people's truth."""

    arrival_ms: int
    events: list[SimEvent]
    people: list[PersonTruth]


def households(config: SimulationConfig, rng: random.Random) -> Iterator[Household]:
    """Households in arrival order; `config.people` people in all. Person slots are spread
    evenly (with jitter) over the period; a shared-device household takes two slots."""
    span_ms = config.end_ms - config.start_ms
    slot = 0
    while slot < config.people:
        arrival = config.start_ms + int((slot + rng.random()) * span_ms / config.people)
        household_rng = random.Random(rng.getrandbits(64))
        household = _Household(config, household_rng, arrival)
        shared = slot + 1 < config.people and household_rng.random() < config.shared_device_share
        first_device = _uuid(household_rng)
        first = household.add_person(arrival, first_device)
        if shared:
            second_arrival = arrival + household_rng.randint(HOUR_MS, 10 * DAY_MS)
            second = household.add_person(second_arrival, _uuid(household_rng), first_device)
            first.ambiguous = second.ambiguous = True
        slot += 2 if shared else 1
        events = _with_defects(household.events, config.malformed_share, household_rng)
        yield Household(arrival, events, household.truths())
