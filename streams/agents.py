"""The agents: thin loops that read state, call a processor, write state, send the decisions.

validate_events (inputs) ─► device events (key anonymous_id) ─► stitch_identities (devices)
                        └─► person events  (key user_id)  ◄────────┘
person events ─► credit_revenue (persons) ─► attribution credits, profiles, dead letters
"""

from __future__ import annotations

import time
from functools import partial

import faust
import orjson

from processors import messages
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
    hold_expired,
    step_person,
)
from processors.revenue import Credit, MrrMovement, credit_record
from processors.touchpoints import detect_touch
from processors.validation import Rejection, decode
from streams.context import Pipeline


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def register(app: faust.App, pipeline: Pipeline) -> None:
    topics, tables, metrics = pipeline.topics, pipeline.tables, pipeline.metrics
    config = pipeline.config
    names = pipeline.settings.topics
    kind_of_topic = {names.page_views: "page_view", names.signups: "signup",
                     names.billing: "billing"}
    detect = partial(detect_touch, config=config.channels)

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

    @app.agent(topics.inputs, name="validate_events")
    async def validate_events(stream: faust.StreamT) -> None:
        """Decode and validate; valid events are re-keyed with Faust's partitioner."""
        async for event in stream.events():
            msg = event.message
            raw = event.value or b""
            metrics.events_consumed.labels(msg.topic).inc()
            result = decode(raw, kind_of_topic[msg.topic], now_ms=wall_ms(),
                            config=config.validation)
            if isinstance(result, Rejection):
                await dead_letter(event.key, raw, msg.topic, msg.partition, msg.offset,
                                  result.reason, result.message)
                continue
            source = messages.Source(msg.topic, msg.partition, msg.offset, raw.decode())
            record = orjson.dumps(messages.encode(messages.Sourced(result, source)))
            if hasattr(result, "anonymous_id"):
                await topics.device_events.send(key=result.anonymous_id.encode(), value=record)
            else:
                await topics.person_events.send(key=result.user_id.encode(), value=record)

    @app.agent(topics.device_events, name="stitch_identities")
    async def stitch_identities(stream: faust.StreamT) -> None:
        async for event in stream.events():
            sourced = messages.decode(orjson.loads(event.value))
            stored = tables.devices.get(event.key)
            state = DeviceState.from_dict(orjson.loads(stored)) if stored else None
            state, outputs = step_device(state, sourced.event, detect_touch=detect,
                                         config=config.identity)
            tables.devices[event.key] = orjson.dumps(state.to_dict())
            duplicate = False
            for output in outputs:
                if isinstance(output, Duplicate):
                    duplicate = True
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

    @app.agent(topics.person_events, name="credit_revenue")
    async def credit_revenue(stream: faust.StreamT) -> None:
        async for event in stream.events():
            person_id = event.key.decode()
            message = messages.decode(orjson.loads(event.value))
            stored = tables.persons.get(event.key)
            state = PersonState.from_dict(orjson.loads(stored)) if stored else None
            state, outputs = step_person(state, message, person_id=person_id, config=config,
                                         now_ms=wall_ms())
            tables.persons[event.key] = orjson.dumps(state.to_dict())
            for output in outputs:
                await _execute(event.key, output)

    async def _execute(key: bytes, output: object) -> None:
        if isinstance(output, Credit):
            metrics.credits_emitted.labels(output.model, output.kind).inc()
            await topics.credits.send(key=key, value=orjson.dumps(credit_record(output)))
        elif isinstance(output, ProfileChanged):
            await topics.profiles.send(key=key, value=orjson.dumps(output.record))
        elif isinstance(output, DeadLetter):
            await dead_letter_source(key, output.source, output.reason, output.message)
        elif isinstance(output, Processed):
            metrics.events_processed.labels(output.source_topic).inc()
            metrics.processing_latency.labels(output.source_topic).observe(
                max(0.0, (wall_ms() - output.event_ts) / 1000))
        elif isinstance(output, LinkRefused):
            metrics.link_refusals.labels(output.reason).inc()
        elif isinstance(output, LateTouch):
            metrics.late_touches.inc()
        elif isinstance(output, HoldStarted):
            metrics.revenue_held.inc()
            tables.held_revenue[key] = str(wall_ms()).encode()
        elif isinstance(output, HoldEnded):
            metrics.revenue_released.labels(output.cause).inc(output.count)
            tables.held_revenue.pop(key, None)
        elif isinstance(output, MrrMovement):
            metrics.mrr_movements.labels(output.kind).inc()

    @app.timer(interval=5.0)
    async def release_expired_holds() -> None:
        """Ask persons whose revenue waited too long for a signup to go ahead (in-stream)."""
        now = wall_ms()
        for key in list(tables.held_revenue.keys()):
            stored = tables.persons.get(key)
            if stored and hold_expired(PersonState.from_dict(orjson.loads(stored)), now, config):
                release = messages.ReleaseHeld(key.decode())
                await topics.person_events.send(key=key, value=orjson.dumps(
                    messages.encode(release)))
