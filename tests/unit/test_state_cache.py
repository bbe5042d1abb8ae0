"""Decoded states kept beside their table: the table stays the durable copy. Table writes
reach the changelog before the local store."""

import asyncio
from dataclasses import dataclass

import faust
import orjson
from faust.streams import current_event

from streams.state_cache import CachedStates, TableWrites, TakenPartitions


class Table(dict):
    """The part of a Faust table the writes use: its store and its changelog, whose deliveries
    the test completes."""

    def __init__(self, *args):
        super().__init__(*args)
        self.data = self
        self.changelog = []
        self.deliveries = []

    def send_changelog(self, partition, key, value, value_serializer=None):
        self.changelog.append((partition, key, value))
        self.deliveries.append(asyncio.get_running_loop().create_future())
        return self.deliveries[-1]


class Taken:
    def write(self, partition, write):
        return write()


def apply(writes, table):
    """Run `writes.apply`; the store as it was while the changelog was not yet delivered."""
    async def run():
        applying = asyncio.create_task(writes.apply(Taken()))
        await asyncio.sleep(0)
        before_delivery = dict(table)
        for delivery in table.deliveries:
            if not delivery.done():
                delivery.set_result(None)
        await applying
        return before_delivery
    return asyncio.run(run())


@dataclass(frozen=True)
class Counter:
    n: int

    def to_dict(self):
        return {"n": self.n}


def decoder(calls):
    def decode(data):
        calls.append(data)
        return Counter(data["n"])
    return decode


def test_a_state_is_decoded_once_and_every_write_reaches_the_changelog_then_the_table():
    table, calls = Table({b"a": orjson.dumps({"n": 1})}), []
    states = CachedStates(table, decoder(calls), capacity=10, partition_of=lambda key: 3)
    assert states.get("a") == Counter(1)
    assert states.get("a") == Counter(1)
    assert len(calls) == 1
    writes = TableWrites()
    states.put_all({"a": Counter(2)}, writes)
    assert states.get("a") == Counter(2) and len(calls) == 1  # served before it is stored

    before_delivery = apply(writes, table)

    assert before_delivery[b"a"] == orjson.dumps({"n": 1})
    assert table.changelog == [(3, b"a", orjson.dumps({"n": 2}))]
    assert table[b"a"] == orjson.dumps({"n": 2})
    assert states.get("missing") is None


def test_the_least_recently_used_state_goes_first_and_forget_empties_it_all():
    table, calls = Table(), []
    states = CachedStates(table, decoder(calls), capacity=2, partition_of=lambda key: 3)
    writes = TableWrites()
    states.put_all({"a": Counter(1), "b": Counter(2)}, writes)
    states.get("a")
    states.put_all({"c": Counter(3)}, writes)  # b is the least recently used
    apply(writes, table)
    states.get("a"), states.get("c")
    assert calls == []
    assert states.get("b") == Counter(2) and calls == [{"n": 2}]
    states.forget()
    states.get("a")
    assert calls[-1] == {"n": 1}


def test_a_store_is_never_ahead_of_its_changelog():
    """A worker killed between the two would find the change at home, take its re-read input
    for a duplicate and never send it: whoever restores from the changelog would miss it."""
    table = Table({b"gone": b"x"})
    writes = TableWrites()
    writes.put(table, 3, b"k", b"v")
    writes.delete(table, 3, b"gone")

    before_delivery = apply(writes, table)

    assert before_delivery == {b"gone": b"x"}
    assert table.changelog == [(3, b"k", b"v"), (3, b"gone", None)]
    assert table == {b"k": b"v"}
    assert apply(TableWrites(), table) == table  # nothing to write: nothing sent


class Event:
    def __init__(self, partition):
        self.message = type("Message", (), {"partition": partition})()


def test_a_write_for_a_partition_sees_its_event_and_leaves_no_trace_in_the_caller():
    """A read after the write must not be confined to the borrowed event's partition (Faust's
    RocksDB store reads only the current event's partition when one is set)."""
    app = faust.App("test-taken-partitions")
    stream = app.stream(app.channel())
    drainers_event = Event(0)
    stream.current_event = drainers_event  # what the stream's background reader last set
    taken = TakenPartitions(stream, [Event(1), Event(2)])

    seen = taken.write(2, lambda: current_event().message.partition)

    assert seen == 2
    assert current_event() is None
    assert stream.current_event is drainers_event
