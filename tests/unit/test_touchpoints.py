from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.channels import ChannelConfig, channel_names, default_channel_config, parse_rules
from processors.touch import Touch
from processors.touchpoints import (
    campaign_data,
    detect_touch,
    is_external_referrer,
    starts_visit,
)
from schemas.events import Campaign, PageView

CONFIG = default_channel_config()
OWN = ChannelConfig(own_domains=("example.com",))
PAGE = "https://app.example.com/pricing"
MINUTE = 60_000


def view(
    url: str = PAGE,
    referrer: str | None = None,
    campaign: Campaign | None = None,
    ts: int = 10 * 60 * MINUTE,
) -> PageView:
    return PageView("pv-1", ts, "anon-1", None, url, referrer, campaign)


DIRECT = ("(direct)", "(none)", None)
GOOGLE_CPC = ("google", "cpc", None)

# (case, query string of the page, referrer, campaign object, expected (source, medium, campaign))
CAMPAIGN_CASES = [
    (
        "utm",
        "utm_source=Google&utm_medium=CPC&utm_campaign=Brand",
        None,
        None,
        ("Google", "CPC", "Brand"),
    ),
    (
        "utm values are trimmed",
        "utm_source=+news+&utm_medium=%20email",
        None,
        None,
        ("news", "email", None),
    ),
    ("missing medium", "utm_source=newsletter", None, None, ("newsletter", "(not set)", None)),
    ("missing source", "utm_medium=email", None, None, ("(not set)", "email", None)),
    ("empty utm values are absent", "utm_source=&utm_medium=++", None, None, DIRECT),
    (
        "first non-empty value wins",
        "utm_source=&utm_source=a&utm_source=b",
        None,
        None,
        ("a", "(not set)", None),
    ),
    ("utm names are exact", "UTM_SOURCE=google", None, None, DIRECT),
    (
        "utm ahead of click id",
        "utm_source=bing&utm_medium=cpc&gclid=x",
        None,
        None,
        ("bing", "cpc", None),
    ),
    ("gclid", "gclid=abc", None, None, GOOGLE_CPC),
    ("gbraid", "gbraid=abc", None, None, GOOGLE_CPC),
    ("wbraid", "wbraid=abc", None, None, GOOGLE_CPC),
    ("dclid", "dclid=abc", None, None, ("dv360", "cpm", None)),
    ("msclkid", "msclkid=abc", None, None, ("bing", "cpc", None)),
    ("fbclid", "fbclid=abc", None, None, ("facebook", "social", None)),
    ("ttclid", "ttclid=abc", None, None, ("tiktok", "cpc", None)),
    ("li_fat_id", "li_fat_id=abc", None, None, ("linkedin", "cpc", None)),
    ("twclid", "twclid=abc", None, None, ("twitter", "cpc", None)),
    ("yclid", "yclid=abc", None, None, ("yandex", "cpc", None)),
    ("gclid ahead of fbclid", "fbclid=a&gclid=b", None, None, GOOGLE_CPC),
    ("click id keeps utm_campaign", "gclid=a&utm_campaign=q3", None, None, ("google", "cpc", "q3")),
    (
        "click id ahead of referrer",
        "msclkid=abc",
        "https://www.google.com/",
        None,
        ("bing", "cpc", None),
    ),
    (
        "referrer keeps utm_campaign",
        "utm_campaign=launch",
        "https://news.site.org/a",
        None,
        ("news.site.org", "referral", "launch"),
    ),
    (
        "object overrides the url",
        "utm_source=a&utm_medium=b&utm_campaign=c",
        None,
        Campaign(source="newsletter", medium=" email ", name="spring"),
        ("newsletter", "email", "spring"),
    ),
    (
        "empty object fields do not override",
        "utm_source=a&utm_medium=b&utm_campaign=c",
        None,
        Campaign(source="", medium="  ", name=None),
        ("a", "b", "c"),
    ),
    ("object source alone", "", None, Campaign(source="podcast"), ("podcast", "(not set)", None)),
    ("object name is the campaign", "gclid=x", None, Campaign(name="q3"), ("google", "cpc", "q3")),
    ("ai assistant referrer", "", "https://chatgpt.com/", None, ("chatgpt", "referral", None)),
    (
        "gemini is not google search",
        "",
        "https://gemini.google.com/app",
        None,
        ("gemini", "referral", None),
    ),
    (
        "search engine referrer",
        "",
        "https://www.google.co.uk/search?q=x",
        None,
        ("google", "organic", None),
    ),
    (
        "social network referrer",
        "",
        "https://l.facebook.com/l.php",
        None,
        ("facebook", "social", None),
    ),
    (
        "video site referrer",
        "",
        "https://www.youtube.com/watch",
        None,
        ("youtube", "referral", None),
    ),
    (
        "shopping site referrer",
        "",
        "https://www.amazon.de/dp/1",
        None,
        ("amazon", "referral", None),
    ),
    (
        "unknown site by host without www",
        "",
        "https://WWW.Blog.Example.org:8443/post",
        None,
        ("blog.example.org", "referral", None),
    ),
    ("same-host referrer is direct", "", "https://app.example.com/home", None, DIRECT),
    ("no referrer is direct", "", None, None, DIRECT),
    ("unreadable referrer is direct", "", "http://[::1", None, DIRECT),
    ("referrer without a host is direct", "", "not a url", None, DIRECT),
]


@pytest.mark.parametrize(
    ("query", "referrer", "campaign", "expected"),
    [case[1:] for case in CAMPAIGN_CASES],
    ids=[case[0] for case in CAMPAIGN_CASES],
)
def test_campaign_data_follows_utm_then_click_ids_then_referrer(
    query, referrer, campaign, expected
):
    page_view = view(f"{PAGE}?{query}" if query else PAGE, referrer, campaign)
    assert campaign_data(page_view, CONFIG) == expected


def test_an_unreadable_page_url_still_reads_the_referrer():
    page_view = view("http://[oops?utm_source=x", "https://bing.com/")
    assert campaign_data(page_view, CONFIG) == ("bing", "organic", None)


def test_a_referrer_from_an_own_domain_is_direct():
    own_referrer = view(PAGE, "https://www.example.com/blog")
    assert campaign_data(own_referrer, OWN) == ("(direct)", "(none)", None)
    assert campaign_data(own_referrer, CONFIG) == ("example.com", "referral", None)


# (case, referrer, page url, own domains, external?)
REFERRER_CASES = [
    ("other site", "https://news.org/", PAGE, (), True),
    ("same host", "https://app.example.com/a", PAGE, (), False),
    ("host is case-insensitive", "https://APP.Example.COM/a", PAGE, (), False),
    ("port is dropped", "http://app.example.com:8080/a", PAGE, (), False),
    ("sibling sub-domain is external", "https://blog.example.com/", PAGE, (), True),
    ("parent domain is external", "https://example.com/", PAGE, (), True),
    ("sibling under an own domain", "https://blog.example.com/", PAGE, ("example.com",), False),
    ("own domain itself", "https://example.com/", PAGE, ("Example.com",), False),
    ("other own domain", "https://www.example.net/", PAGE, ("example.com", "example.net"), False),
    ("lookalike of an own domain", "https://badexample.com/", PAGE, ("example.com",), True),
    ("no referrer", None, PAGE, (), False),
    ("empty referrer", "", PAGE, (), False),
    ("referrer without host", "/relative/path", PAGE, (), False),
    ("unreadable page url", "https://news.org/", "http://[bad", (), True),
]


@pytest.mark.parametrize(
    ("referrer", "page_url", "own_domains", "expected"),
    [case[1:] for case in REFERRER_CASES],
    ids=[case[0] for case in REFERRER_CASES],
)
def test_is_external_referrer(referrer, page_url, own_domains, expected):
    assert is_external_referrer(referrer, page_url, own_domains) is expected


# (case, view, previous view ts, starts a visit?)
TS = view().ts
VISIT_CASES = [
    ("first view of the device", view(), None, True),
    ("navigation inside a visit", view(), TS - MINUTE, False),
    ("exactly 30:00.000 later", view(), TS - 30 * MINUTE, True),
    ("29:59.999 later", view(), TS - 30 * MINUTE + 1, False),
    ("out of order view", view(), TS + MINUTE, False),
    ("utm parameter", view(PAGE + "?utm_content=hero"), TS - MINUTE, True),
    ("empty utm parameter", view(PAGE + "?utm_source="), TS - MINUTE, False),
    ("click id", view(PAGE + "?fbclid=x"), TS - MINUTE, True),
    ("campaign object", view(campaign=Campaign(term="crm")), TS - MINUTE, True),
    ("empty campaign object", view(campaign=Campaign(source=" ")), TS - MINUTE, False),
    ("external referrer", view(referrer="https://news.org/"), TS - MINUTE, True),
    ("internal referrer", view(referrer=PAGE), TS - MINUTE, False),
]


@pytest.mark.parametrize(
    ("page_view", "previous_view_ts", "expected"),
    [case[1:] for case in VISIT_CASES],
    ids=[case[0] for case in VISIT_CASES],
)
def test_starts_visit(page_view, previous_view_ts, expected):
    assert starts_visit(page_view, previous_view_ts, CONFIG) is expected


def test_session_timeout_is_configurable():
    short = ChannelConfig(session_timeout_ms=5 * MINUTE)
    assert starts_visit(view(), TS - 5 * MINUTE, short)
    assert not starts_visit(view(), TS - 5 * MINUTE, CONFIG)


def test_own_domain_referrer_does_not_start_a_visit():
    sibling = view(referrer="https://www.example.com/")
    assert starts_visit(sibling, TS - MINUTE, CONFIG)
    assert not starts_visit(sibling, TS - MINUTE, OWN)


def test_detect_touch_classifies_the_visit_start():
    page_view = view(PAGE + "?utm_source=google&utm_medium=cpc&utm_campaign=brand")
    assert detect_touch(page_view, None, CONFIG) == Touch(
        event_id="pv-1",
        ts=TS,
        anonymous_id="anon-1",
        channel="Paid Search",
        source="google",
        medium="cpc",
        campaign="brand",
    )


@pytest.mark.parametrize(
    ("referrer", "channel"),
    [
        (None, "Direct"),
        ("https://chatgpt.com/", "AI Assistants"),
        ("https://www.bing.com/search", "Organic Search"),
        ("https://www.linkedin.com/feed", "Organic Social"),
        ("https://vimeo.com/1", "Organic Video"),
        ("https://www.etsy.com/", "Organic Shopping"),
        ("https://news.org/", "Referral"),
    ],
)
def test_referrer_classes_reach_their_channels(referrer, channel):
    touch = detect_touch(view(referrer=referrer), None, CONFIG)
    assert touch is not None and touch.channel == channel


def test_navigation_is_not_a_touch():
    assert detect_touch(view(referrer=PAGE), TS - MINUTE, CONFIG) is None


def test_a_timed_out_visit_without_referrer_is_direct():
    touch = detect_touch(view(), TS - 45 * MINUTE, CONFIG)
    assert touch is not None and (touch.channel, touch.source) == ("Direct", "(direct)")


_URLISH = st.one_of(
    st.none(),
    st.text(max_size=80),
    st.builds(
        lambda scheme, host, rest: f"{scheme}://{host}{rest}",
        st.sampled_from(["http", "https", "android-app", ""]),
        st.text(alphabet="[]:@.%-_aAzZ09 \t\u0130\uff0e", max_size=30),
        st.text(max_size=40),
    ),
)


@given(url=_URLISH, referrer=_URLISH, previous=st.one_of(st.none(), st.integers()))
def test_detect_touch_never_raises_on_arbitrary_urls(url, referrer, previous):
    page_view = view(url or "", referrer)
    touch = detect_touch(page_view, previous, OWN)
    assert touch is None or touch.channel in channel_names(OWN)
    if previous is None:
        assert touch is not None


def test_the_documented_partner_example():
    partners = ChannelConfig(
        own_domains=("example.com",),
        custom_rules=parse_rules(
            {
                "version": 1,
                "rules": [
                    {
                        "channel": "Partners",
                        "match": {"source": "^partner-", "medium": "^referral$"},
                    }
                ],
            }
        ),
    )
    tagged = view(
        "https://app.example.com/signup"
        "?utm_source=partner-acme&utm_medium=referral&utm_campaign=q3-webinar",
        "https://acme.io/blog",
    )
    touch = detect_touch(tagged, TS - MINUTE, partners)
    assert touch is not None
    assert (touch.channel, touch.source, touch.medium, touch.campaign) == (
        "Partners",
        "partner-acme",
        "referral",
        "q3-webinar",
    )
    untagged = detect_touch(view(referrer="https://acme.io/blog"), TS - MINUTE, partners)
    assert untagged is not None and (untagged.channel, untagged.source) == ("Referral", "acme.io")
