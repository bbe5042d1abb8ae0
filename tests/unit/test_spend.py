from __future__ import annotations

from fractions import Fraction

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.aggregates import AggregateConfig, fold_many, merge, windows
from processors.channels import ChannelConfig, parse_rules
from processors.config import PipelineConfig
from processors.money import default_currency_table
from processors.spend import (
    SpendBook,
    SpendConfig,
    SpendDuplicate,
    SpendRecorded,
    SpendState,
    spend_by_channel,
    spend_channel,
    step_spend,
)
from processors.validation import Reason, Rejection, decode
from readmodels.report import ChannelRow, spend_and_return
from readmodels.spend_return import (
    ChannelTotals,
    as_dict,
    best_channel,
    spend_answer,
    spend_rows,
    totals_from_cells,
)
from schemas.events import Spend

DAY_MS = 86_400_000
DAY = 20_000 * DAY_MS
NOW_MS = DAY + 3_600_000
RATES = default_currency_table().with_rates({"EUR": "1.10", "JPY": "0.0065"})
CONFIG = SpendConfig(ChannelConfig(), RATES, "USD")
VALIDATION = PipelineConfig().validation


def spend(event_id: str = "s-1", amount: int = 100_000, currency: str = "USD",
          source: str = "google", medium: str = "cpc", campaign: str = "brand",
          ts: int = DAY) -> Spend:
    return Spend(event_id, ts, source, medium, campaign, amount, currency)


def payload(**fields) -> bytes:
    base = {"schema": "spend/1", "event_id": "s-1", "ts": DAY, "source": "google",
            "medium": "cpc", "campaign": "brand", "amount_minor": 100, "currency": "USD"}
    return orjson.dumps({**base, **fields})


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(("fields", "reason"), [
    ({"ts": DAY + 1}, Reason.INVALID_VALUE),
    ({"amount_minor": 0}, Reason.NON_POSITIVE_AMOUNT),
    ({"amount_minor": 100.0}, Reason.WRONG_TYPE),
    ({"currency": ""}, Reason.UNKNOWN_CURRENCY),
    ({"currency": "ZZZ"}, Reason.UNKNOWN_CURRENCY),
    ({"source": ""}, Reason.INVALID_VALUE),
    ({"medium": "c\npc"}, Reason.INVALID_VALUE),
    ({"schema": "billing/1"}, Reason.UNKNOWN_SCHEMA),
    ({"campaign": None}, Reason.WRONG_TYPE),
])
def test_a_spend_line_is_refused_with_the_reason_of_its_first_fault(fields, reason):
    result = decode(payload(**fields), "spend", now_ms=NOW_MS, config=VALIDATION)
    assert isinstance(result, Rejection) and result.reason == reason, result


def test_a_valid_line_decodes_to_a_spend_of_its_day():
    result = decode(payload(ts="1970-01-01T00:00:00Z", campaign=""), "spend",
                    now_ms=NOW_MS, config=VALIDATION.__class__(
                        known_currencies=VALIDATION.known_currencies, max_age_ms=10**15))
    assert result == Spend("s-1", 0, "google", "cpc", "", 100, "USD")
    assert result.key == "google/cpc/"


# --------------------------------------------------------------------------------- mapping


@pytest.mark.parametrize(("source", "medium", "campaign", "channel"), [
    ("google", "cpc", "brand", "Paid Search"),
    ("bing", "cpc", "", "Paid Search"),
    ("facebook", "paid_social", "q1", "Paid Social"),
    ("linkedin", "cpc", "q1", "Paid Social"),
    ("criteo", "display", "retargeting", "Display"),
    ("partnerstack", "affiliate", "", "Affiliates"),
    ("newsletter", "email", "", "Email"),
])
def test_spend_takes_the_channel_a_touch_with_its_utm_values_gets(source, medium, campaign,
                                                                  channel):
    assert spend_channel(spend(source=source, medium=medium, campaign=campaign),
                         ChannelConfig()) == channel


def test_custom_channel_rules_apply_to_spend_as_to_touches():
    rules = parse_rules({"version": 1, "rules": [
        {"channel": "Podcasts", "match": {"medium": "podcast"}}]})
    config = ChannelConfig(custom_rules=rules)
    assert spend_channel(spend(source="acast", medium="podcast"), config) == "Podcasts"


# ------------------------------------------------------------------------------ state, once


def test_a_line_counts_once_a_copy_is_a_duplicate_and_a_reread_a_replay():
    state, outputs = step_spend(None, [(spend(), "t/0/1")], CONFIG)
    assert outputs == [SpendRecorded("s-1", DAY, "Paid Search", 100_000)]
    again, outputs = step_spend(state, [(spend(), "t/0/7"), (spend(), "t/0/1")], CONFIG)
    assert again is state
    assert outputs == [SpendDuplicate("s-1", False), SpendDuplicate("s-1", True)]
    assert SpendState.from_dict(orjson.loads(orjson.dumps(state.to_dict()))) == state


def test_spend_in_two_currencies_is_converted_line_by_line_like_credits():
    book = SpendBook(CONFIG)
    book.add_event(spend("a", 100_000, "USD"))
    book.add_event(spend("b", 50_001, "EUR"))  # EUR 500.01 × 1.10 = USD 550.011 → 550.01
    book.add_event(spend("c", 999, "JPY"))  # JPY 999 × 0.0065 = USD 6.4935 → 6.49
    assert book.by_channel() == {"Paid Search": 100_000 + 55_001 + 649}


# ------------------------------------------------------------------------------ the figures


def test_cac_ltv_to_cac_payback_and_roas_by_hand():
    totals = {"Paid Search": ChannelTotals(200_000, 10, 1_500_000, 50_000,
                                           {"first_touch": 300_000, "linear": 250_000}),
              "Organic Search": ChannelTotals(0, 30, 9_000_000, 0, {})}
    (row,) = spend_rows(totals, min_customers=10)
    assert row.cac == 20_000  # $200 per customer
    assert row.ltv == 150_000
    assert row.ltv_to_cac == Fraction(15, 2)
    assert row.payback_months == 4  # CAC 20,000 / (50,000 / 10) MRR per customer
    assert row.roas("first_touch") == Fraction(3, 2) and row.roas("linear") == Fraction(5, 4)


def test_content_at_400_and_4000_beats_paid_search_at_200_and_1500():
    totals = {"Paid Search": ChannelTotals(20_000 * 12, 12, 150_000 * 12, 0, {}),
              "Email": ChannelTotals(40_000 * 11, 11, 400_000 * 11, 0, {}),
              "Display": ChannelTotals(1_000, 2, 10_000_000, 0, {}),
              "Paid Social": ChannelTotals(5_000, 0, 0, 0, {})}
    rows = spend_rows(totals, min_customers=10)
    assert [r.channel for r in rows] == ["Email", "Paid Search", "Display", "Paid Social"]
    assert rows[2].low_confidence and rows[3].cac is None and rows[3].ltv_to_cac is None
    assert best_channel(rows).channel == "Email"


def test_nothing_is_ranked_best_when_no_channel_with_spend_has_enough_customers():
    rows = spend_rows({"Display": ChannelTotals(1_000, 2, 10_000, 0, {})}, 10)
    assert best_channel(rows) is None
    assert as_dict(rows, ["linear"])[0]["payback_months"] is None


def test_the_report_and_the_cells_give_the_same_rows():
    outputs = [SpendRecorded("s-1", DAY, "Paid Search", 70_000),
               SpendRecorded("s-2", DAY, "Email", 5_000)]
    cells = windows(fold_many(None, outputs, AggregateConfig.for_models(["linear"])))["all"]
    from_cells = spend_answer(cells, ["linear"], "USD", 10)["channels"]
    channels = [ChannelRow("Email", 0, 0, 0, 0, 0.0, 0.0, None, {"linear": 0}, None, True)]
    from_report = as_dict(spend_and_return(channels, {"Paid Search": 70_000, "Email": 5_000},
                                           10), ["linear"])
    assert from_cells == from_report
    assert totals_from_cells(cells, ["linear"])["Paid Search"].spend_minor == 70_000


# -------------------------------------------------------------------------------- properties

LINES = st.lists(st.builds(
    spend, event_id=st.sampled_from([f"s-{i}" for i in range(8)]),
    amount=st.integers(1, 10**12), currency=st.sampled_from(["USD", "EUR", "JPY", "GBP"]),
    source=st.sampled_from(["google", "facebook", "criteo"]),
    medium=st.sampled_from(["cpc", "paid_social", "display"]),
    campaign=st.sampled_from(["", "brand"]),
    ts=st.integers(0, 60).map(lambda d: DAY + d * DAY_MS)), max_size=30)


def streamed(lines: list[Spend]) -> dict[str, int]:
    states: dict[str, SpendState] = {}
    counted = []
    for offset, line in enumerate(lines):
        state, outputs = step_spend(states.get(line.key), [(line, f"t/0/{offset}")], CONFIG)
        states[line.key] = state
        counted += [o for o in outputs if isinstance(o, SpendRecorded)]
    return spend_by_channel(counted)


def _first_copies(lines: list[Spend]) -> list[Spend]:
    seen, kept = set(), []
    for line in lines:
        if (line.key, line.event_id) not in seen:
            seen.add((line.key, line.event_id))
            kept.append(line)
    return kept


@settings(max_examples=200, deadline=None)
@given(LINES, st.randoms(use_true_random=False))
def test_spend_sums_are_exact_and_independent_of_order_and_duplicates(lines, rng):
    first = _first_copies(lines)
    book = SpendBook(CONFIG)
    for line in first:
        book.add_event(line)
    expected = book.by_channel()
    shuffled = first + lines  # every line again, after its first copies
    rng.shuffle(first)
    assert streamed(first) == expected
    assert streamed(shuffled) == expected
    assert sum(expected.values()) == sum(line.amount_minor for line in book.counted)


@settings(max_examples=100, deadline=None)
@given(LINES, st.integers(1, 4))
def test_spend_cells_of_partitions_merged_equal_the_batch_computation(lines, partitions):
    counted = SpendBook(CONFIG)
    for line in lines:
        counted.add_event(line)
    parts = [fold_many(None, counted.counted[p::partitions],
                       AggregateConfig.for_models(["linear"])) for p in range(partitions)]
    cells = windows(merge(parts))["all"]
    assert {c: t.spend_minor for c, t in totals_from_cells(cells, ["linear"]).items()} == \
        counted.by_channel()
