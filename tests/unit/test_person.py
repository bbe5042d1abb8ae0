"""The person step: facts in, credits out at once, corrected when a late fact changes them."""

from __future__ import annotations

from dataclasses import replace

import orjson

from processors.attribution import DAY_MS
from processors.config import PipelineConfig
from processors.identity import (
    PERSON_ANONYMOUS_ID_CAP,
    Claim,
    ClaimedTouch,
    IdentityConfig,
    LinkRefused,
    SignupSeen,
)
from processors.messages import Source, Sourced
from processors.person import (
    Converted,
    Corrected,
    DeadLetter,
    DuplicateBilling,
    LateEvent,
    MrrMovement,
    PersonState,
    Processed,
    ProfileChanged,
    step_person,
)
from processors.reference import current_credits
from processors.revenue import Credit, credit_record
from processors.touch import Touch
from schemas.events import Payment, Refund, SubscriptionChange, Traits

CONFIG = PipelineConfig()
T0 = 1_000 * DAY_MS
NOW = 2_000_000_000_000
HOUR = 3_600_000
SEARCH = Touch("t1", T0 - 3 * DAY_MS, "a1", "Organic Search", "google", "organic")
EMAIL = Touch("t2", T0 - 2 * DAY_MS, "a1", "Email", "newsletter", "email", "promo")
PAID = Touch("t3", T0 - 1 * DAY_MS, "a2", "Paid Search", "google", "cpc", "brand")


def claim(anon, linked_ts, *touches, logged_in=False):
    return Claim("u1", anon, linked_ts, tuple(ClaimedTouch(t, logged_in) for t in touches))


def billing(event, offset=0):
    return Sourced(event, Source("billing-v1", 0, offset, f'{{"event_id": "{event.event_id}"}}'))


def pay(event_id, amount=1000, ts=T0, currency="USD"):
    return billing(Payment(event_id, ts, "u1", amount, currency))


def signup(event_id, ts, **traits):
    return SignupSeen("u1", "a1", ts, event_id, Traits(**traits))


def run(*batches, state=None, config=CONFIG, now=NOW):
    outputs = []
    for batch in batches:
        state, out = step_person(state, batch, person_id="u1", config=config, now_ms=now)
        outputs.extend(out)
    return state, outputs


def credits(outputs, model=None):
    return [o for o in outputs if isinstance(o, Credit) and model in (None, o.model)]


def resolved(outputs):
    """credit id -> current record; also checks every retract cancels an earlier assert."""
    return current_credits(credit_record(c) for c in credits(outputs))


def channels(outputs, model="first_touch"):
    return {r["revenue_event_id"]: [line["channel"] for line in r["lines"]]
            for r in resolved(outputs).values() if r["model"] == model}


def test_a_payment_is_credited_at_once_and_once_per_model():
    _, outputs = run([claim("a1", T0 - 5 * DAY_MS, SEARCH, EMAIL), pay("p1")])
    assert [(c.model, c.op, c.revision) for c in credits(outputs)] == [
        (m, "assert", 1) for m in CONFIG.attribution.models]
    assert channels(outputs) == {"p1": ["Organic Search"]}
    assert [o for o in outputs if isinstance(o, Processed)] == [Processed("billing-v1", T0)]


def test_a_touch_that_arrives_after_the_payment_it_precedes_corrects_the_credit():
    state, first = run([pay("p1")])
    assert channels(first) == {"p1": ["Unattributed"]}
    _, late = run([claim("a1", T0 - 5 * DAY_MS, SEARCH)], state=state)
    retract, assertion = credits(late, "first_touch")
    assert (retract.op, retract.revision, retract.amount_minor) == ("retract", 1, -1000)
    assert [c.line.channel for c in retract.lines] == ["Unattributed"]
    assert (assertion.op, assertion.revision, assertion.cause) == ("assert", 2, "late_touch")
    assert channels(first + late) == {"p1": ["Organic Search"]}
    assert Corrected("first_touch", "late_touch") in late
    assert LateEvent("corrected") in late
    assert [o.sign for o in late if isinstance(o, Converted)] == [-1, 1]


def test_the_journey_is_the_state_as_of_the_conversion():
    linked_later = claim("a2", T0 + 5 * DAY_MS, PAID)  # touch before, link after the payment
    _, outputs = run([claim("a1", T0 - 5 * DAY_MS, SEARCH)], [pay("p1")], [linked_later])
    assert channels(outputs, "last_touch") == {"p1": ["Organic Search"]}
    assert not [c for c in credits(outputs) if c.op == "retract"]


def test_a_logged_in_touch_counts_from_its_own_time():
    _, outputs = run([pay("p1")], [claim("a2", None, PAID, logged_in=True)])
    assert channels(outputs, "last_touch") == {"p1": ["Paid Search"]}


def test_an_earlier_payment_arriving_later_becomes_the_conversion_and_corrects_all():
    touches = claim("a1", T0 - 5 * DAY_MS, SEARCH, EMAIL, replace(PAID, anonymous_id="a1"))
    state, first = run([touches, pay("p2", ts=T0)])
    assert channels(first, "last_touch") == {"p2": ["Paid Search"]}
    _, late = run([pay("p1", ts=T0 - 2 * DAY_MS + 1)], state=state)
    assert channels(first + late, "last_touch") == {"p1": ["Email"], "p2": ["Email"]}
    assert {c.cause for c in credits(late) if c.op == "assert" and c.revision == 2} == {
        "earlier_payment"}
    converted = [o for o in late if isinstance(o, Converted)]
    assert [(c.sign, c.ts) for c in converted] == [(-1, T0), (1, T0 - 2 * DAY_MS + 1)]


def test_a_touch_that_moves_to_another_person_is_retracted_here():
    state, first = run([claim("a1", T0 - 5 * DAY_MS, SEARCH, EMAIL), pay("p1")])
    _, moved = run([claim("a1", T0 - 5 * DAY_MS, SEARCH)], state=state)
    assert channels(first + moved, "last_touch") == {"p1": ["Organic Search"]}
    assert {c.cause for c in credits(moved) if c.op == "assert"} == {"identity_move"}


def test_the_segment_of_a_record_is_the_persons_as_of_the_revenue_event():
    state, first = run([signup("s1", T0 - DAY_MS, company_size=50), pay("p1"),
                        pay("p2", ts=T0 + 10 * DAY_MS)])
    segments = {c.revenue_event_id: c.segment for c in credits(first, "linear")}
    assert segments == {"p1": "SMB", "p2": "SMB"}
    _, late = run([signup("s2", T0 + DAY_MS, company_size=5000)], state=state)
    current = {r["revenue_event_id"]: r["segment"] for r in resolved(first + late).values()}
    assert current == {"p1": "SMB", "p2": "Enterprise"}
    assert {c.cause for c in credits(late) if c.op == "assert"} == {"late_signup"}


def test_w_shaped_uses_the_first_signup_before_the_conversion():
    touches = claim("a1", T0 - 5 * DAY_MS, SEARCH, EMAIL, replace(PAID, anonymous_id="a1"))
    _, outputs = run([touches, signup("s1", T0 - 3 * DAY_MS), pay("p1")])
    [record] = [r for r in resolved(outputs).values() if r["model"] == "w_shaped"]
    assert [line["weight"] for line in record["lines"]] == [0.6, 0.1, 0.3]
    _, after = run([touches, signup("s1", T0 + DAY_MS), pay("p1")])
    [record] = [r for r in resolved(after).values() if r["model"] == "w_shaped"]
    assert [line["weight"] for line in record["lines"]] == [0.6, 0.1, 0.3]
    _, before = run([touches, signup("s1", T0 - DAY_MS - 1), pay("p1")])
    [record] = [r for r in resolved(before).values() if r["model"] == "w_shaped"]
    assert [round(line["weight"], 4) for line in record["lines"]] == [0.3333] * 3


def test_beyond_the_horizon_credits_are_final_and_late_facts_only_counted():
    state, first = run([pay("p1")])
    horizon = CONFIG.restatement_horizon_ms
    _, late = run([claim("a1", T0 - 5 * DAY_MS, SEARCH), pay("p2", ts=T0 + DAY_MS)],
                  state=state, now=NOW + horizon + 1)
    assert LateEvent("beyond_horizon") in late
    assert not [c for c in credits(late) if c.op == "retract"]
    assert channels(first + late) == {"p1": ["Unattributed"], "p2": ["Unattributed"]}
    _, inside = run([claim("a1", T0 - 5 * DAY_MS, SEARCH)], state=state, now=NOW + horizon)
    assert channels(first + inside) == {"p1": ["Organic Search"]}


def test_a_copy_of_billing_is_counted_not_dead_lettered_and_credited_once():
    _, outputs = run([pay("p1")], [pay("p1")], [pay("p1", amount=1000)])
    assert [o for o in outputs if isinstance(o, DuplicateBilling)] == [
        DuplicateBilling("billing-v1", True), DuplicateBilling("billing-v1", True)]
    _, copies = run([pay("p1")], [billing(Payment("p1", T0, "u1", 1000, "USD"), offset=9)])
    assert DuplicateBilling("billing-v1", False) in copies
    assert len(credits(outputs)) == len(CONFIG.attribution.models)
    assert not [o for o in outputs + copies if isinstance(o, DeadLetter)]


def test_invalid_billing_is_dead_lettered_with_its_source():
    bad_refund = billing(Refund("r1", T0, "u1", 100, "USD", "nope"), offset=4)
    _, outputs = run([bad_refund, pay("p1", currency="XXX")])
    letters = [o for o in outputs if isinstance(o, DeadLetter)]
    assert [(d.reason, d.message_source.source.offset) for d in letters] == [
        ("refund_unknown_payment", 4), ("unknown_currency", 0)]
    assert not credits(outputs)


def test_refused_billing_stays_refused_when_read_again_after_its_payment():
    """A re-read after a crash finds the payment the refund once lacked: it is a replay of the
    refusal, not a new decision."""
    early_refund = billing(Refund("r1", T0, "u1", 100, "USD", "p1"), offset=4)
    state, first = run([early_refund], [pay("p1")])
    _, reread = run([early_refund], [billing(Refund("r1", T0, "u1", 100, "USD", "p1"),
                                             offset=7)], state=state)
    assert [d.reason for d in first if isinstance(d, DeadLetter)] == ["refund_unknown_payment"]
    assert [o for o in reread if isinstance(o, (DeadLetter, Credit))] == []
    assert [o for o in reread if isinstance(o, DuplicateBilling)] == [
        DuplicateBilling("billing-v1", True), DuplicateBilling("billing-v1", False)]


def test_a_refund_is_split_like_its_payment_and_corrected_with_it():
    refund = billing(Refund("r1", T0 + DAY_MS, "u1", 1000, "USD", "p1"))
    state, first = run([pay("p1"), refund])
    _, late = run([claim("a1", T0 - 5 * DAY_MS, SEARCH)], state=state)
    current = resolved(first + late)
    assert current["r1/first_touch"]["lines"][0]["channel"] == "Organic Search"
    assert current["r1/first_touch"]["amount_minor"] == -1000
    totals = {}
    for c in credits(first + late):
        totals[c.model] = totals.get(c.model, 0) + c.reporting_amount_minor
    assert set(totals.values()) == {0}


def test_devices_beyond_the_persons_cap_give_no_anonymous_touches():
    config = replace(CONFIG, identity=IdentityConfig(max_anonymous_ids_per_person=1))
    _, outputs = run([claim("a2", T0 - 9 * DAY_MS, PAID), claim("a1", T0 - 5 * DAY_MS, SEARCH),
                      pay("p1")], config=config)
    assert channels(outputs, "linear") == {"p1": ["Paid Search"]}
    assert LinkRefused(PERSON_ANONYMOUS_ID_CAP, "a1") in outputs


def change(event_id, ts, mrr):
    return billing(SubscriptionChange(event_id, ts, "u1", "sub", "pro", mrr, "USD"))


def moves(outputs):
    return [(m.event_id, m.kind, m.delta_reporting_minor, m.acquisition_channel, m.segment,
             m.sign) for m in outputs if isinstance(m, MrrMovement)]


def test_a_late_subscription_change_corrects_the_movements_after_it():
    state, first = run([pay("p1"), change("c2", T0 + 2 * DAY_MS, 3000)])
    _, late = run([change("c1", T0 + DAY_MS, 1000)], state=state)
    assert [(e, k, d, sign) for e, k, d, _, _, sign in moves(first + late)] == [
        ("c2", "new", 3000, 1), ("c1", "new", 1000, 1), ("c2", "new", 3000, -1),
        ("c2", "expansion", 2000, 1)]


def test_mrr_waits_for_the_conversion_then_follows_its_channel_and_the_current_segment():
    """So a channel × segment's MRR is the sum of its customers' MRR: a subscription started
    before the first payment does not count on Unattributed and later churn on the channel."""
    state, before = run([claim("a1", T0 - 5 * DAY_MS, SEARCH), change("c1", T0 - DAY_MS, 2000)])
    assert moves(before) == []
    state, converted = run([pay("p1")], state=state)
    assert moves(converted) == [("c1", "new", 2000, "Organic Search", "Unknown", 1)]
    state, bigger = run([signup("s1", T0 + DAY_MS, company_size=500)], state=state)
    assert moves(bigger) == [("c1", "new", 2000, "Organic Search", "Unknown", -1),
                             ("c1", "new", 2000, "Organic Search", "Mid-Market", 1)]
    _, churned = run([change("c2", T0 + 2 * DAY_MS, 0)], state=state)
    assert moves(churned) == [("c2", "churn", -2000, "Organic Search", "Mid-Market", 1)]


def test_signups_are_counted_once_however_often_they_arrive():
    state, outputs = run([signup("s1", T0, plan="team")], [signup("s1", T0, plan="team")])
    profile = [o for o in outputs if isinstance(o, ProfileChanged)][-1].record
    assert profile["counts"]["signups"] == 1 and profile["traits"]["plan"] == "team"
    assert len([o for o in outputs if isinstance(o, ProfileChanged)]) == 1


def test_the_profile_follows_corrections():
    state, outputs = run([pay("p1", amount=4900)], [claim("a1", T0 - 5 * DAY_MS, SEARCH)])
    profile = [o for o in outputs if isinstance(o, ProfileChanged)][-1].record
    assert profile["acquisition_channel"] == "Organic Search"
    assert profile["lifetime_revenue_minor"] == 4900
    assert profile["anonymous_ids"] == ["a1"]
    assert profile["conversion_ts"] == T0


def test_the_state_survives_its_record():
    state, _ = run([claim("a1", T0 - 5 * DAY_MS, SEARCH, EMAIL), signup("s1", T0, plan="x"),
                    pay("p1"), billing(Refund("r1", T0 + 1, "u1", 10, "USD", "p1")),
                    billing(SubscriptionChange("c1", T0, "u1", "s", "pro", 100, "EUR"))])
    assert PersonState.from_dict(orjson.loads(orjson.dumps(state.to_dict()))) == state
