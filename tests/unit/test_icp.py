from __future__ import annotations

import argparse
import json
import math
import random
from fractions import Fraction

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from personify.report import render_html, render_text
from personify.simulator import SimulationConfig, add_arguments, generate, run
from processors.config import PipelineConfig
from processors.reference import run_in_event_time
from processors.validation import decode
from readmodels.icp import (
    DIMENSIONS,
    UNKNOWN,
    icp_as_dict,
    ideal_customer_profile,
    lift_interval,
    size_band,
    trait_lifts,
    trait_values,
)
from readmodels.report import MIN_CUSTOMERS, TOP_PERCENT, CreditBook, ProfileBook, build_report
from streams.topology import Settings

Z = 1.959963984540054


def profile(person_id: str, revenue: int, channel: str = "Direct", traits=None,
            converted: bool = True) -> dict:
    return {"schema": "profile/1", "person_id": person_id, "anonymous_ids": [f"a-{person_id}"],
            "acquisition_channel": channel if converted else None, "acquisition_campaign": None,
            "segment": "SMB", "traits": traits, "lifetime_revenue_minor": revenue,
            "mrr_minor": 0, "reporting_currency": "USD", "first_touch_ts": 0,
            "conversion_ts": 1 if converted else None, "counts": {}}


def traits(industry=None, size=None, country=None, plan=None) -> dict:
    return {"industry": industry, "company_size": size, "country": country, "plan": plan}


# Ten customers, the top 20 % are p01 and p02; p00 never paid. Hand-computed below.
PROFILES = [
    profile("p00", 0, traits=traits("Software", 300, "GB", "business"), converted=False),
    profile("p01", 10_000, traits=traits("Software", 250, "US", "business")),
    profile("p02", 9_000, traits=traits("Software", 800, "GB", "business")),
    profile("p03", 800, traits={"industry": "Software"}),
    profile("p04", 700, traits=traits("Retail", 0, "US", "team")),
    profile("p05", 600, traits=None),
    profile("p06", 500, "Paid Search", traits("Retail", 11, "US", "team")),
    profile("p07", 500, "Paid Search", traits("Retail", 50, "US", "team")),
    profile("p08", 400, "Paid Search", traits("Retail", 51, "US", "starter")),
    profile("p09", 300, "Paid Search", traits("Retail", 5_000, "US", "starter")),
    profile("p10", 200, "Paid Search", traits("Retail", 5_001, "US", "starter")),
]


def hand_icp(min_customers: int = 2):
    return ideal_customer_profile(PROFILES, min_customers=min_customers, top_percent=20)


def row(icp, dimension, value):
    return next(r for r in icp.traits if (r.dimension, r.value) == (dimension, value))


# ------------------------------------------------------------------------------- by hand


@pytest.mark.parametrize(("size", "band"), [
    (None, UNKNOWN), (0, "1-10"), (1, "1-10"), (10, "1-10"), (11, "11-50"), (50, "11-50"),
    (51, "51-200"), (200, "51-200"), (201, "201-1000"), (1000, "201-1000"),
    (1001, "1001-5000"), (5000, "1001-5000"), (5001, "5001+"), (100_000_000, "5001+")])
def test_company_sizes_fall_in_bands_whose_bounds_are_inclusive(size, band):
    assert size_band(size) == band


def test_a_trait_never_sent_is_unknown():
    assert trait_values(None) == dict.fromkeys(DIMENSIONS, UNKNOWN)
    assert trait_values({"industry": "Media", "plan": None}) == {
        "industry": "Media", "company_size": UNKNOWN, "country": UNKNOWN, "plan": UNKNOWN}


def test_lift_is_the_top_share_over_the_share_of_everyone_exactly():
    icp = hand_icp()
    assert (icp.customers, icp.top_customers) == (10, 2)
    software = row(icp, "industry", "Software")
    assert (software.top, software.top_customers, software.customers,
            software.all_customers) == (2, 2, 3, 10)
    assert (software.share_top, software.share_all) == (1, Fraction(3, 10))
    assert software.lift == Fraction(10, 3)
    assert row(icp, "industry", "Retail").lift == 0
    assert row(icp, "company_size", "201-1000").lift == 5
    assert row(icp, "country", "US").lift == Fraction(1 * 10, 2 * 7)  # p01 of 7 holders
    assert row(icp, "plan", UNKNOWN).lift == 0


def test_the_interval_is_the_delta_method_on_the_log_lift():
    # a = 3 of t = 4 top customers, c = 1 of r = 6 others: lift 15/8,
    # Var = 1²·1/(3·4·4²) + 1·5/(6·4²) = 11/192; the upper end capped at n/t = 2.5
    low, high = lift_interval(3, 4, 1, 6)
    assert low == pytest.approx(15 / 8 * math.exp(-Z * math.sqrt(11 / 192)))
    assert low == pytest.approx(1.1729, abs=1e-4)
    assert high == 2.5


def test_a_zero_cell_adds_a_half_to_every_cell_for_the_interval():
    # (2, 0, 0, 8) → (2.5, 0.5, 0.5, 8.5): lift 2.5·12/(3·3), Var = .25·.5/(2.5·3·9) + .5·8.5/81
    low, high = lift_interval(2, 2, 0, 8)
    variance = 0.25 * 0.5 / (2.5 * 3 * 9) + 0.5 * 8.5 / 81
    assert low == pytest.approx(30 / 9 * math.exp(-Z * math.sqrt(variance)))
    assert low == pytest.approx(2.1110, abs=1e-4)
    assert high == 5.0
    assert lift_interval(0, 2, 5, 8)[0] == pytest.approx(0.0, abs=0.2)


def test_there_is_no_interval_when_every_customer_is_top():
    assert lift_interval(1, 1, 0, 0) is None
    only = ideal_customer_profile(PROFILES[1:2], min_customers=1, top_percent=20)
    assert only.top_customers == 1 and all(r.interval is None and r.lift == 1
                                           for r in only.traits)
    assert only.dimensions == 0 and only.fits == 0


def test_the_profile_is_the_confident_known_values_whose_interval_lies_above_one():
    icp = hand_icp()
    assert [(r.dimension, r.value) for r in icp.profile] == [
        ("company_size", "201-1000"), ("plan", "business"), ("industry", "Software")]
    assert all(r.interval[0] > 1 and r.lift > 1 for r in icp.profile)
    gb = row(icp, "country", "GB")  # lift 5 too, but one top customer holds it
    assert (gb.top, gb.lift, gb.low_confidence, gb.ideal) == (1, 5, True, False)
    assert gb.interval[0] > 1


def test_low_confidence_values_never_lead_and_unknown_is_never_in_the_profile():
    icp = hand_icp()
    confident = [not r.low_confidence for r in icp.traits]
    assert confident == sorted(confident, reverse=True)
    everyone_unknown = [profile(f"u{i}", 100 - i, traits=None) for i in range(20)]
    flat = ideal_customer_profile(everyone_unknown, min_customers=1, top_percent=20)
    assert {(r.value, r.lift) for r in flat.traits} == {(UNKNOWN, 1)}
    assert flat.profile == ()


def test_icp_fit_counts_the_dimensions_matched_and_channels_rank_by_fit_rate():
    icp = hand_icp()
    assert icp.dimensions == 3
    assert icp.fit_counts == (7, 1, 0, 2)  # p03 matches the industry only
    assert icp.fits == 2
    assert [(ch.channel, ch.customers, ch.fits, ch.fit_rate, ch.low_confidence)
            for ch in icp.channels] == [("Direct", 5, 2, Fraction(2, 5), False),
                                        ("Paid Search", 5, 0, 0, False)]


def test_a_channel_with_few_customers_is_marked_and_ranked_after_the_confident_ones():
    icp = hand_icp(min_customers=2)
    few = ideal_customer_profile(
        [*PROFILES, profile("p11", 100, "Referral", traits("Software", 300, "US", "business"))],
        min_customers=2, top_percent=20)
    assert icp.channels[0].channel == "Direct"
    assert [(ch.channel, ch.low_confidence) for ch in few.channels][-1] == ("Referral", True)
    assert few.channels[-1].fit_rate == 1


def test_the_served_figures_round_only_for_display():
    served = icp_as_dict(hand_icp())
    software = next(t for t in served["traits"] if t["value"] == "Software")
    assert software["lift"] == 3.333 and software["top_share_percent"] == 100.0
    assert software["all_share_percent"] == 30.0 and software["interval"][0] > 1
    assert served["profile"][0] == {"dimension": "company_size", "value": "201-1000"}
    assert served["fits"] == 2 and served["fit_counts"] == [7, 1, 0, 2]
    assert orjson.loads(orjson.dumps(served)) == served


def test_the_report_carries_the_profile_and_prints_both_tables():
    book = ProfileBook()
    for record in PROFILES:
        book.add(record)
    report = build_report(book, CreditBook(), models=("first_touch",), currency="USD",
                          exponent=2, min_customers=2)
    assert report.icp == hand_icp()
    text = render_text(report, title="t")
    assert "IDEAL CUSTOMER PROFILE" in text
    assert "Profile: industry Software; company size 201-1000; plan business." in text
    assert "ICP-fit customers (matching all 3 of its dimensions): 2 of 10 (20.0 %)" in text
    assert "3.33" in text and "Paid Search" in text
    assert all(len(line) <= 100 for line in text.splitlines())
    assert "<h2>Ideal customer profile</h2>" in render_html(report, title="t")


# ---------------------------------------------------------------------------- properties

VALUES = st.fixed_dictionaries({
    "industry": st.sampled_from(("Software", "Retail", UNKNOWN)),
    "company_size": st.sampled_from(("1-10", "201-1000", "5001+")),
    "country": st.sampled_from(("US", "DE")), "plan": st.sampled_from(("team", UNKNOWN))})


@given(st.lists(VALUES, min_size=1, max_size=15), st.integers(1, 5))
def test_the_lift_is_one_when_the_top_looks_like_everyone(top, copies):
    rows = trait_lifts(top, top * copies, min_customers=1)
    assert {r.lift for r in rows} == {1}
    assert not any(r.ideal for r in rows)


@given(st.lists(VALUES, min_size=1, max_size=15), st.lists(VALUES, max_size=40))
def test_supports_sum_to_the_top_customers_in_every_dimension(top, rest):
    rows = trait_lifts(top, rest, min_customers=3)
    for dimension in DIMENSIONS:
        mine = [r for r in rows if r.dimension == dimension]
        assert sum(r.top for r in mine) == len(top)
        assert sum(r.customers for r in mine) == len(top) + len(rest)
        assert sum(r.share_top for r in mine) == 1


@given(st.lists(VALUES, min_size=1, max_size=15), st.lists(VALUES, max_size=40),
       st.integers(1, 10), st.data())
def test_more_customers_outside_the_top_sharing_a_value_lower_its_lift(top, rest, extra, data):
    dimension = data.draw(st.sampled_from(DIMENSIONS))
    value = top[0][dimension]
    before = _lift(trait_lifts(top, rest, 1), dimension, value)
    alike = [dict(v, **{dimension: value})
             for v in data.draw(st.lists(VALUES, min_size=extra, max_size=extra))]
    rows = trait_lifts(top, rest + alike, 1)
    after = _lift(rows, dimension, value)
    held = sum(v[dimension] == value for v in top + rest)
    assert after < before if held < len(top) + len(rest) else after == before == 1


@given(st.integers(1, 30), st.integers(0, 30), st.integers(1, 60), st.integers(0, 60))
def test_the_interval_holds_the_lift_and_never_passes_the_largest_lift(t, a, r, c):
    a, c = min(a, t), min(c, r)
    if a + c == 0:
        return
    low, high = lift_interval(a, t, c, r)
    lift = Fraction(a * (t + r), t * (a + c))
    assert 0 <= low <= high <= (t + r) / t + 1e-12
    if 0 not in (a, t - a, c, r - c):
        assert low <= lift <= high


def _lift(rows, dimension, value):
    return next(r.lift for r in rows if (r.dimension, r.value) == (dimension, value))


# ----------------------------------------------------------------------------- simulator


def batch_icp(people: int, seed: int):
    """The ICP of the batch computation's profiles of a simulated log."""
    config = SimulationConfig(people=people, malformed_share=0.0)
    pipeline_config = PipelineConfig()
    kinds = {"page-views-v1": "page_view", "signups-v1": "signup", "billing-v1": "billing"}
    events = [decode(orjson.dumps(e.value), kinds[e.topic], now_ms=config.end_ms,
                     config=pipeline_config.validation)
              for e in generate(config, random.Random(seed)) if e.defect is None]
    profiles = run_in_event_time(events, pipeline_config, config.end_ms).profiles()
    return ideal_customer_profile(profiles.values(), min_customers=MIN_CUSTOMERS,
                                  top_percent=TOP_PERCENT)


PLANTED = (("industry", "Software"), ("company_size", "201-1000"))


def test_the_batch_computation_finds_the_ideal_customer_profile_the_simulator_planted():
    found = batch_icp(10_000, 3)
    for dimension, value in PLANTED:
        planted = row(found, dimension, value)
        assert planted.ideal and planted.lift > 1 and planted.interval[0] > 1, planted
    assert found.fits > 0


def test_the_truth_marks_the_people_who_fit_the_planted_profile():
    truths = []
    for _ in generate(SimulationConfig(people=3_000), random.Random(4), on_person=truths.append):
        pass
    signups = [t for t in truths if t.user_id]
    assert any(t.icp_fit for t in signups)
    assert all(t.icp_fit == (t.industry == "Software" and 201 <= t.company_size <= 1000)
               for t in signups)


def test_the_truth_file_records_the_planted_profile(tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    truth = tmp_path / "truth.json"
    run(parser.parse_args(["--people", "300", "--seed", "3", "--out", str(tmp_path / "e.jsonl"),
                           "--truth", str(truth), "--no-progress"]), Settings())
    document = json.loads(truth.read_text())
    assert document["config"]["icp"] == {"industry": "Software", "employees": [201, 1000],
                                         "pay_rate_factor": 2.0, "mrr_factor": 3.0}
    assert all("icp_fit" in person for person in document["people"])
