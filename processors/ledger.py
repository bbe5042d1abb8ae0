"""A subscriber's running totals of attribution credits, de-duplicated by `credit_id`.

Credit ids are deterministic (`{revenue_event_id}/{model}`), so a credit delivered twice (a
pipeline replay, a consumer restart) is recognised and counted once. The ledger remembers the
last `window` ids: replays arrive close to the original, so a bounded memory suffices.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Ledger:
    window: int = 2_000_000
    """How many recent credit ids are remembered for de-duplication."""
    by_model: dict[str, int] = field(default_factory=dict)
    """Reporting minor units credited per model (payments minus refunds)."""
    by_model_channel: dict[tuple[str, str], int] = field(default_factory=dict)
    by_model_person_channel: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per model, each person's acquisition channel as the credits state it."""
    records: int = 0
    duplicates: int = 0
    reporting_currency: str | None = None
    _seen: OrderedDict[str, None] = field(default_factory=OrderedDict, repr=False)

    def add(self, record: Mapping[str, Any]) -> bool:
        """Fold one `credit/1` record in; False when its id was already counted."""
        credit_id = record["credit_id"]
        if credit_id in self._seen:
            self.duplicates += 1
            return False
        self._seen[credit_id] = None
        if len(self._seen) > self.window:
            self._seen.popitem(last=False)
        model = record["model"]
        self.records += 1
        self.reporting_currency = record["reporting_currency"]
        self.by_model[model] = self.by_model.get(model, 0) + record["reporting_amount_minor"]
        for line in record["lines"]:
            key = (model, line["channel"])
            self.by_model_channel[key] = (self.by_model_channel.get(key, 0)
                                          + line["reporting_amount_minor"])
        self.by_model_person_channel.setdefault(model, {})[record["person_id"]] = record[
            "acquisition_channel"]
        return True

    def channels(self) -> list[str]:
        """Channels by first-touch credit, largest first."""
        names = {channel for _, channel in self.by_model_channel}
        return sorted(names, key=lambda c: -self.by_model_channel.get(("first_touch", c), 0))
