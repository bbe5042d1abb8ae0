from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personify.sdk import key_of, kind_of_payload
from processors.config import PipelineConfig
from processors.intake import (
    Accepted,
    IntakeRules,
    Refused,
    batch_items,
    parse_body,
    read_item,
    single_item,
    without_write_key,
)
from processors.validation import Reason, decode

NOW_MS = 1_741_161_600_000
RULES = IntakeRules(PipelineConfig().validation)
EVERYTHING = frozenset({"page_view", "signup", "billing", "spend"})
BROWSER = frozenset({"page_view", "signup"})

PAGE_VIEW = {"schema": "page_view/1", "event_id": "pv-1", "ts": "2025-03-05T08:00:00Z",
             "anonymous_id": "anon-1", "url": "https://www.example.com/"}
SIGNUP = {"schema": "signup/1", "event_id": "su-1", "ts": NOW_MS, "anonymous_id": "anon-1",
          "user_id": "user-1", "traits": {"company_size": 40}}
PAYMENT = {"schema": "billing/1", "event_id": "pay-1", "ts": NOW_MS, "user_id": "user-1",
           "kind": "payment", "amount_minor": 4900, "currency": "EUR"}
SPEND = {"schema": "spend/1", "event_id": "sp-1", "ts": NOW_MS - NOW_MS % 86_400_000,
         "source": "google", "medium": "cpc", "campaign": "brand", "amount_minor": 125000,
         "currency": "USD"}
SEGMENT_PAYMENT = {"type": "track", "event": "Order Completed", "messageId": "m-1",
                   "userId": "user-1", "properties": {"amount_minor": 4900, "currency": "EUR"}}


def outcome(item: Any, allowed=EVERYTHING):
    return read_item(item, allowed=allowed, now_ms=NOW_MS, rules=RULES)


@pytest.mark.parametrize("payload", [PAGE_VIEW, SIGNUP, PAYMENT, SPEND],
                         ids=lambda p: p["schema"])
def test_contract_events_are_accepted_keyed_like_the_sdk_keys_them(payload):
    accepted = outcome(payload)
    assert isinstance(accepted, Accepted)
    assert accepted.key == key_of(kind_of_payload(payload), payload)
    assert accepted.event_id == payload["event_id"]
    assert orjson.loads(accepted.value) == payload


def test_the_accepted_bytes_are_the_bytes_the_worker_accepts():
    accepted = outcome(SEGMENT_PAYMENT)
    assert isinstance(accepted, Accepted) and accepted.kind == "billing"
    assert not hasattr(decode(accepted.value, "billing", now_ms=NOW_MS,
                              config=RULES.validation), "reason")


REFUSAL_CASES = [
    ("float_amount", PAYMENT | {"amount_minor": 49.0}, Reason.WRONG_TYPE),
    ("zero_amount", PAYMENT | {"amount_minor": 0}, Reason.NON_POSITIVE_AMOUNT),
    ("unknown_currency", PAYMENT | {"currency": "ZZZ"}, Reason.UNKNOWN_CURRENCY),
    ("junk_user", PAYMENT | {"user_id": "undefined"}, Reason.JUNK_USER_ID),
    ("next_major", PAGE_VIEW | {"schema": "page_view/2"}, Reason.UNKNOWN_SCHEMA),
    ("schema_not_a_string", PAGE_VIEW | {"schema": 1}, Reason.UNKNOWN_SCHEMA),
    ("no_url", {k: v for k, v in PAGE_VIEW.items() if k != "url"}, Reason.MISSING_FIELD),
    ("future", PAGE_VIEW | {"ts": NOW_MS + 40 * 86_400_000}, Reason.TIMESTAMP_IN_FUTURE),
    ("neither_schema_nor_type", {"event_id": "x"}, Reason.MISSING_FIELD),
    ("a_string", "hello", Reason.NOT_AN_OBJECT),
    ("segment_without_message_id", {k: v for k, v in SEGMENT_PAYMENT.items()
                                    if k != "messageId"}, Reason.MISSING_FIELD),
    ("segment_unmapped", SEGMENT_PAYMENT | {"event": "Button Clicked"}, Reason.UNMAPPED_EVENT),
    ("segment_major_units", SEGMENT_PAYMENT | {"properties": {"total": 49.0,
                                                              "currency": "EUR"}},
     Reason.MISSING_FIELD),
]


@pytest.mark.parametrize(("item", "reason"), [case[1:] for case in REFUSAL_CASES],
                         ids=[case[0] for case in REFUSAL_CASES])
def test_bad_items_are_refused_with_the_workers_reason_and_kept_as_sent(item, reason):
    refused = outcome(item)
    assert isinstance(refused, Refused)
    assert refused.reason is reason
    assert orjson.loads(refused.original) == item


def test_a_mapped_events_refusal_says_what_it_was_mapped_from():
    refused = outcome(SEGMENT_PAYMENT | {"properties": {"amount_minor": 4900, "currency": "ZZZ"}})
    assert isinstance(refused, Refused) and refused.reason is Reason.UNKNOWN_CURRENCY
    assert refused.message.startswith("Segment track 'Order Completed' → billing/1: ")
    assert refused.event_id == "m-1"


@pytest.mark.parametrize("item", [PAYMENT, SEGMENT_PAYMENT, SPEND])
def test_a_browser_source_may_not_send_billing_or_spend(item):
    refused = outcome(item, allowed=BROWSER)
    assert isinstance(refused, Refused) and refused.reason is Reason.SOURCE_NOT_ALLOWED


def test_a_body_that_is_not_a_json_object_is_refused_whole():
    assert parse_body(b"{nope").reason is Reason.NOT_JSON
    assert parse_body(b"[1, 2]").reason is Reason.NOT_AN_OBJECT
    assert parse_body(b"\xff").original == b"\xff"


def test_a_batch_needs_its_array():
    assert batch_items({"batch": [1, 2]}, b"") == [1, 2]
    assert batch_items({"events": []}, b'{"events":[]}').reason is Reason.MISSING_FIELD
    assert batch_items({"batch": {}}, b'{"batch":{}}').reason is Reason.WRONG_TYPE


def test_a_write_key_in_the_body_is_not_kept():
    body = b'{"writeKey":"secret","batch":3}'
    refused = batch_items(orjson.loads(body), body)
    assert b"secret" not in refused.original
    assert without_write_key({"a": 1}, b'{"a": 1}') == b'{"a": 1}'


def test_a_single_event_route_gives_the_type_and_drops_the_write_key():
    item = single_item({"writeKey": "k", "messageId": "m"}, "page")
    assert item == {"messageId": "m", "type": "page"}
    assert single_item({"type": "track"}, "page")["type"] == "track"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["schema", "type", "event", "messageId", "event_id",
                                       "ts", "anonymous_id", "anonymousId", "userId",
                                       "properties", "url", "x"]), inner, max_size=6),
    max_leaves=20,
)
items = st.one_of(json_values, st.builds(lambda base, extra: base | extra,
                                         st.sampled_from([PAGE_VIEW, SIGNUP, PAYMENT,
                                                          SEGMENT_PAYMENT]),
                                         st.dictionaries(st.text(max_size=10), json_values,
                                                         max_size=3)))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(items, max_size=8))
def test_every_item_of_any_batch_is_accepted_or_refused_exactly_once(batch):
    body = orjson.dumps({"batch": batch})
    batch = batch_items(parse_body(body), body)
    outcomes = [outcome(item) for item in batch]
    assert len(outcomes) == len(batch)
    for item, result in zip(batch, outcomes, strict=True):
        assert isinstance(result, Accepted | Refused)
        if isinstance(result, Refused):
            assert orjson.loads(result.original) == orjson.loads(orjson.dumps(item))
