"""The pipeline's rules as one immutable value, parsed from a plain document (a TOML file's).

Every section is optional; a missing key keeps the DESIGN.md default. Unknown keys are errors,
so a typo in a config file is reported instead of silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from processors.attribution import DAY_MS, AttributionConfig
from processors.channels import ChannelConfig, default_channel_config, parse_rules
from processors.identity import IdentityConfig
from processors.money import default_currency_table
from processors.segments import SegmentConfig
from processors.spend import SpendConfig
from processors.validation import ValidationConfig

CONFIG_VERSION = 1
MINUTE_MS = 60_000


def _default_validation() -> ValidationConfig:
    return ValidationConfig(known_currencies=frozenset(default_currency_table().currencies))


@dataclass(frozen=True)
class PipelineConfig:
    validation: ValidationConfig = field(default_factory=_default_validation)
    channels: ChannelConfig = field(default_factory=default_channel_config)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    segments: SegmentConfig = field(default_factory=SegmentConfig)
    restatement_horizon_ms: int = 72 * 3_600_000
    """How long (processing time, from a person's first credit) late facts still correct their
    conversion's credits; later the credits are final and late facts are only counted."""

    @property
    def spend(self) -> SpendConfig:
        """Spend takes the channel rules of touches and the currency rules of credits."""
        return SpendConfig(self.channels, self.attribution.currency_table,
                           self.attribution.reporting_currency)


SECTIONS = {
    "channels": {"own_domains", "session_timeout_minutes", "rules"},
    "identity": {"max_people_per_device", "max_anonymous_ids_per_person", "max_pending_touches",
                 "junk_ids"},
    "attribution": {"models", "lookback_days", "half_life_days", "position_based", "w_shaped",
                    "reporting_currency", "rates"},
    "segments": {"mid_market_from", "enterprise_from"},
    "validation": {"max_payload_kib", "max_age_days", "max_future_days"},
    "pipeline": {"restatement_horizon_hours"},
}


def parse_config(document: Mapping[str, Any]) -> PipelineConfig:
    """`{"version": 1, "channels": {...}, "attribution": {...}, ...}` → PipelineConfig."""
    if document.get("version", CONFIG_VERSION) != CONFIG_VERSION:
        raise ValueError(f"config: 'version' must be {CONFIG_VERSION}")
    unknown = set(document) - set(SECTIONS) - {"version"}
    if unknown:
        raise ValueError(f"config: unknown sections {sorted(unknown)}; known: {sorted(SECTIONS)}")
    sections = {}
    for name, keys in SECTIONS.items():
        section = document.get(name, {})
        if not isinstance(section, Mapping) or set(section) - keys:
            raise ValueError(f"config [{name}]: unknown keys {sorted(set(section) - keys)}; "
                             f"known: {sorted(keys)}")
        sections[name] = section
    ch, ident, attr = sections["channels"], sections["identity"], sections["attribution"]
    seg, val, pipe = sections["segments"], sections["validation"], sections["pipeline"]

    junk = frozenset(str(j) for j in ident.get("junk_ids", ()))
    currencies = default_currency_table()
    if "rates" in attr:
        currencies = currencies.with_rates(dict(attr["rates"]))
    channels = ChannelConfig(
        own_domains=tuple(ch.get("own_domains", ())),
        session_timeout_ms=int(ch.get("session_timeout_minutes", 30) * MINUTE_MS),
        custom_rules=parse_rules({"version": 1, "rules": ch["rules"]}) if "rules" in ch else (),
    )
    identity_defaults = IdentityConfig()
    identity = IdentityConfig(
        max_people_per_device=ident.get("max_people_per_device",
                                        identity_defaults.max_people_per_device),
        max_anonymous_ids_per_person=ident.get("max_anonymous_ids_per_person",
                                               identity_defaults.max_anonymous_ids_per_person),
        max_pending_touches=ident.get("max_pending_touches",
                                      identity_defaults.max_pending_touches),
        lookback_ms=int(attr.get("lookback_days", 90) * DAY_MS),
        junk_block_list=junk,
    )
    attribution_defaults = AttributionConfig()
    attribution = AttributionConfig(
        models=tuple(attr.get("models", attribution_defaults.models)),
        lookback_ms=int(attr.get("lookback_days", 90) * DAY_MS),
        half_life_ms=int(attr.get("half_life_days", 7) * DAY_MS),
        position_based_weights=tuple(attr.get("position_based",
                                              attribution_defaults.position_based_weights)),
        w_shaped_weights=tuple(attr.get("w_shaped", attribution_defaults.w_shaped_weights)),
        reporting_currency=attr.get("reporting_currency", "USD"),
        currency_table=currencies,
    )
    segments = SegmentConfig(**{k: int(v) for k, v in seg.items()})
    validation = ValidationConfig(
        known_currencies=frozenset(currencies.currencies),
        junk_block_list=junk,
        max_payload_bytes=int(val.get("max_payload_kib", 64) * 1024),
        max_age_ms=int(val.get("max_age_days", 3650) * DAY_MS),
        max_future_ms=int(val.get("max_future_days", 30) * DAY_MS),
    )
    return PipelineConfig(validation=validation, channels=channels, identity=identity,
                          attribution=attribution, segments=segments,
                          restatement_horizon_ms=int(
                              pipe.get("restatement_horizon_hours", 72) * 3_600_000))
