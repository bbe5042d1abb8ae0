"""Retention by conversion cohort, computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.months import add_months, month_of
from readmodels.customers import customers_of
from readmodels.retention import (
    EVERYONE,
    Retained,
    as_dict,
    data_clock,
    month_end_mrr,
    retention,
    retention_of,
    tenths_of_percent,
)


def ts(day: str) -> int:
    """Epoch milliseconds of `YYYY-MM-DD` (noon UTC, or midnight with a trailing `T0`)."""
    midnight = day.endswith("T0")
    moment = datetime.strptime(day.removesuffix("T0"), "%Y-%m-%d").replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000) + (0 if midnight else 12 * 3_600_000)


def customer(person_id: str, segment: str, channel: str, conversion: str,
             movements: list[tuple[str, str, int]], *, journey: tuple[str, ...] = ()) -> dict:
    changes = [{"event_id": f"{person_id}-{i}", "ts": ts(day), "kind": kind, "delta_minor": delta}
               for i, (day, kind, delta) in enumerate(movements)]
    return {"schema": "profile/1", "person_id": person_id, "anonymous_ids": ["d"],
            "acquisition_channel": channel, "acquisition_campaign": None, "segment": segment,
            "traits": {}, "lifetime_revenue_minor": 0,
            "mrr_minor": sum(m["delta_minor"] for m in changes), "reporting_currency": "USD",
            "first_touch_ts": None, "conversion_ts": ts(conversion),
            "journey": [{"event_id": f"{person_id}-t{i}", "ts": ts(day), "anonymous_id": "d",
                         "channel": channel, "source": "s", "medium": "m", "campaign": None}
                        for i, day in enumerate(journey)],
            "mrr_movements": changes,
            "counts": {"payments": 1, "subscription_changes": len(changes)}}


# Cohort 2025-01: A expands then contracts; B churns and comes back; C starts low (a
# contraction inside the conversion month), expands, then churns; D pays once, no subscription.
# Cohort 2025-03: E, whose subscription started before the first payment, expands.
PROFILES = [
    customer("A", "SMB", "Paid Search", "2025-01-05", [
        ("2025-01-05", "new", 10_000), ("2025-02-10", "expansion", 5_000),
        ("2025-04-02", "contraction", -3_000)]),
    customer("B", "SMB", "Paid Search", "2025-01-20", [
        ("2025-01-20", "new", 8_000), ("2025-03-15", "churn", -8_000),
        ("2025-05-03", "reactivation", 6_000)]),
    customer("C", "SMB", "Organic Search", "2025-01-25", [
        ("2025-01-25", "new", 2_000), ("2025-01-28", "contraction", -1_000),
        ("2025-02-15", "expansion", 4_000), ("2025-11-20", "churn", -5_000)]),
    customer("D", "SMB", "Organic Search", "2025-01-30", []),
    customer("E", "Enterprise", "Organic Search", "2025-03-10", [
        ("2025-02-25", "new", 5_000), ("2025-04-20", "expansion", 5_000)],
        journey=("2026-02-15",)),
]
AS_OF = ts("2026-02-15")
"""The last complete month is 2026-01: cohort 2025-01 reaches 12 months, 2025-03 only 10."""


def test_a_cohort_by_hand_with_expansion_contraction_churn_and_reactivation():
    table = retention(customers_of(PROFILES), as_of_ms=AS_OF, min_customers=2)
    assert table.last_complete_month == "2026-01"
    january, march = table.cohorts
    assert (january.month, january.converted, len(january.ages)) == ("2025-01", 4, 13)
    # customers, Σ start, Σ MRR(k), Σ min(MRR(k), start), logos
    assert january.ages[0] == Retained(3, 19_000, 19_000, 19_000, 3)
    assert january.ages[1] == Retained(3, 19_000, 28_000, 19_000, 3)   # expansion
    assert january.ages[2] == Retained(3, 19_000, 20_000, 11_000, 2)   # B churned
    assert january.ages[3] == Retained(3, 19_000, 17_000, 11_000, 2)   # A contracted
    assert january.ages[4] == Retained(3, 19_000, 23_000, 17_000, 3)   # B reactivated
    assert january.ages[9] == january.ages[4]
    assert january.ages[10] == Retained(3, 19_000, 18_000, 16_000, 2)  # C churned
    assert january.ages[12] == january.ages[10]
    assert (march.month, march.converted, len(march.ages)) == ("2025-03", 1, 11)
    assert march.ages[0] == Retained(1, 5_000, 5_000, 5_000, 1)
    assert march.ages[10] == Retained(1, 5_000, 10_000, 5_000, 1)


def test_ratios_are_exact_and_grr_is_capped_at_the_starting_mrr():
    cell = Retained(3, 19_000, 28_000, 19_000, 3)
    assert (cell.nrr, cell.grr, cell.logo_retention) == (Fraction(28, 19), 1, 1)
    three = Retained(3, 19_000, 17_000, 11_000, 2)
    assert [tenths_of_percent(r) for r in (three.nrr, three.grr, three.logo_retention)] == [
        895, 579, 667]
    assert Retained().nrr is None and Retained().logo_retention is None


def test_pooled_figures_sum_numerators_and_denominators_over_cohorts_old_enough():
    table = retention(customers_of(PROFILES), as_of_ms=AS_OF, min_customers=2)
    everyone = table.overall
    assert everyone.name == EVERYONE and everyone.customers == 4
    three, six, twelve = (everyone.at(age) for age in (3, 6, 12))
    assert (three.cohorts, three.retained) == (2, Retained(4, 24_000, 27_000, 16_000, 3))
    assert (six.cohorts, six.retained) == (2, Retained(4, 24_000, 33_000, 22_000, 4))
    assert (twelve.cohorts, twelve.retained) == (1, Retained(3, 19_000, 18_000, 16_000, 2))
    assert tenths_of_percent(twelve.retained.nrr) == 947
    assert tenths_of_percent(twelve.retained.grr) == 842


def test_a_cohort_too_young_for_an_age_is_not_measured_at_it():
    table = retention(customers_of(PROFILES), as_of_ms=AS_OF, min_customers=2)
    enterprise = next(g for g in table.segments if g.name == "Enterprise")
    assert [f.age for f in enterprise.figures] == [3, 6]
    assert enterprise.at(12) is None
    assert enterprise.at(6).retained == Retained(1, 5_000, 10_000, 5_000, 1)


def test_groups_rank_by_nrr_at_the_longest_age_and_small_ones_never_lead():
    table = retention(customers_of(PROFILES), as_of_ms=AS_OF, min_customers=2)
    assert table.ranked_by == 12
    assert [g.name for g in table.segments] == ["SMB", "Enterprise"]  # Enterprise: too young
    assert [g.name for g in table.channels] == ["Paid Search", "Organic Search"]
    paid, organic = (g.at(12) for g in table.channels)
    assert (paid.retained, paid.low_confidence) == (Retained(2, 18_000, 18_000, 16_000, 2),
                                                    False)
    assert (organic.retained, organic.low_confidence) == (Retained(1, 1_000, 0, 0, 0), True)
    as_of_june = retention(customers_of(PROFILES), as_of_ms=ts("2025-07-02"), min_customers=2)
    assert as_of_june.ranked_by == 3
    # at 3 months Organic Search (C and E, 15,000 of 6,000) retains most and has enough people;
    # with a minimum of 3 it is small, and a small group never leads a confident one
    assert [g.name for g in as_of_june.channels] == ["Organic Search", "Paid Search"]
    strict = retention(customers_of(PROFILES + [customer(
        "F", "SMB", "Paid Search", "2025-01-06", [("2025-01-06", "new", 1_000)])]),
        as_of_ms=ts("2025-07-02"), min_customers=3)
    assert [(g.name, g.at(3).low_confidence) for g in strict.channels] == [
        ("Paid Search", False), ("Organic Search", True)]


def test_only_complete_months_count_and_a_month_ends_at_midnight_utc():
    assert retention(customers_of(PROFILES), as_of_ms=ts("2025-01-31"),
                     min_customers=2).cohorts == ()
    just_ended = retention(customers_of(PROFILES), as_of_ms=ts("2025-02-01T0"), min_customers=2)
    assert just_ended.last_complete_month == "2025-01"
    assert [len(c.ages) for c in just_ended.cohorts] == [1]
    assert just_ended.overall.figures == () and just_ended.ranked_by is None


def test_month_end_mrr_counts_earlier_movements_in_the_first_month_and_ignores_later_ones():
    movements = [(ts("2024-12-30"), "new", 100), (ts("2025-02-01T0"), "expansion", 50),
                 (ts("2025-05-01"), "churn", -150)]
    assert month_end_mrr(movements, "2025-01", "2025-04") == (100, 150, 150, 150)


def test_without_an_as_of_the_clock_is_the_newest_time_the_profiles_show():
    assert data_clock(PROFILES) == AS_OF  # E's last journey touch
    assert data_clock([]) is None
    assert retention_of(PROFILES, min_customers=2) == retention(
        customers_of(PROFILES), as_of_ms=AS_OF, min_customers=2)
    assert retention_of([], min_customers=2).cohorts == ()


def test_the_json_form_keeps_every_numerator_and_denominator():
    answer = orjson.loads(orjson.dumps(as_dict(retention_of(PROFILES, min_customers=2))))
    assert answer["last_complete_month"] == "2026-01" and answer["ranked_by_age"] == 12
    first = answer["cohorts"][0]
    assert first["cohort"] == "2025-01" and first["converted"] == 4
    assert first["ages"][3] == {
        "age": 3, "customers": 3, "starting_minor": 19_000, "retained_minor": 17_000,
        "gross_retained_minor": 11_000, "logos": 2, "nrr_percent": 89.5, "grr_percent": 57.9,
        "logo_retention_percent": 66.7}
    assert answer["overall"]["figures"][-1]["age"] == 12
    assert answer["overall"]["figures"][-1]["cohorts"] == 1


@pytest.mark.parametrize(("share", "tenths"), [
    (Fraction(1, 3), 333), (Fraction(2, 3), 667), (Fraction(1, 2000), 1), (Fraction(0), 0),
    (Fraction(28, 19), 1474), (Fraction(-1, 2000), -1)])
def test_percent_to_one_decimal_rounds_half_away_from_zero(share, tenths):
    assert tenths_of_percent(share) == tenths


# ------------------------------------------------------------------------------- properties

DAY = 86_400_000
START = ts("2025-01-01T0")
CLOCK = START + 560 * DAY
SEGMENT_NAMES = ("SMB", "Mid-Market", "Enterprise")


@st.composite
def customers(draw, segments=SEGMENT_NAMES) -> dict:
    conversion = START + draw(st.integers(0, 540 * DAY))
    offsets = sorted(draw(st.lists(st.integers(-40 * DAY, 560 * DAY), max_size=8)))
    levels = draw(st.lists(st.integers(0, 50_000), min_size=len(offsets),
                           max_size=len(offsets)))
    deltas, before = [], 0
    for offset, level in zip(offsets, levels, strict=True):
        if level != before:
            deltas.append((conversion + offset, level - before))
        before = level
    person = f"p{draw(st.integers(0, 10**9))}"
    return {"person_id": person, "segment": draw(st.sampled_from(segments)),
            "acquisition_channel": draw(st.sampled_from(("Direct", "Referral", None))),
            "lifetime_revenue_minor": 0, "mrr_minor": before, "first_touch_ts": None,
            "conversion_ts": conversion,
            "mrr_movements": [{"event_id": f"{person}-{i}", "ts": t, "kind": "expansion",
                               "delta_minor": d} for i, (t, d) in enumerate(deltas)]}


def population(segments=SEGMENT_NAMES):
    return st.lists(customers(segments), max_size=25,
                    unique_by=lambda p: p["person_id"])


def mrr_before(profile: dict, month: str) -> int:
    """MRR at the end of `month`, from epoch boundaries rather than month labels."""
    year, number = divmod(int(month[:4]) * 12 + int(month[5:]), 12)
    end = int(datetime(year, number + 1, 1, tzinfo=UTC).timestamp() * 1000)
    return sum(m["delta_minor"] for m in profile["mrr_movements"] if m["ts"] < end)


def every_figure(table):
    yield from (cell for cohort in table.cohorts for cell in cohort.ages)
    for group in (table.overall, *table.segments, *table.channels):
        yield from (figure.retained for figure in group.figures)


@settings(max_examples=150, deadline=None)
@given(population(), st.integers(0, 40 * DAY))
def test_grr_stays_within_the_starting_mrr_and_the_nrr_and_logos_within_the_customers(
        profiles, later):
    table = retention(customers_of(profiles), as_of_ms=CLOCK + later, min_customers=3)
    for cell in every_figure(table):
        assert 0 <= cell.gross_retained_minor <= cell.starting_minor
        assert cell.gross_retained_minor <= cell.retained_minor
        assert 0 <= cell.logos <= cell.customers
        if cell.customers:
            assert cell.grr <= 1 and cell.grr <= cell.nrr and cell.logo_retention <= 1
    for cohort in table.cohorts:
        assert cohort.ages[0].nrr in (None, 1) and cohort.ages[0].grr in (None, 1)


@settings(max_examples=150, deadline=None)
@given(population())
def test_cohort_sums_are_the_profiles_mrr_at_the_end_of_each_month(profiles):
    table = retention(customers_of(profiles), as_of_ms=CLOCK, min_customers=3)
    for cohort in table.cohorts:
        members = [p for p in profiles if month_of(p["conversion_ts"]) == cohort.month]
        assert cohort.converted == len(members)
        measured = [p for p in members if mrr_before(p, cohort.month) > 0]
        for age, cell in enumerate(cohort.ages):
            month = add_months(cohort.month, age)
            assert month <= table.last_complete_month
            assert cell.customers == len(measured)
            assert cell.starting_minor == sum(mrr_before(p, cohort.month) for p in measured)
            assert cell.retained_minor == sum(mrr_before(p, month) for p in measured)
        assert add_months(cohort.month, len(cohort.ages)) > table.last_complete_month


@settings(max_examples=150, deadline=None)
@given(population())
def test_a_pooled_figure_is_the_sum_of_the_cohorts_old_enough(profiles):
    table = retention(customers_of(profiles), as_of_ms=CLOCK, min_customers=3)
    for figure in table.overall.figures:
        old_enough = [c.ages[figure.age] for c in table.cohorts
                      if len(c.ages) > figure.age and c.ages[figure.age].customers]
        assert figure.cohorts == len(old_enough)
        assert figure.retained == sum(old_enough, Retained())
        assert figure.low_confidence == (figure.retained.customers < 3)


@settings(max_examples=150, deadline=None)
@given(population(("SMB", "Mid-Market")), customers(("Enterprise",)))
def test_a_customer_of_another_segment_changes_no_segment_figure(profiles, newcomer):
    def by_segment(people):
        table = retention(customers_of(people), as_of_ms=CLOCK, min_customers=3)
        return {g.name: g for g in table.segments}

    before = by_segment(profiles)
    after = by_segment([*profiles, newcomer])
    assert {name: group for name, group in after.items() if name != "Enterprise"} == before
