from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from personify.report import money, render_html, render_text
from readmodels.report import (
    MIN_CUSTOMERS,
    ChannelDifference,
    CreditBook,
    ProfileBook,
    TruthPerson,
    build_report,
    mean_minor,
    percentile,
    top_count,
)
from readmodels.retention import retention_of
from tests.unit.test_retention import AS_OF as RETENTION_AS_OF
from tests.unit.test_retention import PROFILES as RETENTION_PROFILES

DAY = 86_400_000
MODELS = ("first_touch", "linear")


def profile(person_id: str, channel: str | None, segment: str, revenue: int, mrr: int,
            first_touch: int | None, conversion: int | None) -> dict:
    return {"schema": "profile/1", "person_id": person_id, "anonymous_ids": [f"anon-{person_id}"],
            "acquisition_channel": channel, "acquisition_campaign": None, "segment": segment,
            "traits": {}, "lifetime_revenue_minor": revenue, "mrr_minor": mrr,
            "reporting_currency": "USD", "first_touch_ts": first_touch,
            "conversion_ts": conversion, "counts": {}}


def credit(event_id: str, person_id: str, model: str, amount: int, lines: dict[str, int], *,
           acquisition: str, currency: str = "USD", kind: str = "payment") -> dict:
    return {"schema": "credit/1", "credit_id": f"{event_id}/{model}",
            "revenue_event_id": event_id, "person_id": person_id, "model": model, "kind": kind,
            "revenue_ts": 0, "amount_minor": amount, "currency": currency,
            "reporting_amount_minor": sum(lines.values()), "reporting_currency": "USD",
            "segment": "SMB", "acquisition_channel": acquisition,
            "lines": [{"touch_event_id": f"t-{channel}", "touch_ts": 0, "channel": channel,
                       "source": None, "medium": None, "campaign": None, "weight": 0.5,
                       "amount_minor": part, "reporting_amount_minor": part}
                      for channel, part in lines.items()]}


def truth(user_id: str, channel: str | None, *, ambiguous: bool = False,
          first_visit: str | None = None, revenue: int = 0, currency: str = "USD") -> TruthPerson:
    return TruthPerson(user_id, channel, ambiguous, first_visit or channel or "Direct",
                       currency, revenue)


# Five customers and one person who never paid; hand-computed tables below.
PROFILES = [
    profile("p1", "Direct", "Enterprise", 100_000, 20_000, 0, 10 * DAY),
    profile("p2", "Organic Search", "Mid-Market", 30_000, 10_000, 0, 2 * DAY),
    profile("p3", "Paid Search", "SMB", 5_000, 0, DAY, 21 * DAY),
    profile("p4", "Paid Search", "SMB", 10_000, 5_000, None, 5 * DAY),
    profile("p5", "Organic Search", "SMB", 5_000, 5_000, 0, 4 * DAY),
    profile("p6", None, "SMB", 0, 0, 0, None),
]
CREDITS = [
    credit("pay-1", "p1", "first_touch", 100_000, {"Direct": 100_000}, acquisition="Direct"),
    credit("pay-1", "p1", "linear", 100_000, {"Direct": 60_000, "Email": 40_000},
           acquisition="Direct"),
    credit("pay-2", "p2", "first_touch", 30_000, {"Organic Search": 30_000},
           acquisition="Organic Search"),
    credit("pay-2", "p2", "linear", 30_000, {"Organic Search": 30_000},
           acquisition="Organic Search"),
    credit("pay-3", "p3", "first_touch", 6_000, {"Paid Search": 6_000},
           acquisition="Paid Search"),
    credit("pay-3", "p3", "linear", 6_000, {"Paid Search": 6_000}, acquisition="Paid Search"),
    credit("ref-3", "p3", "first_touch", -1_000, {"Paid Search": -1_000},
           acquisition="Paid Search", kind="refund"),
    credit("ref-3", "p3", "linear", -1_000, {"Paid Search": -1_000},
           acquisition="Paid Search", kind="refund"),
    credit("pay-4", "p4", "first_touch", 10_000, {"Paid Search": 10_000},
           acquisition="Paid Search"),
    credit("pay-4", "p4", "linear", 10_000, {"Paid Search": 5_000, "Email": 5_000},
           acquisition="Paid Search"),
    credit("pay-5", "p5", "first_touch", 4_630, {"Organic Search": 5_000},
           acquisition="Organic Search", currency="EUR"),
    credit("pay-5", "p5", "linear", 4_630, {"Organic Search": 5_000},
           acquisition="Organic Search", currency="EUR"),
]
TRUTH = [
    truth("p1", "Direct", revenue=100_000),
    truth("p2", "Paid Search", first_visit="Paid Search", revenue=30_000),
    truth("p3", "Paid Search", revenue=5_000),
    truth("p4", "Direct", ambiguous=True, first_visit="Paid Search", revenue=10_000),
    truth("p5", "Organic Search", revenue=4_630, currency="EUR"),
    truth("p7", "Referral", revenue=900),
    truth("p8", None),
]


def books() -> tuple[ProfileBook, CreditBook]:
    profiles, credits = ProfileBook(), CreditBook()
    for record in PROFILES:
        profiles.add(record)
    for record in CREDITS:
        credits.add(record)
    return profiles, credits


def report(**kwargs):
    """The hand-computed report of five customers (small numbers allowed to rank)."""
    profiles, credits = books()
    kwargs.setdefault("min_customers", 1)
    return build_report(profiles, credits, models=MODELS, currency="USD", exponent=2,
                        truth=TRUTH, **kwargs)


# ------------------------------------------------------------------------------ arithmetic


@pytest.mark.parametrize(("total", "count", "expected"), [
    (100_000, 1, 100_000), (20_000, 3, 6_667), (5, 2, 3), (-5, 2, -3), (7, 3, 2), (-7, 3, -2),
])
def test_mean_rounds_half_away_from_zero(total, count, expected):
    assert mean_minor(total, count) == expected


@pytest.mark.parametrize(("values", "percent", "expected"), [
    ([5], 50, 5), ([5], 90, 5), ([2, 1], 50, 1), ([4, 1, 3, 2], 50, 2), ([4, 1, 3, 2], 90, 4),
    (list(range(1, 11)), 50, 5), (list(range(1, 11)), 90, 9), (list(range(1, 11)), 100, 10),
    (list(range(1, 11)), 0, 1),
])
def test_percentile_is_nearest_rank(values, percent, expected):
    assert percentile(values, percent) == expected


def test_percentile_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        percentile([], 50)


@pytest.mark.parametrize(("customers", "expected"), [(0, 0), (1, 1), (5, 1), (6, 2), (10, 2),
                                                     (11, 3), (587, 118)])
def test_top_twenty_percent_never_rounds_down(customers, expected):
    assert top_count(customers, 20) == expected


@given(st.lists(st.integers(-10**9, 10**9), min_size=1), st.integers(0, 100),
       st.integers(0, 100))
def test_percentile_is_a_value_and_grows_with_the_percent(values, low, high):
    low, high = sorted((low, high))
    assert percentile(values, low) in values
    assert percentile(values, low) <= percentile(values, high)


# ----------------------------------------------------------------------------------- books


def test_the_latest_profile_of_a_person_is_the_current_one():
    book = ProfileBook()
    book.add(profile("p1", None, "SMB", 0, 0, 0, None))
    book.add(profile("p1", "Direct", "SMB", 500, 100, 0, DAY))
    assert book.latest["p1"]["lifetime_revenue_minor"] == 500


def test_books_limited_to_a_population_skip_and_count_other_people():
    profiles, credits = ProfileBook(frozenset({"p1"})), CreditBook(frozenset({"p1"}))
    assert [profiles.add(r) for r in PROFILES[:2]] == [True, False]
    assert [credits.add(r) for r in CREDITS[:3]] == [True, True, False]
    assert (profiles.ignored, credits.ignored) == (1, 1)
    assert credits.ledger.by_model == {"first_touch": 100_000, "linear": 100_000}


@given(st.lists(st.sampled_from(CREDITS), min_size=1))
def test_a_credit_delivered_again_changes_nothing(deliveries):
    once, again = CreditBook(), CreditBook()
    for record in dict.fromkeys(r["credit_id"] for r in deliveries):
        once.add(next(r for r in CREDITS if r["credit_id"] == record))
    for record in deliveries:
        again.add(record)
    assert again.ledger.by_model_channel == once.ledger.by_model_channel
    assert again.revenue_by_person() == once.revenue_by_person()
    assert again.ledger.duplicates == len(deliveries) - once.ledger.records


def test_revenue_by_person_counts_each_revenue_event_once_in_its_currency():
    _, credits = books()
    assert credits.revenue_by_person() == {"p1": {"USD": 100_000}, "p2": {"USD": 30_000},
                                           "p3": {"USD": 5_000}, "p4": {"USD": 10_000},
                                           "p5": {"EUR": 4_630}}


# ---------------------------------------------------------------------------------- tables


def test_segments_by_revenue_with_shares_ltv_and_mrr():
    rows = {r.segment: r for r in report().segments}
    assert [r.segment for r in report().segments] == ["Enterprise", "Mid-Market", "SMB"]
    smb = rows["SMB"]
    assert (smb.customers, smb.subscribers, smb.revenue_minor, smb.mrr_minor) == (3, 2, 20_000,
                                                                                   10_000)
    assert smb.customer_share == pytest.approx(0.6)
    assert smb.revenue_share == pytest.approx(20_000 / 150_000)
    assert smb.ltv_minor == 6_667
    assert rows["Enterprise"].revenue_share == pytest.approx(2 / 3)


def test_top_twenty_percent_and_power_segment():
    c = report().concentration
    assert (c.customers, c.revenue_minor, c.top_customers) == (5, 150_000, 1)
    assert c.top_revenue_share == pytest.approx(2 / 3)
    assert c.power_segment is not None and c.power_segment.segment == "Enterprise"


def test_concentration_curve_runs_from_the_richest_customer():
    curve = report().concentration.curve
    assert curve[0] == (0.0, 0.0)
    assert curve[1] == pytest.approx((0.2, 100_000 / 150_000))
    assert curve[-1] == pytest.approx((1.0, 1.0))


@given(st.lists(st.integers(0, 10**7), min_size=1, max_size=300))
def test_the_top_fifth_brings_at_least_a_fifth_and_the_curve_only_rises(revenues):
    profiles = ProfileBook()
    for i, revenue in enumerate(revenues):
        profiles.add(profile(f"p{i}", "Direct", "SMB", revenue, 0, 0, DAY))
    c = build_report(profiles, CreditBook(), models=MODELS, currency="USD",
                     exponent=2).concentration
    assert len(c.curve) <= 101
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(c.curve, c.curve[1:], strict=False))
    if sum(revenues):
        assert c.top_revenue_share >= c.top_customers / c.customers - 1e-12


def test_channels_ranked_by_ltv_with_every_model_side_by_side():
    channels = report().channels
    assert [(r.channel, r.customers, r.revenue_minor, r.ltv_minor) for r in channels] == [
        ("Direct", 1, 100_000, 100_000),
        ("Organic Search", 2, 35_000, 17_500),
        ("Paid Search", 2, 15_000, 7_500),
        ("Email", 0, 0, None),
    ]
    assert channels[0].attributed_minor == {"first_touch": 100_000, "linear": 60_000}
    assert channels[3].attributed_minor == {"first_touch": 0, "linear": 45_000}


def test_rank_under_a_model_orders_channels_by_credit():
    r = report()
    assert r.rank("first_touch") == {"Direct": 1, "Organic Search": 2, "Paid Search": 3,
                                     "Email": 4}
    assert r.rank("linear") == {"Direct": 1, "Email": 2, "Organic Search": 3, "Paid Search": 4}


def test_time_to_conversion_median_and_p90_by_channel_and_overall():
    r = report()
    by_channel = {row.channel: row.conversion for row in r.channels}
    organic = by_channel["Organic Search"]
    assert (organic.customers, organic.median_ms, organic.p90_ms) == (2, 2 * DAY, 4 * DAY)
    paid = by_channel["Paid Search"]  # p4 has no first touch: not measured
    assert (paid.customers, paid.median_ms, paid.p90_ms) == (1, 20 * DAY, 20 * DAY)
    assert by_channel["Email"] is None
    assert (r.conversion.customers, r.conversion.median_ms, r.conversion.p90_ms) == (
        4, 4 * DAY, 20 * DAY)


def test_a_first_touch_after_conversion_is_not_measured():
    profiles = ProfileBook()
    profiles.add(profile("late", "Unattributed", "SMB", 100, 0, 3 * DAY, DAY))
    r = build_report(profiles, CreditBook(), models=MODELS, currency="USD", exponent=2)
    assert r.conversion is None


def test_channel_by_segment_matrix_holds_customers_and_revenue():
    matrix = report().matrix
    assert matrix.channels == ("Direct", "Organic Search", "Paid Search")
    assert matrix.segments == ("SMB", "Mid-Market", "Enterprise")
    assert matrix.cell("Organic Search", "SMB") == matrix.cells["Organic Search", "SMB"]
    assert (matrix.cell("Organic Search", "SMB").customers,
            matrix.cell("Organic Search", "SMB").revenue_minor) == (1, 5_000)
    assert matrix.cell("Direct", "SMB").customers == 0


def test_credited_totals_and_mrr():
    r = report(mrr_movements={"new": 5, "churn": 1})
    assert r.credited_minor == {"first_touch": 150_000, "linear": 150_000}
    assert r.mrr_minor == 40_000
    assert r.mrr_movements == {"new": 5, "churn": 1}


# ----------------------------------------------------------------------------------- truth


def test_truth_comparison_counts_matches_and_lists_the_differences():
    t = report().truth
    assert (t.truth_customers, t.pipeline_customers) == (6, 5)
    assert t.missing == ("p7",)
    assert t.unexpected == ()
    assert (t.compared, t.matched) == (4, 3)
    assert t.match_share == pytest.approx(0.75)
    assert t.differences == (ChannelDifference("p2", "Organic Search", "Paid Search",
                                               "Paid Search"),)


def test_shared_device_customers_are_compared_apart():
    t = report().truth
    assert (t.ambiguous_compared, t.ambiguous_matched, t.ambiguous_first_visit_matched) == (
        1, 0, 1)


def test_revenue_is_checked_in_the_original_currency_to_the_minor_unit():
    assert report().truth.revenue_matched == 5


def test_a_customer_the_truth_never_saw_pay_is_unexpected():
    profiles, credits = books()
    t = build_report(profiles, credits, models=MODELS, currency="USD", exponent=2,
                     truth=[truth("p1", "Direct", revenue=100_000), truth("p2", None)]).truth
    assert t.unexpected == ("p2", "p3", "p4", "p5")
    assert (t.compared, t.matched) == (1, 1)


def test_truth_person_reads_the_truth_file_record():
    record = {"user_id": "usr_1", "acquisition_channel": "Referral", "ambiguous": False,
              "first_visit_channel": "Referral", "segment": "SMB", "currency": "GBP",
              "revenue_minor": 1200, "payments_minor": 1500, "refunds_minor": 300}
    assert TruthPerson.from_dict(record) == TruthPerson("usr_1", "Referral", False, "Referral",
                                                        "GBP", 1200)


# ------------------------------------------------------------------------------- rendering


@pytest.mark.parametrize(("minor", "exponent", "expected"), [
    (123_456_789, 2, "1,234,568"), (-150, 2, "-2"), (149, 2, "1"), (1_234_567, 0, "1,234,567"),
    (0, 2, "0"),
])
def test_money_is_whole_major_units_with_thousands_separators(minor, exponent, expected):
    assert money(minor, exponent) == expected


def test_the_printed_report_fits_a_100_column_terminal_and_names_every_section():
    text = render_text(report(mrr_movements={"new": 5}), title="five customers")
    assert max(map(len, text.splitlines())) <= 100
    for section in ("WHO ARE MY BEST CUSTOMERS?", "WHERE DID THEY COME FROM?", "MRR", "RETENTION",
                    "CHECKED AGAINST THE SIMULATOR'S TRUTH", "CONSISTENCY OF THE OUTPUTS"):
        assert section in text
    assert "The top 20 % of customers (1 of 5) bring 66.7 % of revenue." in text
    assert "p2: pipeline Organic Search, truth Paid Search" in text


def test_the_html_report_is_self_contained_with_inline_svg():
    page = render_html(report(), title="five <customers>")
    assert page.count("<svg") >= 4
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")
    assert "five &lt;customers&gt;" in page


def test_small_numbers_are_marked_and_never_lead_a_ranking():
    """Direct has the highest LTV from one $1,000 deal; with a minimum of two customers it is
    marked and ranked after the channels that have two."""
    r = report(min_customers=2)
    assert [(row.channel, row.low_confidence) for row in r.channels if row.customers] == [
        ("Organic Search", False), ("Paid Search", False), ("Direct", True)]
    assert [row.channel for row in r.channels if not row.customers] == ["Email"]
    assert {row.segment: row.low_confidence for row in r.segments} == {
        "Enterprise": True, "Mid-Market": True, "SMB": False}
    assert r.concentration.power_segment.segment == "SMB"  # not Enterprise's one customer


def test_with_the_default_minimum_no_segment_of_five_customers_is_the_power_segment():
    r = report(min_customers=MIN_CUSTOMERS)
    assert MIN_CUSTOMERS == 10
    assert r.concentration.power_segment is None
    assert all(row.low_confidence for row in r.segments)


def test_the_report_marks_small_numbers_and_says_why():
    r = report(min_customers=2)
    text = render_text(r, title="five customers")
    assert "  3  Direct *" in text
    assert "* fewer than 2 customers: low confidence, never ranked first." in text
    page = render_html(r, title="five customers")
    assert "Direct *" in page and "(n=1)" in page
    assert "fewer than 2 customers: low confidence" in page
    assert "fewer than" not in render_text(report(), title="five customers")


def test_the_report_shows_the_mrr_bridge_from_the_customers_movements():
    jan, feb = 1_735_689_600_000, 1_738_368_000_000  # 2025-01-01, 2025-02-01 (UTC)
    profiles = ProfileBook()
    for record in (
        {**profile("a", "Email", "SMB", 1_000, 1_500, 0, jan),
         "mrr_movements": [{"event_id": "s1", "ts": jan, "kind": "new", "delta_minor": 2_000},
                           {"event_id": "s2", "ts": feb, "kind": "contraction",
                            "delta_minor": -500}]},
        {**profile("b", "Direct", "SMB", 1_000, 0, 0, jan),
         "mrr_movements": [{"event_id": "s3", "ts": jan, "kind": "new", "delta_minor": 700},
                           {"event_id": "s4", "ts": feb, "kind": "churn", "delta_minor": -700}]},
        {**profile("c", None, "SMB", 0, 900, 0, None), "mrr_movements": []},
    ):
        profiles.add(record)
    r = build_report(profiles, CreditBook(), models=MODELS, currency="USD", exponent=2)
    assert [(m.month, m.opening, m.new, m.contraction, m.churn, m.closing)
            for m in r.mrr_bridge] == [("2025-01", 0, 2_700, 0, 0, 2_700),
                                       ("2025-02", 2_700, 0, 500, 700, 1_500)]
    assert r.mrr_bridge[-1].closing == r.mrr_minor
    text = render_text(r, title="bridge")
    assert max(map(len, text.splitlines())) <= 100
    rows = [line.split() for line in text.splitlines() if line.startswith("  2025-02")]
    assert rows == [["2025-02", "27", "0", "0", "0", "5", "7", "15"]]  # whole dollars
    assert "closing 2025-02" in render_html(r, title="bridge")


def test_the_report_shows_retention_by_segment_channel_and_cohort():
    profiles = ProfileBook()
    for record in RETENTION_PROFILES:
        profiles.add(record)
    r = build_report(profiles, CreditBook(), models=MODELS, currency="USD", exponent=2,
                     min_customers=2, as_of_ms=RETENTION_AS_OF)
    assert r.retention == retention_of(RETENTION_PROFILES, min_customers=2,
                                       as_of_ms=RETENTION_AS_OF)
    text = render_text(r, title="retention")
    assert max(map(len, text.splitlines())) <= 100
    section = text[text.index("RETENTION"):text.index("CHECKED AGAINST")]
    assert "at 3, 6 and 12 months" in section and "Rows rank by NRR at 12 months." in section
    rows = [line.split() for line in section.splitlines()]
    assert ["SMB", "3", "3", "1", "89.5", "57.9", "66.7"] in rows
    assert ["Enterprise", "*", "3", "1", "*", "1", "200.0", "100.0", "100.0"] in rows
    assert ["12", "1", "*", "1", "0.0", "0.0", "0.0"] in rows  # Organic Search, C alone
    assert rows.count(["2025-01", "3", "147.4", "105.3", "89.5", "121.1", "121.1", "121.1",
                       "121.1", "121.1", "121.1", "94.7", "94.7", "94.7"]) == 1  # NRR
    assert ["2025-03", "1", *["100.0"] * 10] in rows  # GRR: E's expansion is not counted
    page = render_html(r, title="retention")
    assert "<h2>Retention</h2>" in page and "<h3>GRR by conversion cohort</h3>" in page
    assert ("title='NRR 89.5 % = 170 / 190; GRR 57.9 % = 110 / 190; logos 2 of 3 (66.7 %)'"
            in page)


def test_a_report_too_young_for_retention_says_so():
    text = render_text(report(), title="five customers")
    assert "RETENTION\n  No conversion month is complete yet: nothing to measure." in text
