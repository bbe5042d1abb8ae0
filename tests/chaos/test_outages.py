"""The faults beyond SIGKILL (`make chaos`): a second worker taking over from the changelogs,
the broker stopped and started mid-stream, a worker restarted with every table rebuilt from its
changelog alone. The same check as tests/chaos/test_kills.py: nothing lost, doubled or
changed against the batch computation. Known to fail intermittently today (see docs/chaos.md).
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from personify.stack.processes import free_port
from tests.chaos.test_kills import (
    KILLS,
    SEED,
    Expected,
    _simulate,
    assert_as_if_nothing_happened,
    kill_and_restart,
    send,
)
from tests.integration.test_event_time_through_the_broker import CreditReader


@pytest.mark.parametrize("store", ["rocksdb://", "memory://"])
def test_kills_then_a_takeover_by_a_second_worker_change_nothing(
        settings, start_worker, tmp_path, store):
    settings = replace(settings, store=store)
    lines = _simulate(tmp_path, "log", 1500, SEED)
    expected = Expected(lines)
    reader = CreditReader(settings)
    worker = start_worker(settings)
    stream = send(settings, lines, rate=1500)
    worker = kill_and_restart(worker, start_worker, random.Random(SEED), KILLS, [])
    stream.join()
    second = start_worker(replace(settings, data_dir=tmp_path / "second", web_port=free_port()),
                          name="second")
    worker.kill()  # the second worker takes every partition over from the changelogs

    assert_as_if_nothing_happened(settings, expected, reader)
    # The credits can be complete before the group has given the dead worker's partitions
    # to the second one (its session expires first, then a rebalance restores them): ready
    # once that is done, well within the bound.
    second.wait_ready(timeout_s=90)


def _stack(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "personify.cli", "stack", *args, "--only", "kafka"],
                   check=True, timeout=300, capture_output=True)


def test_a_broker_stopped_and_started_mid_stream_changes_nothing(settings, start_worker,
                                                                 tmp_path):
    status = subprocess.run([sys.executable, "-m", "personify.cli", "stack", "status"],
                            capture_output=True, text=True, timeout=60).stdout
    if "started by personify" not in status.split("kafka", 1)[-1].splitlines()[0]:
        pytest.fail("this test stops and starts the broker: run it on the local stack "
                    "(`make test` starts it)")
    lines = _simulate(tmp_path, "log", 1000, SEED + 2)
    expected = Expected(lines)
    worker = start_worker(settings)
    stream = send(settings, lines, rate=1500)
    time.sleep(2)
    _stack("down")
    down = time.monotonic()
    deadline = down + 20
    while worker.get("/ready")[0] != 503 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert worker.get("/ready")[0] == 503
    _stack("up")
    stream.join()
    while worker.get("/ready")[0] != 200 and time.monotonic() < down + 120:
        time.sleep(0.5)
    print(f"\nbroker down → worker ready again: {time.monotonic() - down:.1f} s")

    # Read from the start once the broker is back. A test consumer subscribed before the stop,
    # which had not polled yet, read nothing for 5 minutes afterwards, while the worker had
    # emitted every credit and a new consumer read them all: the reader's matter, not the
    # pipeline's.
    assert_as_if_nothing_happened(settings, expected, CreditReader(settings))
    assert worker.alive() and worker.get("/ready")[0] == 200
