from __future__ import annotations

from fractions import Fraction as F

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.attribution import (
    DAY_MS,
    MODELS,
    UNATTRIBUTED_LINE,
    AttributionConfig,
    CreditLine,
    credit_lines,
    model_weights,
)
from processors.revenue import acquisition_journey
from processors.touch import Touch

CONFIG = AttributionConfig()
CONVERSION = 1_000 * DAY_MS


def touch(event_id: str, ts: int, channel: str = "Organic Search") -> Touch:
    return Touch(event_id, ts, "anon-1", channel, "google", "organic", None)


def journey_of(*channels: str) -> tuple[Touch, ...]:
    """Touches one day apart ending one day before the conversion, t1 first."""
    n = len(channels)
    return tuple(
        touch(f"t{i + 1}", CONVERSION - (n - i) * DAY_MS, channel)
        for i, channel in enumerate(channels)
    )


def weights(model: str, journey, signup_ts: int | None = None, config=CONFIG):
    return model_weights(model, journey, CONVERSION, signup_ts, config)


@pytest.mark.parametrize("model", MODELS)
def test_a_single_touch_takes_everything_under_every_model(model):
    assert weights(model, journey_of("Paid Search"), signup_ts=0) == (F(1),)


ONE_BEFORE_T2 = CONVERSION - DAY_MS - 1


@pytest.mark.parametrize(
    ("model", "signup_ts", "expected"),
    [
        ("first_touch", None, (F(1), F(0))),
        ("last_touch", None, (F(0), F(1))),
        ("last_non_direct", None, (F(0), F(1))),
        ("linear", None, (F(1, 2), F(1, 2))),
        ("position_based", None, (F(1, 2), F(1, 2))),
        ("w_shaped", ONE_BEFORE_T2, (F(13, 20), F(7, 20))),
        ("w_shaped", None, (F(13, 20), F(7, 20))),
        ("w_shaped", CONVERSION, (F(7, 20), F(13, 20))),
    ],
)
def test_two_touch_journeys(model, signup_ts, expected):
    assert weights(model, journey_of("Organic Search", "Paid Search"), signup_ts) == expected


FOUR = journey_of("Organic Search", "Direct", "Email", "Direct")
T2_TS = FOUR[1].ts


@pytest.mark.parametrize(
    ("model", "signup_ts", "expected"),
    [
        ("first_touch", None, (F(1), F(0), F(0), F(0))),
        ("last_touch", None, (F(0), F(0), F(0), F(1))),
        ("last_non_direct", None, (F(0), F(0), F(1), F(0))),
        ("linear", None, (F(1, 4),) * 4),
        ("position_based", None, (F(2, 5), F(1, 10), F(1, 10), F(2, 5))),
        ("w_shaped", T2_TS, (F(3, 10), F(3, 10), F(1, 10), F(3, 10))),
        ("w_shaped", T2_TS + 1, (F(3, 10), F(3, 10), F(1, 10), F(3, 10))),
        ("w_shaped", CONVERSION, (F(3, 10), F(1, 20), F(1, 20), F(3, 5))),
        ("w_shaped", 0, (F(3, 5), F(1, 20), F(1, 20), F(3, 10))),
        ("w_shaped", None, (F(3, 5), F(1, 20), F(1, 20), F(3, 10))),
    ],
)
def test_four_touch_journeys(model, signup_ts, expected):
    assert weights(model, FOUR, signup_ts) == expected


def test_w_shaped_gives_the_rest_to_non_milestone_touches_only():
    five = journey_of("Email", "Direct", "Referral", "Direct", "Paid Search")
    assert weights("w_shaped", five, signup_ts=five[2].ts) == (
        F(3, 10),
        F(1, 20),
        F(3, 10),
        F(1, 20),
        F(3, 10),
    )


def test_w_shaped_with_three_distinct_milestones_shares_the_rest_among_them():
    three = journey_of("Email", "Direct", "Referral")
    assert weights("w_shaped", three, signup_ts=three[1].ts) == (F(1, 3),) * 3


@pytest.mark.parametrize(
    ("channels", "winner"),
    [
        (("Direct", "Direct", "Direct"), 2),
        (("Organic Search", "Direct", "Direct"), 0),
        (("Direct", "Paid Search", "Direct"), 1),
        (("Direct", "Email", "Paid Search"), 2),
    ],
)
def test_last_non_direct_looks_past_direct_touches_unless_all_are_direct(channels, winner):
    expected = tuple(F(1 if index == winner else 0) for index in range(len(channels)))
    assert weights("last_non_direct", journey_of(*channels)) == expected


def test_time_decay_halves_the_weight_every_half_life():
    half_life = CONFIG.half_life_ms
    journey = (
        touch("t1", CONVERSION - 2 * half_life),
        touch("t2", CONVERSION - half_life),
        touch("t3", CONVERSION),
    )
    assert weights("time_decay", journey) == (F(1, 7), F(2, 7), F(4, 7))


def test_time_decay_makes_the_double_precision_decay_exact():
    half_life = CONFIG.half_life_ms
    journey = (touch("t1", CONVERSION - half_life // 2), touch("t2", CONVERSION))
    decay = F(2.0**-0.5)
    assert weights("time_decay", journey) == (decay / (decay + 1), 1 / (decay + 1))


def test_position_based_and_w_shaped_take_configured_exact_weights():
    config = AttributionConfig(
        position_based_weights=("0.3", "0.2", "0.5"),  # type: ignore[arg-type]
        w_shaped_weights=(F(1, 4), F(1, 4), F(1, 4), F(1, 4)),
    )
    assert weights("position_based", journey_of("Email", "Direct"), config=config) == (
        F(2, 5),
        F(3, 5),
    )
    assert weights("position_based", FOUR, config=config) == (F(3, 10), F(1, 10), F(1, 10), F(1, 2))
    assert weights("w_shaped", FOUR, T2_TS, config=config) == (F(1, 4),) * 4


journeys = st.lists(
    st.tuples(
        st.integers(min_value=CONVERSION - 100 * DAY_MS, max_value=CONVERSION + DAY_MS),
        st.sampled_from(["Direct", "Organic Search", "Paid Search", "Email"]),
    ),
    min_size=1,
    max_size=12,
).map(lambda rows: [touch(f"t{i}", ts, channel) for i, (ts, channel) in enumerate(rows)])


@settings(derandomize=True)
@given(journeys, st.none() | st.integers(min_value=0, max_value=2 * CONVERSION))
def test_every_model_gives_non_negative_weights_summing_to_one(touches, signup_ts):
    journey = acquisition_journey([(t, t.ts) for t in touches], CONVERSION, CONFIG.lookback_ms)
    if not journey:
        return
    for model in MODELS:
        model_result = weights(model, journey, signup_ts)
        assert len(model_result) == len(journey)
        assert sum(model_result) == 1
        assert all(isinstance(w, F) and w >= 0 for w in model_result)


def test_credit_lines_keep_positive_weights_in_journey_order():
    journey = (
        Touch("t1", 1, "a", "Email", "newsletter", "email", "spring"),
        Touch("t2", 2, "a", "Direct", "(direct)", "(none)", None),
        Touch("t3", 3, "a", "Paid Search", "google", "cpc", "brand"),
    )
    assert credit_lines("last_non_direct", journey, 10, None, CONFIG) == (
        CreditLine("t3", 3, "Paid Search", "google", "cpc", "brand", F(1)),
    )
    assert [line.touch_event_id for line in credit_lines("linear", journey, 10, None, CONFIG)] == [
        "t1",
        "t2",
        "t3",
    ]


@pytest.mark.parametrize("model", MODELS)
def test_an_empty_journey_is_one_unattributed_line(model):
    assert credit_lines(model, (), CONVERSION, None, CONFIG) == (UNATTRIBUTED_LINE,)
    assert UNATTRIBUTED_LINE.channel == "Unattributed"
    assert UNATTRIBUTED_LINE.touch_event_id is None
    assert UNATTRIBUTED_LINE.weight == 1


def test_model_weights_refuse_an_empty_journey_and_unknown_models():
    with pytest.raises(ValueError):
        weights("linear", ())
    with pytest.raises(ValueError):
        weights("markov", journey_of("Email"))


@pytest.mark.parametrize(
    "changes",
    [
        {"models": ("linear", "markov")},
        {"models": ("linear", "linear")},
        {"position_based_weights": (0.4, 0.2, 0.4)},
        {"position_based_weights": (F(1, 2), F(1, 2), F(1, 2))},
        {"position_based_weights": (F(1, 2), F(1, 2))},
        {"w_shaped_weights": (F(1), F(1), F(-1), F(0))},
        {"half_life_ms": 0},
        {"lookback_ms": -1},
        {"half_life_ms": 1_000, "lookback_ms": 1_000_001},
        {"reporting_currency": "XYZ"},
    ],
)
def test_config_refuses_inexact_or_inconsistent_settings(changes):
    with pytest.raises(ValueError):
        AttributionConfig(**changes)
