"""Customer segment from signup traits, by company size (DESIGN.md §6)."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import Traits

SMB = "SMB"
MID_MARKET = "Mid-Market"
ENTERPRISE = "Enterprise"
UNKNOWN = "Unknown"
SEGMENTS = (SMB, MID_MARKET, ENTERPRISE, UNKNOWN)
"""Every segment there is: a closed set, so it can label metrics."""


@dataclass(frozen=True, slots=True)
class SegmentConfig:
    mid_market_from: int = 100
    """Smallest company size (employees) that is Mid-Market; below it is SMB."""
    enterprise_from: int = 1000
    """Smallest company size that is Enterprise."""

    def __post_init__(self) -> None:
        if not 0 < self.mid_market_from <= self.enterprise_from:
            raise ValueError(
                "SegmentConfig needs 0 < mid_market_from <= enterprise_from, got "
                f"{self.mid_market_from} and {self.enterprise_from}"
            )


def segment_of(traits: Traits | None, config: SegmentConfig) -> str:
    """SMB below `mid_market_from`, Enterprise from `enterprise_from`, Mid-Market in between;
    Unknown when the company size was never sent."""
    size = None if traits is None else traits.company_size
    if size is None:
        return UNKNOWN
    if size >= config.enterprise_from:
        return ENTERPRISE
    if size >= config.mid_market_from:
        return MID_MARKET
    return SMB
