"""Lenient URL reading for page views and referrers.

Input events are validated for types only, so a URL may be any string: whatever `urllib.parse`
cannot read counts as "no URL" (no host, no query) instead of raising.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True, slots=True)
class UrlParts:
    """The two parts the pipeline reads: the host (None when absent) and the raw query string."""

    host: str | None
    query: str


NO_URL = UrlParts(host=None, query="")


def split_url(text: str | None) -> UrlParts:
    """Host lower-cased without port or trailing dot, and the query; `NO_URL` when unreadable."""
    if not text:
        return NO_URL
    try:
        parts = urlsplit(text)
        host = (parts.hostname or "").rstrip(".")
    except ValueError:
        return NO_URL
    return UrlParts(host=host or None, query=parts.query)


def query_values(query: str) -> dict[str, str]:
    """The first non-empty value of each query parameter, trimmed; names are compared exactly."""
    values: dict[str, str] = {}
    for name, raw in parse_qsl(query):
        value = raw.strip()
        if value and name not in values:
            values[name] = value
    return values


def normalise_domain(domain: str) -> str:
    """`" *.Example.COM. "` → `"example.com"`: the form own domains are compared in."""
    normalised = domain.strip().lower().removeprefix("*.").strip(".")
    if not normalised:
        raise ValueError(f"own domain {domain!r} is empty")
    return normalised


def is_same_or_under(host: str, domain: str) -> bool:
    """True for `domain` itself and its sub-domains, label-wise (`badexample.com` is not under
    `example.com`)."""
    return host == domain or host.endswith("." + domain)
