import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.identity import (
    JUNK_ANONYMOUS_ID,
    JUNK_USER_ID,
    PENDING_EXPIRED,
    PENDING_OVERFLOW,
    PERSON_ANONYMOUS_ID_CAP,
    PUBLIC_DEVICE,
    DeviceState,
    Duplicate,
    IdentityConfig,
    Link,
    LinkRefused,
    LinkSpan,
    PersonIdentity,
    SignupSeen,
    StitchedTouch,
    TouchDropped,
    accept_link,
    accept_touch,
    apply_signup,
    step_device,
)
from processors.touch import Touch
from schemas.events import PageView, Signup, Traits

CONFIG = IdentityConfig()
LOOKBACK = CONFIG.lookback_ms


def view(event_id, ts, anon="a1", user=None):
    return PageView(event_id, ts, anon, user, "https://example.com/", None)


def signup(event_id, ts, anon="a1", user="u1", **traits):
    return Signup(event_id, ts, anon, user, Traits(**traits))


def touch_of(v, previous_view_ts):
    return Touch(v.event_id, v.ts, v.anonymous_id, "Direct", "(direct)", "(none)")


def run(events, config=CONFIG, state=None, detect=touch_of):
    outputs = []
    for event in events:
        state, out = step_device(state, event, detect_touch=detect, config=config)
        outputs.extend(out)
    return state, outputs


def fate_of_touches(outputs):
    """touch event id -> person id, or "dropped:<reason>"."""
    fate = {}
    for out in outputs:
        if isinstance(out, StitchedTouch):
            fate[out.touch.event_id] = out.person_id
        elif isinstance(out, TouchDropped):
            fate[out.touch.event_id] = f"dropped:{out.reason}"
    return fate


def refusals(outputs):
    return [(r.reason, r.person_id) for r in outputs if isinstance(r, LinkRefused)]


FIVE_PEOPLE = [signup(f"s{i}", i * 10, user=f"u{i}") for i in range(1, 6)]

OWNERSHIP_CASES = [
    ("anonymous_touches_before_the_first_link_go_to_the_first_person",
     [view("v1", 1), view("v2", 2), signup("s1", 3, user="u1"), signup("s2", 4, user="u2")],
     {"v1": "u1", "v2": "u1"}),
    ("a_signup_processed_before_earlier_views_still_gets_them",
     [signup("s1", 100, user="u1"), view("v1", 10), view("v2", 200)],
     {"v1": "u1", "v2": "u1"}),
    ("a_touch_belongs_to_the_person_most_recently_linked_at_its_time",
     [signup("s1", 10, user="u1"), view("v1", 20), signup("s2", 30, user="u2"), view("v2", 40)],
     {"v1": "u1", "v2": "u2"}),
    ("a_late_touch_between_two_links_goes_to_the_earlier_one",
     [signup("s1", 10, user="u1"), signup("s2", 30, user="u2"), view("v1", 20)],
     {"v1": "u1"}),
    ("a_late_touch_before_all_links_goes_to_the_earliest_linked_person",
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
    ("touches_before_the_public_instant_arriving_late_keep_their_owners",
     [*FIVE_PEOPLE, signup("s6", 60, user="u6"), view("v1", 15), view("v2", 5)],
     {"v1": "u1", "v2": "u1"}),
    ("a_logged_in_view_belongs_to_its_user_even_when_its_link_is_refused",
     [*FIVE_PEOPLE, view("v1", 60, user="u6"), view("v2", 61, user="u3")],
     {"v1": "u6", "v2": "u3"}),
    ("relinking_an_already_linked_person_is_not_a_new_person",
     [*FIVE_PEOPLE, signup("s7", 60, user="u1"), view("v1", 70)],
     {"v1": "u1"}),
    ("a_junk_user_id_view_is_anonymous_and_waits_for_a_real_link",
     [view("v1", 1, user="undefined"), signup("s1", 2, user="u1")],
     {"v1": "u1"}),
    ("anonymous_touches_of_a_junk_anonymous_id_go_to_nobody",
     [signup("s1", 1, anon="0", user="u1"), view("v1", 2, anon="0"),
      view("v2", 3, anon="0", user="null")],
     {"v1": f"dropped:{JUNK_ANONYMOUS_ID}", "v2": f"dropped:{JUNK_ANONYMOUS_ID}"}),
    ("a_logged_in_view_of_a_junk_anonymous_id_belongs_to_its_user",
     [view("v1", 1, anon="00000000-0000-0000-0000-000000000000", user="u1")],
     {"v1": "u1"}),
    ("a_pending_touch_exactly_lookback_old_is_still_released",
     [view("v1", 0), signup("s1", LOOKBACK, user="u1")],
     {"v1": "u1"}),
    ("a_pending_touch_older_than_lookback_expires",
     [view("v1", 0), signup("s1", LOOKBACK + 1, user="u1")],
     {"v1": f"dropped:{PENDING_EXPIRED}"}),
    ("a_pending_touch_expires_by_the_newest_event_time_of_the_device",
     [view("v1", 0), view("v2", LOOKBACK + 1), signup("s1", 5, user="u1")],
     {"v1": f"dropped:{PENDING_EXPIRED}", "v2": "u1"}),
    ("a_late_touch_more_than_lookback_before_the_first_link_expires",
     [signup("s1", LOOKBACK + 10, user="u1"), view("v1", 9), view("v2", 10)],
     {"v1": f"dropped:{PENDING_EXPIRED}", "v2": "u1"}),
    ("a_late_link_keeps_what_is_known_of_the_span_it_lands_in",
     [signup("s1", 10, user="u1"), view("v1", 50, user="u1"), signup("s0", 5, user="u1"),
      signup("s2", 30, user="u2"), view("v2", 40), view("v3", 60)],
     {"v1": "u1", "v2": "u2", "v3": "u1"}),
    ("a_late_link_of_another_person_splits_an_owner_span",
     [signup("s1", 10, user="u1"), view("v1", 50, user="u1"), signup("s2", 30, user="u2"),
      view("v2", 20), view("v3", 40), view("v4", 60)],
     {"v1": "u1", "v2": "u1", "v3": "u2", "v4": "u1"}),
]


@pytest.mark.parametrize(
    ("events", "expected"),
    [case[1:] for case in OWNERSHIP_CASES],
    ids=[case[0] for case in OWNERSHIP_CASES],
)
def test_touch_ownership(events, expected):
    _, outputs = run(events)
    assert fate_of_touches(outputs) == expected


REFUSAL_CASES = [
    ("the_sixth_distinct_person_makes_the_device_public",
     [*FIVE_PEOPLE, signup("s6", 60, user="u6"), signup("s7", 70, user="u7")],
     [(PUBLIC_DEVICE, "u6"), (PUBLIC_DEVICE, "u7")]),
    ("five_people_and_relinks_are_not_refused",
     [*FIVE_PEOPLE, view("v1", 60, user="u5"), signup("s7", 70, user="u1")],
     []),
    ("every_refused_login_is_counted",
     [*FIVE_PEOPLE, view("v1", 60, user="u6"), view("v2", 61, user="u6")],
     [(PUBLIC_DEVICE, "u6"), (PUBLIC_DEVICE, "u6")]),
    ("a_junk_user_id_on_a_page_view_is_refused",
     [view("v1", 1, user="null"), view("v2", 2, user="  ")],
     [(JUNK_USER_ID, "null"), (JUNK_USER_ID, "  ")]),
    ("a_junk_user_id_is_named_before_a_junk_anonymous_id",
     [view("v1", 1, anon="-1", user="0")],
     [(JUNK_USER_ID, "0")]),
    ("a_junk_anonymous_id_never_links",
     [signup("s1", 1, anon="anonymous", user="u1"), view("v1", 2, anon="", user="u2")],
     [(JUNK_ANONYMOUS_ID, "u1"), (JUNK_ANONYMOUS_ID, "u2")]),
    ("a_junk_user_id_on_a_signup_is_refused_without_a_signup",
     [signup("s1", 1, user="null")],
     [(JUNK_USER_ID, "null")]),
]


@pytest.mark.parametrize(
    ("events", "expected"),
    [case[1:] for case in REFUSAL_CASES],
    ids=[case[0] for case in REFUSAL_CASES],
)
def test_link_refusals(events, expected):
    _, outputs = run(events)
    assert refusals(outputs) == expected


def test_the_device_is_public_from_the_refused_link_time():
    state, _ = run([*FIVE_PEOPLE, signup("s6", 60, user="u6")])
    assert state.public_since == 60
    assert state.people == ("u1", "u2", "u3", "u4", "u5")


def test_links_after_the_public_instant_are_not_remembered():
    state, _ = run([*FIVE_PEOPLE, signup("s6", 60, user="u6")])
    after, outputs = run([view("v1", 70, user="u2"), signup("s7", 80, user="u3")], state=state)
    assert after.spans == state.spans
    assert refusals(outputs) == []


def test_a_late_refused_link_moves_the_public_instant_earlier():
    state, _ = run([*FIVE_PEOPLE, signup("s6", 60, user="u6"), signup("s7", 55, user="u7")])
    assert state.public_since == 55


def test_the_block_list_makes_ids_junk():
    config = replace(CONFIG, junk_block_list=frozenset({"Guest"}))
    _, outputs = run([view("v1", 1, user="guest"), signup("s1", 2, anon="GUEST")], config)
    assert refusals(outputs) == [(JUNK_USER_ID, "guest"), (JUNK_ANONYMOUS_ID, "u1")]


def test_a_signup_is_seen_even_when_its_link_is_refused():
    _, outputs = run([signup("s1", 1, anon="0", user="u1", company_size=12)])
    seen = [o for o in outputs if isinstance(o, SignupSeen)]
    assert seen == [SignupSeen("u1", "0", 1, "s1", Traits(company_size=12))]


def test_released_touches_come_before_the_link_that_released_them():
    _, outputs = run([view("v1", 1), view("v2", 2), signup("s1", 3)])
    assert [type(o) for o in outputs] == [StitchedTouch, StitchedTouch, Link, SignupSeen]
    assert outputs[2] == Link("u1", "a1", 3, "s1", "signup")


def test_a_logged_in_view_sends_its_link_before_its_own_touch():
    _, outputs = run([view("v1", 1), view("v2", 2, user="u1")])
    assert outputs == [
        StitchedTouch("u1", touch_of(view("v1", 1), None), logged_in=False),
        Link("u1", "a1", 2, "v2", "page_view"),
        StitchedTouch("u1", touch_of(view("v2", 2), None), logged_in=True),
    ]


def test_only_the_first_link_of_a_person_to_a_device_is_sent():
    _, outputs = run([signup("s1", 1), view("v1", 2, user="u1"), signup("s2", 3)])
    assert [o.event_id for o in outputs if isinstance(o, Link)] == ["s1"]


def test_a_second_copy_of_an_event_is_a_duplicate_and_changes_nothing():
    state, _ = run([view("v1", 1)])
    again, outputs = step_device(state, view("v1", 5), detect_touch=touch_of, config=CONFIG)
    assert outputs == (Duplicate("v1", "page_view"),)
    assert again is state


def test_reading_the_same_input_message_again_is_a_replay_not_a_duplicate():
    state, _ = step_device(None, view("v1", 1), detect_touch=touch_of, config=CONFIG,
                           origin="page-views-v1:0:7")
    _, replayed = step_device(state, view("v1", 1), detect_touch=touch_of, config=CONFIG,
                              origin="page-views-v1:0:7")
    _, copied = step_device(state, view("v1", 1), detect_touch=touch_of, config=CONFIG,
                            origin="page-views-v1:0:8")
    assert replayed == (Duplicate("v1", "page_view", replay=True),)
    assert copied == (Duplicate("v1", "page_view", replay=False),)


def test_duplicates_are_by_topic_kind_and_event_id():
    _, outputs = run([view("x", 1), signup("x", 2)])
    assert not any(isinstance(o, Duplicate) for o in outputs)


def test_only_the_most_recently_arrived_event_ids_are_remembered():
    config = replace(CONFIG, max_remembered_event_ids=2)
    state, outputs = run([view("v1", 1), view("v2", 2), view("v3", 3), view("v2", 4)], config)
    assert Duplicate("v2", "page_view") in outputs
    state, outputs = run([view("v1", 5)], config, state)
    assert not any(isinstance(o, Duplicate) for o in outputs)
    assert len(state.seen) == 2


def test_the_oldest_pending_touch_is_dropped_on_overflow():
    config = replace(CONFIG, max_pending_touches=2)
    state, outputs = run([view("v2", 2), view("v3", 3), view("v4", 4), view("v1", 1)], config)
    dropped = [(o.reason, o.touch.event_id) for o in outputs if isinstance(o, TouchDropped)]
    assert dropped == [(PENDING_OVERFLOW, "v2"), (PENDING_OVERFLOW, "v1")]
    assert [t.event_id for t in state.pending] == ["v3", "v4"]


def test_a_late_touch_already_expired_does_not_take_a_pending_place():
    config = replace(CONFIG, max_pending_touches=1)
    state, outputs = run([view("v1", LOOKBACK + 1), view("v2", 0)], config)
    assert fate_of_touches(outputs) == {"v2": f"dropped:{PENDING_EXPIRED}"}
    assert [t.event_id for t in state.pending] == ["v1"]


def test_visits_compare_with_the_previous_view_of_the_device_whoever_viewed_it():
    seen_previous = []

    def recording(v, previous):
        seen_previous.append((v.event_id, previous))
        return None

    events = [view("v1", 10, user="u1"), signup("s1", 15), view("v2", 20),
              view("v3", 30, user="u2"), view("late", 25)]
    run(events, detect=recording)
    assert seen_previous == [("v1", None), ("v2", 10), ("v3", 20), ("late", 30)]


def test_link_spans_stay_within_their_bound_and_keep_the_first_person():
    config = replace(CONFIG, max_link_spans=3)
    events = [signup(f"s{i}", i * 10, user=("u1", "u2")[i % 2]) for i in range(1, 9)]
    state, _ = run(events, config)
    assert len(state.spans) <= 3
    assert state.spans[0].start_ts == 10 and state.spans[0].person_id == "u2"
    assert state.spans[-1] == LinkSpan(80, 80, "u1")
    _, outputs = run([view("v1", 5)], config, state)
    assert fate_of_touches(outputs) == {"v1": "u2"}


# --- person side -------------------------------------------------------------------------------


def link(anon, person="p1", ts=1):
    return Link(person, anon, ts, f"e-{anon}", "signup")


def test_the_hundred_and_first_device_of_a_person_is_refused():
    identity = None
    for i in range(100):
        identity, accepted, refusal = accept_link(identity, link(f"a{i}"), CONFIG)
        assert accepted and refusal is None
    identity, accepted, refusal = accept_link(identity, link("a100", ts=7), CONFIG)
    assert not accepted
    assert refusal == LinkRefused(PERSON_ANONYMOUS_ID_CAP, "a100", "p1", 7, "e-a100")
    assert len(identity.anonymous_ids) == 100
    assert accept_link(identity, link("a5"), CONFIG)[1:] == (True, None)


def stitched(anon, logged_in, person="p1"):
    return StitchedTouch(person, Touch(f"t-{anon}", 1, anon, "Direct", "(direct)", "(none)"),
                         logged_in)


@pytest.mark.parametrize(
    ("anonymous_id", "logged_in", "accepted"),
    [("known", False, True), ("refused", False, False), ("refused", True, True)],
)
def test_a_touch_via_a_refused_device_is_taken_only_when_logged_in(anonymous_id, logged_in,
                                                                   accepted):
    config = replace(CONFIG, max_anonymous_ids_per_person=1)
    identity, _, _ = accept_link(None, link("known"), config)
    assert accept_touch(identity, stitched(anonymous_id, logged_in), config)[1] is accepted


def test_a_released_touch_claims_its_device_before_its_link_arrives():
    config = replace(CONFIG, max_anonymous_ids_per_person=1)
    identity, accepted = accept_touch(None, stitched("a1", False), config)
    assert accepted and identity.anonymous_ids == ("a1",)
    identity, accepted, _ = accept_link(identity, link("a2"), config)
    assert not accepted
    assert accept_link(identity, link("a1"), config)[1]


def signup_seen(event_id, ts, **traits):
    return SignupSeen("p1", "a1", ts, event_id, Traits(**traits))


def test_traits_merge_later_non_null_values_win_by_event_time():
    first = signup_seen("s1", 10, company="Acme", company_size=50, plan="free")
    middle = signup_seen("s2", 20, company_size=500, plan=None)
    last = signup_seen("s3", 30, company=None, industry="retail")
    identity = None
    for seen in (last, first, middle):
        identity = apply_signup(identity, seen)
    assert identity.traits == Traits(company="Acme", company_size=500, industry="retail",
                                     plan="free")
    assert identity.first_signup_ts == 10


def test_applying_a_signup_twice_changes_nothing():
    once = apply_signup(None, signup_seen("s1", 10, plan="pro"))
    assert apply_signup(once, signup_seen("s1", 10, plan="pro")) == once


def test_a_new_person_is_their_own_user_id():
    assert PersonIdentity.new("p1").user_ids == ("p1",)


def test_state_of_an_unknown_version_is_rejected():
    with pytest.raises(ValueError, match="version"):
        DeviceState.from_dict({**DeviceState().to_dict(), "v": 2})


@pytest.mark.parametrize(
    "overrides",
    [{"max_people_per_device": 0}, {"max_pending_touches": 0}, {"lookback_ms": -1}],
)
def test_config_rejects_non_positive_bounds(overrides):
    with pytest.raises(ValueError):
        IdentityConfig(**overrides)


# --- properties ---------------------------------------------------------------------------------

SMALL = IdentityConfig(max_people_per_device=2, max_anonymous_ids_per_person=2, lookback_ms=100,
                       max_pending_touches=3, max_remembered_event_ids=4, max_link_spans=3)
ANONYMOUS_IDS = ("a1", "a2", "a3", "0")
USER_IDS = ("u1", "u2", "u3", "null")


@st.composite
def device_events(draw, anonymous_ids=ANONYMOUS_IDS, max_size=25):
    """Events of several devices with unique event ids, some of them repeated (duplicates)."""
    raw = draw(st.lists(
        st.tuples(st.sampled_from(anonymous_ids), st.integers(0, 400),
                  st.sampled_from((None, *USER_IDS)), st.booleans()),
        max_size=max_size,
    ))
    events = []
    for index, (anon, ts, user, is_signup) in enumerate(raw):
        if is_signup and user is not None:
            events.append(signup(f"e{index}", ts, anon, user, company_size=ts))
        else:
            events.append(view(f"e{index}", ts, anon, user))
    repeats = draw(st.lists(st.sampled_from(events), max_size=3)) if events else []
    return events + repeats


def step_all(events, config):
    """Each event through the state of its own device; the outputs of each event, in order."""
    states = {}
    per_event = []
    for event in events:
        state, outputs = step_device(states.get(event.anonymous_id), event,
                                     detect_touch=touch_of, config=config)
        states[event.anonymous_id] = state
        per_event.append(((event.anonymous_id, event.event_id), outputs))
    return states, per_event


@settings(max_examples=150, deadline=None)
@given(events=device_events(), rnd=st.randoms(use_true_random=False))
def test_owners_do_not_depend_on_how_devices_interleave(events, rnd):
    by_device = {}
    for event in events:
        by_device.setdefault(event.anonymous_id, []).append(event)
    queues = {anon: list(evs) for anon, evs in by_device.items()}
    interleaved = []
    while queues:
        anon = rnd.choice(sorted(queues))
        interleaved.append(queues[anon].pop(0))
        if not queues[anon]:
            del queues[anon]
    alone = [out for evs in by_device.values() for out in step_all(evs, SMALL)[1]]
    mixed = step_all(interleaved, SMALL)[1]
    assert sorted(mixed, key=repr) == sorted(alone, key=repr)


@settings(max_examples=200, deadline=None)
@given(events=device_events(anonymous_ids=("a1",), max_size=40))
def test_device_state_stays_within_its_bounds(events):
    state = None
    for event in events:
        state, _ = step_device(state, event, detect_touch=touch_of, config=SMALL)
        assert len(state.pending) <= SMALL.max_pending_touches
        assert len(state.seen) <= SMALL.max_remembered_event_ids
        assert len(state.spans) <= SMALL.max_link_spans
        assert len(state.people) <= SMALL.max_people_per_device
        assert [t.ts for t in state.pending] == sorted(t.ts for t in state.pending)
        assert not (state.pending and state.spans)
        starts = [s.start_ts for s in state.spans]
        assert starts == sorted(set(starts))
        assert all(
            a.person_id != b.person_id for a, b in zip(state.spans, state.spans[1:], strict=False)
        )


@settings(max_examples=100, deadline=None)
@given(events=device_events(anonymous_ids=("a1",), max_size=30))
def test_device_state_round_trips_through_json(events):
    state = None
    for event in events:
        state, _ = step_device(state, event, detect_touch=touch_of, config=SMALL)
        assert DeviceState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def batch_owners(events, config):
    """The rules applied to the whole, time-ordered log of one device at once."""
    links, people, public_since = [], [], None
    for e in events:
        user = e.user_id
        if user is None or config.is_junk(user):
            continue
        if user not in people and len(people) == config.max_people_per_device:
            public_since = e.ts if public_since is None else public_since
            continue
        if user not in people:
            people.append(user)
        links.append((e.ts, user))
    owners = {}
    for e in events:
        if not isinstance(e, PageView) or (e.user_id is not None and not config.is_junk(e.user_id)):
            continue
        if public_since is not None and e.ts >= public_since:
            owners[e.event_id] = None
        elif links and links[0][0] > e.ts:
            owners[e.event_id] = links[0][1] if links[0][0] - e.ts <= config.lookback_ms else None
        elif links:
            owners[e.event_id] = [p for ts, p in links if ts <= e.ts][-1]
        else:
            owners[e.event_id] = None
    return owners


@settings(max_examples=200, deadline=None)
@given(raw=st.lists(st.tuples(st.integers(1, 60), st.sampled_from((None, *USER_IDS)),
                              st.booleans()), max_size=30))
def test_in_order_input_gives_the_owners_of_a_batch_computation(raw):
    config = replace(SMALL, max_pending_touches=100, max_remembered_event_ids=100,
                     max_link_spans=100)
    events, ts = [], 0
    for index, (gap, user, is_signup) in enumerate(raw):
        ts += gap
        if is_signup and user is not None:
            events.append(signup(f"e{index}", ts, "a1", user))
        else:
            events.append(view(f"e{index}", ts, "a1", user))
    _, outputs = run(events, config)
    expected = batch_owners(events, config)
    fate = fate_of_touches(outputs)
    assert {e: fate.get(e, "pending") for e in expected} == {
        e: owner or fate.get(e, "pending") for e, owner in expected.items()
    }
    assert all(fate.get(e, "pending") in ("pending", f"dropped:{PENDING_EXPIRED}",
                                          f"dropped:{PUBLIC_DEVICE}")
               for e, owner in expected.items() if owner is None)


@settings(max_examples=150, deadline=None)
@given(order=st.permutations(range(6)), signup_at=st.integers(0, 50))
def test_a_single_person_device_gets_every_touch_whatever_the_arrival_order(order, signup_at):
    events = [view(f"v{i}", i * 10) for i in range(5)] + [signup("s1", signup_at, user="u1")]
    _, outputs = run([events[i] for i in order])
    assert set(fate_of_touches(outputs).values()) == {"u1"}


@settings(max_examples=100, deadline=None)
@given(signups=st.lists(st.tuples(st.integers(0, 50), st.sampled_from((None, "a", "b")),
                                  st.sampled_from((None, 10, 5000))), max_size=6),
       rnd=st.randoms(use_true_random=False))
def test_merged_traits_do_not_depend_on_signup_arrival_order(signups, rnd):
    seen = [signup_seen(f"s{i}", ts, company=c, company_size=size)
            for i, (ts, c, size) in enumerate(signups)]
    shuffled = list(seen)
    rnd.shuffle(shuffled)
    in_order = shuffled_order = None
    for s in seen:
        in_order = apply_signup(in_order, s)
    for s in shuffled:
        shuffled_order = apply_signup(shuffled_order, s)
    assert shuffled_order == in_order
    if in_order is not None:
        assert PersonIdentity.from_dict(json.loads(json.dumps(in_order.to_dict()))) == in_order
