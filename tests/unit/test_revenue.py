"""Pure revenue rules (processors/revenue.py): basis, credits, retractions, refunds, MRR.

Person-level behaviour (duplicates, dead letters, conversions, corrections) is in test_person.py.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from fractions import Fraction

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.attribution import DAY_MS, MODELS, AttributionConfig
from processors.money import default_currency_table, to_reporting
from processors.revenue import (
    CREDIT_SCHEMA,
    REJECTION_REASONS,
    Basis,
    Credit,
    Rejection,
    acquisition_journey,
    credit,
    credit_record,
    make_basis,
    mrr_steps,
    refund_rejection,
    retraction,
    signup_milestone,
)
from processors.touch import Touch
from schemas.events import Payment, Refund, SubscriptionChange

CONFIG = AttributionConfig()
PERSON = "user-1"
T0 = 1_000 * DAY_MS

TOUCHES = (
    Touch("t1", T0 - 3 * DAY_MS, "anon-1", "Organic Search", "google", "organic", None),
    Touch("t2", T0 - 2 * DAY_MS, "anon-1", "Direct", "(direct)", "(none)", None),
    Touch("t3", T0 - 1 * DAY_MS, "anon-2", "Paid Search", "google", "cpc", "brand"),
)
LATE_TOUCH = Touch("t4", T0 + DAY_MS, "anon-1", "Email", "newsletter", "email", "promo")


def payment(event_id: str, amount: int, ts: int = T0, currency: str = "USD") -> Payment:
    return Payment(event_id, ts, PERSON, amount, currency)


def refund(
    event_id: str, of: str, amount: int, ts: int = T0 + DAY_MS, currency: str = "USD"
) -> Refund:
    return Refund(event_id, ts, PERSON, amount, currency, of)


def change(
    event_id: str, subscription: str, mrr: int, ts: int = T0, currency: str = "USD"
) -> SubscriptionChange:
    return SubscriptionChange(event_id, ts, PERSON, subscription, "pro", mrr, currency)


def known(touches, known_at: int = 0) -> list[tuple[Touch, int]]:
    """Touches that were the person's since `known_at`."""
    return [(touch, known_at) for touch in touches]


def basis_of(conversion: Payment, touches=TOUCHES, signup_ts=None, config=CONFIG) -> Basis:
    journey = acquisition_journey(known(touches), conversion.ts, config.lookback_ms)
    return make_basis(conversion, journey, signup_ts, config)


def credit_of(event, basis: Basis, model: str, segment: str = "SMB", config=CONFIG) -> Credit:
    return credit(event, basis, model, person_id=PERSON, segment=segment, config=config)


def credits_of(event, basis: Basis, config=CONFIG, segment: str = "SMB") -> dict[str, Credit]:
    return {model: credit_of(event, basis, model, segment, config) for model in config.models}


def line_amounts(credit: Credit) -> list[tuple[str | None, int]]:
    return [(line.line.touch_event_id, line.amount_minor) for line in credit.lines]


# --- the journey ---------------------------------------------------------------------------


def test_journey_bounds_are_inclusive_and_later_touches_never_count():
    lookback = CONFIG.lookback_ms
    touches = [
        Touch("after", T0 + 1, "a", "Email", "s", "m"),
        Touch("at-conversion", T0, "a", "Email", "s", "m"),
        Touch("too-old", T0 - lookback - 1, "a", "Email", "s", "m"),
        Touch("oldest", T0 - lookback, "a", "Email", "s", "m"),
    ]
    journey = acquisition_journey(known(touches), T0, lookback)
    assert [t.event_id for t in journey] == ["oldest", "at-conversion"]


def test_journey_excludes_touches_that_became_the_persons_after_the_conversion():
    t1, t2, t3 = TOUCHES
    pairs = [(t3, T0 + 1), (t1, T0), (t2, T0 - 5 * DAY_MS)]
    journey = acquisition_journey(pairs, T0, CONFIG.lookback_ms)
    assert journey == (t1, t2)


def test_journey_is_in_time_then_event_id_order_whatever_the_input_order():
    same_ts = [Touch(f"t{i}", T0 - DAY_MS, "a", "Email", "s", "m") for i in (3, 1, 2)]
    earlier = Touch("z", T0 - 2 * DAY_MS, "a", "Email", "s", "m")
    journey = acquisition_journey(known([*same_ts, earlier]), T0, CONFIG.lookback_ms)
    assert [t.event_id for t in journey] == ["z", "t1", "t2", "t3"]


def test_a_zero_lookback_keeps_only_touches_at_the_conversion_instant():
    touches = [Touch("now", T0, "a", "Email", "s", "m"), Touch("old", T0 - 1, "a", "E", "s", "m")]
    assert [t.event_id for t in acquisition_journey(known(touches), T0, 0)] == ["now"]


# --- the basis and its credits ---------------------------------------------------------------


def test_the_basis_records_the_conversion_and_the_acquisition():
    basis = basis_of(payment("p1", 1000))
    assert basis.conversion_event_id == "p1"
    assert basis.conversion_ts == T0
    assert basis.acquisition_channel == "Organic Search"
    assert basis.acquisition_campaign is None
    assert basis.first_touch_ts == T0 - 3 * DAY_MS
    assert list(basis.lines) == list(MODELS)
    assert basis_of(payment("p1", 1000), touches=TOUCHES[2:]).acquisition_campaign == "brand"


def test_exact_weights_are_frozen_per_model():
    basis = basis_of(payment("p1", 1000))
    weights = {model: [line.weight for line in lines] for model, lines in basis.lines.items()}
    assert weights["linear"] == [Fraction(1, 3)] * 3
    assert weights["position_based"] == [Fraction(2, 5), Fraction(1, 5), Fraction(2, 5)]
    assert all(isinstance(w, Fraction) for ws in weights.values() for w in ws)
    assert all(sum(ws) == 1 for ws in weights.values())


def test_credits_split_the_payment_by_each_model():
    basis = basis_of(payment("p1", 1000))
    by_model = credits_of(payment("p1", 1000), basis)
    assert [c.credit_id for c in by_model.values()] == [f"p1/{model}" for model in MODELS]
    assert line_amounts(by_model["first_touch"]) == [("t1", 1000)]
    assert line_amounts(by_model["last_touch"]) == [("t3", 1000)]
    assert line_amounts(by_model["last_non_direct"]) == [("t3", 1000)]
    assert line_amounts(by_model["linear"]) == [("t1", 334), ("t2", 333), ("t3", 333)]
    assert line_amounts(by_model["position_based"]) == [("t1", 400), ("t2", 200), ("t3", 400)]
    assert line_amounts(by_model["w_shaped"]) == [("t1", 600), ("t2", 100), ("t3", 300)]
    time_decay = line_amounts(by_model["time_decay"])
    assert [t for t, _ in time_decay] == ["t1", "t2", "t3"]
    assert time_decay[0][1] < time_decay[1][1] < time_decay[2][1]
    for c in by_model.values():
        assert (c.kind, c.op, c.revision, c.cause, c.sign) == ("payment", "assert", 1, None, 1)
        assert (c.person_id, c.segment, c.acquisition_channel) == (PERSON, "SMB", "Organic Search")
        assert sum(line.amount_minor for line in c.lines) == 1000


def test_last_non_direct_looks_past_direct_touches():
    touches = (*TOUCHES, Touch("t3b", T0 - DAY_MS + 1, "anon-1", "Direct", "(direct)", "(none)"))
    basis = basis_of(payment("p1", 1000), touches=touches)
    assert line_amounts(credit_of(payment("p1", 1000), basis, "last_non_direct")) == [
        ("t3", 1000)
    ]
    assert line_amounts(credit_of(payment("p1", 1000), basis, "last_touch")) == [("t3b", 1000)]


def test_an_empty_journey_is_unattributed():
    basis = basis_of(payment("p1", 500), touches=())
    assert basis.acquisition_channel == "Unattributed"
    assert basis.acquisition_campaign is None
    assert basis.first_touch_ts is None
    for model, credited in credits_of(payment("p1", 500), basis).items():
        assert credited.acquisition_channel == "Unattributed"
        assert line_amounts(credited) == [(None, 500)], model
        assert credit_record(credited)["lines"] == [
            {
                "touch_event_id": None,
                "touch_ts": None,
                "channel": "Unattributed",
                "source": None,
                "medium": None,
                "campaign": None,
                "weight": 1.0,
                "amount_minor": 500,
                "reporting_amount_minor": 500,
            }
        ]


def test_only_touches_in_the_window_as_of_the_conversion_are_credited():
    basis = basis_of(payment("p1", 1000), touches=(*TOUCHES, LATE_TOUCH))
    assert line_amounts(credit_of(payment("p1", 1000), basis, "last_touch")) == [("t3", 1000)]
    assert basis.key[2] == ("t1", "t2", "t3")


def test_later_payments_are_split_by_the_same_basis_lines():
    basis = basis_of(payment("p1", 1000))
    later = payment("p2", 900, ts=T0 + 2 * DAY_MS)
    by_model = credits_of(later, basis)
    assert line_amounts(by_model["first_touch"]) == [("t1", 900)]
    assert line_amounts(by_model["last_touch"]) == [("t3", 900)]
    assert line_amounts(by_model["linear"]) == [("t1", 300), ("t2", 300), ("t3", 300)]
    for model, credited in by_model.items():
        assert tuple(c.line for c in credited.lines) == basis.lines[model]
        assert credited.revenue_ts == T0 + 2 * DAY_MS
        assert credited.credit_id == f"p2/{model}"
        assert credited.acquisition_channel == "Organic Search"


def test_the_record_carries_the_segment_it_is_given():
    basis = basis_of(payment("p1", 100))
    assert credit_of(payment("p1", 100), basis, "linear", segment="Unknown").segment == "Unknown"
    assert credit_of(payment("p2", 100), basis, "linear", segment="Enterprise").segment == (
        "Enterprise"
    )


# --- refunds ---------------------------------------------------------------------------------


def test_a_refund_is_split_like_the_payment_it_refunds_negated():
    basis = basis_of(payment("p1", 1000))
    paid = credits_of(payment("p1", 1000), basis)
    refunded = credits_of(refund("r1", "p1", 1000), basis)
    for model in MODELS:
        paid_credit, refund_credit = paid[model], refunded[model]
        assert refund_credit.kind == "refund"
        assert refund_credit.op == "assert"
        assert refund_credit.amount_minor == -1000
        assert refund_credit.reporting_amount_minor == -1000
        assert refund_credit.credit_id == f"r1/{model}"
        assert refund_credit.revenue_ts == T0 + DAY_MS
        assert line_amounts(refund_credit) == [
            (touch_id, -amount) for touch_id, amount in line_amounts(paid_credit)
        ]


def test_a_partial_refund_is_split_by_the_conversion_weights():
    basis = basis_of(payment("p1", 1000))
    refund_credit = credit_of(refund("r1", "p1", 1), basis, "linear")
    assert line_amounts(refund_credit) == [("t1", -1), ("t2", 0), ("t3", 0)]
    record = credit_record(credit_of(refund("r1", "p1", 250), basis, "linear"))
    assert record["kind"] == "refund"
    assert record["amount_minor"] == -250
    assert sum(line["amount_minor"] for line in record["lines"]) == -250


def test_a_full_refund_in_a_three_decimal_currency_mirrors_the_payment():
    config = AttributionConfig(models=("linear",))
    basis = basis_of(payment("p1", 1001, currency="KWD"), config=config)
    paid = credit_of(payment("p1", 1001, currency="KWD"), basis, "linear", config=config)
    refunded = credit_of(refund("r1", "p1", 1001, currency="KWD"), basis, "linear", config=config)
    assert paid.reporting_amount_minor == 325
    assert refunded.reporting_amount_minor == -325
    assert [line.amount_minor for line in paid.lines] == [334, 334, 333]
    assert [line.reporting_amount_minor for line in paid.lines] == [109, 108, 108]
    assert [line.amount_minor for line in refunded.lines] == [-334, -334, -333]
    assert [line.reporting_amount_minor for line in refunded.lines] == [-109, -108, -108]


def test_credits_carry_the_reporting_currency_and_split_it_again():
    config = AttributionConfig(models=("linear",))
    basis = basis_of(payment("p1", 1000, currency="EUR"), config=config)
    credited = credit_of(payment("p1", 1000, currency="EUR"), basis, "linear", config=config)
    assert (credited.amount_minor, credited.currency) == (1000, "EUR")
    assert (credited.reporting_amount_minor, credited.reporting_currency) == (1080, "USD")
    assert [line.amount_minor for line in credited.lines] == [334, 333, 333]
    # a second split of the converted amount, not each line converted (361 + 360 + 360)
    assert [line.reporting_amount_minor for line in credited.lines] == [360, 360, 360]


def test_a_non_usd_reporting_currency_is_used_for_the_reporting_amounts():
    config = AttributionConfig(models=("first_touch",), reporting_currency="EUR")
    basis = basis_of(payment("p1", 1080), config=config)
    credited = credit_of(payment("p1", 1080), basis, "first_touch", config=config)
    assert (credited.amount_minor, credited.currency) == (1080, "USD")
    assert (credited.reporting_amount_minor, credited.reporting_currency) == (1000, "EUR")
    refunded = credit_of(refund("r1", "p1", 1080), basis, "first_touch", config=config)
    assert refunded.reporting_amount_minor == -1000


# --- refund rejections -----------------------------------------------------------------------

PAYMENTS = {"p1": payment("p1", 1000)}


@pytest.mark.parametrize(
    ("bad_refund", "refunded", "reason"),
    [
        (refund("r9", "p-unknown", 100), 0, "refund_unknown_payment"),
        (refund("r9", "p1", 100, currency="EUR"), 0, "refund_currency_mismatch"),
        (refund("r9", "p1", 100, ts=T0 - 1), 0, "refund_before_payment"),
        (refund("r9", "p1", 1001), 0, "refund_exceeds_payment"),
        (refund("r9", "p1", 1), 1000, "refund_exceeds_payment"),
        (refund("r9", "p1", 701), 300, "refund_exceeds_payment"),
        # several faults: the first in the documented order wins
        (refund("r9", "p-unknown", 5000, ts=0, currency="EUR"), 0, "refund_unknown_payment"),
        (refund("r9", "p1", 5000, ts=T0 - 1, currency="EUR"), 0, "refund_currency_mismatch"),
        (refund("r9", "p1", 5000, ts=T0 - 1), 0, "refund_before_payment"),
    ],
)
def test_invalid_refunds_are_rejected_in_the_documented_order(bad_refund, refunded, reason):
    rejection = refund_rejection(PAYMENTS, refunded, bad_refund)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == reason
    assert rejection.reason in REJECTION_REASONS
    assert "r9" in rejection.message


@pytest.mark.parametrize(
    ("valid_refund", "refunded"),
    [
        (refund("r1", "p1", 1000), 0),
        (refund("r1", "p1", 700), 300),
        (refund("r1", "p1", 1, ts=T0), 999),
    ],
)
def test_refunds_up_to_the_payment_are_accepted(valid_refund, refunded):
    assert refund_rejection(PAYMENTS, refunded, valid_refund) is None


def test_a_refund_without_any_payment_is_rejected():
    rejection = refund_rejection({}, 0, refund("r1", "p1", 100))
    assert rejection is not None and rejection.reason == "refund_unknown_payment"


# --- W-shaped signup milestone ---------------------------------------------------------------


def test_signup_milestone_is_the_last_touch_at_or_before_the_signup_else_t1():
    assert signup_milestone(TOUCHES, None) == 0
    assert signup_milestone(TOUCHES, T0 - 10 * DAY_MS) == 0
    assert signup_milestone(TOUCHES, T0 - 2 * DAY_MS) == 1
    assert signup_milestone(TOUCHES, T0 - 2 * DAY_MS - 1) == 0
    assert signup_milestone(TOUCHES, T0 - DAY_MS - 1) == 1
    assert signup_milestone(TOUCHES, T0) == 2
    assert signup_milestone((), T0) == 0


def test_w_shaped_uses_the_signup_milestone():
    basis = basis_of(payment("p1", 1000), signup_ts=T0 - 2 * DAY_MS)
    assert line_amounts(credit_of(payment("p1", 1000), basis, "w_shaped")) == [
        ("t1", 334),
        ("t2", 333),
        ("t3", 333),
    ]
    # n = 2, signup at or after t2: 35 / 65
    basis = basis_of(payment("p1", 1000), touches=TOUCHES[1:], signup_ts=T0)
    assert line_amounts(credit_of(payment("p1", 1000), basis, "w_shaped")) == [
        ("t2", 350),
        ("t3", 650),
    ]
    # n = 2, signup before t2: 65 / 35
    basis = basis_of(payment("p1", 1000), touches=TOUCHES[1:], signup_ts=T0 - 2 * DAY_MS)
    assert line_amounts(credit_of(payment("p1", 1000), basis, "w_shaped")) == [
        ("t2", 650),
        ("t3", 350),
    ]


def test_a_signup_before_every_touch_makes_t1_the_milestone():
    early = basis_of(payment("p1", 1000), signup_ts=T0 - 50 * DAY_MS)
    none = basis_of(payment("p1", 1000), signup_ts=None)
    assert early.lines["w_shaped"] == none.lines["w_shaped"]
    assert [line.weight for line in early.lines["w_shaped"]] == [
        Fraction(3, 5),
        Fraction(1, 10),
        Fraction(3, 10),
    ]
    assert early.key == none.key


# --- make_basis reuse ------------------------------------------------------------------------


def journey_for(touches, conversion_ts: int = T0):
    return acquisition_journey(known(touches), conversion_ts, CONFIG.lookback_ms)


def test_make_basis_reuses_the_previous_basis_when_the_key_is_equal():
    conversion = payment("p1", 1000)
    previous = make_basis(conversion, journey_for(TOUCHES), T0 - 2 * DAY_MS, CONFIG)
    # a different signup with the same milestone, a touch outside the window: same key
    again = make_basis(
        conversion, journey_for((*TOUCHES, LATE_TOUCH)), T0 - 2 * DAY_MS + 5, CONFIG,
        previous=previous,
    )
    assert again is previous
    fresh = make_basis(conversion, journey_for(TOUCHES), T0 - 2 * DAY_MS, CONFIG)
    assert fresh == previous and fresh is not previous


def test_make_basis_recomputes_when_the_journey_changes():
    conversion = payment("p1", 1000)
    previous = make_basis(conversion, journey_for(TOUCHES), None, CONFIG)
    extra = Touch("t0", T0 - 4 * DAY_MS, "anon-3", "Referral", "blog.example", "referral", None)
    updated = make_basis(conversion, journey_for((extra, *TOUCHES)), None, CONFIG,
                         previous=previous)
    assert updated is not previous
    assert updated.key != previous.key
    assert updated.acquisition_channel == "Referral"
    assert updated.first_touch_ts == T0 - 4 * DAY_MS
    assert [line.touch_event_id for line in updated.lines["linear"]] == ["t0", "t1", "t2", "t3"]
    assert updated == make_basis(conversion, journey_for((extra, *TOUCHES)), None, CONFIG)


def test_make_basis_recomputes_when_the_milestone_changes():
    conversion = payment("p1", 1000)
    previous = make_basis(conversion, journey_for(TOUCHES), None, CONFIG)
    updated = make_basis(conversion, journey_for(TOUCHES), T0 - 2 * DAY_MS, CONFIG,
                         previous=previous)
    assert updated is not previous
    assert updated.lines["w_shaped"] != previous.lines["w_shaped"]
    assert updated.lines["linear"] == previous.lines["linear"]


def test_make_basis_recomputes_when_an_earlier_payment_converts():
    previous = make_basis(payment("p2", 1000, ts=T0), journey_for(TOUCHES), None, CONFIG)
    earlier = payment("p1", 500, ts=T0 - DAY_MS)
    updated = make_basis(earlier, journey_for(TOUCHES, T0 - DAY_MS), None, CONFIG,
                         previous=previous)
    assert updated is not previous
    assert (updated.conversion_event_id, updated.conversion_ts) == ("p1", T0 - DAY_MS)


# --- retractions -----------------------------------------------------------------------------


def negated_amounts(record: dict) -> dict:
    return {
        **record,
        "amount_minor": -record["amount_minor"],
        "reporting_amount_minor": -record["reporting_amount_minor"],
        "lines": [
            {
                **line,
                "amount_minor": -line["amount_minor"],
                "reporting_amount_minor": -line["reporting_amount_minor"],
            }
            for line in record["lines"]
        ],
    }


@pytest.mark.parametrize("event", [payment("p1", 1001, currency="EUR"),
                                   refund("r1", "p1", 999, currency="EUR")])
def test_a_retraction_negates_every_amount_and_keeps_the_rest(event):
    basis = basis_of(payment("p1", 1001, currency="EUR"))
    for model in MODELS:
        asserted = replace(credit_of(event, basis, model), revision=3, cause="late_touch")
        retracted = retraction(asserted)
        assert isinstance(retracted, Credit)
        assert (retracted.op, retracted.sign) == ("retract", -1)
        assert (retracted.revision, retracted.cause) == (3, "late_touch")
        assert retracted.credit_id == asserted.credit_id
        assert retracted.amount_minor == -asserted.amount_minor != 0
        assert retracted.reporting_amount_minor == -asserted.reporting_amount_minor != 0
        assert [c.line for c in retracted.lines] == [c.line for c in asserted.lines]
        assert [c.amount_minor for c in retracted.lines] == [
            -c.amount_minor for c in asserted.lines
        ]
        assert [c.reporting_amount_minor for c in retracted.lines] == [
            -c.reporting_amount_minor for c in asserted.lines
        ]
        record = credit_record(asserted)
        assert credit_record(retracted) == {**negated_amounts(record), "op": "retract"}


# --- the credit/2 record ---------------------------------------------------------------------


def test_credit_record_has_exactly_the_credit_2_shape():
    basis = basis_of(payment("p1", 1000, currency="EUR"))
    record = credit_record(credit_of(payment("p1", 1000, currency="EUR"), basis,
                                     "position_based"))
    expected = {
        "schema": "credit/2",
        "credit_id": "p1/position_based",
        "op": "assert",
        "revision": 1,
        "cause": None,
        "revenue_event_id": "p1",
        "person_id": PERSON,
        "model": "position_based",
        "kind": "payment",
        "revenue_ts": T0,
        "amount_minor": 1000,
        "currency": "EUR",
        "reporting_amount_minor": 1080,
        "reporting_currency": "USD",
        "segment": "SMB",
        "acquisition_channel": "Organic Search",
        "lines": [
            {
                "touch_event_id": "t1",
                "touch_ts": T0 - 3 * DAY_MS,
                "channel": "Organic Search",
                "source": "google",
                "medium": "organic",
                "campaign": None,
                "weight": 0.4,
                "amount_minor": 400,
                "reporting_amount_minor": 432,
            },
            {
                "touch_event_id": "t2",
                "touch_ts": T0 - 2 * DAY_MS,
                "channel": "Direct",
                "source": "(direct)",
                "medium": "(none)",
                "campaign": None,
                "weight": 0.2,
                "amount_minor": 200,
                "reporting_amount_minor": 216,
            },
            {
                "touch_event_id": "t3",
                "touch_ts": T0 - DAY_MS,
                "channel": "Paid Search",
                "source": "google",
                "medium": "cpc",
                "campaign": "brand",
                "weight": 0.4,
                "amount_minor": 400,
                "reporting_amount_minor": 432,
            },
        ],
    }
    assert record == expected
    assert CREDIT_SCHEMA == "credit/2"
    assert list(record) == list(expected)
    for key, value in expected.items():
        assert type(record[key]) is type(value), key
    for line, expected_line in zip(record["lines"], expected["lines"], strict=True):
        assert list(line) == list(expected_line)
        for key, value in expected_line.items():
            assert type(line[key]) is type(value), key
    assert json.loads(json.dumps(record)) == record
    assert orjson.loads(orjson.dumps(record)) == record


def test_a_corrected_record_carries_its_revision_and_cause():
    basis = basis_of(payment("p1", 1000))
    corrected = replace(credit_of(payment("p1", 1000), basis, "linear"), revision=2,
                        cause="late_link")
    record = credit_record(corrected)
    assert (record["op"], record["revision"], record["cause"]) == ("assert", 2, "late_link")
    assert record["credit_id"] == "p1/linear"


# --- Basis serialisation ---------------------------------------------------------------------


@pytest.mark.parametrize("touches", [TOUCHES, ()])
def test_basis_survives_an_orjson_round_trip_with_exact_weights(touches):
    basis = basis_of(payment("p1", 1000, currency="EUR"), touches=touches,
                     signup_ts=T0 - 2 * DAY_MS)
    data = orjson.loads(orjson.dumps(basis.to_dict()))  # the worker's codec: 64-bit integers
    restored = Basis.from_dict(data)
    assert restored == basis
    assert restored.key == basis.key and isinstance(restored.key, tuple)
    for model in MODELS:
        assert [ln.weight for ln in restored.lines[model]] == [
            ln.weight for ln in basis.lines[model]
        ]
        assert all(isinstance(ln.weight, Fraction) for ln in restored.lines[model])
    # make_basis still recognises the restored basis as current
    journey = acquisition_journey(known(touches), T0, CONFIG.lookback_ms)
    assert make_basis(payment("p1", 1000, currency="EUR"), journey, T0 - 2 * DAY_MS, CONFIG,
                      previous=restored) is restored
    if touches:
        weight = data["lines"]["time_decay"][0][-1]
        assert isinstance(weight, str) and "/" in weight
        assert Fraction(weight) == basis.lines["time_decay"][0].weight
        assert Fraction(float(Fraction(weight))) != Fraction(weight)  # a float would round it


# --- MRR -------------------------------------------------------------------------------------

MRR_STEPS = [
    (change("c1", "sub-1", 0, ts=T0 + 1), None, 0, 0),
    (change("c2", "sub-1", 1000, ts=T0 + 2), "new", 1000, 1000),
    (change("c3", "sub-1", 1500, ts=T0 + 3), "expansion", 500, 1500),
    (change("c4", "sub-2", 500, ts=T0 + 4), "expansion", 500, 2000),
    (change("c5", "sub-1", 0, ts=T0 + 5), "contraction", -1500, 500),
    (change("c6", "sub-2", 0, ts=T0 + 6), "churn", -500, 0),
    (change("c7", "sub-2", 800, ts=T0 + 7), "reactivation", 800, 800),
    (change("c8", "sub-2", 800, ts=T0 + 8), None, 0, 800),
    (change("c9", "sub-2", 600, ts=T0 + 9, currency="EUR"), "contraction", -152, 648),
]


def summary(steps):
    return [(s.change.event_id, s.kind, s.delta_reporting_minor, s.mrr_reporting_minor)
            for s in steps]


EXPECTED_MRR = [(c.event_id, kind, delta, total) for c, kind, delta, total in MRR_STEPS]


def test_mrr_movements_compare_the_persons_total_before_and_after():
    changes = [c for c, *_ in MRR_STEPS]
    steps = mrr_steps(changes, CONFIG)
    assert summary(steps) == EXPECTED_MRR
    assert [s.change for s in steps] == changes


@pytest.mark.parametrize("order", [slice(None, None, -1), [4, 0, 8, 2, 6, 1, 7, 3, 5]])
def test_mrr_steps_follow_event_time_whatever_the_input_order(order):
    changes = [c for c, *_ in MRR_STEPS]
    shuffled = changes[order] if isinstance(order, slice) else [changes[i] for i in order]
    assert shuffled != changes
    assert summary(mrr_steps(shuffled, CONFIG)) == EXPECTED_MRR


def test_mrr_ties_in_time_are_ordered_by_event_id():
    later_id = change("c2", "sub-1", 500)
    earlier_id = change("c1", "sub-1", 900)
    steps = mrr_steps([later_id, earlier_id], CONFIG)
    assert summary(steps) == [("c1", "new", 900, 900), ("c2", "contraction", -400, 500)]


def test_cancelling_one_of_two_subscriptions_is_a_contraction_not_a_churn():
    steps = mrr_steps(
        [change("a", "sub-1", 1000, ts=1), change("b", "sub-2", 300, ts=2),
         change("c", "sub-2", 0, ts=3)],
        CONFIG,
    )
    assert [s.kind for s in steps] == ["new", "expansion", "contraction"]
    assert steps[-1].delta_reporting_minor == -300
    assert steps[-1].mrr_reporting_minor == 1000


def test_churn_is_remembered_until_mrr_comes_back():
    steps = mrr_steps(
        [change("c1", "sub-1", 100, ts=1), change("c2", "sub-1", 0, ts=2),
         change("c3", "sub-2", 0, ts=3), change("c4", "sub-2", 250, ts=4),
         change("c5", "sub-2", 0, ts=5), change("c6", "sub-1", 100, ts=6)],
        CONFIG,
    )
    assert summary(steps) == [
        ("c1", "new", 100, 100),
        ("c2", "churn", -100, 0),
        ("c3", None, 0, 0),
        ("c4", "reactivation", 250, 250),
        ("c5", "churn", -250, 0),
        ("c6", "reactivation", 100, 100),
    ]


def test_zero_mrr_before_any_revenue_is_no_movement_and_not_a_churn():
    steps = mrr_steps([change("c1", "sub-1", 0, ts=1), change("c2", "sub-1", 700, ts=2)], CONFIG)
    assert summary(steps) == [("c1", None, 0, 0), ("c2", "new", 700, 700)]
    assert mrr_steps([], CONFIG) == []


def test_mrr_converts_one_subscription_at_a_time():
    steps = mrr_steps(
        [change("c1", "sub-1", 1, ts=1, currency="JPY"),
         change("c2", "sub-2", 1, ts=2, currency="JPY")],
        CONFIG,
    )
    # 1 JPY is 0.67 cents each (1 + 1), where 2 JPY together would be 1.34 cents (1)
    assert [s.delta_reporting_minor for s in steps] == [1, 1]
    assert steps[-1].mrr_reporting_minor == 2


def test_a_change_that_keeps_the_total_is_no_movement():
    steps = mrr_steps(
        [change("c1", "sub-1", 1080, ts=1), change("c2", "sub-1", 1000, ts=2, currency="EUR")],
        CONFIG,
    )
    assert summary(steps) == [("c1", "new", 1080, 1080), ("c2", None, 0, 1080)]


# --- invariants (DESIGN.md §8) ---------------------------------------------------------------

CURRENCIES = sorted(default_currency_table().currencies)
TABLE = default_currency_table()
touch_rows = st.lists(
    st.tuples(
        st.integers(min_value=T0 - 100 * DAY_MS, max_value=T0 + 10 * DAY_MS),
        st.sampled_from(["Direct", "Organic Search", "Paid Search", "Email"]),
        st.integers(min_value=T0 - 100 * DAY_MS, max_value=T0 + DAY_MS),
    ),
    max_size=8,
)


def build_pairs(rows) -> list[tuple[Touch, int]]:
    return [
        (Touch(f"t{i}", ts, "anon", channel, "src", "med", None), known_at)
        for i, (ts, channel, known_at) in enumerate(rows)
    ]


@settings(max_examples=120, derandomize=True, deadline=None)
@given(
    touch_rows,
    st.integers(min_value=1, max_value=10**9),
    st.sampled_from(CURRENCIES),
    st.sampled_from(CURRENCIES),
    st.none() | st.integers(min_value=T0 - 100 * DAY_MS, max_value=T0),
)
def test_invariant_1_lines_sum_exactly_to_the_event(rows, amount, currency, reporting, signup):
    config = AttributionConfig(reporting_currency=reporting)
    paid = payment("p1", amount, currency=currency)
    journey = acquisition_journey(build_pairs(rows), T0, config.lookback_ms)
    assert all(T0 - config.lookback_ms <= t.ts <= T0 for t in journey)
    basis = make_basis(paid, journey, signup, config)
    for model in MODELS:
        assert sum(line.weight for line in basis.lines[model]) == 1
        asserted = credit_of(paid, basis, model, config=config)
        refunded = credit_of(refund("r1", "p1", amount, currency=currency), basis, model,
                             config=config)
        assert [c.amount_minor for c in refunded.lines] == [
            -c.amount_minor for c in asserted.lines
        ]
        assert [c.reporting_amount_minor for c in refunded.lines] == [
            -c.reporting_amount_minor for c in asserted.lines
        ]
        for credited in (asserted, refunded, retraction(asserted)):
            assert sum(line.amount_minor for line in credited.lines) == credited.amount_minor
            assert (
                sum(line.reporting_amount_minor for line in credited.lines)
                == credited.reporting_amount_minor
            )
            record = credit_record(credited)
            assert sum(ln["amount_minor"] for ln in record["lines"]) == record["amount_minor"]
            assert sum(ln["reporting_amount_minor"] for ln in record["lines"]) == (
                record["reporting_amount_minor"]
            )


@st.composite
def revenue_histories(draw):
    """Payments and refunds that are valid when applied in order."""
    events, remaining = [], {}
    for index in range(draw(st.integers(min_value=1, max_value=12))):
        refundable = [key for key, (left, _) in remaining.items() if left > 0]
        ts = T0 + index * DAY_MS
        if refundable and draw(st.booleans()):
            of = draw(st.sampled_from(refundable))
            amount = draw(st.integers(min_value=1, max_value=remaining[of][0]))
            currency = remaining[of][1]
            remaining[of] = (remaining[of][0] - amount, currency)
            events.append(Refund(f"r{index}", ts, PERSON, amount, currency, of))
        else:
            amount = draw(st.integers(min_value=1, max_value=10**7))
            currency = draw(st.sampled_from(CURRENCIES))
            remaining[f"p{index}"] = (amount, currency)
            events.append(Payment(f"p{index}", ts, PERSON, amount, currency))
    return events


@settings(max_examples=80, derandomize=True, deadline=None)
@given(touch_rows, revenue_histories())
def test_invariant_2_credited_total_is_payments_minus_refunds(rows, events):
    conversion = events[0]
    journey = acquisition_journey(build_pairs(rows), conversion.ts, CONFIG.lookback_ms)
    basis = make_basis(conversion, journey, None, CONFIG)
    payments: dict[str, Payment] = {}
    refunded: dict[str, int] = defaultdict(int)
    credited: dict[str, int] = defaultdict(int)
    for event in events:
        if isinstance(event, Refund):
            assert refund_rejection(payments, refunded[event.refund_of], event) is None
            refunded[event.refund_of] += event.amount_minor
        else:
            payments[event.event_id] = event
        for model in MODELS:
            credited[model] += sum(
                line.reporting_amount_minor for line in credit_of(event, basis, model).lines
            )
    expected = sum(
        to_reporting(
            e.amount_minor if isinstance(e, Payment) else -e.amount_minor, e.currency, TABLE, "USD"
        )
        for e in events
    )
    assert credited == dict.fromkeys(MODELS, expected)
    for of, total in refunded.items():
        if total == payments[of].amount_minor:
            extra = Refund("r-extra", payments[of].ts, PERSON, 1, payments[of].currency, of)
            rejection = refund_rejection(payments, total, extra)
            assert rejection is not None and rejection.reason == "refund_exceeds_payment"


def test_a_basis_is_computed_anew_when_the_rules_change():
    journey = (Touch("t1", 0, "a", "Email", "newsletter", "email"),
               Touch("t2", DAY_MS, "a", "Direct", "(direct)", "(none)"))
    conversion = Payment("p1", 2 * DAY_MS, "u1", 100, "USD")
    linear = make_basis(conversion, journey, None, AttributionConfig(models=("linear",)))
    both = make_basis(conversion, journey, None,
                      AttributionConfig(models=("linear", "last_touch")), previous=linear)
    assert set(both.lines) == {"linear", "last_touch"}
    slower = make_basis(conversion, journey, None,
                        AttributionConfig(models=("time_decay",), half_life_ms=DAY_MS))
    faster = make_basis(conversion, journey, None,
                        AttributionConfig(models=("time_decay",), half_life_ms=2 * DAY_MS),
                        previous=slower)
    assert faster.lines != slower.lines
