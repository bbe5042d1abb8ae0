"""The worker's behaviour around failures: log floods held back, the broker probe, a take's
offsets committed only when its stage completed it."""

import asyncio
import logging
import socket
import subprocess
import sys

import pytest
from faust.types.tuples import TP, Message

from streams.logs import RepeatLimiter
from streams.operations import (
    EXIT_STAGE_FAILED,
    DeliveredInOrder,
    Takes,
    broker_reachable,
    committed_only_when_done,
)


def _record(name, msg, level=logging.ERROR, args=()):
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_repeated_error_passes_once_per_window_then_says_how_many_were_held():
    clock = Clock()
    limiter = RepeatLimiter(window_s=30, clock=clock)
    passed = []
    for second in range(75):
        clock.now = float(second)
        for _ in range(10):  # ten failed reconnects a second
            record = _record("aiokafka.conn", "Unable connect to node %s", args=(1,))
            if limiter.filter(record):
                passed.append(record.getMessage())
    assert passed == ["Unable connect to node 1",
                      "Unable connect to node 1 (299 more like this in the last 30 s)",
                      "Unable connect to node 1 (299 more like this in the last 30 s)"]


def test_other_messages_loggers_and_info_lines_are_not_held_back():
    limiter = RepeatLimiter(window_s=30, clock=Clock())
    assert limiter.filter(_record("aiokafka.conn", "a"))
    assert not limiter.filter(_record("aiokafka.conn", "a"))
    assert limiter.filter(_record("aiokafka.conn", "b"))
    assert limiter.filter(_record("aiokafka.client", "a"))
    assert all(limiter.filter(_record("faust", "a", level=logging.INFO)) for _ in range(5))


def test_the_broker_probe_tells_a_listening_server_from_a_closed_port():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert asyncio.run(broker_reachable(f"127.0.0.1:1,127.0.0.1:{port}"))
    assert not asyncio.run(broker_reachable(f"127.0.0.1:{port}"))


class Event:
    def __init__(self, offset):
        self.message = Message("t", 0, offset, 0.0, 0, None, b"k", b"v", None)
        self.message.incref()  # the take's own reference, dropped by its ack


def take(events, body):
    """What Faust's take does: run the body, then ack every event however the body ended; the
    offsets whose ack was final (committable)."""
    try:
        with committed_only_when_done(events):
            body()
    finally:
        for event in events:
            event.message.ack(consumer=None)
    return [event.message.offset for event in events if event.message.acked]


def test_a_completed_take_is_acknowledged():
    assert take([Event(1), Event(2)], lambda: None) == [1, 2]


def test_a_take_stopped_half_way_is_not_acknowledged_so_it_is_read_again():
    def cancelled():
        raise asyncio.CancelledError

    events = [Event(1), Event(2)]
    with pytest.raises(asyncio.CancelledError):
        take(events, cancelled)
    assert not any(event.message.acked for event in events)
    assert take(events, lambda: None) == [1, 2]  # read again and completed


def test_a_take_that_fails_ends_the_process_before_anything_is_committed():
    program = """
import logging
from streams.operations import committed_only_when_done
logging.basicConfig()
with committed_only_when_done([]):
    raise RuntimeError("delivery refused")
print("went on")
"""
    ended = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                           timeout=60)
    assert ended.returncode == EXIT_STAGE_FAILED
    assert "went on" not in ended.stdout
    assert "exiting so that they are read again" in ended.stderr


def event(partition, offset=0):
    e = Event(offset)
    e.message.tp = TP("t", partition)
    return e


def test_a_revocation_waits_for_the_takes_in_progress_and_holds_new_ones_back():
    async def run():
        takes, log = Takes(), []
        takes.assigned({TP("t", 0), TP("t", 1)})

        async def stage(name, seconds, events):
            admitted = await takes.admit(events)
            log.append((name, "admitted", [e.message.tp.partition for e in admitted]))
            with takes.working_on(admitted):
                await asyncio.sleep(seconds)
            log.append((name, "done"))

        first = asyncio.create_task(stage("first", 0.05, [event(0)]))
        await asyncio.sleep(0)
        await takes.revoked({TP("t", 0), TP("t", 1)})
        log.append(("revoked",))
        second = asyncio.create_task(stage("second", 0, [event(0), event(1)]))
        await asyncio.sleep(0.01)
        log.append(("assigned",))
        takes.assigned({TP("t", 1)})
        await asyncio.gather(first, second)
        return log

    assert asyncio.run(run()) == [
        ("first", "admitted", [0]), ("first", "done"), ("revoked",), ("assigned",),
        ("second", "admitted", [1]), ("second", "done")]


def test_events_of_a_partition_given_away_are_never_acknowledged_here():
    async def run():
        takes = Takes()
        takes.assigned({TP("t", 1)})
        kept, gone = event(1), event(0)
        assert await takes.admit([kept, gone]) == [kept]
        with takes.working_on([kept]):
            pass
        for e in (kept, gone):
            e.message.ack(consumer=None)
        return kept.message.acked, gone.message.acked

    assert asyncio.run(run()) == (True, False)


def test_a_take_cancelled_while_waiting_for_the_assignment_is_not_acknowledged():
    async def run():
        takes, events = Takes(), [event(0)]
        waiting = asyncio.create_task(takes.admit(events))
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        events[0].message.ack(consumer=None)
        return events[0].message.acked

    assert asyncio.run(run()) is False


def test_every_offset_reaches_the_stage_from_the_commit_on_or_the_gap_is_named():
    committed = {TP("t", 0): 5}
    order = DeliveredInOrder(committed.get)
    assert order.missing([event(0, 5), event(0, 6)]) is None
    assert order.missing([event(0, 5), event(0, 7)]) is None  # 5 again: a re-delivery
    assert order.missing([event(0, 9)]) == (TP("t", 0), 8, 8)
    assert DeliveredInOrder(committed.get).missing([event(0, 7)]) == (TP("t", 0), 5, 6)
    assert DeliveredInOrder(lambda tp: None).missing([event(1, 40)]) is None  # no commit yet


def test_a_partition_back_from_another_worker_is_expected_from_its_new_commit():
    committed = {TP("t", 0): 5}
    order = DeliveredInOrder(committed.get)
    assert order.missing([event(0, 5)]) is None
    committed[TP("t", 0)] = 50  # another worker went on meanwhile
    assert order.missing([event(0, 50)]) is None
    assert order.missing([event(0, 12)]) is None  # a take buffered before the move


def test_a_skipped_offset_starts_the_worker_again_in_place_before_the_take_is_acknowledged():
    program = """
import asyncio, logging, os
from faust.types.tuples import TP
from tests.unit.test_operations import event
from streams.operations import Takes
logging.basicConfig()
print("life", os.environ.get("LIFE", "1"), os.getpid(), flush=True)
if os.environ.get("LIFE") == "2":
    raise SystemExit(0)
os.environ["LIFE"] = "2"
takes = Takes(committed={TP("t", 0): 3}.get)
takes.assigned({TP("t", 0)})
asyncio.run(takes.admit([event(0, 4)]))
print("went on")
"""
    ended = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                           timeout=60)
    lives = [line.split() for line in ended.stdout.splitlines()]
    assert ended.returncode == 0, ended.stderr
    assert [life[1] for life in lives] == ["1", "2"] and lives[0][2] == lives[1][2]  # one pid
    assert "offsets 3 to 3 of" in ended.stderr and "starting again" in ended.stderr
