"""The input stage's decision per raw message: refused, forwarded to its key, or dropped."""

import orjson
from hypothesis import given
from hypothesis import strategies as st

from processors.config import PipelineConfig
from processors.messages import decode
from processors.routing import Dropped, Forward, route_input
from processors.validation import Rejection

CONFIG = PipelineConfig()
NOW = 1_760_000_000_000
VIEW = {"schema": "page_view/1", "event_id": "v1", "ts": NOW - 1000, "anonymous_id": "a1",
        "url": "https://example.com/"}


def route(value: dict | bytes, kind: str = "page_view", offset: int = 7):
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return route_input(raw, kind, f"{kind}s", 2, offset, now_ms=NOW, config=CONFIG)


def test_a_page_view_goes_to_its_device_with_where_it_was_read():
    outcome = route(VIEW)
    assert isinstance(outcome, Forward) and outcome.key == "a1"
    message = decode(outcome.item)
    assert message.event.event_id == "v1"
    assert message.source.origin == "page_views:2:7"
    assert orjson.loads(message.source.raw) == VIEW


def test_billing_goes_to_its_user():
    payment = {"schema": "billing/1", "kind": "payment", "event_id": "p1", "ts": NOW - 1000,
               "user_id": "u1", "amount_minor": 4900, "currency": "USD"}
    outcome = route(payment, "billing")
    assert isinstance(outcome, Forward) and outcome.key == "u1"


def test_a_logged_in_view_with_a_junk_device_goes_to_its_user_and_an_anonymous_one_nowhere():
    assert route({**VIEW, "anonymous_id": "undefined", "user_id": "u1"}).key.endswith("u1")
    assert route({**VIEW, "anonymous_id": "undefined"}) == Dropped()


def test_what_validation_refuses_is_refused_with_its_reason():
    assert route(b"{not json").reason == "not_json"
    assert isinstance(route({**VIEW, "ts": 1.5}), Rejection)


@given(st.binary(max_size=200))
def test_any_bytes_are_forwarded_dropped_or_refused_never_raise(raw):
    assert isinstance(route(raw), Forward | Dropped | Rejection)
