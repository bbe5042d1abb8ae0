"""The MRR bridge: how MRR got from one calendar month's opening to its closing.

    opening + new + expansion + reactivation − contraction − churn = closing

Months are calendar months in UTC, from the month of the first movement to the month of the
last, with quiet months in between (they open and close at the same MRR). A month's closing is
the next month's opening; the last closing is the current MRR. Amounts are reporting minor
units; contraction and churn are given as positive amounts (what was lost).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from processors.months import add_months

GROWTH = ("new", "expansion", "reactivation")
LOSS = ("contraction", "churn")


@dataclass(frozen=True, slots=True)
class BridgeMonth:
    month: str
    opening: int
    new: int
    expansion: int
    reactivation: int
    contraction: int
    """Lost to contractions, as a positive amount."""
    churn: int
    """Lost to churn, as a positive amount."""

    @property
    def closing(self) -> int:
        return (self.opening + self.new + self.expansion + self.reactivation
                - self.contraction - self.churn)


def bridge(month_kind_deltas: Iterable[tuple[str, str, int]]) -> tuple[BridgeMonth, ...]:
    """The bridge from `(month, kind, signed delta)` movements, summed per month and kind."""
    sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for month, kind, delta in month_kind_deltas:
        sums[month][kind] += delta
    if not sums:
        return ()
    months, month, last = [], min(sums), max(sums)
    while month <= last:
        months.append(month)
        month = add_months(month, 1)
    rows, opening = [], 0
    for month in months:
        kinds = sums.get(month, {})
        row = BridgeMonth(month, opening, *(kinds.get(k, 0) for k in GROWTH),
                          *(-kinds.get(k, 0) for k in LOSS))
        rows.append(row)
        opening = row.closing
    return tuple(rows)
