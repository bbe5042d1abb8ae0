from __future__ import annotations

import json
from dataclasses import replace
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.aggregates import (
    ALL_TIME,
    CONVERSION_TIME_BOUNDS,
    HOUR_MS,
    MAX_BUCKETS,
    MOVEMENT_KINDS,
    WINDOWS,
    Aggregate,
    AggregateConfig,
    AttributedRow,
    CellKey,
    CustomerValueRow,
    bucket_changes,
    channel_segment_report,
    fold,
    fold_many,
    initialize,
    ltv_by_channel,
    merge,
    mrr_movements,
    sum_cells,
    time_to_conversion,
    windows,
)
from processors.attribution import DAY_MS, MODELS, UNATTRIBUTED_LINE, CreditLine
from processors.person import Converted, MrrMovement, Processed
from processors.revenue import Credit, CreditedLine
from processors.segments import SEGMENTS

CONFIG = AggregateConfig.for_models(MODELS)
T0 = 20_000 * DAY_MS + 17 * 60_000
"""An event time 17 minutes into an hour."""
MINUTE_MS = 60_000


def line(channel: str, reporting: int) -> CreditedLine:
    touch = CreditLine(f"touch-{channel}", 0, channel, "src", "med", None, Fraction(1, 2))
    return CreditedLine(touch, reporting, reporting)


def credit(
    model: str = "first_touch",
    amount: int = 1000,
    ts: int = T0,
    lines: tuple[tuple[str, int], ...] = (("Paid Search", 600), ("Email", 400)),
    acquisition: str = "Paid Search",
    segment: str = "SMB",
    event_id: str = "pay-1",
) -> Credit:
    return Credit(
        revenue_event_id=event_id, person_id="user-1", model=model,
        kind="payment" if amount > 0 else "refund", revenue_ts=ts, amount_minor=amount,
        currency="USD", reporting_amount_minor=amount, reporting_currency="USD",
        segment=segment, acquisition_channel=acquisition,
        lines=tuple(line(channel, reporting) for channel, reporting in lines),
    )


def converted(
    ts: int = T0, first_touch_ts: int | None = T0 - DAY_MS, channel: str = "Paid Search",
    segment: str = "SMB",
) -> Converted:
    return Converted("user-1", ts, channel, segment, first_touch_ts)


def movement(
    kind: str = "new", delta: int = 500, ts: int = T0, channel: str | None = "Paid Search",
    segment: str = "SMB",
) -> MrrMovement:
    return MrrMovement("user-1", "sub-evt", "sub-1", kind, ts, delta, max(delta, 0), "USD",
                       segment, channel)


def all_time(*outputs) -> dict[str, int]:
    return dict(fold_many(None, outputs, CONFIG).all_time)


def key(measure: str, segment: str, channel: str, qualifier: str | None = None) -> str:
    return CellKey(measure, segment, channel, qualifier).encode()


# ---------------------------------------------------------------------- measures, by table


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        pytest.param(
            [credit(model="linear")],
            {key("attributed", "SMB", "Paid Search", "linear"): 600,
             key("attributed", "SMB", "Email", "linear"): 400},
            id="attributed revenue goes to each line's channel, not the ledger's",
        ),
        pytest.param(
            [credit(model="first_touch")],
            {key("attributed", "SMB", "Paid Search", "first_touch"): 600,
             key("attributed", "SMB", "Email", "first_touch"): 400,
             key("paid", "SMB", "Paid Search"): 1000, key("payments", "SMB", "Paid Search"): 1},
            id="the ledger model's payment counts lifetime revenue by acquisition channel",
        ),
        pytest.param(
            [credit(model="first_touch", amount=-300, lines=(("Email", -300),))],
            {key("attributed", "SMB", "Email", "first_touch"): -300,
             key("refunded", "SMB", "Paid Search"): 300, key("refunds", "SMB", "Paid Search"): 1},
            id="a refund is negative attributed revenue and a positive refunded amount",
        ),
        pytest.param(
            [replace(credit(model="first_touch", acquisition="Unattributed", segment="Unknown"),
                     lines=(CreditedLine(UNATTRIBUTED_LINE, 1000, 1000),))],
            {key("attributed", "Unknown", "Unattributed", "first_touch"): 1000,
             key("paid", "Unknown", "Unattributed"): 1000,
             key("payments", "Unknown", "Unattributed"): 1},
            id="an unattributed customer's revenue stays on the Unattributed channel",
        ),
        pytest.param(
            [converted(first_touch_ts=T0 - 2 * HOUR_MS)],
            {key("customers", "SMB", "Paid Search"): 1,
             key("conversion_ms", "SMB", "Paid Search"): 2 * HOUR_MS,
             key("conversions_timed", "SMB", "Paid Search"): 1,
             key("conversion_le", "SMB", "Paid Search", "1d"): 1},
            id="a conversion counts a customer and the time since the first touch",
        ),
        pytest.param(
            [converted(first_touch_ts=None, channel="Unattributed")],
            {key("customers", "SMB", "Unattributed"): 1},
            id="a conversion without a first touch has no time to convert",
        ),
        pytest.param(
            [movement("new", 500), movement("contraction", -200)],
            {key("mrr", "SMB", "Paid Search"): 300,
             key("movements", "SMB", "Paid Search", "new"): 1,
             key("movement_minor", "SMB", "Paid Search", "new"): 500,
             key("movements", "SMB", "Paid Search", "contraction"): 1,
             key("movement_minor", "SMB", "Paid Search", "contraction"): -200,
             key("bridge", "SMB", "Paid Search", "new@2024-10"): 500,
             key("bridge", "SMB", "Paid Search", "contraction@2024-10"): -200},
            id="MRR is the sum of signed movement deltas, movements are counted by kind and "
               "calendar month",
        ),
        pytest.param(
            [movement("new", 500, channel=None)],
            {key("mrr", "SMB", "Unattributed"): 500,
             key("movements", "SMB", "Unattributed", "new"): 1,
             key("movement_minor", "SMB", "Unattributed", "new"): 500,
             key("bridge", "SMB", "Unattributed", "new@2024-10"): 500},
            id="a movement without a channel (from before movements waited for the "
               "conversion) counts on Unattributed",
        ),
    ],
)
def test_each_output_adds_its_measures(outputs, expected):
    assert all_time(*outputs) == expected


@pytest.mark.parametrize(
    ("duration_ms", "bound"),
    [(0, "1h"), (HOUR_MS, "1h"), (HOUR_MS + 1, "1d"), (DAY_MS, "1d"), (7 * DAY_MS, "7d"),
     (7 * DAY_MS + 1, "30d"), (30 * DAY_MS, "30d"), (90 * DAY_MS, "90d"),
     (90 * DAY_MS + 1, "+Inf")],
)
def test_time_to_conversion_falls_in_the_first_bucket_whose_bound_it_does_not_exceed(
    duration_ms, bound
):
    cells = all_time(converted(first_touch_ts=T0 - duration_ms))
    assert cells[key("conversion_le", "SMB", "Paid Search", bound)] == 1


def test_only_the_ledger_model_counts_lifetime_revenue_so_each_event_counts_once():
    credits = [credit(model=model) for model in MODELS]
    rows = ltv_by_channel(all_time(*credits))
    assert rows == (CustomerValueRow("Paid Search", "SMB", 0, 1, 0, 1000, 0),)


def test_the_ledger_is_the_first_enabled_model():
    assert AggregateConfig.for_models(("linear", "first_touch")).ledger_model == "linear"
    assert AggregateConfig.for_models(()).ledger_model is None


def test_outputs_without_measures_leave_the_state_itself():
    state = fold(None, credit(), CONFIG)
    assert fold(state, Processed("billing-v1", T0), CONFIG) is state
    assert fold(None, Processed("billing-v1", T0), CONFIG) == initialize()


@pytest.mark.parametrize(
    "cell",
    [CellKey("mrr", "SMB", "Paid Search"),
     CellKey("attributed", "Mid-Market", "Partners | EU", "linear"),
     CellKey("conversion_le", "Enterprise", "a|b|c", "+Inf")],
)
def test_a_cell_key_reads_back_its_labels_even_with_a_bar_in_a_custom_channel(cell):
    assert CellKey.parse(cell.encode()) == cell


# ------------------------------------------------------------------------ windows, by table


@pytest.mark.parametrize(
    ("age_ms", "in_windows"),
    [
        (0, {"1h", "24h", "7d", "30d", "all"}),
        (HOUR_MS, {"1h", "24h", "7d", "30d", "all"}),
        (HOUR_MS + 17 * MINUTE_MS, {"1h", "24h", "7d", "30d", "all"}),
        (HOUR_MS + 18 * MINUTE_MS, {"24h", "7d", "30d", "all"}),
        (DAY_MS + 17 * MINUTE_MS, {"24h", "7d", "30d", "all"}),
        (DAY_MS + 18 * MINUTE_MS, {"7d", "30d", "all"}),
        (7 * DAY_MS, {"7d", "30d", "all"}),
        (8 * DAY_MS, {"30d", "all"}),
        (30 * DAY_MS + 17 * MINUTE_MS, {"30d", "all"}),
        (30 * DAY_MS + 18 * MINUTE_MS, {"all"}),
        (400 * DAY_MS, {"all"}),
    ],
)
def test_a_window_holds_the_events_from_the_start_of_the_hour_its_length_before_the_clock(
    age_ms, in_windows
):
    newest, old = converted(ts=T0, channel="Direct"), converted(ts=T0 - age_ms, channel="Email")
    state = fold_many(None, [newest, old], CONFIG)
    counted = {name for name, cells in windows(state).items()
               if cells.get(key("customers", "SMB", "Email"))}
    assert counted == in_windows


def test_a_backfill_of_old_events_fills_the_windows_of_its_own_time():
    backfill = [converted(ts=T0 - 400 * DAY_MS + i * HOUR_MS) for i in range(3)]
    result = windows(fold_many(None, backfill, CONFIG))
    assert {name: result[name].get(key("customers", "SMB", "Paid Search")) for name in WINDOWS} \
        == {"1h": 2, "24h": 3, "7d": 3, "30d": 3, "all": 3}


def test_the_clock_moving_on_ages_events_out_of_the_windows_but_not_out_of_all_time():
    state = fold(None, converted(ts=T0), CONFIG)
    state = fold(state, converted(ts=T0 + 31 * DAY_MS, channel="Email"), CONFIG)
    result = windows(state)
    assert key("customers", "SMB", "Paid Search") not in result["30d"]
    assert result[ALL_TIME][key("customers", "SMB", "Paid Search")] == 1
    assert len(state.buckets) == 1


def test_an_event_older_than_the_retained_hours_counts_only_all_time():
    state = fold(None, converted(ts=T0, channel="Direct"), CONFIG)
    late = fold(state, converted(ts=T0 - 40 * DAY_MS), CONFIG)
    assert late.clock_ms == T0
    assert late.buckets == state.buckets
    assert late.all_time[key("customers", "SMB", "Paid Search")] == 1


def test_windows_may_end_later_than_the_clock_but_not_earlier():
    state = fold(None, converted(ts=T0), CONFIG)
    assert windows(state, clock_ms=T0 + 2 * HOUR_MS)["1h"] == {}
    with pytest.raises(ValueError, match="before the newest event"):
        windows(state, clock_ms=T0 - 1)


def test_an_empty_aggregate_has_empty_windows():
    assert windows(initialize()) == {name: {} for name in WINDOWS}


def test_bucket_changes_are_the_hours_a_fold_wrote_and_the_hours_it_dropped():
    state = fold_many(None, [converted(ts=T0 - 31 * DAY_MS), converted(ts=T0 - DAY_MS)], CONFIG)
    later = fold(state, converted(ts=T0), CONFIG)
    changes = bucket_changes(state, later)
    assert list(changes.written) == [T0 - T0 % HOUR_MS]
    assert changes.dropped == (T0 - 31 * DAY_MS - 17 * MINUTE_MS,)
    assert bucket_changes(None, later).written == later.buckets


# ------------------------------------------------------------------------------ read model


def test_channel_segment_report_gives_one_models_attributed_revenue_in_report_order():
    cells = all_time(
        credit(model="linear", segment="Enterprise"),
        credit(model="linear", lines=(("Unattributed", 50), ("Direct", 20))),
        credit(model="last_touch", lines=(("Direct", 999),)),
    )
    assert channel_segment_report(cells, "linear") == (
        AttributedRow("Direct", "SMB", 20),
        AttributedRow("Paid Search", "Enterprise", 600),
        AttributedRow("Email", "Enterprise", 400),
        AttributedRow("Unattributed", "SMB", 50),
    )


def test_average_ltv_is_lifetime_revenue_per_new_customer():
    cells = all_time(
        converted(), converted(first_touch_ts=None),
        credit(amount=3000, event_id="p1"), credit(amount=1000, event_id="p2"),
        credit(amount=-1000, lines=(("Paid Search", -1000),), event_id="r1"),
    )
    (row,) = ltv_by_channel(cells)
    assert (row.customers, row.payments, row.refunds) == (2, 2, 1)
    assert row.lifetime_revenue_minor == 3000
    assert row.average_ltv_minor == 1500.0


def test_average_ltv_is_unknown_without_customers():
    (row,) = ltv_by_channel(all_time(credit()))
    assert row.average_ltv_minor is None


def test_mrr_movements_list_every_kind():
    (row,) = mrr_movements(all_time(movement("new", 500), movement("churn", -500),
                                    movement("reactivation", 700)))
    assert row.mrr_minor == 700
    assert row.movements == {"new": 1, "expansion": 0, "contraction": 0, "churn": 1,
                             "reactivation": 1}
    assert row.movement_minor == {"new": 500, "expansion": 0, "contraction": 0, "churn": -500,
                                  "reactivation": 700}
    assert tuple(row.movements) == MOVEMENT_KINDS


def test_time_to_conversion_reports_mean_and_histogram():
    cells = all_time(converted(first_touch_ts=T0 - HOUR_MS),
                     converted(first_touch_ts=T0 - 3 * DAY_MS),
                     converted(first_touch_ts=None))
    (row,) = time_to_conversion(cells)
    assert (row.count, row.mean_ms) == (2, (HOUR_MS + 3 * DAY_MS) / 2)
    assert row.bucket_counts == (1, 0, 1, 0, 0, 0)
    assert row.cumulative_counts == (1, 1, 2, 2, 2, 2)
    assert len(row.bucket_counts) == len(CONVERSION_TIME_BOUNDS)


def test_from_dict_refuses_another_version():
    with pytest.raises(ValueError, match="version"):
        Aggregate.from_dict({**initialize().to_dict(), "v": 2})


# ------------------------------------------------------------------------------ properties

CHANNEL_NAMES = ("Direct", "Paid Search", "Email", "Partners|EU", "Unattributed")
segments = st.sampled_from(SEGMENTS)
channels = st.sampled_from(CHANNEL_NAMES)
event_times = st.integers(T0 - 45 * DAY_MS, T0 + 45 * DAY_MS)


@st.composite
def credits(draw, times=event_times):
    amount = draw(st.integers(-5000, 5000).filter(bool))
    parts = draw(st.lists(channels, min_size=1, max_size=3))
    shares = [amount // len(parts)] * len(parts)
    shares[0] += amount - sum(shares)
    return credit(model=draw(st.sampled_from(MODELS)), amount=amount, ts=draw(times),
                  lines=tuple(zip(parts, shares, strict=True)), acquisition=draw(channels),
                  segment=draw(segments))


@st.composite
def conversions(draw, times=event_times):
    ts = draw(times)
    first = draw(st.none() | st.integers(0, 120 * DAY_MS).map(lambda age: ts - age))
    return converted(ts=ts, first_touch_ts=first, channel=draw(channels), segment=draw(segments))


@st.composite
def movements(draw, times=event_times):
    return movement(kind=draw(st.sampled_from(MOVEMENT_KINDS)),
                    delta=draw(st.integers(-3000, 3000).filter(bool)), ts=draw(times),
                    channel=draw(st.none() | channels), segment=draw(segments))


def outputs_at(times):
    return st.one_of(credits(times), conversions(times), movements(times),
                     st.builds(Processed, st.just("billing-v1"), times))


output_lists = st.lists(outputs_at(event_times), max_size=40)
NON_NEGATIVE = ("paid", "refunded", "payments", "refunds", "customers", "conversions_timed",
                "conversion_le", "movements")


def fold_each(outputs, state=None):
    for output in outputs:
        state = fold(state, output, CONFIG)
    return state or initialize()


@settings(max_examples=60, deadline=None)
@given(output_lists, st.randoms(use_true_random=False))
def test_folding_in_any_order_or_all_at_once_gives_the_same_aggregate(outputs, rng):
    shuffled = list(outputs)
    rng.shuffle(shuffled)
    assert fold_each(shuffled) == fold_each(outputs) == fold_many(None, outputs, CONFIG)


@settings(max_examples=60, deadline=None)
@given(output_lists)
def test_all_time_cells_are_the_sum_of_every_outputs_cells(outputs):
    assert fold_each(outputs).all_time == sum_cells(all_time(output) for output in outputs)


@settings(max_examples=60, deadline=None)
@given(st.lists(outputs_at(st.integers(T0 - 30 * DAY_MS, T0)), min_size=1, max_size=40))
def test_the_30_day_window_is_all_time_when_every_event_is_within_30_days_of_the_newest(
    outputs
):
    result = windows(fold_each(outputs))
    assert result["30d"] == {k: v for k, v in result[ALL_TIME].items()
                             if not k.startswith("bridge|")}  # the bridge is all-time only


@settings(max_examples=60, deadline=None)
@given(output_lists)
def test_longer_windows_hold_at_least_what_shorter_ones_do(outputs):
    result = windows(fold_each(outputs))
    for shorter, longer in zip(WINDOWS, WINDOWS[1:], strict=False):
        for cell, value in result[shorter].items():
            if CellKey.parse(cell).measure in NON_NEGATIVE:
                assert 0 <= value <= result[longer][cell]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 400 * DAY_MS).map(lambda age: converted(ts=T0 - age)),
                max_size=60))
def test_buckets_never_exceed_the_hours_of_the_longest_window(outputs):
    state = initialize()
    for output in outputs:
        state = fold(state, output, CONFIG)
        assert len(state.buckets) <= MAX_BUCKETS == 30 * 24 + 1


@settings(max_examples=60, deadline=None)
@given(st.lists(output_lists, min_size=1, max_size=4))
def test_merging_partitions_equals_folding_everything_into_one(partitions):
    states = [fold_each(outputs) for outputs in partitions]
    together = fold_each([output for outputs in partitions for output in outputs])
    assert merge(states) == together


@settings(max_examples=60, deadline=None)
@given(st.lists(output_lists, min_size=1, max_size=4), st.integers(0, 3 * DAY_MS))
def test_partitions_windows_taken_at_one_time_sum_to_the_windows_of_their_merge(
    partitions, after_ms
):
    states = [fold_each(outputs) for outputs in partitions]
    clock = max((s.clock_ms for s in states if s.clock_ms is not None), default=T0) + after_ms
    per_partition = [windows(s, clock_ms=clock) for s in states]
    merged = windows(merge(states), clock_ms=clock)
    assert {name: sum_cells(w[name] for w in per_partition) for name in WINDOWS} == merged


@settings(max_examples=60, deadline=None)
@given(output_lists, output_lists)
def test_applying_bucket_changes_to_the_stored_hours_gives_the_new_buckets(first, then):
    before = fold_each(first)
    after = fold_many(before, then, CONFIG)
    changes = bucket_changes(before, after)
    stored = {**before.buckets, **changes.written}
    for hour in changes.dropped:
        del stored[hour]
    assert stored == after.buckets


@settings(max_examples=60, deadline=None)
@given(output_lists)
def test_an_aggregate_survives_json(outputs):
    state = fold_each(outputs)
    assert Aggregate.from_dict(json.loads(json.dumps(state.to_dict()))) == state

