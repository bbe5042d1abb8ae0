"""Touchpoints: which page views start a visit, and where each visit came from (DESIGN.md §4, §10).

Runs for every page view, so each view's URL and referrer are parsed once (`_read`) and the
decisions below share that reading. Malformed URLs and referrers read as absent: they never raise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from processors.channels import ChannelConfig, classify
from processors.touch import Touch
from processors.urls import is_same_or_under, normalise_domain, query_values, split_url
from schemas.events import Campaign, PageView

DIRECT = ("(direct)", "(none)")
NOT_SET = "(not set)"

CLICK_IDS: tuple[tuple[str, str, str], ...] = (
    ("gclid", "google", "cpc"),
    ("gbraid", "google", "cpc"),
    ("wbraid", "google", "cpc"),
    ("dclid", "dv360", "cpm"),
    ("msclkid", "bing", "cpc"),
    ("fbclid", "facebook", "social"),
    ("ttclid", "tiktok", "cpc"),
    ("li_fat_id", "linkedin", "cpc"),
    ("twclid", "twitter", "cpc"),
    ("yclid", "yandex", "cpc"),
)
"""Query parameter → (source, medium) of ad-platform click ids, the first present wins.

Google's gclid and its iOS variants gbraid / wbraid are Google Ads (Paid Search); dclid comes
from Display & Video 360 / Campaign Manager (Display); fbclid marks organic posts too, so it is
social, not paid.
"""

REFERRER_MEDIUMS: Mapping[str, str] = {"ai": "referral", "search": "organic", "social": "social"}
"""Medium of a referral by the referrer's source list; any other external site is `referral`."""

_CAMPAIGN_OVERRIDES = (("source", "source"), ("medium", "medium"), ("name", "campaign"))
"""`campaign` object field → the utm field it overrides (`name` ↔ `utm_campaign`)."""


@dataclass(frozen=True, slots=True)
class _Reading:
    """What the rules read from one page view."""

    page_host: str | None
    referrer_host: str | None
    params: Mapping[str, str]
    campaign: Campaign | None


def _read(view: PageView) -> _Reading:
    return _read_parts(view.url, view.referrer, view.campaign)


def _read_parts(url: str, referrer: str | None, campaign: Campaign | None) -> _Reading:
    page = split_url(url)
    return _Reading(
        page_host=page.host,
        referrer_host=split_url(referrer).host,
        params=query_values(page.query) if page.query else {},
        campaign=campaign,
    )


def _trimmed(value: str | None) -> str | None:
    return (value.strip() or None) if value else None


def _has_campaign_data(reading: _Reading) -> bool:
    """Any non-empty `utm_*` parameter, click id, or `campaign` object field."""
    params = reading.params
    if any(name.startswith("utm_") for name in params):
        return True
    if any(click_id in params for click_id, _, _ in CLICK_IDS):
        return True
    campaign = reading.campaign
    if campaign is None:
        return False
    fields = (campaign.source, campaign.medium, campaign.name, campaign.term, campaign.content)
    return any(_trimmed(value) for value in fields)


def _is_external_host(
    referrer_host: str | None, page_host: str | None, own_domains: Iterable[str]
) -> bool:
    if referrer_host is None or referrer_host == page_host:
        return False
    return not any(is_same_or_under(referrer_host, domain) for domain in own_domains)


def is_external_referrer(referrer: str | None, page_url: str, own_domains: Iterable[str]) -> bool:
    """The referrer's host is neither the page's host nor an own domain or a sub-domain of one.

    Hosts compare case-insensitively without port, so a sibling sub-domain (`blog.example.com`
    for a page on `app.example.com`) is external unless `example.com` is an own domain. A
    referrer without a readable host is not external.
    """
    return _is_external_host(
        split_url(referrer).host,
        split_url(page_url).host,
        [normalise_domain(domain) for domain in own_domains],
    )


def _starts_visit(
    reading: _Reading, ts: int, previous_view_ts: int | None, config: ChannelConfig
) -> bool:
    return (
        previous_view_ts is None
        or ts - previous_view_ts >= config.session_timeout_ms
        or _has_campaign_data(reading)
        or _is_external_host(reading.referrer_host, reading.page_host, config.own_domains)
    )


def starts_visit(view: PageView, previous_view_ts: int | None, config: ChannelConfig) -> bool:
    """A view starts a visit when it is the device's first (`previous_view_ts` None), carries
    campaign data, has an external referrer, or comes `session_timeout_ms` or more after the
    device's previous view (exactly 30:00.000 does). A view older than the previous one (out of
    order) does not start a visit by time."""
    return _starts_visit(_read(view), view.ts, previous_view_ts, config)


def _campaign_data(reading: _Reading, config: ChannelConfig) -> tuple[str, str, str | None]:
    utm = {name: reading.params.get(f"utm_{name}") for name in ("source", "medium", "campaign")}
    if reading.campaign is not None:
        for attribute, name in _CAMPAIGN_OVERRIDES:
            override = _trimmed(getattr(reading.campaign, attribute))
            if override:
                utm[name] = override
    campaign = utm["campaign"]
    if utm["source"] or utm["medium"]:
        return utm["source"] or NOT_SET, utm["medium"] or NOT_SET, campaign
    for click_id, source, medium in CLICK_IDS:
        if click_id in reading.params:
            return source, medium, campaign
    if _is_external_host(reading.referrer_host, reading.page_host, config.own_domains):
        return (*_referrer_source(reading.referrer_host, config), campaign)
    return (*DIRECT, campaign)


def _referrer_source(host: str, config: ChannelConfig) -> tuple[str, str]:
    """A listed site gives its canonical name and its list's medium; any other site its host."""
    known = config.sources.find_host(host)
    if known is None:
        return host.removeprefix("www."), "referral"
    return known.name, REFERRER_MEDIUMS.get(known.category, "referral")


def campaign_data(view: PageView, config: ChannelConfig) -> tuple[str, str, str | None]:
    """(source, medium, campaign) of a view, by precedence:

    1. UTM source / medium (the `campaign` object's non-empty fields override the URL's); when
       only one is present the other is `(not set)`;
    2. else the first click id of `CLICK_IDS`;
    3. else an external referrer: a listed site by its canonical name and list medium, any other
       by its host without a leading `www.`, medium `referral`;
    4. else `(direct)` / `(none)`.

    The campaign is `utm_campaign` (or the object's `name`) whatever supplies source and medium,
    None when absent. Values are kept as sent, trimmed.
    """
    return _campaign_data(_read(view), config)


VISITS_CACHED = 4096
"""Origins of visits kept (`_origin`): a site has few landing pages, referrers and campaigns,
and every page view of a device is read twice (on its own, then after the previous view)."""


@lru_cache(maxsize=VISITS_CACHED)
def _origin(url: str, referrer: str | None, campaign: Campaign | None, config: ChannelConfig
            ) -> tuple[bool, str, str, str | None, str]:
    """(starts a visit whatever came before, source, medium, campaign, channel): all a touch
    takes from its view besides its identity and time."""
    reading = _read_parts(url, referrer, campaign)
    intrinsic = _has_campaign_data(reading) or _is_external_host(
        reading.referrer_host, reading.page_host, config.own_domains)
    source, medium, name = _campaign_data(reading, config)
    return intrinsic, source, medium, name, classify(source, medium, name, config)


def detect_touch(
    view: PageView, previous_view_ts: int | None, config: ChannelConfig
) -> Touch | None:
    """The view's touchpoint, classified, if it starts a visit (`starts_visit`); else None.

    `previous_view_ts` is the event time of the previous page view of the same anonymous id,
    whoever viewed it (visits are per device), None for the device's first view.
    """
    intrinsic, source, medium, campaign, channel = _origin(view.url, view.referrer,
                                                            view.campaign, config)
    if not (previous_view_ts is None or view.ts - previous_view_ts >= config.session_timeout_ms
            or intrinsic):
        return None
    return Touch(
        event_id=view.event_id,
        ts=view.ts,
        anonymous_id=view.anonymous_id,
        channel=channel,
        source=source,
        medium=medium,
        campaign=campaign,
    )
