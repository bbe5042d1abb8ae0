"""Invariants 4 and 5 in the pure core: any race of the stages ends with the batch computation.

A generated log is delivered through the device and person steps in random interleavings —
each partition FIFO, partitions, topics and stages racing arbitrarily, batches of any size,
payments before every touch of their person, links after the touches they claim — and the
resolved ledger, the aggregates and the profiles must equal, record by record, the same rules
applied to the log in event-time order (`processors.reference`).
"""

from __future__ import annotations

import random
import zlib
from collections import defaultdict, deque

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.aggregates import MRR, AggregateConfig, CellKey, bridge_movements, fold_many
from processors.attribution import AttributionConfig
from processors.channels import ChannelConfig
from processors.config import PipelineConfig
from processors.identity import IdentityConfig, device_key
from processors.reference import (
    Pipeline,
    billing_message,
    current_credits,
    resolve_log,
    run_in_event_time,
)
from processors.revenue import credit_record
from readmodels.mrr_bridge import bridge
from readmodels.report import CreditBook, ProfileBook, build_report
from schemas.events import PageView, Payment, Refund, Signup, SubscriptionChange, Traits

HOUR = 3_600_000
T0 = 1_700_000_000_000
NOW = T0 + 1000 * HOUR
CONFIG = PipelineConfig(
    channels=ChannelConfig(session_timeout_ms=HOUR),
    identity=IdentityConfig(max_people_per_device=2, max_anonymous_ids_per_person=2,
                            lookback_ms=48 * HOUR, max_pending_touches=3),
    attribution=AttributionConfig(lookback_ms=48 * HOUR, half_life_ms=6 * HOUR),
)
PARTITIONS = 3
URLS = ["https://example.com/", "https://example.com/?utm_source=google&utm_medium=cpc",
        "https://example.com/?utm_source=newsletter&utm_medium=email&utm_campaign=spring",
        "https://example.com/?gclid=abc"]
REFERRERS = [None, "https://www.bing.com/", "https://news.ycombinator.com/"]
USERS = ["u1", "u2", "u3"]
DEVICES = ["a1", "a2", "a3", "a4", "0"]


@st.composite
def logs(draw):
    """Events of a few people sharing a few devices: views, logins, signups, payments,
    refunds, subscription changes, producer copies; times collide on purpose."""
    events = []
    payments: list[Payment] = []
    for number in range(draw(st.integers(1, 30))):
        ts = T0 + draw(st.integers(0, 120)) * HOUR // 2
        event_id = f"e{number}"
        kind = draw(st.sampled_from(["view", "view", "view", "login", "signup", "payment",
                                     "refund", "change"]))
        user, device = draw(st.sampled_from(USERS)), draw(st.sampled_from(DEVICES))
        if kind in ("view", "login"):
            events.append(PageView(event_id, ts, device, user if kind == "login" else None,
                                   draw(st.sampled_from(URLS)), draw(st.sampled_from(REFERRERS))))
        elif kind == "signup":
            events.append(Signup(event_id, ts, device, user, Traits(
                company_size=draw(st.sampled_from([None, 20, 500, 5000])))))
        elif kind == "payment":
            payment = Payment(event_id, ts, user, draw(st.integers(1, 10**6)),
                              draw(st.sampled_from(["USD", "EUR", "JPY"])))
            payments.append(payment)
            events.append(payment)
        elif kind == "refund" and payments:
            paid = draw(st.sampled_from(payments))
            events.append(Refund(event_id, paid.ts + draw(st.integers(0, 10)) * HOUR,
                                 paid.user_id, draw(st.integers(1, paid.amount_minor)),
                                 paid.currency, paid.event_id))
        elif kind == "change":
            events.append(SubscriptionChange(event_id, ts, user, draw(st.sampled_from("xy")),
                                             "pro", draw(st.sampled_from([0, 1000, 2500])),
                                             "USD"))
    copies = draw(st.lists(st.sampled_from(events), max_size=3)) if events else []
    return events + copies


def _partition(key: str) -> int:
    return zlib.crc32(key.encode()) % PARTITIONS


def race(log, seed: int, max_batch: int, billing_first: bool) -> Pipeline:
    """Deliver `log` like the worker does, with every queue racing every other."""
    rng = random.Random(seed)
    pipeline = Pipeline(CONFIG, NOW)
    produced = rng.sample(log, len(log))
    billing = sorted((e for e in produced if isinstance(e, (Payment, Refund,
                                                            SubscriptionChange))),
                     key=lambda e: (e.ts, e.event_id))  # one producer per user, in order
    touches = [e for e in produced if isinstance(e, (PageView, Signup))]
    inputs: dict[tuple[str, int], deque] = defaultdict(deque)
    for event in billing + touches if billing_first else touches + billing:
        if isinstance(event, (PageView, Signup)):
            key = device_key(event, CONFIG.identity)
            if key is not None:
                inputs["touches", _partition(key)].append((key, event))
        else:
            inputs["billing", _partition(event.user_id)].append((event.user_id, event))
    devices: dict[int, deque] = defaultdict(deque)
    persons: dict[int, deque] = defaultdict(deque)
    stages = [("in", inputs), ("device", devices), ("person", persons)]
    while True:
        ready = [(name, queues, queue) for name, queues in stages
                 for queue in list(queues) if queues[queue]]
        if not ready:
            return pipeline
        if billing_first and any(q[0] == "billing" for n, _, q in ready if n == "in"):
            ready = [r for r in ready if r[0] == "in" and r[2][0] == "billing"]
        name, queues, queue = rng.choice(ready)
        batch = [queues[queue].popleft()
                 for _ in range(min(len(queues[queue]), rng.randint(1, max_batch)))]
        if name == "in":
            for key, event in batch:
                devices[_partition(key)].append((key, event))
            continue
        by_key: dict[str, list] = defaultdict(list)
        for key, item in batch:
            by_key[key].append(item)
        for key, items in by_key.items():
            if name == "person":
                pipeline.person(key, items)
                continue
            device_events = [e for e in items if isinstance(e, (PageView, Signup))]
            for event in items:
                if not isinstance(event, (PageView, Signup)):
                    persons[_partition(key)].append((key, billing_message(event)))
            if device_events:
                for message in pipeline.device(key, device_events):
                    persons[_partition(message.person_id)].append((message.person_id, message))


def _resolved(pipeline: Pipeline) -> dict:
    records = [credit_record(c) for c in pipeline.credits()]
    return {credit_id: {k: v for k, v in record.items() if k not in ("op", "revision", "cause")}
            for credit_id, record in current_credits(records).items()}


def _sums(pipeline: Pipeline) -> dict:
    totals: dict = defaultdict(int)
    for credit in pipeline.credits():
        totals[credit.credit_id, None] += credit.amount_minor
        for line in credit.lines:
            totals[credit.credit_id, line.line.touch_event_id] += line.reporting_amount_minor
    return {key: value for key, value in totals.items() if value}


def _profiles(pipeline: Pipeline) -> dict:
    return pipeline.profiles()


def _all_time(pipeline: Pipeline) -> dict:
    cells = fold_many(None, pipeline.outputs,
                      AggregateConfig.for_models(CONFIG.attribution.models)).all_time
    return {key: value for key, value in cells.items() if value}


@settings(max_examples=250, deadline=None)
@given(log=logs(), seed=st.integers(0, 2**32), max_batch=st.integers(1, 5),
       billing_first=st.booleans())
def test_any_race_of_the_stages_ends_with_the_batch_computation(log, seed, max_batch,
                                                                billing_first):
    expected = run_in_event_time(log, CONFIG, NOW)
    raced = race(log, seed, max_batch, billing_first)
    assert _resolved(raced) == _resolved(expected)
    assert _sums(raced) == _sums(expected)  # summing every record gives the current credits
    assert _all_time(raced) == _all_time(expected)
    assert _profiles(raced) == _profiles(expected)
    assert _mrr_cells(raced) == _customers_mrr(raced)
    assert bridge(bridge_movements(_all_time(raced))) == _report_bridge(raced)


def _mrr_cells(pipeline: Pipeline) -> dict:
    """All-time MRR by (channel, segment), as the metrics, views and API read it."""
    cells = {}
    for key, value in _all_time(pipeline).items():
        cell = CellKey.parse(key)
        if cell.measure == MRR:
            cells[cell.channel, cell.segment] = value
    return cells


def _report_bridge(pipeline: Pipeline) -> tuple:
    """The MRR bridge as the report computes it from the profiles; it closes on the MRR."""
    book = ProfileBook()
    for profile in _profiles(pipeline).values():
        book.add(profile)
    months = build_report(book, CreditBook(), models=(), currency="USD", exponent=2).mrr_bridge
    assert (months[-1].closing if months else 0) == sum(_customers_mrr(pipeline).values())
    return months


def _customers_mrr(pipeline: Pipeline) -> dict:
    """The same from the latest profiles, as the report reads them: customers only."""
    totals: dict = defaultdict(int)
    for profile in _profiles(pipeline).values():
        if profile["conversion_ts"] is not None and profile["mrr_minor"]:
            totals[profile["acquisition_channel"], profile["segment"]] += profile["mrr_minor"]
    return dict(totals)


@settings(max_examples=100, deadline=None)
@given(log=logs())
def test_in_event_time_order_nothing_is_ever_corrected_but_ties(log):
    """Delivered in event-time order, a correction can only come from events of the same
    millisecond; the batch computation's records are nearly all first asserts."""
    pipeline = run_in_event_time(log, CONFIG, NOW)
    for credit in pipeline.credits():
        if credit.op == "retract":
            same_ms = [e for e in log if e.ts == credit.revenue_ts]
            assert len(same_ms) > 1 or credit.cause in ("late_link", "identity_move")


# ------------------------------------------------------------------ hand-computed cases


def _view(event_id, hours, device, user=None, url=URLS[0], referrer=None):
    return PageView(event_id, T0 + hours * HOUR, device, user, url, referrer)


def _by_line(credits, model):
    return {r["revenue_event_id"]: [(line["touch_event_id"], line["channel"],
                                     line["amount_minor"]) for line in r["lines"]]
            for r in credits.values() if r["model"] == model}


def test_a_shared_device_splits_by_who_was_linked_when():
    log = [
        _view("v1", 0, "a1", url=URLS[1]),                       # google cpc, before any link
        Signup("s1", T0 + 1 * HOUR, "a1", "u1", Traits()),       # u1 links a1
        _view("v2", 3, "a1", referrer=REFERRERS[1]),             # bing organic, u1's time
        Signup("s2", T0 + 5 * HOUR, "a1", "u2", Traits()),       # u2 takes the device over
        _view("v3", 7, "a1", url=URLS[2]),                       # email: u2's
        Payment("p1", T0 + 8 * HOUR, "u1", 1000, "USD"),
        Payment("p2", T0 + 9 * HOUR, "u2", 999, "USD"),
    ]
    credits = resolve_log(log, CONFIG, NOW)
    assert _by_line(credits, "linear") == {
        "p1": [("v1", "Paid Search", 500), ("v2", "Organic Search", 500)],
        "p2": [("v3", "Email", 999)],
    }
    assert _by_line(credits, "position_based")["p1"] == [("v1", "Paid Search", 500),
                                                         ("v2", "Organic Search", 500)]


def test_touches_linked_after_the_conversion_are_not_in_its_journey():
    log = [
        _view("v1", 0, "a1", url=URLS[1]),
        _view("v2", 1, "a2", referrer=REFERRERS[2]),             # hacker news: social
        Signup("s1", T0 + 2 * HOUR, "a1", "u1", Traits(company_size=500)),
        Payment("p1", T0 + 3 * HOUR, "u1", 300, "EUR"),
        _view("v3", 4, "a2", user="u1"),                         # a2 linked after p1
        Payment("p2", T0 + 5 * HOUR, "u1", 100, "EUR"),
        Refund("r1", T0 + 6 * HOUR, "u1", 300, "EUR", "p1"),
    ]
    credits = resolve_log(log, CONFIG, NOW)
    assert _by_line(credits, "linear") == {
        "p1": [("v1", "Paid Search", 300)],
        "p2": [("v1", "Paid Search", 100)],
        "r1": [("v1", "Paid Search", -300)],
    }
    assert {r["segment"] for r in credits.values()} == {"Mid-Market"}
    assert credits["p1/linear"]["reporting_amount_minor"] == 324  # 3.00 EUR at 1.08


def test_a_junk_anonymous_id_on_a_login_is_a_touch_of_its_user_on_their_own_key():
    log = [
        _view("v1", 0, "0", user="u1", url=URLS[3]),             # gclid: google cpc
        _view("v2", 0, "0", user="u2", url=URLS[2]),             # same junk id, other user
        _view("v3", 0, "0"),                                     # anonymous junk: nobody
        Payment("p1", T0 + HOUR, "u1", 10, "USD"),
        Payment("p2", T0 + HOUR, "u2", 10, "USD"),
    ]
    credits = resolve_log(log, CONFIG, NOW)
    assert _by_line(credits, "first_touch") == {"p1": [("v1", "Paid Search", 10)],
                                                "p2": [("v2", "Email", 10)]}


def test_the_earliest_payment_converts_whatever_arrives_first():
    log = [_view("v1", 0, "a1", user="u1", url=URLS[2]),
           _view("v2", 10, "a1", url=URLS[1]),
           Payment("p2", T0 + 12 * HOUR, "u1", 7, "USD"),
           Payment("p1", T0 + 5 * HOUR, "u1", 7, "USD")]
    assert _by_line(resolve_log(log, CONFIG, NOW), "last_touch") == {
        "p1": [("v1", "Email", 7)], "p2": [("v1", "Email", 7)]}
    raced = race(log, seed=1, max_batch=1, billing_first=True)
    assert _resolved(raced) == _resolved(run_in_event_time(log, CONFIG, NOW))
