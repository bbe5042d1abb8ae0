"""The aggregate store folds each person-events record exactly once, also when a crash cuts a
fold's table writes short and the records are read again."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.aggregates import fold_many
from streams.aggregate_store import AggregateStore
from streams.state_cache import TableWrites
from tests.unit.stage_harness import Table, Taken
from tests.unit.test_aggregates import CONFIG, MINUTE_MS, T0, converted, credit, movement


def restored(changelog: list[tuple[int, bytes, bytes | None]]) -> Table:
    """A table rebuilt from a changelog, as a worker taking the partition over does."""
    table = Table()
    table.changelog = list(changelog)
    for _, key, value in changelog:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return table


outputs = st.lists(st.one_of(
    st.builds(lambda m, a, h: credit(amount=a, ts=T0 + h * 60 * MINUTE_MS, event_id=f"p{m}"),
              st.integers(0, 5), st.integers(-500, 5000), st.integers(0, 200)),
    st.builds(lambda h: converted(ts=T0 + h * 60 * MINUTE_MS), st.integers(0, 200)),
    st.builds(lambda d, h: movement(delta=d, ts=T0 + h * 60 * MINUTE_MS),
              st.integers(-900, 900), st.integers(0, 200)),
), max_size=4)


@settings(max_examples=150, deadline=None)
@given(records=st.lists(outputs, min_size=1, max_size=12), data=st.data())
def test_a_crash_anywhere_in_a_fold_then_a_replay_folds_every_record_once(records, data):
    offsets = list(enumerate(records))
    takes = data.draw(st.integers(1, len(offsets)), label="records per take")
    table = Table()
    store = AggregateStore(table, CONFIG)
    crashed_at = data.draw(st.integers(0, len(offsets) - 1), label="take cut short")
    for start in range(0, len(offsets), takes):
        writes = TableWrites()
        store.fold(0, offsets[start:start + takes], writes)
        if start <= crashed_at < start + takes:
            before = len(table.changelog)
            asyncio.run(writes.apply(Taken()))
            kept = data.draw(st.integers(before, len(table.changelog)), label="writes kept")
            del table.changelog[kept:]
            break
        asyncio.run(writes.apply(Taken()))
    else:
        return

    # Another worker restores what reached the changelog and reads every record again.
    table = restored(table.changelog)
    store = AggregateStore(table, CONFIG)
    writes = TableWrites()
    store.fold(0, offsets, writes)
    asyncio.run(writes.apply(Taken()))

    expected = fold_many(None, [o for outs in records for o in outs], CONFIG)
    assert store.state(0) == expected
    assert AggregateStore(restored(table.changelog), CONFIG).state(0) == expected
