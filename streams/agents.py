"""The agents: thin loops that read state, call a processor, write state, send the decisions.

validate_events (inputs) ─► device events (key anonymous_id) ─► stitch_identities (devices)
                        └─► person events  (key user_id)  ◄────────┘
person events ─► credit_revenue (persons) ─► attribution credits, profiles, dead letters

Touch watermarks (processors/watermarks.py) ride the same two internal topics, sent to every
partition behind the records they cover; they carry no key.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from functools import partial

import faust
import orjson

from processors import messages
from processors.aggregates import windows
from processors.dead_letters import dead_letter_record
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
from streams.views import revenue_share_of_top

WATERMARK_INTERVAL_S = 0.05
log = logging.getLogger(__name__)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def register(app: faust.App, pipeline: Pipeline) -> None:
    topics, tables, metrics = pipeline.topics, pipeline.tables, pipeline.metrics
    config, settings = pipeline.config, pipeline.settings
    names = settings.topics
    kind_of_topic = {names.page_views: "page_view", names.signups: "signup",
                     names.billing: "billing"}
    touch_topics = (names.page_views, names.signups)
    detect = partial(detect_touch, config=config.channels)

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

    @asynccontextmanager
    async def failures_dead_lettered(event: faust.EventT):
        """A defect met on one record dead-letters that record and the stream goes on."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - the stream must outlive any one record
            msg = event.message
            log.exception("processing %s[%s]@%s failed", msg.topic, msg.partition, msg.offset)
            await dead_letter(event.key, event.value or b"", msg.topic, msg.partition,
                              msg.offset, "processing_error", f"{type(exc).__name__}: {exc}")

    async def broadcast_input_marks() -> None:
        """Send this worker's input marks to every device partition, behind what it forwarded."""
        last_broadcast[0] = time.monotonic()
        marks = {}
        for tp in app.consumer.assignment():
            if tp.topic in touch_topics:
                name = f"{tp.topic}:{tp.partition}"
                position = next_offset.get(name, _committed(app, tp) or 0)
                marks[name] = input_mark(newest_ts.get(name), position,
                                         app.consumer.highwater(tp))
        expected = sum(app.consumer.topic_partitions(t) or settings.partitions
                       for t in touch_topics)
        record = orjson.dumps({"k": "wm", "marks": marks, "expected": expected,
                               "at": wall_ms()})
        for partition in range(settings.partitions):
            await topics.device_events.send(value=record, partition=partition)

    @app.agent(topics.inputs, name="validate_events")
    async def validate_events(stream: faust.StreamT) -> None:
        """Decode and validate; valid events are re-keyed with Faust's partitioner."""
        async for event in stream.events():
            async with failures_dead_lettered(event):
                msg = event.message
                raw = event.value or b""
                metrics.events_consumed.labels(msg.topic).inc()
                result = decode(raw, kind_of_topic[msg.topic], now_ms=wall_ms(),
                                config=config.validation)
                if isinstance(result, Rejection):
                    await dead_letter(event.key, raw, msg.topic, msg.partition, msg.offset,
                                      result.reason, result.message)
                else:
                    source = messages.Source(msg.topic, msg.partition, msg.offset, raw.decode(),
                                             validated_at_ms=wall_ms())
                    record = orjson.dumps(messages.encode(messages.Sourced(result, source)))
                    if msg.topic in touch_topics:
                        await topics.device_events.send(key=result.anonymous_id.encode(),
                                                        value=record)
                        name = f"{msg.topic}:{msg.partition}"
                        newest_ts[name] = max(newest_ts.get(name, result.ts), result.ts)
                    else:
                        await topics.person_events.send(key=result.user_id.encode(), value=record)
                next_offset[f"{msg.topic}:{msg.partition}"] = msg.offset + 1
                if time.monotonic() - last_broadcast[0] >= WATERMARK_INTERVAL_S:
                    await broadcast_input_marks()

    @app.timer(interval=WATERMARK_INTERVAL_S * 4)
    async def broadcast_when_idle() -> None:
        if time.monotonic() - last_broadcast[0] >= WATERMARK_INTERVAL_S * 4:
            await broadcast_input_marks()

    @app.agent(topics.device_events, name="stitch_identities")
    async def stitch_identities(stream: faust.StreamT) -> None:
        async for event in stream.events():
            async with failures_dead_lettered(event):
                data = orjson.loads(event.value)
                if data["k"] == "wm":
                    await forward_marks(event.message.partition, data)
                    continue
                sourced = messages.decode(data)
                stored = tables.devices.get(event.key)
                state = DeviceState.from_dict(orjson.loads(stored)) if stored else None
                state, outputs = step_device(state, sourced.event, detect_touch=detect,
                                             config=config.identity, origin=sourced.source.origin)
                duplicate = False
                for output in outputs:
                    if isinstance(output, Duplicate):
                        duplicate = True
                        if output.replay:
                            metrics.replayed.labels(sourced.source.topic).inc()
                            continue
                        await dead_letter_source(event.key, sourced.source, "duplicate_event_id",
                                                 f"event_id {output.event_id!r} was already "
                                                 "processed")
                    elif isinstance(output, LinkRefused):
                        metrics.link_refusals.labels(output.reason).inc()
                    elif isinstance(output, TouchDropped):
                        metrics.touches_dropped.labels(output.reason).inc()
                    else:
                        if isinstance(output, StitchedTouch):
                            metrics.touches_stitched.inc()
                        await topics.person_events.send(
                            key=output.person_id.encode(),
                            value=orjson.dumps(messages.encode(output)))
                if not duplicate:
                    metrics.events_processed.labels(sourced.source.topic).inc()
                    # State last: if it is durable, the outputs sent before it are too.
                    tables.devices[event.key] = orjson.dumps(state.to_dict())

    async def forward_marks(device_partition: int, data: dict) -> None:
        view = device_views.setdefault(device_partition, {})
        view.update({name: (mark, data["at"]) for name, mark in data["marks"].items()})
        low = low_watermark({name: mark for name, (mark, _) in view.items()}, data["expected"])
        fresh = min(at for _, at in view.values()) if view else 0
        record = orjson.dumps({"k": "wm", "q": device_partition, "upto": low, "fresh": fresh})
        for partition in range(settings.partitions):
            await topics.person_events.send(value=record, partition=partition)

    @app.agent(topics.person_events, name="credit_revenue")
    async def credit_revenue(stream: faust.StreamT) -> None:
        async for event in stream.events():
            async with failures_dead_lettered(event):
                data = orjson.loads(event.value)
                partition, offset = event.message.partition, event.message.offset
                if data["k"] == "wm":
                    await advance_watermark(partition, offset, data["q"],
                                            Watermark(data["upto"], data["fresh"]))
                    continue
                await step(event.key, messages.decode(data), partition, offset)

    async def step(key: bytes, message: messages.PersonMessage, partition: int,
                   offset: int) -> None:
        stored = tables.persons.get(key)
        before = PersonState.from_dict(orjson.loads(stored)) if stored else None
        watermark = person_marks.get(partition, NO_WATERMARK)
        state, outputs = step_person(before, message, person_id=key.decode(), config=config,
                                     watermark=watermark)
        for output in outputs:
            await execute(key, output, partition)
        pipeline.aggregates.fold(partition, offset, key.decode(), outputs)
        # The index of waiting persons follows the state, written right before it.
        if state.held:
            waiting_ts = state.held[0].message.event.ts
            tables.held_revenue[key] = orjson.dumps([partition, waiting_ts])
            held_index(partition)[key] = waiting_ts
        elif before is not None and before.held:
            tables.held_revenue.pop(key, None)
            held_index(partition).pop(key, None)
        tables.persons[key] = orjson.dumps(state.to_dict())  # last, as in stitch_identities

    held_by_partition: dict[int, dict[bytes, int]] = {}

    def held_index(partition: int) -> dict[bytes, int]:
        """Persons of a partition with billing waiting, by its event time: read from the table
        once after each rebalance, then kept beside it (the table is scanned no more)."""
        if partition not in held_by_partition:
            held_by_partition[partition] = {
                key: ts for key, (held_partition, ts) in
                ((key, orjson.loads(value)) for key, value in tables.held_revenue.items())
                if held_partition == partition}
        return held_by_partition[partition]

    @app.on_partitions_revoked.connect
    async def forget_held_index(app: faust.App, revoked, **kwargs) -> None:
        held_by_partition.clear()

    async def advance_watermark(partition: int, offset: int, device_partition: int,
                                view: Watermark) -> None:
        """Release the persons of this partition whose held billing the watermark has passed;
        when revenue has waited `watermark_stall_ms` without the watermark moving, all of it."""
        views = person_views.setdefault(partition, {})
        views[device_partition] = view
        mark = person_watermark(views, settings.partitions)
        previous = person_marks.get(partition, NO_WATERMARK)
        person_marks[partition] = mark
        now = time.monotonic()
        if mark.upto_ms != previous.upto_ms and partition in waiting_since:
            waiting_since[partition] = now
        stalled = now - waiting_since.get(partition, now) >= config.watermark_stall_ms / 1000
        if stalled:
            mark = ANY_TIME
        waiting = [key for key, ts in held_index(partition).items() if ts <= mark.upto_ms]
        if stalled:
            waiting_since.pop(partition)
            if waiting:
                metrics.watermark_stalls.inc()
        for key in waiting:
            try:
                await step(key, messages.ReleaseHeld(key.decode(), mark.upto_ms,
                                                     mark.fresh_ms), partition, offset)
            except Exception:  # noqa: BLE001 - one person must not stop the others
                # Out of the index until the next restart: retrying at every watermark would
                # repeat whatever the failed step already sent.
                log.exception("releasing the held billing of %r failed", key)
                metrics.dead_letters.labels(names.person_events, "processing_error").inc()
                held_index(partition).pop(key, None)

    async def execute(key: bytes, output: object, partition: int) -> None:
        if isinstance(output, Credit):
            metrics.credits_emitted.labels(output.model, output.kind).inc()
            record = credit_record(output)
            await topics.credits.send(key=key, value=orjson.dumps(record))
            pipeline.views.queue(credit_writes(record))
        elif isinstance(output, ProfileChanged):
            await topics.profiles.send(key=key, value=orjson.dumps(output.record))
            pipeline.views.queue(profile_writes(output.record))
        elif isinstance(output, DeadLetter):
            await dead_letter_source(key, output.source, output.reason, output.message)
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
            waiting_since.setdefault(partition, time.monotonic())
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
            metrics.table_keys.labels(name).set(len(getattr(tables, name)))


def _committed(app: faust.App, tp) -> int | None:
    """The group's committed offset of `tp` as the consumer learnt it at assignment (None
    when the group has none: it then starts from the earliest offset)."""
    return app.consumer._committed_offset.get(tp)  # Faust keeps it; there is no public getter
