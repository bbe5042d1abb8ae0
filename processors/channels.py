"""Channel grouping: GA4's default channel rules as data, plus AI Assistants (DESIGN.md §4).

A rule is a channel and a condition over four lower-cased fields: `source`, `medium`,
`campaign` and `source_category` (the list the source is on: ai, search, social, video,
shopping, or "" for none). `classify` returns the channel of the first rule that holds; users'
rules come first, and the last default, Unassigned, always holds, so every touch gets a channel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from processors.urls import normalise_domain

CHANNELS: tuple[str, ...] = (
    "Direct",
    "Cross-network",
    "Paid Shopping",
    "Paid Search",
    "Paid Social",
    "Paid Video",
    "Display",
    "Paid Other",
    "Organic Shopping",
    "Organic Social",
    "Organic Video",
    "AI Assistants",
    "Organic Search",
    "Referral",
    "Email",
    "Affiliates",
    "Audio",
    "SMS",
    "Mobile Push Notifications",
    "Unassigned",
)
UNATTRIBUTED = "Unattributed"
"""The channel of an empty journey; attribution assigns it, `classify` never returns it."""

DEFAULT_SESSION_TIMEOUT_MS = 30 * 60 * 1000

# --------------------------------------------------------------------------- source lists

SOURCE_LIST_FILES: tuple[tuple[str, str], ...] = (
    ("ai", "ai_assistants.txt"),
    ("search", "search_engines.txt"),
    ("social", "social_networks.txt"),
    ("video", "video_sites.txt"),
    ("shopping", "shopping_sites.txt"),
)
"""Source category and its file in `processors/data/`, in the order the lists are consulted."""

_HEADER = re.compile(r"version\s+(\S+)\s*\|\s*(\S.*)")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_DOMAIN = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)+")
_BRAND = re.compile(r"([a-z0-9-]+)\.\*")
_COUNTRY_SECOND_LEVEL = frozenset({"co", "com", "net", "org"})


@dataclass(frozen=True, slots=True)
class KnownSource:
    """A source on one of the lists: its canonical name and the list's category."""

    name: str
    category: str


@dataclass(frozen=True, slots=True)
class SourceList:
    """One versioned list file: bump `version` whenever an entry changes."""

    category: str
    version: str
    note: str
    entries: tuple[tuple[str, tuple[str, ...]], ...]
    """(canonical name, aliases) per line; the name itself is an alias too."""


@dataclass(frozen=True, slots=True, eq=False)
class SourceLists:
    """The lists indexed for lookup; build with `index_source_lists`. Hashed by identity."""

    lists: tuple[SourceList, ...]
    by_name: Mapping[str, KnownSource]
    by_domain: Mapping[str, KnownSource]
    by_brand: Mapping[str, KnownSource]
    max_labels: int
    """Most labels any alias spans: longer hosts are only read from the right this far."""

    @property
    def versions(self) -> dict[str, str]:
        return {source_list.category: source_list.version for source_list in self.lists}

    def find_source(self, source: str) -> KnownSource | None:
        """A lower-cased source value: a name alias (`google`) or else a host (`m.facebook.com`)."""
        known = self.by_name.get(source)
        if known is None and "." in source:
            return self.find_host(source)
        return known

    def find_host(self, host: str) -> KnownSource | None:
        """The longest matching suffix of a lower-cased host wins, an exact domain before a brand.

        Longest first is what puts `gemini.google.com` (AI list) ahead of `google.*` (search).
        """
        labels = host.rsplit(".", self.max_labels)
        if len(labels) > self.max_labels:
            labels = labels[1:]
        for start in range(len(labels)):
            known = self.by_domain.get(".".join(labels[start:]))
            if known is None and _is_country_suffix(labels[start + 1 :]):
                known = self.by_brand.get(labels[start])
            if known is not None:
                return known
        return None


def _is_country_suffix(labels: list[str]) -> bool:
    """`com`, `de`, `co.uk`, `com.au`: what may follow a `brand.*` alias."""
    if len(labels) == 1:
        return _is_letters(labels[0])
    return (
        len(labels) == 2
        and labels[0] in _COUNTRY_SECOND_LEVEL
        and len(labels[1]) == 2
        and _is_letters(labels[1])
    )


def _is_letters(label: str) -> bool:
    return len(label) >= 2 and label.isascii() and label.isalpha()


def parse_source_list(category: str, text: str, origin: str = "<text>") -> SourceList:
    """Read `version V | note`, then `name: alias ...` lines; skip `#` comments and blank lines."""
    lines = [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines or not (header := _HEADER.fullmatch(lines[0][1])):
        raise ValueError(f"{origin}: the first line must be 'version <version> | <note>'")
    entries = tuple(_parse_entry(line, f"{origin}:{number}") for number, line in lines[1:])
    return SourceList(category, header.group(1), header.group(2), entries)


def _parse_entry(line: str, where: str) -> tuple[str, tuple[str, ...]]:
    name, colon, rest = line.partition(":")
    name = name.strip()
    if not colon or not _NAME.fullmatch(name):
        raise ValueError(f"{where}: expected 'name: alias ...' (lower-case name), got {line!r}")
    aliases = (name, *rest.split())
    for alias in aliases:
        if not (_NAME.fullmatch(alias) or _DOMAIN.fullmatch(alias) or _BRAND.fullmatch(alias)):
            raise ValueError(f"{where}: {alias!r} is neither a word, a domain nor 'brand.*'")
    return name, aliases


def index_source_lists(lists: Iterable[SourceList]) -> SourceLists:
    """Index every alias; an alias claimed twice (in one list or across lists) is an error."""
    lists = tuple(lists)
    indexes: dict[str, dict[str, KnownSource]] = {"name": {}, "domain": {}, "brand": {}}
    max_labels = 3  # a brand label and a two-label country suffix
    for source_list in lists:
        for name, aliases in source_list.entries:
            known = KnownSource(name, source_list.category)
            for alias in aliases:
                kind, key = _alias_key(alias)
                if key in indexes[kind]:
                    claimed = indexes[kind][key]
                    raise ValueError(
                        f"alias {alias!r} of {source_list.category}/{name} is already "
                        f"{claimed.category}/{claimed.name}"
                    )
                indexes[kind][key] = known
                max_labels = max(max_labels, alias.count(".") + 1)
    return SourceLists(
        lists, indexes["name"], indexes["domain"], indexes["brand"], max_labels=max_labels
    )


def _alias_key(alias: str) -> tuple[str, str]:
    if brand := _BRAND.fullmatch(alias):
        return "brand", brand.group(1)
    return ("domain" if "." in alias else "name"), alias


@cache
def load_source_lists() -> SourceLists:
    """The lists shipped in `processors/data/`, read once per process (they are package data)."""
    folder = resources.files("processors") / "data"
    return index_source_lists(
        parse_source_list(category, (folder / file).read_text("utf-8"), origin=file)
        for category, file in SOURCE_LIST_FILES
    )


# --------------------------------------------------------------------------------- rules

MATCH_FIELDS: tuple[str, ...] = ("source", "medium", "campaign", "source_category")
_FLAGS = re.IGNORECASE | re.DOTALL

Clause = tuple[tuple[str, re.Pattern[str]], ...]


@dataclass(frozen=True, slots=True)
class Rule:
    """`channel` when every clause holds; a clause holds when any of its (field, regex) pairs
    finds a match (`re.search`: anchor with ^ and $ to compare whole values)."""

    channel: str
    clauses: tuple[Clause, ...] = ()

    def holds(self, values: Mapping[str, str]) -> bool:
        return all(
            any(pattern.search(values[name]) for name, pattern in clause) for clause in self.clauses
        )


def _rule(channel: str, *clauses: Mapping[str, str]) -> Rule:
    """Each mapping is one clause: field → regex, any of which may match."""
    return Rule(
        channel,
        tuple(
            tuple((name, re.compile(regex, _FLAGS)) for name, regex in clause.items())
            for clause in clauses
        ),
    )


_PAID = {"medium": r"^(.*cp.*|ppc|retargeting|paid.*)$"}
_SHOP_CAMPAIGN = r"^(.*(([^a-df-z]|^)shop|shopping).*)$"
_EMAIL = r"^(email|e-mail|e_mail|e mail)$"

DEFAULT_RULES: tuple[Rule, ...] = (
    _rule("Direct", {"source": r"^\(direct\)$"}, {"medium": r"^\((none|not set)\)$"}),
    _rule("Cross-network", {"campaign": "cross-network"}),
    _rule("Paid Shopping", {"source_category": "^shopping$", "campaign": _SHOP_CAMPAIGN}, _PAID),
    _rule("Paid Search", {"source_category": "^search$"}, _PAID),
    _rule("Paid Social", {"source_category": "^social$"}, _PAID),
    _rule("Paid Video", {"source_category": "^video$"}, _PAID),
    _rule("Display", {"medium": "^(display|banner|expandable|interstitial|cpm)$"}),
    _rule("Paid Other", _PAID),
    _rule("Organic Shopping", {"source_category": "^shopping$", "campaign": _SHOP_CAMPAIGN}),
    _rule(
        "Organic Social",
        {
            "source_category": "^social$",
            "medium": "^(social|social-network|social-media|sm|social network|social media)$",
        },
    ),
    _rule("Organic Video", {"source_category": "^video$", "medium": "video"}),
    _rule("AI Assistants", {"source_category": "^ai$"}),
    _rule("Organic Search", {"source_category": "^search$", "medium": "^organic$"}),
    _rule("Referral", {"medium": "^(referral|app|link)$"}),
    _rule("Email", {"source": _EMAIL, "medium": _EMAIL}),
    _rule("Affiliates", {"medium": "^affiliate$"}),
    _rule("Audio", {"medium": "^audio$"}),
    _rule("SMS", {"source": "^sms$", "medium": "^sms$"}),
    _rule(
        "Mobile Push Notifications",
        {"medium": "push$|mobile|notification", "source": "^firebase$"},
    ),
    _rule("Unassigned"),
)
"""GA4's default channel grouping in GA4's order, with AI Assistants (11½) before Organic Search."""

RULES_DOCUMENT_VERSION = 1
_MAX_CHANNEL_LENGTH = 64


def parse_rules(document: Any) -> tuple[Rule, ...]:
    """User rules from a JSON-able document, in file order, to be evaluated ahead of the defaults.

    `{"version": 1, "rules": [{"channel": "Partners", "match": {"source": "^partner-"}}]}`:
    every field given under `match` (source, medium, campaign, source_category) must match its
    regex, case-insensitively; an optional `note` documents the rule. Anything else raises a
    `ValueError` naming the offending rule.
    """
    if not isinstance(document, Mapping):
        raise ValueError("channel rules: expected an object with 'version' and 'rules'")
    version = document.get("version")
    if type(version) is not int or version != RULES_DOCUMENT_VERSION:
        raise ValueError(f"channel rules: 'version' must be {RULES_DOCUMENT_VERSION}")
    rules = document.get("rules")
    if not isinstance(rules, list):
        raise ValueError("channel rules: 'rules' must be a list")
    return tuple(_parse_rule(rule, f"channel rules[{index}]") for index, rule in enumerate(rules))


def _parse_rule(rule: Any, where: str) -> Rule:
    if not isinstance(rule, Mapping):
        raise ValueError(f"{where}: expected an object with 'channel' and 'match'")
    unknown = set(rule) - {"channel", "match", "note"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(map(str, unknown))}")
    channel = _parse_channel(rule.get("channel"), where)
    match = rule.get("match")
    if not isinstance(match, Mapping) or not match:
        raise ValueError(f"{where}: 'match' must be a non-empty object of field → regex")
    clauses = []
    for name, regex in match.items():
        if name not in MATCH_FIELDS:
            raise ValueError(f"{where}: cannot match on {name!r}; fields are {list(MATCH_FIELDS)}")
        if not isinstance(regex, str):
            raise ValueError(f"{where}: the regex for {name!r} must be a string")
        try:
            clauses.append(((name, re.compile(regex, _FLAGS)),))
        except re.error as exc:
            raise ValueError(f"{where}: bad regex for {name!r}: {exc}") from exc
    return Rule(channel, tuple(clauses))


def _parse_channel(channel: Any, where: str) -> str:
    """Channels become metric labels: short printable names, `Unattributed` kept for attribution."""
    if not isinstance(channel, str) or not channel.strip():
        raise ValueError(f"{where}: 'channel' must be a non-empty string")
    channel = channel.strip()
    if len(channel) > _MAX_CHANNEL_LENGTH or not channel.isprintable():
        raise ValueError(f"{where}: channel names are printable and at most 64 characters")
    if channel.lower() == UNATTRIBUTED.lower():
        raise ValueError(f"{where}: {UNATTRIBUTED!r} is reserved for empty journeys")
    return channel


# -------------------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """Everything touch detection and classification read; build once, share everywhere."""

    own_domains: tuple[str, ...] = ()
    """Domains whose hosts (and sub-domains) are this site: referrals from them are internal."""
    session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS
    """A page view this long or longer after the device's previous one starts a visit."""
    custom_rules: tuple[Rule, ...] = ()
    """Users' rules (`parse_rules`), evaluated ahead of `DEFAULT_RULES`."""
    sources: SourceLists = field(default_factory=load_source_lists, repr=False)
    """The source lists; the shipped ones unless a test injects others."""
    rules: tuple[Rule, ...] = field(init=False, repr=False, compare=False)
    """`custom_rules + DEFAULT_RULES`, joined once."""

    def __post_init__(self) -> None:
        if type(self.session_timeout_ms) is not int or self.session_timeout_ms <= 0:
            raise ValueError("session_timeout_ms must be a positive integer")
        domains = tuple(dict.fromkeys(normalise_domain(domain) for domain in self.own_domains))
        object.__setattr__(self, "own_domains", domains)
        object.__setattr__(self, "custom_rules", tuple(self.custom_rules))
        object.__setattr__(self, "rules", self.custom_rules + DEFAULT_RULES)


@cache
def default_channel_config() -> ChannelConfig:
    """No own domains, 30-minute visits, default rules and the shipped lists; built once."""
    return ChannelConfig()


def channel_names(config: ChannelConfig) -> tuple[str, ...]:
    """The closed set of channel labels: GA4's, then custom channels in rule order, then
    `Unattributed`."""
    custom = (rule.channel for rule in config.custom_rules if rule.channel not in CHANNELS)
    return (*CHANNELS, *dict.fromkeys(custom), UNATTRIBUTED)


@lru_cache(maxsize=65536)  # a few hundred source/medium/campaign triples recur in most traffic
def classify(
    source: str | None, medium: str | None, campaign: str | None, config: ChannelConfig
) -> str:
    """The channel of the first rule (custom, then GA4's order) that holds for the touch.

    Values are compared trimmed and lower-cased; None reads as "". Always returns a member of
    `channel_names(config)` other than `Unattributed`.
    """
    source_text = (source or "").strip().lower()
    known = config.sources.find_source(source_text)
    values = {
        "source": source_text,
        "medium": (medium or "").strip().lower(),
        "campaign": (campaign or "").strip().lower(),
        "source_category": known.category if known else "",
    }
    return next(rule.channel for rule in config.rules if rule.holds(values))
