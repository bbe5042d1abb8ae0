"""Marketing spend: each `spend/1` line on the channel its utm values name, in the reporting
currency, counted once.

- **Channel**: `classify(source, medium, campaign)` with the pipeline's channel rules, custom
  rules first, exactly as a touch with those utm values is classified
  (processors/touchpoints.py), so spend lands on the channel names that credits carry. An empty
  campaign reads as none.
- **Currency**: `to_reporting` of the line's amount, the same exact conversion (same table, same
  rounding) as a credit's; each line is converted on its own, so sums are sums of converted
  lines whatever their order.
- **Once**: a line is known by its campaign key (`source/medium/campaign`, the topic's key) and
  its `event_id`; the first copy counts, later copies are duplicates (a copy read again from
  the same topic/partition/offset is a replay, not a producer duplicate). Every id of a campaign
  is kept (a campaign has one line a day: ten years are 3,650 ids).

`step_spend` is the stateful step of the worker's spend stage; `SpendBook` the batch
computation of a whole log, which the stage must equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from processors.channels import ChannelConfig, classify
from processors.money import CurrencyTable, to_reporting
from processors.validation import ValidationConfig, decode
from schemas.events import Spend

STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class SpendConfig:
    channels: ChannelConfig
    currency_table: CurrencyTable
    reporting_currency: str


@dataclass(frozen=True, slots=True)
class SpendRecorded:
    """A spend line counted: its day, channel and amount in reporting minor units."""

    event_id: str
    ts: int
    channel: str
    amount_minor: int


@dataclass(frozen=True, slots=True)
class SpendDuplicate:
    """A line already counted; `replay` when it is the very message read again."""

    event_id: str
    replay: bool


SpendOutput = SpendRecorded | SpendDuplicate


@dataclass(frozen=True, slots=True)
class SpendState:
    """One campaign's lines seen: event id → the origin (topic/partition/offset) it came from."""

    seen: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"v": STATE_VERSION, "seen": dict(self.seen)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpendState:
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"SpendState version {data.get('v')!r} is not {STATE_VERSION}")
        return cls(dict(data["seen"]))


def spend_channel(spend: Spend, channels: ChannelConfig) -> str:
    """The channel a touch with the line's utm source, medium and campaign gets."""
    return classify(spend.source, spend.medium, spend.campaign or None, channels)


def recorded(spend: Spend, config: SpendConfig) -> SpendRecorded:
    return SpendRecorded(
        spend.event_id, spend.ts, spend_channel(spend, config.channels),
        to_reporting(spend.amount_minor, spend.currency, config.currency_table,
                     config.reporting_currency))


def step_spend(state: SpendState | None, inputs: Sequence[tuple[Spend, str]],
               config: SpendConfig) -> tuple[SpendState, list[SpendOutput]]:
    """One campaign's new lines, each with its origin, in arrival order → the new state and one
    output per line. Returns `state` itself when no line was new."""
    current = SpendState() if state is None else state
    seen = dict(current.seen)
    outputs: list[SpendOutput] = []
    for spend, origin in inputs:
        if spend.event_id in seen:
            outputs.append(SpendDuplicate(spend.event_id, seen[spend.event_id] == origin))
        else:
            seen[spend.event_id] = origin
            outputs.append(recorded(spend, config))
    if len(seen) == len(current.seen):
        return current, outputs
    return SpendState(seen), outputs


@dataclass
class SpendBook:
    """The batch computation: a log's lines, validated as the worker does, each counted once
    by (campaign key, event id); what the worker's spend stage must equal."""

    config: SpendConfig
    counted: list[SpendRecorded] = field(default_factory=list)
    _seen: set[tuple[str, str]] = field(default_factory=set, repr=False)

    def add_event(self, spend: Spend) -> bool:
        """Count a valid line; False when it is a duplicate."""
        if (spend.key, spend.event_id) in self._seen:
            return False
        self._seen.add((spend.key, spend.event_id))
        self.counted.append(recorded(spend, self.config))
        return True

    def add(self, raw: bytes, *, now_ms: int, validation: ValidationConfig) -> bool:
        """Count a message's bytes as the worker would; False when it is refused (the worker
        dead-letters it) or a duplicate."""
        spend = decode(raw, "spend", now_ms=now_ms, config=validation)
        return isinstance(spend, Spend) and self.add_event(spend)

    def by_channel(self) -> dict[str, int]:
        return spend_by_channel(self.counted)


def spend_by_channel(counted: Iterable[SpendRecorded]) -> dict[str, int]:
    """Channel → spend in reporting minor units."""
    totals: dict[str, int] = {}
    for line in counted:
        totals[line.channel] = totals.get(line.channel, 0) + line.amount_minor
    return totals
