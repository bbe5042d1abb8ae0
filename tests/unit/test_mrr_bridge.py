"""The MRR bridge, computed by hand."""

from processors.months import add_months, month_of, months_between
from readmodels.mrr_bridge import BridgeMonth, bridge


def test_a_bridge_closes_every_month_and_carries_the_closing_over_quiet_months():
    rows = bridge([("2025-01", "new", 1000), ("2025-01", "new", 500),
                   ("2025-03", "expansion", 200), ("2025-03", "contraction", -100),
                   ("2025-03", "churn", -500), ("2025-04", "reactivation", 300)])
    assert rows == (
        BridgeMonth("2025-01", 0, 1500, 0, 0, 0, 0),
        BridgeMonth("2025-02", 1500, 0, 0, 0, 0, 0),
        BridgeMonth("2025-03", 1500, 0, 200, 0, 100, 500),
        BridgeMonth("2025-04", 1100, 0, 0, 300, 0, 0),
    )
    assert [r.closing for r in rows] == [1500, 1500, 1100, 1400]


def test_months_roll_over_the_year_and_are_utc():
    assert [r.month for r in bridge([("2024-11", "new", 1), ("2025-02", "churn", -1)])] == [
        "2024-11", "2024-12", "2025-01", "2025-02"]
    assert month_of(1_735_689_599_999) == "2024-12"  # 2024-12-31T23:59:59.999Z
    assert month_of(1_735_689_600_000) == "2025-01"


def test_no_movement_no_bridge():
    assert bridge([]) == ()


def test_month_arithmetic_crosses_years_both_ways():
    assert [add_months("2025-11", k) for k in (-11, -1, 0, 2, 14)] == [
        "2024-12", "2025-10", "2025-11", "2026-01", "2027-01"]
    assert months_between("2024-12", "2026-01") == 13
    assert months_between("2026-01", "2024-12") == -13
