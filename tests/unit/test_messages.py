"""The internal records: what one stage sends another through an internal topic."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.identity import Claim, ClaimedTouch, SignupSeen
from processors.messages import Source, Sourced, decode, decode_batch, encode, encode_batch
from processors.touch import Touch
from schemas.events import Campaign, PageView, Payment, Signup, Traits

ITEMS = st.lists(st.tuples(st.text(min_size=1, max_size=12),
                           st.dictionaries(st.sampled_from("kxyz"), st.text(max_size=300),
                                           max_size=3)),
                 max_size=60)


@given(items=ITEMS, max_bytes=st.integers(1, 4000))
def test_a_batch_survives_any_split_in_order(items, max_bytes):
    records = encode_batch(items, max_bytes=max_bytes)
    assert [item for record in records for item in decode_batch(orjson.loads(record))] == items
    assert all(decode_batch(orjson.loads(record)) for record in records)


@given(items=ITEMS, max_bytes=st.integers(200, 4000))
def test_records_stay_within_the_size_unless_one_item_is_larger(items, max_bytes):
    for record in encode_batch(items, max_bytes=max_bytes):
        envelope = len(b'{"k":"batch","items":[]}')
        assert len(record) <= max_bytes + envelope or len(decode_batch(orjson.loads(record))) == 1


def test_nothing_to_send_is_no_record():
    assert encode_batch([]) == []


@pytest.mark.parametrize("data", [None, [], "batch", {"k": "event"}, {"k": "batch"},
                                  {"k": "batch", "items": "x"}])
def test_anything_else_is_not_a_batch(data):
    with pytest.raises(ValueError, match="not a batch"):
        decode_batch(data)


TOUCH = Touch("v1", 5, "anon", "Paid Search", "google", "cpc", "spring")
SOURCE = Source("page-views-v1", 2, 40, '{"raw": true}')


@pytest.mark.parametrize("message", [
    Claim("u1", "anon", 3, (ClaimedTouch(TOUCH, False),
                            ClaimedTouch(Touch("v2", 9, "anon", "Direct", "(direct)", "(none)"),
                                         True))),
    Claim("u1", "anon", None, ()),
    SignupSeen("u1", "anon", 7, "s1", Traits(company_size=250, plan="team")),
    Sourced(PageView("v1", 5, "anon", "u1", "https://x.test/", None,
                     Campaign(source="google")), SOURCE),
    Sourced(Signup("s1", 7, "anon", "u1", Traits(country="DE")), SOURCE),
    Sourced(Payment("p1", 8, "u1", 4900, "EUR"), SOURCE),
])
def test_every_message_survives_its_record(message):
    assert decode(orjson.loads(orjson.dumps(encode(message)))) == message
