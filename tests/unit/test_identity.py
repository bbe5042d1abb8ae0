"""Identity stitching by event time: who owns each touch of a device, whatever the arrival order."""

from __future__ import annotations

import random
from dataclasses import fields
from functools import partial

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.channels import default_channel_config
from processors.identity import (
    JUNK_ANONYMOUS_ID,
    JUNK_DEVICE_PREFIX,
    JUNK_USER_ID,
    PENDING_EXPIRED,
    PENDING_OVERFLOW,
    PUBLIC_DEVICE,
    Accepted,
    Claim,
    DeviceInput,
    DeviceState,
    Duplicate,
    IdentityConfig,
    LinkRefused,
    SignupSeen,
    Stitched,
    TouchDropped,
    accepted_devices,
    derive_device,
    device_key,
    step_device,
    touch_from_list,
    touch_to_dict,
    touch_to_list,
)
from processors.touch import Touch
from processors.touchpoints import detect_touch
from schemas.events import PageView, Signup, Traits

CONFIG = IdentityConfig()
LOOKBACK = CONFIG.lookback_ms
MINUTE = 60_000
TIMEOUT = 30 * MINUTE


def view(event_id, ts, anon="a1", user=None, url="https://example.com/"):
    return PageView(event_id, ts, anon, user, url, None)


def signup(event_id, ts, anon="a1", user="u1", **traits):
    return Signup(event_id, ts, anon, user, Traits(**traits))


def every_view_is_a_touch(v, previous_view_ts):
    return Touch(v.event_id, v.ts, v.anonymous_id, "Direct", "(direct)", "(none)")


REAL_DETECT = partial(detect_touch, config=default_channel_config())


def run(events, config=CONFIG, state=None, detect=every_view_is_a_touch, batch=1, key=None):
    """Step the device over `events` in the given order, `batch` at a time."""
    outputs = []
    key = key or events[0].anonymous_id
    for start in range(0, len(events), batch):
        inputs = [DeviceInput(e, f"in:{e.event_id}") for e in events[start:start + batch]]
        state, out = step_device(state, inputs, anonymous_id=key, detect_touch=detect,
                                 session_timeout_ms=TIMEOUT, config=config)
        outputs.extend(out)
    return state, outputs


def fates(state, key="a1", config=CONFIG):
    """touch event id -> owner, "pending", or "dropped:<reason>"."""
    decisions = derive_device(key, state, session_timeout_ms=TIMEOUT, config=config)
    fate = {c.touch.event_id: person for person, claim in decisions.claims.items()
            for c in claim.touches}
    fate.update({e: f"dropped:{reason}" for e, reason in decisions.dropped.items()})
    fate.update(dict.fromkeys(decisions.pending, "pending"))
    return fate


def last_claims(outputs):
    """person -> the last Claim sent to them (what the person side holds)."""
    claims = {}
    for out in outputs:
        if isinstance(out, Claim):
            claims[out.person_id] = out
    return {p: c for p, c in claims.items() if c.linked_ts is not None or c.touches}


FIVE_PEOPLE = [signup(f"s{i}", i * 10, user=f"u{i}") for i in range(1, 6)]

OWNERSHIP_CASES = [
    ("anonymous_touches_before_the_first_link_go_to_the_first_person",
     [view("v1", 1), view("v2", 2), signup("s1", 3, user="u1"), signup("s2", 4, user="u2")],
     {"v1": "u1", "v2": "u1"}),
    ("a_touch_belongs_to_the_person_most_recently_linked_at_its_time",
     [signup("s1", 10, user="u1"), view("v1", 20), signup("s2", 30, user="u2"), view("v2", 40)],
     {"v1": "u1", "v2": "u2"}),
    ("a_touch_before_all_links_goes_to_the_earliest_link_by_event_time",
     [signup("s2", 200, user="u2"), signup("s1", 100, user="u1"), view("v1", 50)],
     {"v1": "u1"}),
    ("a_link_at_the_touch_time_counts_as_linked_at_that_time",
     [signup("s1", 10, user="u1"), signup("s2", 30, user="u2"), view("v1", 30)],
     {"v1": "u2"}),
    ("a_logged_in_view_links_like_a_signup",
     [view("v1", 1), view("v2", 2, user="u1"), view("v3", 3)],
     {"v1": "u1", "v2": "u1", "v3": "u1"}),
    ("a_touch_at_the_public_instant_goes_to_nobody_and_one_before_keeps_its_owner",
     [*FIVE_PEOPLE, signup("s6", 60, user="u6"), view("v1", 59), view("v2", 60), view("v3", 99)],
     {"v1": "u5", "v2": f"dropped:{PUBLIC_DEVICE}", "v3": f"dropped:{PUBLIC_DEVICE}"}),
    ("the_public_instant_is_the_sixth_person_by_event_time",
     [signup("s6", 60, user="u6"), *reversed(FIVE_PEOPLE), view("v1", 61)],
     {"v1": f"dropped:{PUBLIC_DEVICE}"}),
    ("a_logged_in_view_belongs_to_its_user_even_when_its_link_is_refused",
     [*FIVE_PEOPLE, view("v1", 60, user="u6"), view("v2", 61, user="u3")],
     {"v1": "u6", "v2": "u3"}),
    ("relinking_an_already_linked_person_is_not_a_new_person",
     [*FIVE_PEOPLE, signup("s7", 60, user="u1"), view("v1", 70)],
     {"v1": "u1"}),
    ("a_junk_user_id_view_is_anonymous_and_waits_for_a_real_link",
     [view("v1", 1, user="undefined"), signup("s1", 2, user="u1")],
     {"v1": "u1"}),
    ("with_no_link_touches_are_pending",
     [view("v1", 1), view("v2", LOOKBACK * 3)],
     {"v1": "pending", "v2": "pending"}),
    ("a_touch_exactly_lookback_before_the_first_link_is_still_stitched",
     [view("v1", 0), signup("s1", LOOKBACK, user="u1")],
     {"v1": "u1"}),
    ("a_touch_more_than_lookback_before_the_first_link_expires",
     [view("v1", 0), signup("s1", LOOKBACK + 1, user="u1")],
     {"v1": f"dropped:{PENDING_EXPIRED}"}),
    ("a_late_link_of_another_person_splits_an_owner_span",
     [signup("s1", 10, user="u1"), view("v1", 50, user="u1"), signup("s2", 30, user="u2"),
      view("v2", 20), view("v3", 40), view("v4", 60)],
     {"v1": "u1", "v2": "u1", "v3": "u2", "v4": "u1"}),
]


@pytest.mark.parametrize(("events", "expected"), [case[1:] for case in OWNERSHIP_CASES],
                         ids=[case[0] for case in OWNERSHIP_CASES])
@pytest.mark.parametrize("order", ["as_listed", "reversed", "shuffled"])
def test_touch_ownership_in_any_arrival_order(events, expected, order):
    arrival = {"as_listed": list(events), "reversed": list(reversed(events)),
               "shuffled": random.Random(7).sample(events, len(events))}[order]
    state, outputs = run(arrival)
    assert fates(state) == expected
    owners = {c.touch.event_id: p for p, claim in last_claims(outputs).items()
              for c in claim.touches}
    assert owners == {e: p for e, p in expected.items() if p in {f"u{i}" for i in range(9)}}


def test_only_the_newest_touches_before_the_first_link_are_kept():
    config = IdentityConfig(max_pending_touches=2)
    state, _ = run([view("v1", 1), view("v2", 2), view("v3", 3), signup("s1", 9)], config)
    assert fates(state, config=config) == {"v1": f"dropped:{PENDING_OVERFLOW}", "v2": "u1",
                                           "v3": "u1"}


REFUSAL_CASES = [
    ("the_sixth_distinct_person_makes_the_device_public",
     [*FIVE_PEOPLE, signup("s6", 60, user="u6"), signup("s7", 70, user="u7")],
     {"s6": PUBLIC_DEVICE, "s7": PUBLIC_DEVICE}),
    ("five_people_and_relinks_are_not_refused",
     [*FIVE_PEOPLE, view("v1", 60, user="u5"), signup("s7", 70, user="u1")],
     {}),
    ("a_junk_user_id_on_a_page_view_is_refused",
     [view("v1", 1, user="null"), view("v2", 2, user="  ")],
     {"v1": JUNK_USER_ID, "v2": JUNK_USER_ID}),
    ("a_late_earlier_link_makes_the_later_one_the_sixth",
     [*FIVE_PEOPLE[:4], signup("s6", 60, user="u6"), signup("s5", 50, user="u5"),
      signup("s7", 55, user="u7")],
     {"s6": PUBLIC_DEVICE, "s7": PUBLIC_DEVICE}),
]


@pytest.mark.parametrize(("events", "expected"), [case[1:] for case in REFUSAL_CASES],
                         ids=[case[0] for case in REFUSAL_CASES])
def test_link_refusals_are_decided_by_event_time(events, expected):
    state, _ = run(events)
    decisions = derive_device("a1", state, session_timeout_ms=TIMEOUT, config=CONFIG)
    assert decisions.refused == expected


def test_refusals_and_drops_of_a_batch_are_reported():
    _, outputs = run([*FIVE_PEOPLE, signup("s6", 60, user="u6"), view("v1", 61)])
    assert LinkRefused(PUBLIC_DEVICE, "s6") in outputs
    assert TouchDropped(PUBLIC_DEVICE, "v1") in outputs


def test_junk_anonymous_ids_are_the_users_own_device_or_none():
    assert device_key(view("v1", 1, anon="0", user="u1"), CONFIG) == JUNK_DEVICE_PREFIX + "u1"
    assert device_key(view("v1", 1, anon="00000000-0000-0000-0000-000000000000"), CONFIG) is None
    assert device_key(view("v1", 1, anon="0", user="null"), CONFIG) is None
    assert device_key(signup("s1", 1, anon="anonymous"), CONFIG) == JUNK_DEVICE_PREFIX + "u1"
    assert device_key(view("v1", 1, anon="a9"), CONFIG) == "a9"


def test_a_junk_device_links_nobody_but_keeps_its_users_touches_and_signups():
    key = JUNK_DEVICE_PREFIX + "u1"
    events = [signup("s1", 1, anon="0", user="u1", plan="team"), view("v1", 2, anon="", user="u1")]
    state, outputs = run(events, key=key)
    assert [o for o in outputs if isinstance(o, LinkRefused)] == [
        LinkRefused(JUNK_ANONYMOUS_ID, "s1"), LinkRefused(JUNK_ANONYMOUS_ID, "v1")]
    [claim] = last_claims(outputs).values()
    assert claim.linked_ts is None and [c.logged_in for c in claim.touches] == [True]
    assert any(isinstance(o, SignupSeen) and o.traits.plan == "team" for o in outputs)


# ------------------------------------------------------------------------------------- visits


def test_visits_are_detected_over_the_device_views_in_event_time():
    views = [view("v1", 0), view("v2", 10 * MINUTE), view("v3", 40 * MINUTE),
             view("v4", 70 * MINUTE)]
    state, _ = run(views, detect=REAL_DETECT)
    assert sorted(fates(state)) == ["v1", "v3", "v4"]  # v3: exactly 30:00.000 after v2
    late, _ = run([view("v0", -5 * MINUTE)], state=state, detect=REAL_DETECT)
    assert sorted(fates(late)) == ["v0", "v3", "v4"]  # v1 is now navigation
    gap, _ = run([view("v5", 55 * MINUTE)], state=late, detect=REAL_DETECT)
    assert sorted(fates(gap)) == ["v0", "v3"]


def test_a_view_with_campaign_data_starts_a_visit_whatever_came_before():
    views = [view("v1", 0), view("v2", MINUTE, url="https://example.com/?utm_source=x")]
    state, _ = run(views, detect=REAL_DETECT)
    assert sorted(fates(state)) == ["v1", "v2"]


# ------------------------------------------------------------------------------- duplicates


def test_a_copy_is_a_duplicate_and_a_reread_is_a_replay():
    state, _ = run([view("v1", 1), signup("s1", 2)])
    _, copies = step_device(state, [DeviceInput(view("v1", 1), "other"),
                                    DeviceInput(signup("s1", 2), "in:s1")],
                            anonymous_id="a1", detect_touch=every_view_is_a_touch,
                            session_timeout_ms=TIMEOUT, config=CONFIG)
    assert copies == [Duplicate("v1", "page_view", False), Duplicate("s1", "signup", True)]


def test_a_signup_and_a_view_may_share_an_event_id():
    _, outputs = run([view("x", 1), signup("x", 2)])
    assert [o for o in outputs if isinstance(o, Accepted)] == [Accepted("page_view"),
                                                               Accepted("signup")]
    assert Stitched(1) in outputs


def test_the_state_survives_its_record():
    state, _ = run([view("v1", 1, url="https://example.com/?utm_campaign=c"),
                    signup("s1", 2, user="u1"), view("v2", 3, user="u2")], detect=REAL_DETECT)
    assert DeviceState.from_dict(orjson.loads(orjson.dumps(state.to_dict()))) == state


# ------------------------------------------------------------------------ any arrival order

EVENT_IDS = [f"e{i}" for i in range(14)]


@st.composite
def device_logs(draw):
    """A device's events with colliding times, several people, junk user ids, relinks."""
    events = []
    for event_id in draw(st.lists(st.sampled_from(EVENT_IDS), min_size=1, max_size=14,
                                  unique=True)):
        ts = draw(st.integers(0, 40)) * 10 * MINUTE
        user = draw(st.sampled_from([None, None, "u1", "u2", "u3", "null"]))
        if draw(st.booleans()) and user not in (None, "null"):
            events.append(signup("s" + event_id, ts, user=user))
        else:
            events.append(view(event_id, ts, user=user))
    return events


@settings(max_examples=300, deadline=None)
@given(log=device_logs(), seed=st.integers(0, 2**32), batch=st.integers(1, 4),
       max_people=st.integers(1, 3))
def test_any_arrival_order_and_batching_ends_with_the_same_claims(log, seed, batch, max_people):
    config = IdentityConfig(max_people_per_device=max_people, lookback_ms=100 * MINUTE)
    in_order, _ = run(sorted(log, key=lambda e: (e.ts, e.event_id)), config)
    shuffled = random.Random(seed).sample(log, len(log))
    raced, outputs = run(shuffled, config, batch=batch)
    expected = derive_device("a1", in_order, session_timeout_ms=TIMEOUT, config=config)
    assert raced.views == in_order.views and raced.links == in_order.links
    assert last_claims(outputs) == {p: c for p, c in expected.claims.items()
                                    if c.linked_ts is not None or c.touches}


# ------------------------------------------------------------------------------ person side


def test_a_person_keeps_their_earliest_linked_devices_up_to_the_cap():
    config = IdentityConfig(max_anonymous_ids_per_person=2)
    claims = {"d3": Claim("u1", "d3", 30, ()), "d1": Claim("u1", "d1", 10, ()),
              "d2": Claim("u1", "d2", 20, ()), "dx": Claim("u1", "dx", None, ())}
    assert accepted_devices(claims, config) == ("d1", "d2")


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=8), st.randoms(use_true_random=False))
def test_each_dropped_touch_is_reported_once_whatever_the_batches_and_order(batch, rng):
    """A touch kept pending until a link expires it is counted once, in the step of the link,
    however the device's events are batched and ordered."""
    events = [view("v-old", 0), *(view(f"v{i}", LOOKBACK + i * TIMEOUT * 2) for i in range(6)),
              signup("s1", LOOKBACK + 20 * TIMEOUT)]
    rng.shuffle(events)
    assert _dropped(run(events, batch=batch)[1]) == [("v-old", PENDING_EXPIRED)]


def _dropped(outputs):
    return sorted((o.event_id, o.reason) for o in outputs if isinstance(o, TouchDropped))


def test_a_touch_stored_as_a_list_or_a_dict_keeps_every_field_in_order():
    touch = Touch("e1", 5, "a1", "Paid Search", "google", "cpc", "spring")
    assert touch_to_list(touch) == [getattr(touch, f.name) for f in fields(Touch)]
    assert touch_to_dict(touch) == {f.name: getattr(touch, f.name) for f in fields(Touch)}
    assert touch_from_list(touch_to_list(touch)) == touch
