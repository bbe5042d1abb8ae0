"""The collector's configuration: sources and their write keys, allowed origins, limits.

Parsed once at start-up from the TOML file `PERSONIFY_COLLECTOR_CONFIG_FILE` into an immutable
value; unknown keys are errors, so a typo is reported instead of silently ignored. Write keys
are secrets of the sources that are not browsers: keep the file readable by its owner only.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from processors.intake import IntakeRules
from processors.segment import DEFAULT_TRACK_EVENTS, TRACK_MAPPINGS
from processors.validation import ValidationConfig
from schemas.contract import INPUT_SCHEMAS, TopicKind

ALL_KINDS: Final[frozenset[TopicKind]] = frozenset(INPUT_SCHEMAS)
KEYS: Final = {"version", "allowed_origins", "max_body_kib", "delivery_timeout_ms",
               "body_timeout_s", "retry_after_s", "track_events", "sources"}
SOURCE_KEYS: Final = {"write_key", "sends"}


@dataclass(frozen=True, slots=True)
class Source:
    """A sender of events, known by its write key (a website, a backend, a billing system)."""

    name: str
    write_key: str
    sends: frozenset[TopicKind] = ALL_KINDS
    """The event kinds it may send; a browser's write key is public, so a browser source
    should send `page_view` and `signup` only, never `billing` or `spend`."""


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    rules: IntakeRules
    """The worker's validation rules and the Segment `track` mapping."""
    sources: tuple[Source, ...] = ()
    allowed_origins: frozenset[str] = frozenset()
    """Browser origins (`https://www.example.com`) allowed to post; `*` allows any. A request
    from another origin is refused (403); requests without an Origin header are not browsers'."""
    max_body_bytes: int = 512 * 1024
    """Larger request bodies are refused with 413 before they are read."""
    delivery_timeout_ms: int = 5_000
    """How long the broker may take to acknowledge a request's events before the answer is 503."""
    body_timeout_s: float = 10.0
    """A client that takes longer to send its body gets 408 (slow or stalled clients)."""
    retry_after_s: int = 5
    """`Retry-After` of a 503."""

    def origin_allowed(self, origin: str) -> bool:
        return "*" in self.allowed_origins or origin in self.allowed_origins


def parse_collector_config(
    document: Mapping[str, Any], validation: ValidationConfig
) -> CollectorConfig:
    """`{"sources": {"web": {"write_key": ..., "sends": [...]}}, "allowed_origins": [...], ...}`."""
    if document.get("version", 1) != 1:
        raise ValueError("collector config: 'version' must be 1")
    unknown = set(document) - KEYS
    if unknown:
        raise ValueError(f"collector config: unknown keys {sorted(unknown)}; known: {sorted(KEYS)}")
    sources = tuple(_source(name, values)
                    for name, values in _table(document, "sources").items())
    keys = [source.write_key for source in sources]
    if len(set(keys)) != len(keys):
        raise ValueError("collector config: two sources share a write key")
    tracks = _table(document, "track_events")
    for name, mapping in tracks.items():
        if mapping not in TRACK_MAPPINGS:
            raise ValueError(f"collector config: track_events.{name!r} must be one of "
                             f"{list(TRACK_MAPPINGS)}, got {mapping!r}")
    origins = document.get("allowed_origins", [])
    if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
        raise ValueError("collector config: 'allowed_origins' must be a list of strings")
    limits = {
        "max_body_bytes": 1024 * _positive(document, "max_body_kib", 512),
        "delivery_timeout_ms": _positive(document, "delivery_timeout_ms", 5_000),
        "body_timeout_s": float(_positive(document, "body_timeout_s", 10)),
        "retry_after_s": _positive(document, "retry_after_s", 5),
    }
    rules = IntakeRules(validation, {**DEFAULT_TRACK_EVENTS, **tracks})
    return CollectorConfig(rules=rules, sources=sources,
                           allowed_origins=frozenset(o.rstrip("/") for o in origins), **limits)


def load_collector_config(path: str, validation: ValidationConfig) -> CollectorConfig:
    if not path:
        return CollectorConfig(rules=IntakeRules(validation))
    try:
        document = tomllib.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ValueError(f"PERSONIFY_COLLECTOR_CONFIG_FILE={path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from exc
    try:
        return parse_collector_config(document, validation)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def _source(name: str, values: Any) -> Source:
    if not isinstance(values, Mapping):
        raise ValueError(f"collector config: sources.{name} must be a table")
    unknown = set(values) - SOURCE_KEYS
    if unknown:
        raise ValueError(f"collector config: sources.{name}: unknown keys {sorted(unknown)}")
    key = values.get("write_key")
    if not isinstance(key, str) or not key or ":" in key:
        raise ValueError(f"collector config: sources.{name}.write_key must be a non-empty "
                         "string without ':'")
    sends = values.get("sends", sorted(ALL_KINDS))
    if not isinstance(sends, list) or not set(sends) <= ALL_KINDS:
        raise ValueError(f"collector config: sources.{name}.sends must list some of "
                         f"{sorted(ALL_KINDS)}")
    return Source(name, key, frozenset(sends))


def _table(document: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = document.get(name, {})
    if not isinstance(value, Mapping):
        raise ValueError(f"collector config: '{name}' must be a table")
    return value


def _positive(document: Mapping[str, Any], name: str, default: int) -> int:
    value = document.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"collector config: '{name}' must be a positive integer")
    return value
