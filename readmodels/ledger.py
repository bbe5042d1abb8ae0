"""A subscriber's view of the attribution credits: running totals and the current credits.

Corrections arrive as records (`credit/2`): a `retract` repeats an earlier assert with every
amount negated, then an `assert` with the next revision follows. So summing every record gives
the current totals, and the newest assert per `credit_id` gives the current credits; the
ledger keeps both and they agree. A record delivered twice (a pipeline replay, a consumer
restart) is identical to the first and recognised by `(credit_id, revision, op)`; the ledger
remembers the last `window` such keys: replays arrive close to the original.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Ledger:
    window: int = 2_000_000
    """How many recent record keys are remembered for de-duplication."""
    by_model: dict[str, int] = field(default_factory=dict)
    """Reporting minor units credited per model (payments minus refunds)."""
    by_model_channel: dict[tuple[str, str], int] = field(default_factory=dict)
    by_model_person_channel: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per model, each person's acquisition channel as their newest credit states it."""
    current: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    """Credit id → its newest assert (the highest revision)."""
    records: int = 0
    corrections: int = 0
    """Asserts of revision 2 and more: credits corrected by late facts."""
    duplicates: int = 0
    reporting_currency: str | None = None
    _seen: OrderedDict[tuple[str, int, str], None] = field(default_factory=OrderedDict,
                                                           repr=False)

    def add(self, record: Mapping[str, Any]) -> bool:
        """Fold one credit record in; False when this very record was already counted."""
        credit_id = record["credit_id"]
        op = record.get("op", "assert")
        revision = record.get("revision", 1)
        key = (credit_id, revision, op)
        if key in self._seen:
            self.duplicates += 1
            return False
        self._seen[key] = None
        if len(self._seen) > self.window:
            self._seen.popitem(last=False)
        model = record["model"]
        self.records += 1
        self.reporting_currency = record["reporting_currency"]
        self.by_model[model] = self.by_model.get(model, 0) + record["reporting_amount_minor"]
        for line in record["lines"]:
            cell = (model, line["channel"])
            self.by_model_channel[cell] = (self.by_model_channel.get(cell, 0)
                                           + line["reporting_amount_minor"])
        if op == "assert":
            self.corrections += revision > 1
            newest = self.current.get(credit_id)
            if newest is None or newest.get("revision", 1) < revision:
                self.current[credit_id] = record
                self.by_model_person_channel.setdefault(model, {})[record["person_id"]] = record[
                    "acquisition_channel"]
        return True

    @property
    def credit_sets(self) -> int:
        """Revenue events × models credited: one current credit set each."""
        return len(self.current)

    def channels(self) -> list[str]:
        """Channels by first-touch credit, largest first."""
        names = {channel for _, channel in self.by_model_channel}
        return sorted(names, key=lambda c: -self.by_model_channel.get(("first_touch", c), 0))
