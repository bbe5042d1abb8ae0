"""The internal batch records: what one stage sends another through an internal topic."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.messages import Batch, decode_batch, encode_batch

ITEMS = st.lists(st.tuples(st.text(min_size=1, max_size=12),
                           st.dictionaries(st.sampled_from("kxyz"), st.text(max_size=300),
                                           max_size=3)),
                 max_size=60)
TIMES = st.integers(-(2**62), 2**62)
MARKS = st.none() | st.fixed_dictionaries({"q": st.integers(0, 7), "upto": TIMES,
                                           "fresh": TIMES})


@given(items=ITEMS, mark=MARKS, max_bytes=st.integers(1, 4000))
def test_a_batch_survives_any_split_in_order_with_its_mark_last(items, mark, max_bytes):
    records = encode_batch(Batch(items, mark), max_bytes=max_bytes)
    decoded = [decode_batch(orjson.loads(record)) for record in records]
    assert [item for batch in decoded for item in batch.items] == items
    assert decoded[-1].mark == mark
    assert all(batch.mark is None for batch in decoded[:-1])
    assert all(batch.items for batch in decoded[:-1])


@given(items=ITEMS, max_bytes=st.integers(200, 4000))
def test_records_stay_within_the_size_unless_one_item_is_larger(items, max_bytes):
    for record in encode_batch(Batch(items), max_bytes=max_bytes):
        batch = decode_batch(orjson.loads(record))
        envelope = len(b'{"k":"batch","items":[],"wm":null}')
        assert len(record) <= max_bytes + envelope or len(batch.items) == 1


def test_an_empty_batch_still_carries_the_watermark():
    [record] = encode_batch(Batch([], {"q": 1, "upto": 5, "fresh": 6}))
    assert decode_batch(orjson.loads(record)) == Batch([], {"q": 1, "upto": 5, "fresh": 6})


@pytest.mark.parametrize("data", [None, [], "batch", {"k": "event"}, {"k": "batch"},
                                  {"k": "batch", "items": "x"}])
def test_anything_else_is_not_a_batch(data):
    with pytest.raises(ValueError, match="not a batch"):
        decode_batch(data)
