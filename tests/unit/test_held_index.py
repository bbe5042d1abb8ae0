"""The index of persons whose billing waits for the touch watermark."""

from hypothesis import given
from hypothesis import strategies as st

from streams.agents import HeldIndex

KEYS = st.sampled_from([b"a", b"b", b"c", b"d"])
OPERATIONS = st.lists(st.tuples(st.sampled_from(["set", "discard", "due"]), KEYS,
                                st.integers(0, 20)), max_size=60)


def test_due_takes_out_only_what_the_watermark_passed():
    index = HeldIndex({b"a": 5, b"b": 10})
    index.set(b"c", 7)
    assert sorted(index.due(7)) == [b"a", b"c"]
    assert index.due(7) == []
    index.set(b"a", 6)  # still waiting after its step
    assert sorted(index.due(100)) == [b"a", b"b"]


@given(OPERATIONS)
def test_behaves_like_a_scan_of_a_dict(operations):
    index, model = HeldIndex({}), {}
    for operation, key, ts in operations:
        if operation == "set":
            index.set(key, ts)
            model[key] = ts
        elif operation == "discard":
            index.discard(key)
            model.pop(key, None)
        else:
            expected = sorted(k for k, waiting in model.items() if waiting <= ts)
            assert sorted(index.due(ts)) == expected
            for k in expected:
                del model[k]
