"""The agents: thin loops that read state, call a processor, write state, send the decisions.

validate_events (inputs) ─► device batches (by anonymous_id) ─► stitch_identities (devices)
                        └─► person batches (by user_id)  ◄────────────┘
person batches ─► credit_revenue (persons) ─► attribution credits, profiles, dead letters

The internal topics carry batches (processors/messages.py `Batch`): a stage sends one record
per partition of the next stage for all it forwards there, and the next stage writes each
changed key's state once per batch. Each key always lands in the partition Kafka's default
partitioner gives it, so a table's changelog record is in the partition that owns its key.
Touch watermarks (processors/watermarks.py) ride in the batches behind the records they cover.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from functools import lru_cache, partial

import faust
import orjson

from personify.partitioner import partition_for
from processors import messages
from processors.aggregates import windows
from processors.dead_letters import dead_letter_record
from processors.held_index import HeldIndex, Waiting
from processors.identity import (
    DeviceState,
    Duplicate,
    LinkRefused,
    StitchedTouch,
    TouchDropped,
    step_device,
)
from processors.person import (
    DeadLetter,
    HoldEnded,
    HoldStarted,
    LateTouch,
    PersonState,
    Processed,
    ProfileChanged,
    Replayed,
    step_person,
)
from processors.revenue import Credit, MrrMovement, credit_record
from processors.touchpoints import detect_touch
from processors.validation import Rejection, decode
from processors.views import aggregate_writes, credit_writes, profile_writes
from processors.watermarks import (
    ANY_TIME,
    NO_WATERMARK,
    Watermark,
    input_mark,
    low_watermark,
    person_watermark,
)
from streams.business_metrics import BusinessCollector
from streams.context import Pipeline
from streams.state_cache import CachedStates
from streams.views import revenue_share_of_top

BATCH_MAX_EVENTS = 2000
"""Input events validated per batch, at most."""
BATCH_WITHIN_S = 0.01
"""How long the validating stage waits to fill a batch: the latency it adds at low traffic."""
WATERMARK_INTERVAL_S = 0.025
"""A partition that gets no records from a source is sent its watermark alone at most this
often (revenue waits for the watermarks of every source)."""
STATES_CACHED = 20_000
"""Decoded device and person states kept in memory, each (streams/state_cache.py)."""
IDLE_BROADCAST_S = 0.2
"""While no input arrives, the validating stage still sends its marks this often."""
log = logging.getLogger(__name__)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Outbox:
    """The batches a stage sends to the partitions of one internal topic."""

    def __init__(self, topic: faust.TopicT, partitions: int) -> None:
        self.topic, self.partitions = topic, partitions
        self.items: defaultdict[int, list[tuple[str, dict]]] = defaultdict(list)
        self.last_sent: dict[tuple[int, int], float] = {}
        self.partition_of = lru_cache(maxsize=65536)(
            lambda key: partition_for(key.encode(), partitions))

    def add(self, key: str, item: dict) -> None:
        self.items[self.partition_of(key)].append((key, item))

    async def send(self, mark: dict | None, source: int = 0) -> None:
        """Every partition with records gets them (and `mark`, the watermark of `source`); the
        others get `mark` alone when they have not heard from `source` for
        `WATERMARK_INTERVAL_S`."""
        now = time.monotonic()
        for partition in range(self.partitions):
            items = self.items.pop(partition, None)
            last = self.last_sent.get((source, partition), 0.0)
            if not items and (mark is None or now - last < WATERMARK_INTERVAL_S):
                continue
            self.last_sent[source, partition] = now
            for record in messages.encode_batch(messages.Batch(items or [], mark)):
                await self.topic.send(value=record, partition=partition)



def register(app: faust.App, pipeline: Pipeline) -> None:
    topics, tables, metrics = pipeline.topics, pipeline.tables, pipeline.metrics
    config, settings = pipeline.config, pipeline.settings
    names = settings.topics
    kind_of_topic = {names.page_views: "page_view", names.signups: "signup",
                     names.billing: "billing"}
    touch_topics = (names.page_views, names.signups)
    detect = partial(detect_touch, config=config.channels)
    to_devices = Outbox(topics.device_events, settings.partitions)
    to_persons = Outbox(topics.person_events, settings.partitions)
    from_devices = Outbox(topics.person_events, settings.partitions)
    devices = CachedStates(tables.devices, DeviceState.from_dict, STATES_CACHED)
    persons = CachedStates(tables.persons, PersonState.from_dict, STATES_CACHED)

    # Process-local progress of the inputs this worker validates, and the watermark views of
    # the internal partitions it owns; all rebuilt from the streams after a restart.
    newest_ts: dict[str, int] = {}
    next_offset: dict[str, int] = {}
    device_views: dict[int, dict[str, tuple[int | None, int]]] = {}
    person_views: dict[int, dict[int, Watermark]] = {}
    person_marks: dict[int, Watermark] = {}
    waiting_since: dict[int, float] = {}
    """Per person partition, since when revenue has waited without the watermark moving."""
    last_broadcast = [0.0]
    in_batch = [False]
    """Whether validate_events is between reading a batch and sending it all."""

    async def dead_letter(key: bytes | None, raw: bytes, topic: str, partition: int, offset: int,
                          reason: str, message: str) -> None:
        metrics.dead_letters.labels(topic, reason).inc()
        record = dead_letter_record(raw=raw, topic=topic, partition=partition, offset=offset,
                                    reason=reason, message=message, ts_ms=wall_ms())
        await topics.dead_letters.send(key=key, value=orjson.dumps(record))

    async def dead_letter_source(key: bytes, source: messages.Source, reason: str,
                                 message: str) -> None:
        await dead_letter(key, source.raw.encode(), source.topic, source.partition, source.offset,
                          reason, message)

    async def dead_letter_failure(event: faust.EventT, exc: Exception,
                                  key: str | None = None, item: dict | None = None) -> None:
        """A defect met on one record (or one item of a batch) dead-letters it, and the stream
        goes on."""
        msg = event.message
        log.error("processing %s[%s]@%s failed", msg.topic, msg.partition, msg.offset,
                  exc_info=exc)
        raw = orjson.dumps(item) if item is not None else event.value or b""
        await dead_letter(key.encode() if key is not None else event.key, raw, msg.topic,
                          msg.partition, msg.offset, "processing_error",
                          f"{type(exc).__name__}: {exc}")

    def input_marks(progress: dict[str, int], newest: dict[str, int]) -> dict:
        """This worker's input marks: how far each page-view and signup partition it reads has
        been forwarded, counting a batch's `progress` and `newest` event times (for a batch
        whose records travel with these marks)."""
        marks, at = {}, wall_ms()
        for tp in app.consumer.assignment():
            if tp.topic in touch_topics:
                name = f"{tp.topic}:{tp.partition}"
                position = progress.get(name, next_offset.get(name, _committed(app, tp) or 0))
                ts = max(newest[name], newest_ts.get(name, newest[name])) if name in newest \
                    else newest_ts.get(name)
                marks[name] = input_mark(ts, position, app.consumer.highwater(tp))
                if marks[name] is None:  # "idle" holds as of the fetch that saw the end
                    at = min(at, _last_fetched_ms(app, tp))
        expected = sum(app.consumer.topic_partitions(t) or settings.partitions
                       for t in touch_topics)
        return {"marks": marks, "expected": expected, "at": at}

    @app.agent(topics.inputs, name="validate_events")
    async def validate_events(stream: faust.StreamT) -> None:
        """Decode and validate a batch of inputs; forward the valid events in batches. (No
        table is written here: Faust refuses table writes inside `take`.)"""
        async for events in stream.take_events(BATCH_MAX_EVENTS, within=BATCH_WITHIN_S):
            in_batch[0] = True
            try:
                await validate_batch(events)
            finally:
                in_batch[0] = False

    async def validate_batch(events: list[faust.EventT]) -> None:
        progress: dict[str, int] = {}
        newest: dict[str, int] = {}
        for event in events:
            try:
                await validate(event, newest)
            except Exception as exc:  # noqa: BLE001 - the stream must outlive any record
                await dead_letter_failure(event, exc)
            msg = event.message
            progress[f"{msg.topic}:{msg.partition}"] = msg.offset + 1
        last_broadcast[0] = time.monotonic()
        await to_persons.send(None)
        # The marks ride with the records they cover; the shared progress moves only once all
        # are sent, so an idle broadcast meanwhile never runs ahead of them.
        await to_devices.send(input_marks(progress, newest))
        for name, ts in newest.items():
            newest_ts[name] = max(newest_ts.get(name, ts), ts)
        next_offset.update(progress)

    async def validate(event: faust.EventT, newest: dict[str, int]) -> None:
        msg = event.message
        raw = event.value or b""
        metrics.events_consumed.labels(msg.topic).inc()
        result = decode(raw, kind_of_topic[msg.topic], now_ms=wall_ms(),
                        config=config.validation)
        if isinstance(result, Rejection):
            await dead_letter(event.key, raw, msg.topic, msg.partition, msg.offset,
                              result.reason, result.message)
            return
        source = messages.Source(msg.topic, msg.partition, msg.offset, raw.decode(),
                                 validated_at_ms=wall_ms())
        record = messages.encode(messages.Sourced(result, source))
        if msg.topic in touch_topics:
            to_devices.add(result.anonymous_id, record)
            name = f"{msg.topic}:{msg.partition}"
            newest[name] = max(newest.get(name, result.ts), result.ts)
        else:
            to_persons.add(result.user_id, record)

    @app.timer(interval=IDLE_BROADCAST_S)
    async def broadcast_when_idle() -> None:
        if not in_batch[0] and time.monotonic() - last_broadcast[0] >= IDLE_BROADCAST_S:
            last_broadcast[0] = time.monotonic()
            await to_devices.send(input_marks({}, {}))

    @app.agent(topics.device_events, name="stitch_identities")
    async def stitch_identities(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                batch = messages.decode_batch(orjson.loads(event.value))
            except Exception as exc:  # noqa: BLE001 - the stream must outlive any record
                await dead_letter_failure(event, exc)
                continue
            states: dict[str, DeviceState | None] = {}
            changed: set[str] = set()
            for key, item in batch.items:
                try:
                    if key not in states:
                        states[key] = devices.get(key)
                    state = await stitch(key, messages.decode(item), states[key])
                    if state is not None:
                        states[key] = state
                        changed.add(key)
                except Exception as exc:  # noqa: BLE001
                    await dead_letter_failure(event, exc, key, item)
            mark = forwarded_mark(event.message.partition, batch.mark)
            await from_devices.send(mark, source=event.message.partition)
            for key in changed:  # last: the outputs sent before are then durable too
                devices.put(key, states[key])

    async def stitch(key: str, sourced: messages.Sourced,
                     state: DeviceState | None) -> DeviceState | None:
        """One device event; the new state, or None for a duplicate (nothing to write)."""
        state, outputs = step_device(state, sourced.event, detect_touch=detect,
                                     config=config.identity, origin=sourced.source.origin)
        duplicate = False
        for output in outputs:
            if isinstance(output, Duplicate):
                duplicate = True
                if output.replay:
                    metrics.replayed.labels(sourced.source.topic).inc()
                    continue
                await dead_letter_source(key.encode(), sourced.source, "duplicate_event_id",
                                         f"event_id {output.event_id!r} was already processed")
            elif isinstance(output, LinkRefused):
                metrics.link_refusals.labels(output.reason).inc()
            elif isinstance(output, TouchDropped):
                metrics.touches_dropped.labels(output.reason).inc()
            else:
                if isinstance(output, StitchedTouch):
                    metrics.touches_stitched.inc()
                from_devices.add(output.person_id, messages.encode(output))
        if duplicate:
            return None
        metrics.events_processed.labels(sourced.source.topic).inc()
        return state

    def forwarded_mark(device_partition: int, mark: dict | None) -> dict | None:
        """This device partition's view of the inputs, for the person partitions."""
        if mark is None:
            return None
        view = device_views.setdefault(device_partition, {})
        view.update({name: (value, mark["at"]) for name, value in mark["marks"].items()})
        low = low_watermark({name: value for name, (value, _) in view.items()},
                            mark["expected"])
        fresh = min(at for _, at in view.values()) if view else 0
        return {"q": device_partition, "upto": low, "fresh": fresh}

    @app.agent(topics.person_events, name="credit_revenue")
    async def credit_revenue(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                batch = messages.decode_batch(orjson.loads(event.value))
            except Exception as exc:  # noqa: BLE001 - the stream must outlive any record
                await dead_letter_failure(event, exc)
                continue
            step = PersonSteps(event.message.partition)
            for key, item in batch.items:
                try:
                    await step.run(key, messages.decode(item))
                except Exception as exc:  # noqa: BLE001
                    await dead_letter_failure(event, exc, key, item)
            if batch.mark is not None:
                await advance_watermark(step, batch.mark["q"],
                                        Watermark(batch.mark["upto"], batch.mark["fresh"]))
            await step.finish(event.message.offset)

    class PersonSteps:
        """The person steps of one person-events record: each person's state is read once and
        written once, after the outputs and the aggregates (in `finish`)."""

        def __init__(self, partition: int) -> None:
            self.partition = partition
            self.before: dict[str, PersonState | None] = {}
            self.states: dict[str, PersonState] = {}
            self.outputs: list = []
            self.profiles: dict[str, dict] = {}

        async def run(self, key: str, message: messages.PersonMessage) -> None:
            if key not in self.before:
                self.before[key] = persons.get(key)
            current = self.states.get(key, self.before[key])
            watermark = person_marks.get(self.partition, NO_WATERMARK)
            state, outputs = step_person(current, message, person_id=key, config=config,
                                         watermark=watermark)
            for output in outputs:
                await execute(key, output, self)
            self.outputs.extend(outputs)
            self.states[key] = state

        async def finish(self, offset: int) -> None:
            for key, record in self.profiles.items():
                await topics.profiles.send(key=key.encode(), value=orjson.dumps(record))
                pipeline.views.queue(profile_writes(record))
            pipeline.aggregates.fold(self.partition, offset, self.outputs)
            index = held_index(self.partition)
            for key, state in self.states.items():  # the index of waiting persons follows
                before = self.before[key]
                if state.held:
                    oldest = state.held[0].message
                    waiting = Waiting(oldest.event.ts, oldest.source.validated_at_ms)
                    tables.held_revenue[key.encode()] = orjson.dumps(
                        [self.partition, waiting.event_ts, waiting.validated_at_ms])
                    index.set(key.encode(), waiting)
                elif before is not None and before.held:
                    tables.held_revenue.pop(key.encode(), None)
                    index.discard(key.encode())
            for key, state in self.states.items():  # last, as in stitch_identities
                persons.put(key, state)

    held_by_partition: dict[int, HeldIndex] = {}

    def held_index(partition: int) -> HeldIndex:
        """Persons of a partition with billing waiting: read from the table once after each
        rebalance, then kept beside it (the table is scanned no more)."""
        if partition not in held_by_partition:
            held_by_partition[partition] = HeldIndex({
                key: Waiting(ts, validated_at) for key, (held_partition, ts, validated_at) in
                ((key, orjson.loads(value)) for key, value in tables.held_revenue.items())
                if held_partition == partition})
        return held_by_partition[partition]

    @app.on_partitions_revoked.connect
    async def forget_partition_state(app: faust.App, revoked, **kwargs) -> None:
        held_by_partition.clear()
        devices.forget()
        persons.forget()

    async def advance_watermark(step: PersonSteps, device_partition: int,
                                view: Watermark) -> None:
        """Release the persons of this partition whose held billing the watermark has passed;
        when revenue has waited `watermark_stall_ms` without the watermark moving, all of it."""
        partition = step.partition
        views = person_views.setdefault(partition, {})
        views[device_partition] = view
        mark = person_watermark(views, settings.partitions)
        previous = person_marks.get(partition, NO_WATERMARK)
        person_marks[partition] = mark
        now = time.monotonic()
        if mark.upto_ms != previous.upto_ms and partition in waiting_since:
            waiting_since[partition] = now
        stalled = now - waiting_since.get(partition, now) >= config.watermark_stall_ms / 1000
        if mark == previous and not stalled:
            return  # whatever waits, waited for this very watermark already
        if stalled:
            mark = ANY_TIME
        waiting = held_index(partition).due(mark)
        if stalled:
            waiting_since.pop(partition)
            if waiting:
                metrics.watermark_stalls.inc()
        for key in waiting:
            try:
                await step.run(key.decode(), messages.ReleaseHeld(key.decode(), mark.upto_ms,
                                                                  mark.fresh_ms))
            except Exception:  # noqa: BLE001 - one person must not stop the others
                # Out of the index (`due` took it out) until the next restart: retrying at
                # every watermark would repeat whatever the failed step already sent.
                log.exception("releasing the held billing of %r failed", key)
                metrics.dead_letters.labels(names.person_events, "processing_error").inc()

    async def execute(key: str, output: object, step: PersonSteps) -> None:
        if isinstance(output, Credit):
            metrics.credits_emitted.labels(output.model, output.kind).inc()
            record = credit_record(output)
            await topics.credits.send(key=key.encode(), value=orjson.dumps(record))
            pipeline.views.queue(credit_writes(record))
        elif isinstance(output, ProfileChanged):
            step.profiles[key] = output.record  # the newest of the batch is sent in `finish`
        elif isinstance(output, DeadLetter):
            await dead_letter_source(key.encode(), output.source, output.reason, output.message)
        elif isinstance(output, Processed):
            metrics.events_processed.labels(output.source_topic).inc()
            metrics.processing_latency.labels(output.source_topic).observe(
                max(0.0, (wall_ms() - output.event_ts) / 1000))
        elif isinstance(output, LinkRefused):
            metrics.link_refusals.labels(output.reason).inc()
        elif isinstance(output, Replayed):
            metrics.replayed.labels(output.source_topic).inc()
        elif isinstance(output, LateTouch):
            metrics.late_touches.inc()
        elif isinstance(output, HoldStarted):
            metrics.revenue_held.inc()
            waiting_since.setdefault(step.partition, time.monotonic())
        elif isinstance(output, HoldEnded):
            metrics.revenue_released.inc(output.count)
        elif isinstance(output, MrrMovement):
            metrics.mrr_movements.labels(output.kind).inc()


def register_health(app: faust.App, pipeline: Pipeline) -> None:
    """Gauges read from the worker's own assignment, so a lost partition stops counting;
    and the serving views' write-behind."""
    metrics, tables, names = pipeline.metrics, pipeline.tables, pipeline.settings.topics
    streamed = {*names.inputs(), names.device_events, names.person_events}

    @app.task
    async def write_serving_views() -> None:
        await pipeline.views.run()

    @app.timer(interval=5.0)
    async def measure_lag() -> None:
        lag: dict[str, int] = {}
        for tp in app.consumer.assignment():
            if tp.topic not in streamed:
                continue
            end, done = app.consumer.highwater(tp), _committed(app, tp)
            if end is not None:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, end - (done or 0))
        metrics.consumer_lag.clear()
        for topic, behind in lag.items():
            metrics.consumer_lag.labels(topic).set(behind)

    def owned_person_partitions() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment()
                if tp.topic == names.person_events}

    metrics.registry.register(BusinessCollector(
        pipeline.aggregates, pipeline.config.attribution.models,
        pipeline.config.attribution.reporting_currency, owned_person_partitions))

    @app.timer(interval=5.0)
    async def publish_reports() -> None:
        """Each owned partition's windows to Redis, ending at one common time so readers can
        add partitions up (processors/aggregates.py `windows`)."""
        states = dict(zip(sorted(owned_person_partitions()),
                          pipeline.aggregates.keep_only(owned_person_partitions()), strict=True))
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
        for name in ("devices", "persons", "held_revenue"):
            metrics.table_keys.labels(name).set(_keys_in(getattr(tables, name)))


def _committed(app: faust.App, tp) -> int | None:
    """The group's committed offset of `tp` as the consumer learnt it at assignment (None
    when the group has none: it then starts from the earliest offset)."""
    return app.consumer._committed_offset.get(tp)  # Faust keeps it; there is no public getter


def _last_fetched_ms(app: faust.App, tp) -> int:
    """Wall-clock time of the fetch response that last told the end offset of `tp` (0 when
    none has yet): an input partition is known to be consumed to its end only as of then."""
    try:
        consumer = app.consumer._thread._ensure_consumer()  # aiokafka's; Faust hides it
        return consumer.last_poll_timestamp(tp) or 0
    except Exception:  # noqa: BLE001 - a partition being revoked: not known to be idle now
        return 0


def _keys_in(table: faust.Table) -> int:
    """Keys in the table's active partitions; RocksDB's own estimate where it is the store:
    counting them would scan every key and stop the streams for seconds at a million persons."""
    active_dbs = getattr(table.data, "_dbs_for_actives", None)  # Faust's RocksDB store
    if active_dbs is None:
        return len(table)
    return sum(db.property_int_value("rocksdb.estimate-num-keys") or 0 for db in active_dbs())
