from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.channels import (
    CHANNELS,
    DEFAULT_RULES,
    SOURCE_LIST_FILES,
    UNATTRIBUTED,
    ChannelConfig,
    KnownSource,
    channel_names,
    classify,
    default_channel_config,
    index_source_lists,
    load_source_lists,
    parse_rules,
    parse_source_list,
)

CONFIG = default_channel_config()

# (rule, source, medium, campaign, expected channel)
CHANNEL_CASES = [
    ("1 direct", "(direct)", "(none)", None, "Direct"),
    ("1 direct, medium not set", "(direct)", "(not set)", None, "Direct"),
    ("1 direct is case-insensitive", "(DIRECT)", "(None)", None, "Direct"),
    ("2 cross-network", "google", "cpc", "pmax-cross-network-q3", "Cross-network"),
    ("3 paid shopping by source", "amazon", "cpc", None, "Paid Shopping"),
    ("3 paid shopping by campaign", "newsletter-co", "ppc", "black-friday-shop", "Paid Shopping"),
    ("3 paid shopping, e-shop campaign", "partner", "paid_social", "eshop", "Paid Shopping"),
    ("3 paid shopping, shopify", "shopify", "cpc", None, "Paid Shopping"),
    ("4 paid search", "google", "cpc", "brand", "Paid Search"),
    ("4 paid search by host source", "www.bing.com", "ppc", None, "Paid Search"),
    ("5 paid social", "facebook", "paid-social", None, "Paid Social"),
    ("5 paid social, retargeting", "linkedin", "retargeting", None, "Paid Social"),
    ("6 paid video", "youtube", "cpv", None, "Paid Video"),
    ("7 display", "dv360", "cpm", None, "Display"),
    ("7 display, banner", "adnetwork", "banner", None, "Display"),
    ("8 paid other", "some-network", "cpc", None, "Paid Other"),
    ("8 paid other, AI source paid", "chatgpt", "cpc", None, "Paid Other"),
    ("9 organic shopping by source", "ebay", "referral", None, "Organic Shopping"),
    ("9 organic shopping by campaign", "partner", "link", "summer shopping", "Organic Shopping"),
    ("9 shopify app store is shopping", "apps.shopify.com", "referral", None, "Organic Shopping"),
    ("10 organic social by source", "twitter", "social", None, "Organic Social"),
    ("10 organic social by medium", "forum", "social media", None, "Organic Social"),
    ("10 organic social, sm", "forum", "sm", None, "Organic Social"),
    ("10 quora is social", "quora", "referral", None, "Organic Social"),
    ("10 slack is social", "slack", "(not set)", None, "Organic Social"),
    ("10 product hunt is social", "producthunt", "referral", None, "Organic Social"),
    ("10 hacker news is social", "news.ycombinator.com", "referral", None, "Organic Social"),
    ("5 paid social, quora", "quora", "cpc", None, "Paid Social"),
    ("11 organic video by source", "vimeo", "referral", None, "Organic Video"),
    ("11 organic video by medium", "webinar-platform", "video-embed", None, "Organic Video"),
    ("11½ AI by name", "chatgpt", "referral", None, "AI Assistants"),
    ("11½ AI by utm host", "chatgpt.com", "(not set)", None, "AI Assistants"),
    ("11½ gemini is AI, not search", "gemini.google.com", "referral", None, "AI Assistants"),
    ("11½ AI ahead of organic medium", "perplexity", "organic", None, "AI Assistants"),
    ("12 organic search by source", "google", "organic", None, "Organic Search"),
    ("12 organic search, country domain", "www.google.co.uk", "referral", None, "Organic Search"),
    ("12 organic search by medium", "unknown-engine", "organic", None, "Organic Search"),
    ("13 referral", "news.example.org", "referral", None, "Referral"),
    ("13 referral, app", "partner", "app", None, "Referral"),
    ("13 referral, link", "partner", "link", None, "Referral"),
    ("14 email by medium", "newsletter", "email", "spring", "Email"),
    ("14 email by source", "e-mail", "(not set)", None, "Email"),
    ("14 email, e mail", "crm", "e mail", None, "Email"),
    ("15 affiliates", "partner", "affiliate", None, "Affiliates"),
    ("16 audio", "podcast", "audio", None, "Audio"),
    ("17 sms by source", "sms", "(not set)", None, "SMS"),
    ("17 sms by medium", "twilio", "SMS", None, "SMS"),
    ("18 push by medium suffix", "app", "web-push", None, "Mobile Push Notifications"),
    ("18 push by mobile", "app", "mobile-banner", None, "Mobile Push Notifications"),
    ("18 push by notification", "app", "notification", None, "Mobile Push Notifications"),
    ("18 push by firebase", "firebase", "(not set)", None, "Mobile Push Notifications"),
    ("19 unassigned", "newsletter", "(not set)", None, "Unassigned"),
    ("19 unassigned, nothing known", "", "", None, "Unassigned"),
]


@pytest.mark.parametrize(
    ("source", "medium", "campaign", "expected"),
    [case[1:] for case in CHANNEL_CASES],
    ids=[case[0] for case in CHANNEL_CASES],
)
def test_classify_follows_ga4_order_with_ai_assistants(source, medium, campaign, expected):
    assert classify(source, medium, campaign, CONFIG) == expected


def test_every_default_channel_is_reachable_by_the_case_table():
    assert {case[-1] for case in CHANNEL_CASES} == set(CHANNELS)


def test_default_rules_are_in_ga4_order():
    assert tuple(rule.channel for rule in DEFAULT_RULES) == CHANNELS


def test_values_are_trimmed_before_comparing():
    assert classify("  google ", " CPC ", None, CONFIG) == "Paid Search"


# ------------------------------------------------------------------------------ source lists


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("google.com", KnownSource("google", "search")),
        ("www.google.co.uk", KnownSource("google", "search")),
        ("www.google.com.au", KnownSource("google", "search")),
        ("gemini.google.com", KnownSource("gemini", "ai")),
        ("chat.openai.com", KnownSource("chatgpt", "ai")),
        ("chatgpt.com", KnownSource("chatgpt", "ai")),
        ("yiyan.baidu.com", KnownSource("ernie", "ai")),
        ("www.baidu.com", KnownSource("baidu", "search")),
        ("shopping.google.com", KnownSource("google-shopping", "shopping")),
        ("l.facebook.com", KnownSource("facebook", "social")),
        ("t.co", KnownSource("twitter", "social")),
        ("m.youtube.com", KnownSource("youtube", "video")),
        ("www.amazon.de", KnownSource("amazon", "shopping")),
        ("com.google.android.googlequicksearchbox", KnownSource("google", "search")),
        ("a.b.c.d.e.f.uk.search.yahoo.com", KnownSource("yahoo", "search")),
    ],
)
def test_hosts_resolve_to_their_most_specific_listed_source(host, expected):
    assert CONFIG.sources.find_host(host) == expected


@pytest.mark.parametrize(
    "host",
    ["notgoogle.com", "google.evil.com", "google.com.evil.io", "example.org", "com", "", "google"],
)
def test_lookalike_and_unknown_hosts_are_not_listed(host):
    assert CONFIG.sources.find_host(host) is None


GA4_SOURCE_CATEGORIES = [
    # Sources GA4's published source categories list, with GA4's category (DESIGN.md §10).
    ("quora", "social"),
    ("quora.com", "social"),
    ("slack", "social"),
    ("producthunt", "social"),
    ("news.ycombinator.com", "social"),
    ("stackoverflow.com", "social"),
    ("crunchyroll", "social"),
    ("nicovideo.jp", "social"),
    ("answers.yahoo.com", "social"),
    ("sites.google.com", "social"),
    ("groups.google.com", "social"),
    ("blog.naver.com", "social"),
    ("l.facebook.com", "social"),
    ("t.co", "social"),
    ("lnkd.in", "social"),
    ("shopify", "shopping"),
    ("shopify.com", "shopping"),
    ("apps.shopify.com", "shopping"),
    ("checkout.shopify.com", "shopping"),
    ("partners.shopify.com", "shopping"),
    ("stripe", "shopping"),
    ("checkout.stripe.com", "shopping"),
    ("igshopping", "shopping"),
    ("shopping.yahoo.com", "shopping"),
    ("store.shopping.yahoo.co.jp", "shopping"),
    ("m.shopping.naver.com", "shopping"),
    ("shop.app", "shopping"),
    ("ebay.co.uk", "shopping"),
    ("mercadolibre.com.ar", "shopping"),
    ("one.walmart.com", "shopping"),
    ("rakuten", "search"),
    ("rakuten.co.jp", "search"),
    ("websearch.rakuten.co.jp", "search"),
    ("cnn", "search"),
    ("so.com", "search"),
    ("google-play", "search"),
    ("play.google.com", "search"),
    ("news.google.com", "search"),
    ("search.aol.co.uk", "search"),
    ("suche.aol.de", "search"),
    ("m.search.naver.com", "search"),
    ("ntp.msn.com", "search"),
    ("cn.bing.com", "search"),
    ("m.youtube.com", "video"),
    ("player.twitch.tv", "video"),
    ("fast.wistia.net", "video"),
    ("crackle.com", "video"),
]


@pytest.mark.parametrize(("source", "category"), GA4_SOURCE_CATEGORIES)
def test_sources_ga4_lists_have_ga4s_category(source, category):
    known = CONFIG.sources.find_source(source)
    assert known is not None and known.category == category, known


def _hosts_of(category):
    (source_list,) = [s for s in load_source_lists().lists if s.category == category]
    return [alias for _, aliases in source_list.entries for alias in aliases if "." in alias]


@pytest.mark.parametrize("host", _hosts_of("ai"))
def test_ai_assistant_hosts_are_never_shadowed_by_search_or_other_lists(host):
    """The AI list is consulted first: `gemini.google.com` is Gemini, not Google search."""
    for name in (host, "www." + host, "m." + host):
        known = CONFIG.sources.find_source(name)
        assert known is not None and known.category == "ai", (name, known)
        assert classify(name, "referral", None, CONFIG) == "AI Assistants"


def test_every_shipped_list_has_a_version_a_note_and_dozens_of_entries():
    lists = load_source_lists().lists
    assert [source_list.category for source_list in lists] == [c for c, _ in SOURCE_LIST_FILES]
    for source_list in lists:
        assert source_list.version and source_list.note
        assert len(source_list.entries) >= 20


def test_source_list_format_reads_names_domains_and_brands():
    text = "version 7 | Test list.\n# comment\n\nacme: acme.* acme.io shop-acme\n"
    source_list = parse_source_list("shopping", text)
    assert (source_list.version, source_list.note) == ("7", "Test list.")
    assert source_list.entries == (("acme", ("acme", "acme.*", "acme.io", "shop-acme")),)
    index = index_source_lists([source_list])
    assert index.find_source("shop-acme") == KnownSource("acme", "shopping")
    assert index.find_source("www.acme.fr") == KnownSource("acme", "shopping")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("acme: acme.io", "first line"),
        ("version 1 | x\nacme acme.io", "name: alias"),
        ("version 1 | x\nAcme: acme.io", "name: alias"),
        ("version 1 | x\nacme: acme.io/path", "neither"),
    ],
)
def test_malformed_source_lists_are_rejected(text, message):
    with pytest.raises(ValueError, match=message):
        parse_source_list("search", text)


def test_an_alias_claimed_by_two_lists_is_rejected():
    first = parse_source_list("ai", "version 1 | a\nbot: bot.example")
    second = parse_source_list("search", "version 1 | s\nengine: bot.example")
    with pytest.raises(ValueError, match="already ai/bot"):
        index_source_lists([first, second])


# ------------------------------------------------------------------------------ custom rules


def _config_with(*rules: dict) -> ChannelConfig:
    return ChannelConfig(custom_rules=parse_rules({"version": 1, "rules": list(rules)}))


def test_custom_rules_are_evaluated_ahead_of_the_defaults():
    config = _config_with(
        {"channel": "Partners", "match": {"source": "^partner-", "medium": "^referral$"}},
        {"channel": "Paid Search", "match": {"source": "^capterra$"}},
    )
    assert classify("Partner-Acme", "Referral", None, config) == "Partners"
    assert classify("partner-acme", "email", None, config) == "Email"
    assert classify("capterra", "cpc", None, config) == "Paid Search"
    assert classify("google", "cpc", None, config) == "Paid Search"


def test_a_custom_rule_can_match_on_source_category():
    config = _config_with(
        {"channel": "Paid AI", "match": {"source_category": "^ai$", "medium": "cpc"}}
    )
    assert classify("perplexity", "cpc", None, config) == "Paid AI"


def test_channel_names_are_defaults_then_custom_channels_then_unattributed():
    config = _config_with(
        {"channel": "Partners", "match": {"source": "partner"}},
        {"channel": "Email", "match": {"source": "crm"}},
        {"channel": "Partners", "match": {"medium": "partner"}},
    )
    assert channel_names(config) == (*CHANNELS, "Partners", UNATTRIBUTED)
    assert channel_names(CONFIG) == (*CHANNELS, UNATTRIBUTED)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "expected an object"),
        ({"rules": []}, "'version' must be 1"),
        ({"version": 2, "rules": []}, "'version' must be 1"),
        ({"version": True, "rules": []}, "'version' must be 1"),
        ({"version": 1}, "'rules' must be a list"),
        ({"version": 1, "rules": ["x"]}, r"rules\[0\]: expected an object"),
        ({"version": 1, "rules": [{"match": {"source": "a"}}]}, "'channel' must be"),
        ({"version": 1, "rules": [{"channel": " ", "match": {"source": "a"}}]}, "'channel' must"),
        ({"version": 1, "rules": [{"channel": "x" * 65, "match": {"source": "a"}}]}, "at most 64"),
        ({"version": 1, "rules": [{"channel": "unattributed", "match": {"a": "b"}}]}, "reserved"),
        ({"version": 1, "rules": [{"channel": "P"}]}, "'match' must be a non-empty"),
        ({"version": 1, "rules": [{"channel": "P", "match": {}}]}, "'match' must be a non-empty"),
        ({"version": 1, "rules": [{"channel": "P", "match": {"host": "a"}}]}, "cannot match on"),
        ({"version": 1, "rules": [{"channel": "P", "match": {"source": 3}}]}, "must be a string"),
        ({"version": 1, "rules": [{"channel": "P", "match": {"source": "("}}]}, "bad regex"),
        (
            {"version": 1, "rules": [{"channel": "P", "match": {"source": "a"}, "mtch": {}}]},
            "unknown keys",
        ),
    ],
)
def test_bad_rules_are_rejected_with_a_clear_error(document, message):
    with pytest.raises(ValueError, match=message):
        parse_rules(document)


def test_a_rule_may_carry_a_note():
    (rule,) = parse_rules(
        {"version": 1, "rules": [{"channel": "Partners", "match": {"source": "p"}, "note": "why"}]}
    )
    assert rule.channel == "Partners"


# ---------------------------------------------------------------------------------- config


def test_own_domains_are_normalised_once():
    config = ChannelConfig(own_domains=[" *.Example.COM. ", "example.com", "shop.example.net"])
    assert config.own_domains == ("example.com", "shop.example.net")


@pytest.mark.parametrize("timeout", [0, -1, 1.5])
def test_session_timeout_must_be_a_positive_integer(timeout):
    with pytest.raises(ValueError, match="session_timeout_ms"):
        ChannelConfig(session_timeout_ms=timeout)


def test_configs_are_hashable_and_share_the_loaded_lists():
    assert ChannelConfig() == CONFIG
    assert hash(ChannelConfig()) == hash(CONFIG)
    assert ChannelConfig().sources is CONFIG.sources


# ------------------------------------------------------------------------------ properties

_TEXT = st.one_of(st.none(), st.text(max_size=40))
_CUSTOM = _config_with(
    {"channel": "Partners", "match": {"source": "^partner", "campaign": "q[0-9]"}},
)


@given(source=_TEXT, medium=_TEXT, campaign=_TEXT)
def test_classify_is_total_over_arbitrary_text(source, medium, campaign):
    for config in (CONFIG, _CUSTOM):
        channel = classify(source, medium, campaign, config)
        assert channel in channel_names(config)
        assert channel != UNATTRIBUTED


@given(host=st.text(alphabet="abcgole.-_:/ 0123", max_size=60))
def test_source_lookup_never_raises(host):
    result = CONFIG.sources.find_source(host)
    assert result is None or isinstance(result, KnownSource)
