from __future__ import annotations

import json
from collections import defaultdict
from fractions import Fraction

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.attribution import DAY_MS, MODELS, AttributionConfig
from processors.money import default_currency_table, to_reporting
from processors.revenue import (
    REJECTION_REASONS,
    Credit,
    Duplicate,
    MrrMovement,
    Rejection,
    RevenueState,
    apply_billing,
    credit_record,
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


def apply(state, event, touches=TOUCHES, signup_ts=None, segment="SMB", config=CONFIG):
    return apply_billing(
        state,
        event,
        person_id=PERSON,
        touches=touches,
        signup_ts=signup_ts,
        segment=segment,
        config=config,
    )


def run(*events, **kwargs):
    state, outputs = None, []
    for event in events:
        state, produced = apply(state, event, **kwargs)
        outputs.extend(produced)
    return state, outputs


def credits_by_model(outputs) -> dict[str, Credit]:
    return {c.model: c for c in outputs if isinstance(c, Credit)}


def line_amounts(credit: Credit) -> list[tuple[str | None, int]]:
    return [(line.line.touch_event_id, line.amount_minor) for line in credit.lines]


def test_first_payment_converts_and_credits_every_model_once():
    state, outputs = apply(None, payment("p1", 1000))
    assert [c.model for c in outputs] == list(MODELS)
    assert [c.credit_id for c in outputs] == [f"p1/{model}" for model in MODELS]
    assert state.conversion_ts == T0
    assert state.acquisition_channel == "Organic Search"
    assert state.acquisition_campaign is None
    assert state.first_touch_ts == T0 - 3 * DAY_MS
    assert state.lifetime_revenue_reporting_minor == 1000
    assert state.payment_count == 1


def test_credits_split_the_payment_by_each_model():
    _, outputs = apply(None, payment("p1", 1000))
    by_model = credits_by_model(outputs)
    assert line_amounts(by_model["first_touch"]) == [("t1", 1000)]
    assert line_amounts(by_model["last_touch"]) == [("t3", 1000)]
    assert line_amounts(by_model["last_non_direct"]) == [("t3", 1000)]
    assert line_amounts(by_model["linear"]) == [("t1", 334), ("t2", 333), ("t3", 333)]
    assert line_amounts(by_model["position_based"]) == [("t1", 400), ("t2", 200), ("t3", 400)]


def test_a_person_without_touches_converts_unattributed():
    state, outputs = apply(None, payment("p1", 500), touches=())
    assert state.acquisition_channel == "Unattributed"
    assert state.first_touch_ts is None
    for credit in outputs:
        assert credit.acquisition_channel == "Unattributed"
        assert line_amounts(credit) == [(None, 500)]
    record = credit_record(outputs[0])
    assert record["lines"] == [
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


def test_touches_after_the_conversion_never_count():
    _, outputs = apply(None, payment("p1", 1000), touches=(*TOUCHES, LATE_TOUCH))
    assert line_amounts(credits_by_model(outputs)["last_touch"]) == [("t3", 1000)]


def test_later_payments_are_split_by_the_weights_frozen_at_conversion():
    state, _ = apply(None, payment("p1", 1000))
    extra = Touch("t0", T0 - 4 * DAY_MS, "anon-3", "Referral", "blog.example", "referral", None)
    _, outputs = apply(
        state, payment("p2", 900, ts=T0 + 2 * DAY_MS), touches=(extra, *TOUCHES, LATE_TOUCH)
    )
    by_model = credits_by_model(outputs)
    assert line_amounts(by_model["first_touch"]) == [("t1", 900)]
    assert line_amounts(by_model["last_touch"]) == [("t3", 900)]
    assert line_amounts(by_model["linear"]) == [("t1", 300), ("t2", 300), ("t3", 300)]
    assert by_model["linear"].acquisition_channel == "Organic Search"


def test_refund_is_split_like_the_payment_it_refunds():
    state, paid = apply(None, payment("p1", 1000))
    state, refunded = apply(state, refund("r1", "p1", 1000))
    for paid_credit, refund_credit in zip(paid, refunded, strict=True):
        assert refund_credit.kind == "refund"
        assert refund_credit.amount_minor == -1000
        assert refund_credit.credit_id == f"r1/{paid_credit.model}"
        assert line_amounts(refund_credit) == [
            (touch_id, -amount) for touch_id, amount in line_amounts(paid_credit)
        ]
    assert state.lifetime_revenue_reporting_minor == 0
    assert state.payments["p1"].refunded_minor == 1000


def test_partial_refunds_accumulate_up_to_the_payment():
    state, _ = run(payment("p1", 1000), refund("r1", "p1", 300), refund("r2", "p1", 700))
    assert state.payments["p1"].refunded_minor == 1000
    assert state.refund_count == 2
    assert state.lifetime_revenue_reporting_minor == 0
    _, outputs = apply(state, refund("r3", "p1", 1))
    assert outputs == (Rejection("refund_exceeds_payment", outputs[0].message),)


def test_a_partial_refund_is_split_by_the_conversion_weights():
    _, outputs = run(payment("p1", 1000), refund("r1", "p1", 1))
    refund_credit = credits_by_model(outputs[len(MODELS) :])["linear"]
    assert line_amounts(refund_credit) == [("t1", -1), ("t2", 0), ("t3", 0)]


@pytest.mark.parametrize(
    ("bad_refund", "reason"),
    [
        (refund("r9", "p-unknown", 100), "refund_unknown_payment"),
        (refund("r9", "p1", 1001), "refund_exceeds_payment"),
        (refund("r9", "p1", 100, currency="EUR"), "refund_currency_mismatch"),
        (refund("r9", "p1", 100, ts=T0 - 1), "refund_before_payment"),
        (refund("r9", "p1", 100, currency="XYZ"), "unknown_currency"),
    ],
)
def test_invalid_refunds_are_rejected_without_changing_the_state(bad_refund, reason):
    state, _ = apply(None, payment("p1", 1000))
    new_state, outputs = apply(state, bad_refund)
    assert new_state == state
    assert len(outputs) == 1 and isinstance(outputs[0], Rejection)
    assert outputs[0].reason == reason
    assert outputs[0].reason in REJECTION_REASONS
    assert outputs[0].message


def test_a_refund_without_any_payment_is_rejected():
    state, outputs = apply(None, refund("r1", "p1", 100))
    assert state == RevenueState()
    assert [o.reason for o in outputs] == ["refund_unknown_payment"]


def test_a_payment_in_an_unknown_currency_is_rejected_and_does_not_convert():
    state, outputs = apply(None, payment("p1", 100, currency="XYZ"))
    assert state.conversion_ts is None
    assert [o.reason for o in outputs] == ["unknown_currency"]


@pytest.mark.parametrize(
    "replayed",
    [payment("p1", 1000), refund("r1", "p1", 100), change("s1", "sub-1", 2000)],
)
def test_a_replayed_event_id_yields_a_duplicate_and_no_credit(replayed):
    state, _ = run(payment("p1", 1000), refund("r1", "p1", 100), change("s1", "sub-1", 2000))
    new_state, outputs = apply(state, replayed)
    assert new_state == state
    assert outputs == (Duplicate(replayed.event_id),)


def test_a_rejected_event_does_not_claim_its_id():
    state, _ = run(payment("p1", 1000), refund("r1", "p1", 100, ts=T0 - 1))
    state, outputs = apply(state, refund("r1", "p1", 100))
    assert [c.kind for c in outputs] == ["refund"] * len(MODELS)
    assert state.refund_count == 1


def test_credits_carry_the_reporting_currency_and_split_it_again():
    config = AttributionConfig(models=("linear",))
    state, outputs = apply(None, payment("p1", 1000, currency="EUR"), config=config)
    (credit,) = outputs
    assert (credit.amount_minor, credit.currency) == (1000, "EUR")
    assert (credit.reporting_amount_minor, credit.reporting_currency) == (1080, "USD")
    assert [line.reporting_amount_minor for line in credit.lines] == [360, 360, 360]
    assert [line.amount_minor for line in credit.lines] == [334, 333, 333]
    assert state.lifetime_revenue_reporting_minor == 1080


def test_a_full_refund_in_a_three_decimal_currency_mirrors_the_payment():
    config = AttributionConfig(models=("linear",))
    state, paid = apply(None, payment("p1", 1001, currency="KWD"), config=config)
    _, refunded = apply(state, refund("r1", "p1", 1001, currency="KWD"), config=config)
    assert paid[0].reporting_amount_minor == 325
    assert [line.reporting_amount_minor for line in refunded[0].lines] == [
        -line.reporting_amount_minor for line in paid[0].lines
    ]


def test_only_enabled_models_are_credited_and_a_model_enabled_later_is_frozen_then():
    linear_only = AttributionConfig(models=("linear",))
    state, outputs = apply(None, payment("p1", 1000), config=linear_only)
    assert [c.model for c in outputs] == ["linear"]
    assert set(state.credit_lines) == {"linear"}
    both = AttributionConfig(models=("linear", "last_touch"))
    state, outputs = apply(
        state, payment("p2", 500, ts=T0 + DAY_MS), touches=(*TOUCHES, LATE_TOUCH), config=both
    )
    assert [c.model for c in outputs] == ["linear", "last_touch"]
    assert line_amounts(outputs[1]) == [("t3", 500)]
    assert state.conversion_ts == T0


def test_the_record_carries_the_segment_at_processing_time():
    state, first = apply(None, payment("p1", 100), segment="Unknown")
    _, later = apply(state, payment("p2", 100), segment="Enterprise")
    assert {c.segment for c in first} == {"Unknown"}
    assert {c.segment for c in later} == {"Enterprise"}


def test_w_shaped_uses_the_signup_milestone():
    _, outputs = apply(None, payment("p1", 1000), signup_ts=T0 - 2 * DAY_MS)
    assert line_amounts(credits_by_model(outputs)["w_shaped"]) == [
        ("t1", 334),
        ("t2", 333),
        ("t3", 333),
    ]
    _, outputs = apply(None, payment("p1", 1000), touches=TOUCHES[1:], signup_ts=T0)
    assert line_amounts(credits_by_model(outputs)["w_shaped"]) == [("t2", 350), ("t3", 650)]


def test_credit_record_has_exactly_the_credit_1_shape():
    _, outputs = apply(None, payment("p1", 1000, currency="EUR"), segment="SMB")
    record = credit_record(credits_by_model(outputs)["position_based"])
    assert record == {
        "schema": "credit/1",
        "credit_id": "p1/position_based",
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
    assert json.loads(json.dumps(record)) == record


def test_refund_records_carry_negative_amounts():
    _, outputs = run(payment("p1", 1000), refund("r1", "p1", 250))
    record = credit_record(outputs[-1])
    assert record["kind"] == "refund"
    assert record["amount_minor"] == -250
    assert sum(line["amount_minor"] for line in record["lines"]) == -250


MRR_STEPS = [
    (change("c1", "sub-1", 0), None),
    (change("c2", "sub-1", 1000), ("new", 1000, 1000)),
    (change("c3", "sub-1", 1500), ("expansion", 500, 1500)),
    (change("c4", "sub-2", 500), ("expansion", 500, 2000)),
    (change("c5", "sub-1", 0), ("contraction", -1500, 500)),
    (change("c6", "sub-2", 0), ("churn", -500, 0)),
    (change("c7", "sub-2", 800), ("reactivation", 800, 800)),
    (change("c8", "sub-2", 800), None),
    (change("c9", "sub-2", 600, currency="EUR"), ("contraction", -152, 648)),
]


def test_mrr_movements_compare_the_persons_total_before_and_after():
    state = None
    for event, expected in MRR_STEPS:
        state, outputs = apply(state, event)
        if expected is None:
            assert outputs == ()
        else:
            (movement,) = outputs
            assert isinstance(movement, MrrMovement)
            assert (movement.kind, movement.delta_reporting_minor) == expected[:2]
            assert movement.mrr_reporting_minor == expected[2]
            assert movement.event_id == event.event_id
            assert movement.subscription_id == event.subscription_id
            assert state.mrr_reporting_minor == expected[2]
    assert state.churned is False


def test_churn_is_remembered_until_mrr_comes_back():
    state, outputs = run(change("c1", "sub-1", 100), change("c2", "sub-1", 0))
    assert state.churned is True
    assert [m.kind for m in outputs] == ["new", "churn"]
    state, outputs = apply(state, change("c3", "sub-2", 0))
    assert state.churned is True and outputs == ()


def test_mrr_converts_one_subscription_at_a_time():
    state, outputs = run(
        change("c1", "sub-1", 1, currency="JPY"), change("c2", "sub-2", 1, currency="JPY")
    )
    assert state.mrr_reporting_minor == 2
    assert [m.delta_reporting_minor for m in outputs] == [1, 1]


def test_mrr_movements_carry_the_acquisition_channel_once_converted():
    state, before = apply(None, change("c1", "sub-1", 1000))
    state, _ = apply(state, payment("p1", 1000))
    _, after = apply(state, change("c2", "sub-1", 2000), segment="Mid-Market")
    assert before[0].acquisition_channel is None
    assert after[0].acquisition_channel == "Organic Search"
    assert after[0].segment == "Mid-Market"


def test_state_survives_a_json_round_trip():
    state, _ = run(
        payment("p1", 1000, currency="EUR"),
        refund("r1", "p1", 10, currency="EUR"),
        change("c1", "sub-1", 700),
        signup_ts=T0 - 2 * DAY_MS,
    )
    data = orjson.loads(orjson.dumps(state.to_dict()))  # the worker's codec: 64-bit integers
    assert data["v"] == 1
    assert RevenueState.from_dict(data) == state
    assert "/" in data["credit_lines"]["time_decay"][0]["weight"]
    with pytest.raises(ValueError):
        RevenueState.from_dict({**data, "v": 2})


# --- invariants (DESIGN.md §8) ---

CURRENCIES = sorted(default_currency_table().currencies)
touch_rows = st.lists(
    st.tuples(
        st.integers(min_value=T0 - 100 * DAY_MS, max_value=T0 + 10 * DAY_MS),
        st.sampled_from(["Direct", "Organic Search", "Paid Search", "Email"]),
    ),
    max_size=8,
)


def build_touches(rows) -> tuple[Touch, ...]:
    return tuple(
        Touch(f"t{i}", ts, "anon", channel, "src", "med", None)
        for i, (ts, channel) in enumerate(rows)
    )


@settings(max_examples=150, derandomize=True)
@given(
    touch_rows,
    st.integers(min_value=1, max_value=10**9),
    st.sampled_from(CURRENCIES),
    st.sampled_from(CURRENCIES),
    st.none() | st.integers(min_value=T0 - 100 * DAY_MS, max_value=T0),
)
def test_invariant_1_lines_sum_exactly_to_the_event(rows, amount, currency, reporting, signup):
    config = AttributionConfig(reporting_currency=reporting)
    state, paid = apply(
        None, payment("p1", amount, currency=currency), build_touches(rows), signup, config=config
    )
    _, refunded = apply(
        state, refund("r1", "p1", amount, currency=currency), build_touches(rows), config=config
    )
    for credit in (*paid, *refunded):
        assert sum(line.amount_minor for line in credit.lines) == credit.amount_minor
        assert (
            sum(line.reporting_amount_minor for line in credit.lines)
            == credit.reporting_amount_minor
        )
        record = credit_record(credit)
        assert sum(line["amount_minor"] for line in record["lines"]) == record["amount_minor"]


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


@settings(max_examples=100, derandomize=True)
@given(touch_rows, revenue_histories())
def test_invariant_2_credited_total_is_payments_minus_refunds(rows, events):
    table = default_currency_table()
    state, outputs = run(*events, touches=build_touches(rows))
    credited: dict[str, int] = defaultdict(int)
    for credit in outputs:
        credited[credit.model] += sum(line.reporting_amount_minor for line in credit.lines)
    expected = sum(
        to_reporting(
            e.amount_minor if isinstance(e, Payment) else -e.amount_minor, e.currency, table, "USD"
        )
        for e in events
    )
    assert credited == dict.fromkeys(MODELS, expected)
    assert state.lifetime_revenue_reporting_minor == expected
    replayed_state, replayed = run(*events, *events, touches=build_touches(rows))
    assert replayed_state == state
    assert sum(isinstance(o, Duplicate) for o in replayed) == len(events)


def test_exact_weights_are_frozen_per_model():
    state, _ = apply(None, payment("p1", 1000))
    weights = {model: [ln.weight for ln in lines] for model, lines in state.credit_lines.items()}
    assert weights["linear"] == [Fraction(1, 3)] * 3
    assert all(sum(frozen) == 1 for frozen in weights.values())
