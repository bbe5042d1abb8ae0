"""The fast restorer: every local RocksDB store brought up to its changelog's end before Faust
starts, so Faust finds each store current and replays nothing (or only what arrived since).

Faust's own recovery pays about 40 µs a changelog record (an asyncio queue read with a timeout
of its own per record, an event object, debug strings): 5,000 records/s. Here librdkafka
fetches every changelog partition at once in its own threads and each record costs one
`WriteBatch.put` (a `delete` for a tombstone). The result is the store Faust's recovery would
build: the same keys and values, and the offset record Faust keeps in each store set to the
last record applied. Each batch carries its records and that offset together, so a store is
consistent after any failure; a failure only hands the rest of the work back to Faust.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from streams.broker import client_config
from streams.faust_internals import (
    OFFSET_KEY,
    decode_offset,
    encode_offset,
    new_write_batch,
    open_store,
    resume_offset,
    store_path,
)
from streams.tables import RECOVERY_BATCH
from streams.topology import TABLES, Settings

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 2.0
BROKER_TIMEOUT_S = 30.0
"""No answer (metadata, end offsets, a changelog record) for this long: the broker is not
serving, give up. A broker busy with other work can take seconds."""
FETCH = {"fetch.max.bytes": 64 * 2**20, "max.partition.fetch.bytes": 16 * 2**20,
         "queued.max.messages.kbytes": 256 * 2**10, "queued.min.messages": 500_000,
         "fetch.wait.max.ms": 20}
"""Large fetches and a deep prefetch queue: the consumer reads whole logs, never waits on data."""
READ_BATCH = 10_000
"""Messages taken from the client per call, or fewer after READ_WAIT_S."""
READ_WAIT_S = 0.05


def skip_write_ahead_log(db: Any) -> None:
    """The restorer's own writes skip RocksDB's write-ahead log; the store is flushed before it
    is closed. A crash loses the writes since the last flush, a suffix: records and their
    offset go together, and Faust's recovery replays them."""
    import rocksdict

    options = rocksdict.WriteOptions()
    options.disable_wal = True
    db.set_write_options(options)


@dataclass(frozen=True, slots=True)
class PartitionPlan:
    topic: str
    partition: int
    start: int
    """First offset to read (OFFSET_BEGINNING for an empty store)."""
    end: int
    """The changelog partition's high watermark: the offset after its last record."""

    @property
    def remaining(self) -> int:
        """Records left at most (fewer where compaction removed some)."""
        return max(0, self.end - max(self.start, 0))


def pending(start: int, end: int) -> bool:
    """Whether a partition has records past the store's offset."""
    return end > max(start, 0)


@dataclass(slots=True)
class StoreWriter:
    """Changelog records into one store, `batch_size` per RocksDB write; each write also sets
    the offset of its last record, so the store is never ahead of or behind its offset. Given
    `writes` (one thread), the writes run there, in order, while the caller reads on."""

    db: Any
    batch_size: int = RECOVERY_BATCH
    writes: Executor | None = None
    applied: int = 0
    _batch: Any = field(default_factory=new_write_batch)
    _in_batch: int = 0
    _last_offset: int = -1
    _pending: list[Future[None]] = field(default_factory=list)

    def apply(self, offset: int, key: bytes, value: bytes | None) -> None:
        if value is None:
            self._batch.delete(key)
        else:
            self._batch.put(key, value)
        self._last_offset = offset
        self._in_batch += 1
        if self._in_batch >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self._in_batch:
            return
        batch, self._batch = self._batch, new_write_batch()
        batch.put(OFFSET_KEY, encode_offset(self._last_offset))
        if self.writes is None:
            self.db.write(batch)
        else:
            self._pending.append(self.writes.submit(self.db.write, batch))
        self.applied += self._in_batch
        self._in_batch = 0

    def finish(self) -> None:
        """Flush, and wait for every write (raising the first that failed)."""
        self.flush()
        writes, self._pending = self._pending, []
        for write in writes:
            write.result()


@dataclass(frozen=True, slots=True)
class Restored:
    records: int
    stores: int
    """Stores that had records to apply."""
    seconds: float

    @property
    def per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def restore_stores(settings: Settings, batch_size: int = RECOVERY_BATCH) -> Restored:
    """Apply every changelog record past each local store's offset; raises on any failure
    (a store locked by a running worker, an unreachable broker), leaving whole batches only.
    Every partition is restored, not only those this worker will own: that is known only once
    Faust has joined the group.

    Opening a RocksDB store takes tens of milliseconds and rocksdict lets go of the GIL while
    it opens, writes and closes, so stores are opened and closed by a few threads at once and
    the batches written by one thread while this one reads the changelogs."""
    started = time.monotonic()
    consumer = Consumer({**client_config(settings.kafka_bootstrap), **FETCH,
                         "group.id": f"{settings.app_id}-restore", "enable.auto.commit": False,
                         "enable.partition.eof": True, "auto.offset.reset": "earliest",
                         "isolation.level": "read_uncommitted"})
    dbs: list[Any] = []
    with ThreadPoolExecutor(OPENERS) as openers, ThreadPoolExecutor(1) as writes:
        try:
            opened = _open_stores(settings, consumer, openers)
            dbs = [db for _, db in opened]
            writers = {plan: StoreWriter(db, batch_size, writes) for plan, db in opened
                       if pending(plan.start, plan.end)}
            if writers:
                _consume(consumer, writers)
            return Restored(sum(w.applied for w in writers.values()), len(writers),
                            time.monotonic() - started)
        finally:
            consumer.close()
            list(openers.map(_close, dbs))


OPENERS = 4
"""Threads opening and closing stores (mostly waiting on the file system)."""


def _close(db: Any) -> None:
    db.flush()
    db.close()


def _open_stores(settings: Settings, consumer: Consumer,
                 openers: Executor) -> list[tuple[PartitionPlan, Any]]:
    """Each table's store per changelog partition, opened (created when missing, as Faust
    does) with where its changelog stands; a missing store of an empty partition is left for
    Faust to create."""
    def partitions(table: str) -> list[tuple[str, str, int]]:
        topic = settings.changelog(table)
        metadata = consumer.list_topics(topic, timeout=BROKER_TIMEOUT_S).topics[topic]
        if metadata.error is not None:
            raise LookupError(f"changelog topic {topic}: {metadata.error}")
        return [(table, topic, partition) for partition in sorted(metadata.partitions)]

    def prepare(where: tuple[str, str, int]) -> tuple[PartitionPlan, Any] | None:
        table, topic, partition = where
        end = _end_offset(consumer, TopicPartition(topic, partition))
        path = store_path(settings.data_dir, table, partition)
        if end == 0 and not path.exists():
            return None
        db = open_store(path)
        try:
            skip_write_ahead_log(db)
            start = resume_offset(decode_offset(db.get(OFFSET_KEY)))
        except BaseException:
            db.close()
            raise
        return PartitionPlan(topic, partition, start, end), db

    everywhere = [where for found in openers.map(partitions, (t.name for t in TABLES))
                  for where in found]
    futures = [openers.submit(prepare, where) for where in everywhere]
    opened, failures = [], []
    for future in futures:  # every one awaited, so a failure leaves no store open
        try:
            if (result := future.result()) is not None:
                opened.append(result)
        except Exception as exc:  # noqa: BLE001 - re-raised below, once the others are closed
            failures.append(exc)
    if failures:
        list(openers.map(_close, [db for _, db in opened]))
        raise failures[0]
    return opened


NO_LEADER_YET = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                 KafkaError.UNKNOWN_TOPIC_OR_PART}
"""What the broker answers for a partition of a topic created a moment ago (librdkafka does
not flag them retriable)."""


def _end_offset(consumer: Consumer, tp: TopicPartition) -> int:
    """The partition's high watermark, asked again while the broker answers with a retriable
    error (a topic created a moment ago has no leader yet: NOT_LEADER_FOR_PARTITION)."""
    deadline = time.monotonic() + BROKER_TIMEOUT_S
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=BROKER_TIMEOUT_S)[1]
        except KafkaException as exc:
            error = exc.args[0]
            if (not error.retriable() and error.code() not in NO_LEADER_YET
                    or time.monotonic() > deadline):
                raise
            time.sleep(0.1)


def _consume(consumer: Consumer, writers: dict[PartitionPlan, StoreWriter]) -> None:
    """One consumer over every partition to restore, until each reports its end."""
    consumer.assign([TopicPartition(p.topic, p.partition, p.start) for p in writers])
    by_partition = {(p.topic, p.partition): w for p, w in writers.items()}
    open_partitions = set(by_partition)
    progress = _Progress(sum(p.remaining for p in writers))
    last_arrival = time.monotonic()
    while open_partitions:
        messages = consumer.consume(num_messages=READ_BATCH, timeout=READ_WAIT_S)
        now = time.monotonic()
        if not messages:
            if now - last_arrival > BROKER_TIMEOUT_S:
                raise TimeoutError(f"no changelog record for {BROKER_TIMEOUT_S:.0f} s")
            continue
        last_arrival = now
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
                open_partitions.discard((message.topic(), message.partition()))
                continue
            by_partition[message.topic(), message.partition()].apply(
                message.offset(), message.key(), message.value())
        progress.update(len(messages), now)
    for writer in writers.values():
        writer.finish()


class _Progress:
    """A log line every PROGRESS_EVERY_S while a long restore runs."""

    def __init__(self, total: int) -> None:
        self._total, self._done = total, 0
        self._started = self._last = time.monotonic()

    def update(self, records: int, now: float) -> None:
        self._done += records
        if now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            rate = self._done / (now - self._started)
            log.info("restoring tables: %s of about %s changelog records (%s records/s)",
                     f"{self._done:,}", f"{self._total:,}", f"{rate:,.0f}")


def restore_before_start(settings: Settings, loglevel: str = "info") -> Restored | None:
    """Run the restorer for a RocksDB-backed worker; on any failure say so and leave the rest
    to Faust's own recovery (slower, never wrong): the start never fails because of it."""
    if not settings.store.startswith("rocksdb"):
        return None
    with _logging_to_stderr(loglevel):
        try:
            restored = restore_stores(settings)
        except Exception as exc:  # noqa: BLE001 - any failure falls back to Faust's recovery
            log.warning("fast restore of the tables failed (%s: %s); Faust's recovery replays "
                        "the changelogs instead (slower). If a worker still runs on %s, stop "
                        "it first.", type(exc).__name__, exc, settings.data_dir)
            return None
        if restored.records:
            log.info("restored %s changelog records into %d stores in %.1f s (%s records/s)",
                     f"{restored.records:,}", restored.stores, restored.seconds,
                     f"{restored.per_second:,.0f}")
    return restored


@contextmanager
def _logging_to_stderr(loglevel: str) -> Iterator[None]:
    """Faust sets up the worker's logging only when it starts; until then, this module's lines
    go to stderr (the worker's log) in Faust's format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] "
                                           "%(message)s"))
    level = logging.getLevelName(loglevel.upper())
    previous = (log.level, log.propagate)
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(previous[0])
        log.propagate = previous[1]
