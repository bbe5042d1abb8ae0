"""The agents: thin loops that read state, call a processor, send the decisions, write state.

the input stage (inputs) ─► device batches ─► stitch_identities (devices) ─► person batches
                                                                         ─► credit_revenue (persons)
credit_revenue ─► attribution credits, profiles, dead letters, aggregates, serving views

The input stage holds no state and runs on librdkafka in a thread (streams/intake.py); the
stateful stages are Faust agents over tables. The internal topics carry batches
(processors/messages.py): a stage sends one record per partition of the next stage for all it
forwards there. A downstream stage takes up to
RECORDS_PER_TAKE such records at a time and awaits the broker once per take, so its round
trips do not grow with the traffic. Each key always lands in the partition Kafka's default
partitioner gives it, so a table's changelog record is in the partition that owns its key.
Billing takes the device stage too (keyed by user id, forwarded untouched): the same two hops
as the touches it usually follows, so it rarely overtakes them and corrections stay rare.
Nothing waits for anything: correctness rests on event time and corrections
(processors/person.py).

Each stage waits until its outputs are delivered, then until its state changes are in the
changelog, and only then writes its local store and takes the next input
(streams/state_cache.py): a crash in between re-reads the input, steps the same state over
the same records again (a stateful stage steps each key once per record, whatever the take)
and re-sends the very same records (consumers de-duplicate them by key); a state is never ahead
of what it sent, a local store never ahead of its changelog, and an input never committed
ahead of the state it made.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable
from functools import lru_cache, partial

import faust
import mode
import orjson

from processors import messages
from processors.aggregates import windows
from processors.identity import (
    Accepted,
    Claim,
    DeviceInput,
    DeviceState,
    Duplicate,
    LinkRefused,
    SignupSeen,
    Stitched,
    TouchDropped,
    step_device,
)
from processors.person import (
    Corrected,
    DeadLetter,
    DuplicateBilling,
    LateEvent,
    MrrMovement,
    PersonState,
    Processed,
    ProfileChanged,
    step_person,
)
from processors.revenue import Credit, credit_record
from processors.touchpoints import detect_touch
from readmodels.serving_views import aggregate_writes, credit_writes, profile_writes
from schemas.contract import headers_for
from schemas.events import PageView, Signup
from streams.aggregate_store import fold_then_store
from streams.business_metrics import BusinessCollector
from streams.context import Pipeline
from streams.dead_letters import send_dead_letter, wall_ms
from streams.intake import start_intake
from streams.logs import RepeatLimiter, limit_repeated_logs
from streams.operations import Takes, broker_reachable, committed_offset
from streams.partitioner import partition_for
from streams.state_cache import CachedStates, TableWrites, TakenPartitions
from streams.views import revenue_share_of_top

BATCH_WITHIN_S = 0.01
"""How long a stage waits to fill a take: the latency it adds at low traffic."""
RECORDS_PER_TAKE = 1000
"""Internal records (each a batch) a downstream stage steps before it awaits the broker."""
STATES_CACHED = 20_000
"""Decoded device and person states kept in memory, each (streams/state_cache.py)."""
BROKER_PROBE_EVERY_S = 2.0
log = logging.getLogger(__name__)


class Outbox:
    """The batches a stage sends to the partitions of one internal topic."""

    def __init__(self, topic: faust.TopicT, partitions: int) -> None:
        self.topic, self.partitions = topic, partitions
        self.items: defaultdict[int, list[tuple[str, dict]]] = defaultdict(list)
        self.partition_of = lru_cache(maxsize=65536)(
            lambda key: partition_for(key.encode(), partitions))

    def add(self, key: str, item: dict) -> None:
        self.items[self.partition_of(key)].append((key, item))

    async def send(self, sent: list[Awaitable]) -> None:
        """Send what was added, one batch per partition; `sent` collects the deliveries."""
        items, self.items = self.items, defaultdict(list)
        for partition, batch in sorted(items.items()):
            for record in messages.encode_batch(batch):
                sent.append(await self.topic.send(value=record, partition=partition))


async def delivered(sent: list[Awaitable]) -> None:
    """Wait until every record in `sent` is acknowledged by the broker."""
    if sent:
        await asyncio.gather(*sent)
        sent.clear()


def grouped(items: list[tuple[str, dict]]) -> dict[str, list[dict]]:
    """A batch's items by key, each key's in the order they were sent."""
    by_key: dict[str, list[dict]] = defaultdict(list)
    for key, item in items:
        by_key[key].append(item)
    return by_key


def register(app: faust.App, pipeline: Pipeline) -> None:
    topics, tables, metrics = pipeline.topics, pipeline.tables, pipeline.metrics
    config, settings = pipeline.config, pipeline.settings
    names = settings.topics
    detect = partial(detect_touch, config=config.channels)
    to_persons = Outbox(topics.person_events, settings.partitions)
    devices = CachedStates(tables.devices, DeviceState.from_dict, STATES_CACHED,
                           to_persons.partition_of)
    persons = CachedStates(tables.persons, PersonState.from_dict, STATES_CACHED,
                           to_persons.partition_of)
    takes = Takes(metrics.take_seconds, committed=partial(committed_offset, app))

    dead_letter = partial(send_dead_letter, pipeline)

    async def dead_letter_failure(event: faust.EventT, exc: Exception, key: str | None = None,
                                  items: list[dict] | None = None) -> Awaitable:
        """A defect met on one record (or one key's items of a batch) dead-letters it, and the
        stream goes on."""
        msg = event.message
        log.error("processing %s[%s]@%s failed", msg.topic, msg.partition, msg.offset,
                  exc_info=exc)
        raw = orjson.dumps([key, items]) if items is not None else event.value or b""
        return await dead_letter(key.encode() if key is not None else event.key, raw, msg.topic,
                                 msg.partition, msg.offset, "processing_error",
                                 f"{type(exc).__name__}: {exc}")

    @app.service
    class InputStage(mode.Service):
        """The input stage's thread (streams/intake.py), started once the tables are
        recovered and stopped with the worker."""

        async def on_start(self) -> None:
            self._stop = start_intake(settings, config, metrics)

        async def on_stop(self) -> None:
            await asyncio.to_thread(self._stop)

    async def batch_items(events: list[faust.EventT], sent: list[Awaitable]
                          ) -> list[tuple[faust.EventT, list[tuple[str, dict]]]]:
        """Each internal record's items, by record; a record that is no batch is
        dead-lettered."""
        batches = []
        for event in events:
            try:
                batches.append((event, messages.decode_batch(orjson.loads(event.value))))
            except Exception as exc:  # noqa: BLE001 - the stream must outlive any record
                sent.append(await dead_letter_failure(event, exc))
        return batches

    @app.agent(topics.device_events, name="stitch_identities")
    async def stitch_identities(stream: faust.StreamT) -> None:
        """Each record's devices stepped in turn, but delivered once per take: under load a
        take holds many records, so the round trips to the broker do not grow with them."""
        await takes.run(stream, RECORDS_PER_TAKE, BATCH_WITHIN_S, partial(stitch_all, stream))

    async def stitch_all(stream: faust.StreamT, events: list[faust.EventT]) -> None:
        """A device is stepped once per record, never over records merged: a take is read
        again after a crash with other boundaries, and only stepping the same records from
        the same state sends the very same claims again. (A claim is sent when a person's
        share changes; merged differently, the re-read could skip a claim the lost take had
        sent, and that person would keep it.)"""
        sent: list[Awaitable] = []
        changed: dict[str, DeviceState] = {}
        for event, items in await batch_items(events, sent):
            for key, key_items in grouped(items).items():
                try:
                    before = changed.get(key) or devices.get(key)
                    state = await stitch(key, before, [messages.decode(i) for i in key_items],
                                         sent)
                    if state is not None:
                        changed[key] = state
                except Exception as exc:  # noqa: BLE001
                    sent.append(await dead_letter_failure(event, exc, key, key_items))
        await to_persons.send(sent)
        await delivered(sent)
        writes = TableWrites()
        devices.put_all(changed, writes)
        await writes.apply(TakenPartitions(stream, events))

    async def stitch(key: str, before: DeviceState | None, sourced: list,
                     sent: list[Awaitable]) -> DeviceState | None:
        """One device's events of a batch (or a user's billing, passed on); the new state, or
        None when there is nothing to write."""
        inputs = []
        for item in sourced:
            if isinstance(item.event, (PageView, Signup)):
                inputs.append(DeviceInput(item.event, item.source.origin))
            else:
                to_persons.add(key, messages.encode(item))
        if not inputs:
            return None
        state, outputs = step_device(before, inputs, anonymous_id=key, detect_touch=detect,
                                     session_timeout_ms=config.channels.session_timeout_ms,
                                     config=config.identity)
        for output in outputs:
            if isinstance(output, (Claim, SignupSeen)):
                to_persons.add(output.person_id, messages.encode(output))
            elif isinstance(output, Duplicate):
                topic = names.page_views if output.kind == "page_view" else names.signups
                (metrics.replayed if output.replay else metrics.duplicate_events).labels(
                    topic).inc()
            elif isinstance(output, Accepted):
                topic = names.page_views if output.kind == "page_view" else names.signups
                metrics.events_processed.labels(topic).inc()
            elif isinstance(output, LinkRefused):
                metrics.link_refusals.labels(output.reason).inc()
            elif isinstance(output, TouchDropped):
                metrics.touches_dropped.labels(output.reason).inc()
            elif isinstance(output, Stitched):
                metrics.touches_stitched.inc(output.count)
        return None if state is before else state

    @app.agent(topics.person_events, name="credit_revenue")
    async def credit_revenue(stream: faust.StreamT) -> None:
        """Each record's persons stepped in turn, but delivered once per take; the
        aggregates fold each record's outputs once (streams/aggregate_store.py)."""
        await takes.run(stream, RECORDS_PER_TAKE, BATCH_WITHIN_S, partial(credit_all, stream))

    async def credit_all(stream: faust.StreamT, events: list[faust.EventT]) -> None:
        sent: list[Awaitable] = []
        changed: dict[str, PersonState] = {}
        folds: defaultdict[int, list[tuple[int, list]]] = defaultdict(list)
        profiles: dict[str, dict] = {}
        for event, items in await batch_items(events, sent):
            measured: list = []
            for key, key_items in grouped(items).items():
                try:
                    before = changed.get(key) or persons.get(key)
                    state, outputs = step_person(
                        before, [messages.decode(i) for i in key_items], person_id=key,
                        config=config, now_ms=wall_ms())
                    for output in outputs:
                        await execute(key, output, sent, profiles)
                    measured.extend(outputs)
                    if state is not before:
                        changed[key] = state
                except Exception as exc:  # noqa: BLE001
                    sent.append(await dead_letter_failure(event, exc, key, key_items))
            folds[event.message.partition].append((event.message.offset, measured))
        for key, record in profiles.items():
            sent.append(await topics.profiles.send(key=key.encode(), value=orjson.dumps(record),
                                                   headers=headers_for(record["schema"])))
            pipeline.views.queue(profile_writes(record))
        await delivered(sent)
        await fold_then_store(pipeline.aggregates, folds, persons, changed,
                              TakenPartitions(stream, events))

    @app.on_partitions_revoked.connect
    async def forget_partition_state(app: faust.App, revoked, **kwargs) -> None:
        await takes.revoked(revoked)
        devices.forget()
        persons.forget()

    @app.on_partitions_assigned.connect
    async def own_partitions(app: faust.App, assigned, **kwargs) -> None:
        takes.assigned(assigned)

    async def execute(key: str, output: object, sent: list[Awaitable],
                      profiles: dict[str, dict]) -> None:
        if isinstance(output, Credit):
            if output.op == "assert" and output.revision == 1:  # a revenue event credited
                metrics.credits_emitted.labels(output.model, output.kind).inc()
            record = credit_record(output)
            sent.append(await topics.credits.send(key=key.encode(), value=orjson.dumps(record),
                                                  headers=headers_for(record["schema"])))
            if output.op == "assert":
                pipeline.views.queue(credit_writes(record))
        elif isinstance(output, ProfileChanged):
            profiles[key] = output.record  # the newest of the batch is sent
        elif isinstance(output, DeadLetter):
            source = output.message_source.source
            sent.append(await dead_letter(key.encode(), source.raw.encode(), source.topic,
                                          source.partition, source.offset, output.reason,
                                          output.message))
        elif isinstance(output, Processed):
            metrics.events_processed.labels(output.source_topic).inc()
            metrics.processing_latency.labels(output.source_topic).observe(
                max(0.0, (wall_ms() - output.event_ts) / 1000))
        elif isinstance(output, DuplicateBilling):
            (metrics.replayed if output.replay else metrics.duplicate_events).labels(
                output.source_topic).inc()
        elif isinstance(output, LinkRefused):
            metrics.link_refusals.labels(output.reason).inc()
        elif isinstance(output, Corrected):
            metrics.credit_corrections.labels(output.model, output.cause).inc()
        elif isinstance(output, LateEvent):
            metrics.late_events.labels(output.outcome).inc()
        elif isinstance(output, MrrMovement) and output.sign > 0:
            metrics.mrr_movements.labels(output.kind).inc()


def register_health(app: faust.App, pipeline: Pipeline) -> None:
    """Gauges read from the worker's own assignment, so a lost partition stops counting;
    and the serving views' write-behind."""
    metrics, tables, names = pipeline.metrics, pipeline.tables, pipeline.settings.topics
    streamed = (names.device_events, names.person_events)  # the inputs: streams/intake.py

    @app.task
    async def write_serving_views() -> None:
        await pipeline.views.run()

    @app.task
    async def keep_logs_readable() -> None:
        """Faust has set up its log handlers by now."""
        limit_repeated_logs(RepeatLimiter())

    @app.timer(interval=BROKER_PROBE_EVERY_S)
    async def probe_broker() -> None:
        reachable = await broker_reachable(pipeline.settings.kafka_bootstrap)
        if reachable != pipeline.status.broker_reachable:
            (log.info if reachable else log.error)(
                "the broker at %s is %s", pipeline.settings.kafka_bootstrap,
                "reachable again" if reachable else "unreachable: not ready until it returns")
        pipeline.status.broker_reachable = reachable
        metrics.broker_up.set(1 if reachable else 0)

    @app.timer(interval=5.0)
    async def measure_lag() -> None:
        lag = dict.fromkeys(streamed, 0)  # a partition lost stops counting
        for tp in app.consumer.assignment():
            if tp.topic not in lag:
                continue
            end, done = app.consumer.highwater(tp), committed_offset(app, tp)
            if end is not None:
                lag[tp.topic] += max(0, end - (done or 0))
        for topic, behind in lag.items():
            metrics.consumer_lag.labels(topic).set(behind)

    def owned_person_partitions() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment()
                if tp.topic == names.person_events}

    metrics.registry.register(BusinessCollector(
        pipeline.owned_aggregates, pipeline.config.attribution.models,
        pipeline.config.attribution.reporting_currency, owned_person_partitions))

    @app.timer(interval=5.0)
    async def publish_reports() -> None:
        """Each owned partition's windows to Redis, ending at one common time so readers can
        add partitions up (processors/aggregates.py `windows`)."""
        states = dict(zip(sorted(owned_person_partitions()),
                          pipeline.owned_aggregates(owned_person_partitions()), strict=True))
        clocks = [s.clock_ms for s in states.values() if s.clock_ms is not None]
        for partition, state in states.items():
            if state.clock_ms is not None:
                pipeline.views.queue(aggregate_writes(
                    partition, windows(state, clock_ms=max(clocks))))

    @app.timer(interval=30.0)
    async def measure_revenue_concentration() -> None:
        """Share of revenue from the top 20 % of customers, from the Redis leaderboard (every
        worker sees all persons there; a ratio is not additive across workers)."""
        share = await revenue_share_of_top(pipeline.views.client, 0.2)
        if share is not None:
            metrics.top_customers_revenue_share.set(share)

    @app.timer(interval=30.0)
    async def measure_tables() -> None:
        for name in ("devices", "persons"):
            metrics.table_keys.labels(name).set(_keys_in(getattr(tables, name)))



def _keys_in(table: faust.Table) -> int:
    """Keys in the table's active partitions; RocksDB's own estimate where it is the store:
    counting them would scan every key and stop the streams for seconds at a million persons."""
    active_dbs = getattr(table.data, "_dbs_for_actives", None)  # Faust's RocksDB store
    if active_dbs is None:
        return len(table)
    return sum(db.property_int_value("rocksdb.estimate-num-keys") or 0 for db in active_dbs())
