"""The worker's behaviour around failures: log floods held back, the broker probe."""

import asyncio
import logging
import socket

from streams.operations import RepeatLimiter, broker_reachable


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
