"""How the worker behaves when the world around it fails: the broker gone, a stop that hangs
(log floods are held back by `streams.logs`)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import faust
from prometheus_client import Histogram

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2.0
STOP_DEADLINE_S = 6.0
"""A stop that takes longer (the Kafka client waits a minute for a broker that is gone) ends
the process: it is as safe as a crash, which every stage is built to survive."""
EXIT_STAGE_FAILED = 70
"""The exit code of a worker whose stage met a failure it cannot handle (EX_SOFTWARE)."""


async def broker_reachable(bootstrap: str) -> bool:
    """True when a TCP connection to any bootstrap server opens within the timeout: enough to
    tell "broker gone" (what the worker cannot fix) from anything slower."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)),
                                               PROBE_TIMEOUT_S)
        except (TimeoutError, OSError):
            continue
        writer.close()
        return True
    return False


@contextmanager
def committed_only_when_done(events: list[faust.EventT]) -> Iterator[None]:
    """Let the offsets of a take be committed only if the body around it completes.

    Faust acks a take's events as soon as the loop body is left, also by an exception or a
    cancellation, and its commit may then skip over a lone unacknowledged offset. A reference
    held for the time of the body makes Faust's ack count only once the body completed: a stop
    in the middle leaves the take uncommitted, so it is read again. A failure the stage cannot
    handle (a delivery the broker refused) ends the process before anything else is committed:
    as safe as a crash, which every stage survives, and its supervisor starts it again.
    """
    for event in events:
        event.message.incref()
    try:
        yield
    except Exception:
        log.critical("a stage failed half-way through %d records; exiting so that they are "
                     "read again", len(events), exc_info=True)
        logging.shutdown()
        sys.stderr.flush()
        os._exit(EXIT_STAGE_FAILED)
    for event in events:
        event.message.decref()


async def never_a_gap(tp: Any, offset_from: int, offset_to: int) -> None:
    """Faust marks the offsets between two records it delivers as done when they are not
    consecutive (compacted or transactional topics have such gaps), and its commit then moves
    past them. The stages' topics have none: a missing offset is a record the client did not
    deliver, which must be read, not skipped. Installed in Faust's place
    (streams/faust_internals.py), it only says so; `DeliveredInOrder` ends the process."""
    log.error("offsets %d to %d of %s were not delivered in order", offset_from, offset_to - 1,
              tp)


class DeliveredInOrder:
    """Every offset of a partition reaches the stage, in order, from where the group
    committed: a record the client skipped (it happens, rarely, around restarts) would
    otherwise be committed past and never processed. The next offset expected is the one
    after the highest this stage saw, or the committed one if higher (another worker went on
    meanwhile). A re-delivery (an offset seen before) is fine: the stages know re-reads."""

    def __init__(self, committed: Callable[[Any], int | None]) -> None:
        self._committed = committed
        self._next: dict[Any, int] = {}

    def missing(self, events: list[faust.EventT]) -> tuple[Any, int, int] | None:
        """(partition, first, last offset) of a run of records skipped before an event of
        `events`, or None; the events are then taken as seen."""
        for event in events:
            tp, offset = event.message.tp, event.message.offset
            known = [o for o in (self._next.get(tp), self._committed(tp)) if o is not None]
            if known and offset > max(known):
                return tp, max(known), offset - 1
            self._next[tp] = max(offset + 1, self._next.get(tp, 0))
        return None


class Takes:
    """The takes the stages work on, and the partitions they may work on.

    Faust does not wait for a take in progress when partitions are revoked (waiting for every
    buffered event would hold a stop up), and a take buffered before a rebalance still holds
    events of partitions that now belong to another worker. Processed here, they would write
    state the next owner has already restored, or read state the store has dropped; and that
    stale state would be the newest in the changelog. So a revocation waits for the takes in
    progress and holds new ones back until the assignment is known, and a take keeps only the
    events of partitions this worker still owns: the others are left uncommitted, for their
    owner to read again."""

    SETTLE_TIMEOUT_S = 30.0

    def __init__(self, take_seconds: Histogram | None = None,
                 committed: Callable[[Any], int | None] = lambda tp: None) -> None:
        self._take_seconds = take_seconds
        self._in_order = DeliveredInOrder(committed)
        self._working = 0
        self._settled = asyncio.Event()
        self._settled.set()
        self._assigned = asyncio.Event()
        self._owned: set = set()

    async def run(self, stream: faust.StreamT, stage: str, most: int, within: float,
                  process: Callable[[list[faust.EventT]], Awaitable[None]]) -> None:
        """`process` each take of up to `most` events of the stream (waiting `within` seconds
        to fill one), kept to the partitions owned and committed only when it completed. The
        time from a take read to its completion (outputs delivered, state written) is observed
        under `stage`."""
        async for taken in stream.take_events(most, within=within):
            started = time.monotonic()
            events = await self.admit(taken)
            with self.working_on(events):
                await process(events)
            if events and self._take_seconds is not None:
                self._take_seconds.labels(stage).observe(time.monotonic() - started)

    async def admit(self, events: list[faust.EventT]) -> list[faust.EventT]:
        """The events of `events` this worker may process, once the assignment is known. The
        others are never acknowledged here (their new owner reads them again), nor is any of
        them if a stop cancels the wait."""
        for event in events:
            event.message.incref()
        await self._assigned.wait()
        kept = [event for event in events if event.message.tp in self._owned]
        skipped = self._in_order.missing(kept)
        if skipped is not None:
            log.critical("offsets %d to %d of %s never reached the stage; starting again "
                         "before anything past them is committed, so that they are read",
                         skipped[1], skipped[2], skipped[0])
            restart_in_place()
        for event in kept:
            event.message.decref()
        return kept

    @contextmanager
    def working_on(self, events: list[faust.EventT]) -> Iterator[None]:
        """A take in progress, committed only when done (`committed_only_when_done`)."""
        self._working += 1
        self._settled.clear()
        try:
            with committed_only_when_done(events):
                yield
        finally:
            self._working -= 1
            if not self._working:
                self._settled.set()

    async def revoked(self, partitions: set) -> None:
        """Hold new takes back, and return once none is in progress (or after
        SETTLE_TIMEOUT_S, said in the log)."""
        self._assigned.clear()
        self._owned -= set(partitions)
        try:
            await asyncio.wait_for(self._settled.wait(), self.SETTLE_TIMEOUT_S)
        except TimeoutError:
            log.warning("partitions revoked while a take is still in progress after %.0f s",
                        self.SETTLE_TIMEOUT_S)

    def assigned(self, partitions: set) -> None:
        self._owned = set(partitions)
        self._assigned.set()


def restart_in_place() -> None:
    """Start the worker afresh in this very process, as a crash and a restart would: every
    file (RocksDB's locks, the sockets) closed, the same command line executed again, the pid
    kept, so whatever supervises it sees no exit. For a fault of the client library that a
    fresh start clears (`DeliveredInOrder`), without waiting for a supervisor."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    os.execv(sys.executable, sys.orig_argv)


class BoundedStopApp(faust.App):
    """A Faust app whose stop cannot take longer than STOP_DEADLINE_S."""

    async def on_stop(self) -> None:
        timer = threading.Timer(STOP_DEADLINE_S, _exit_late)
        timer.daemon = True
        timer.start()
        await super().on_stop()


def _exit_late() -> None:
    log.error("stopping took over %.0f s (is the broker reachable?); exiting without waiting "
              "further: inputs not committed are read again at the next start", STOP_DEADLINE_S)
    logging.shutdown()
    os._exit(1)
