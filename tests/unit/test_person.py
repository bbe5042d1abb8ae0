import itertools

from processors.config import PipelineConfig
from processors.identity import Link, SignupSeen, StitchedTouch
from processors.messages import ReleaseHeld, Source, Sourced, decode, encode
from processors.person import (
    Converted,
    DeadLetter,
    HoldEnded,
    HoldStarted,
    LateTouch,
    PersonState,
    Processed,
    ProfileChanged,
    Replayed,
    step_person,
)
from processors.revenue import Credit
from processors.touch import Touch
from processors.watermarks import ANY_TIME, END_OF_TIME, NO_WATERMARK, Watermark
from schemas.events import Campaign, PageView, Payment, Refund, Signup, Traits

CONFIG = PipelineConfig()
DAY = 86_400_000


def touch(event_id, ts, channel="Paid Search"):
    return StitchedTouch("ada", Touch(event_id, ts, "dev-1", channel, "google", "cpc"), False)


def signup(ts, size=250):
    return SignupSeen("ada", "dev-1", ts, f"su-{ts}", Traits(company_size=size))


OFFSETS = itertools.count(100)


def billed(event, offset=None):
    return Sourced(event, Source("billing-v1", 0, next(OFFSETS) if offset is None else offset,
                                 "{}"))


def payment(event_id, ts, amount=1000, offset=None):
    return billed(Payment(event_id, ts, "ada", amount, "USD"), offset)


def run(messages, state=None, watermark=ANY_TIME):
    outputs = []
    for message in messages:
        state, out = step_person(state, message, person_id="ada", config=CONFIG,
                                 watermark=watermark)
        outputs.extend(out)
    return state, outputs


def credits(outputs, model="first_touch"):
    return [o for o in outputs if isinstance(o, Credit) and o.model == model]


def test_a_payment_ahead_of_the_touch_watermark_waits_for_the_touches_that_precede_it():
    state, outputs = run([payment("pay-1", 10 * DAY)], watermark=NO_WATERMARK)
    assert outputs == [HoldStarted("ada", 10 * DAY)]
    state, outputs = run([touch("t1", 1 * DAY), signup(2 * DAY)], state,
                         watermark=Watermark(9 * DAY, END_OF_TIME))
    assert state.held and not credits(outputs)
    state, outputs = run([ReleaseHeld("ada", 10 * DAY, END_OF_TIME)], state)
    assert HoldEnded("ada", 1, None) in outputs
    [credit] = credits(outputs)
    assert credit.acquisition_channel == "Paid Search"
    assert not state.held


def test_held_billing_goes_ahead_in_arrival_order_up_to_the_watermark():
    state, _ = run([payment("pay-1", 3 * DAY), payment("pay-2", 5 * DAY),
                    payment("pay-3", 4 * DAY)], watermark=NO_WATERMARK)
    state, outputs = run([ReleaseHeld("ada", 4 * DAY, END_OF_TIME)], state)
    assert [c.revenue_event_id for c in credits(outputs)] == ["pay-1"]
    assert HoldEnded("ada", 1, 5 * DAY) in outputs
    state, outputs = run([ReleaseHeld("ada", 5 * DAY, END_OF_TIME)], state)
    assert [c.revenue_event_id for c in credits(outputs)] == ["pay-2", "pay-3"]


def test_a_watermark_older_than_the_billing_validation_is_not_trusted():
    message = Sourced(Payment("pay-1", DAY, "ada", 10, "USD"),
                      Source("billing-v1", 0, 0, "{}", validated_at_ms=5_000))
    _, outputs = run([message], watermark=Watermark(END_OF_TIME, 4_999))
    assert outputs == [HoldStarted("ada", DAY)]
    _, outputs = run([message], watermark=Watermark(END_OF_TIME, 5_000))
    assert credits(outputs)


def test_billing_behind_held_billing_waits_even_when_the_watermark_passed_it():
    state, _ = run([payment("pay-1", 3 * DAY)], watermark=NO_WATERMARK)
    state, outputs = run([payment("pay-2", 1 * DAY)], state,
                         watermark=Watermark(2 * DAY, END_OF_TIME))
    assert not credits(outputs) and len(state.held) == 2


def test_a_touch_arriving_after_the_conversion_it_predates_is_late_and_changes_nothing():
    state, _ = run([touch("t1", 1 * DAY), signup(2 * DAY), payment("pay-1", 3 * DAY)])
    state, outputs = run([touch("t0", DAY // 2, channel="Email"), payment("pay-2", 4 * DAY)],
                         state)
    assert any(isinstance(o, LateTouch) for o in outputs)
    assert credits(outputs)[0].lines[0].line.channel == "Paid Search"


def test_a_duplicate_payment_is_dead_lettered_and_credited_once():
    state, first = run([signup(DAY), payment("pay-1", 2 * DAY)])
    state, second = run([payment("pay-1", 2 * DAY)], state)
    assert len(credits(first)) == 1 and not credits(second)
    assert [o.reason for o in second if isinstance(o, DeadLetter)] == ["duplicate_event_id"]
    assert not any(isinstance(o, Processed) for o in second)


def test_a_refund_of_an_unknown_payment_is_dead_lettered_with_its_source():
    _, outputs = run([signup(DAY), billed(Refund("r-1", 2 * DAY, "ada", 10, "USD", "nope"), 7)])
    [dead] = [o for o in outputs if isinstance(o, DeadLetter)]
    assert dead.reason == "refund_unknown_payment" and dead.source.offset == 7


def test_the_profile_tells_segment_channel_and_lifetime_revenue():
    _, outputs = run([touch("t1", DAY), signup(2 * DAY, size=5000), payment("pay-1", 3 * DAY)])
    profile = [o for o in outputs if isinstance(o, ProfileChanged)][-1].record
    assert profile["segment"] == "Enterprise"
    assert profile["acquisition_channel"] == "Paid Search"
    assert profile["lifetime_revenue_minor"] == 1000
    assert profile["counts"]["touchpoints"] == 1


def test_person_state_survives_a_round_trip_through_its_stored_form():
    state, _ = run([touch("t1", DAY), payment("pay-1", 3 * DAY)])
    assert PersonState.from_dict(state.to_dict()) == state


def test_every_internal_message_survives_encoding():
    view = PageView("pv", 1, "dev-1", None, "https://x.test/", None, Campaign(source="news"))
    for message in (touch("t1", 5), Link("ada", "dev-1", 3, "su", "signup"), signup(4),
                    ReleaseHeld("ada", 7, END_OF_TIME), payment("pay-1", 9),
                    Sourced(view, Source("page-views-v1", 1, 2, "{}")),
                    Sourced(Signup("su", 1, "dev-1", "ada", Traits(plan="pro")),
                            Source("signups-v1", 0, 0, "{}"))):
        assert decode(encode(message)) == message


def test_reading_the_same_billing_message_again_changes_nothing_and_is_no_dead_letter():
    state, _ = run([signup(DAY), payment("pay-1", 2 * DAY, offset=1)])
    again, outputs = run([payment("pay-1", 2 * DAY, offset=1)], state)
    assert outputs == [Replayed("billing-v1")]
    assert again == state


def test_a_copy_from_another_message_is_a_duplicate():
    state, _ = run([signup(DAY), payment("pay-1", 2 * DAY)])
    _, outputs = run([billed(Payment("pay-1", 2 * DAY, "ada", 1000, "USD"), offset=9)], state)
    assert [o.reason for o in outputs if isinstance(o, DeadLetter)] == ["duplicate_event_id"]


def test_a_replay_of_held_billing_is_not_held_twice():
    state, _ = run([payment("pay-1", 2 * DAY, offset=1)], watermark=NO_WATERMARK)
    state, outputs = run([payment("pay-1", 2 * DAY, offset=1)], state, watermark=NO_WATERMARK)
    assert outputs == [Replayed("billing-v1")] and len(state.held) == 1


def test_the_first_payment_makes_a_new_customer_of_the_acquisition_channel():
    _, outputs = run([touch("t1", DAY), signup(2 * DAY, size=5000), payment("pay-1", 3 * DAY),
                      payment("pay-2", 4 * DAY)])
    assert [o for o in outputs if isinstance(o, Converted)] == [
        Converted("ada", 3 * DAY, "Paid Search", "Enterprise", DAY)]
