"""Decoded states kept beside their table: the table stays the durable copy."""

from dataclasses import dataclass

import faust
import orjson
from faust.streams import current_event

from streams.state_cache import CachedStates, TakenPartitions, delete, write


class Table(dict):
    """The part of a Faust table the writes use: its store and its changelog."""

    def __init__(self, *args):
        super().__init__(*args)
        self.data = self
        self.changelog = []

    def send_changelog(self, partition, key, value, value_serializer=None):
        self.changelog.append((partition, key, value))
        return f"delivery of {key!r}"


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


def test_a_state_is_decoded_once_and_every_write_reaches_the_table():
    table, calls = Table({b"a": orjson.dumps({"n": 1})}), []
    states = CachedStates(table, decoder(calls), capacity=10, partition_of=lambda key: 3)
    assert states.get("a") == Counter(1)
    assert states.get("a") == Counter(1)
    assert len(calls) == 1
    assert states.put("a", Counter(2)) == "delivery of b'a'"
    assert table[b"a"] == orjson.dumps({"n": 2})
    assert table.changelog == [(3, b"a", orjson.dumps({"n": 2}))]
    assert states.get("a") == Counter(2) and len(calls) == 1
    assert states.get("missing") is None


def test_the_least_recently_used_state_goes_first_and_forget_empties_it_all():
    table, calls = Table(), []
    states = CachedStates(table, decoder(calls), capacity=2, partition_of=lambda key: 3)
    states.put("a", Counter(1))
    states.put("b", Counter(2))
    states.get("a")
    states.put("c", Counter(3))  # b is the least recently used
    states.get("a"), states.get("c")
    assert calls == []
    assert states.get("b") == Counter(2) and calls == [{"n": 2}]
    states.forget()
    states.get("a")
    assert calls[-1] == {"n": 1}


def test_a_write_and_a_delete_reach_the_store_and_the_changelog():
    table = Table()
    assert write(table, 3, b"k", b"v") == "delivery of b'k'"
    assert delete(table, 3, b"k") == "delivery of b'k'" and b"k" not in table
    assert delete(table, 3, b"k") is None
    assert table.changelog == [(3, b"k", b"v"), (3, b"k", None)]


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
