"""The index of persons whose billing waits for the touch watermark."""

from hypothesis import given
from hypothesis import strategies as st

from processors.held_index import HeldIndex, Waiting
from processors.watermarks import Watermark

KEYS = st.sampled_from([b"a", b"b", b"c", b"d"])
TIMES = st.integers(0, 20)
OPERATIONS = st.lists(st.tuples(st.sampled_from(["set", "discard", "due"]), KEYS, TIMES,
                                TIMES), max_size=80)


def test_due_takes_out_what_the_watermark_passed_and_is_fresh_enough_for():
    index = HeldIndex({b"a": Waiting(5, 1), b"b": Waiting(10, 1)})
    index.set(b"c", Waiting(7, 50))
    assert sorted(index.due(Watermark(7, 10))) == [b"a"]
    assert index.due(Watermark(7, 10)) == []
    assert index.due(Watermark(8, 50)) == [b"c"]
    index.set(b"a", Waiting(6, 1))  # still waiting after its step
    assert sorted(index.due(Watermark(100, 100))) == [b"a", b"b"]
    assert len(index) == 0


@given(OPERATIONS)
def test_behaves_like_a_scan_of_every_waiting_person(operations):
    index, model = HeldIndex({}), {}
    for operation, key, a, b in operations:
        if operation == "set":
            index.set(key, Waiting(a, b))
            model[key] = Waiting(a, b)
        elif operation == "discard":
            index.discard(key)
            model.pop(key, None)
        else:  # a watermark can also move back (an idle input partition gets data again)
            upto, fresh = a, b
            expected = sorted(k for k, w in model.items()
                              if w.event_ts <= upto and w.validated_at_ms <= fresh)
            assert sorted(index.due(Watermark(upto, fresh))) == expected
            for k in expected:
                del model[k]
        assert len(index) == len(model)
