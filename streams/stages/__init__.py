"""The stages: each a class that steps a take of records (streams/stages/devices.py,
persons.py, spend.py), run by a Faust agent of two lines; `register` wires them.

the input stage (inputs) ─► device batches ─► stitch_identities (devices) ─► person batches
                                                                         ─► credit_revenue (persons)
credit_revenue ─► attribution credits, profiles, dead letters, aggregates, serving views

The input stage holds no state and runs on librdkafka in a thread (streams/intake.py); the
stateful stages are Faust agents over tables. The internal topics carry batches
(processors/messages.py): a stage sends one record per partition of the next stage for all it
forwards there. A downstream stage takes up to RECORDS_PER_TAKE such records at a time and
awaits the broker once per take, so its round trips do not grow with the traffic. Each key
always lands in the partition Kafka's default partitioner gives it, so a table's changelog
record is in the partition that owns its key. Billing takes the device stage too (keyed by user
id, forwarded untouched): the same two hops as the touches it usually follows, so it rarely
overtakes them and corrections stay rare. Nothing waits for anything: correctness rests on
event time and corrections (processors/person.py).

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
from functools import partial

import faust
import mode

from processors.identity import DeviceState
from processors.person import PersonState
from processors.spend import SpendState
from streams.context import Pipeline
from streams.dead_letters import DeadLetters
from streams.faust_internals import committed_offset
from streams.intake import start_intake
from streams.operations import Takes
from streams.stages import health
from streams.stages.devices import DeviceStage
from streams.stages.persons import PersonStage
from streams.stages.records import Outbox
from streams.stages.spend import SpendStage, partition_of
from streams.state_cache import CachedStates, TakenPartitions

BATCH_WITHIN_S = 0.01
"""How long a stage waits to fill a take: the latency it adds at low traffic."""
RECORDS_PER_TAKE = 1000
"""Internal records (each a batch) a downstream stage steps before it awaits the broker."""
STATES_CACHED = 20_000
"""Decoded device and person states kept in memory, each (streams/state_cache.py)."""
SPEND_PER_TAKE = 1000
SPEND_WITHIN_S = 0.05
CAMPAIGNS_CACHED = 10_000


def build_stages(pipeline: Pipeline) -> tuple[DeviceStage, PersonStage, SpendStage]:
    topics, tables, metrics = pipeline.topics, pipeline.tables, pipeline.metrics
    config, settings = pipeline.config, pipeline.settings
    dead_letters = DeadLetters(topics.dead_letters.send, metrics.dead_letters)
    to_persons = Outbox(topics.person_events.send, settings.partitions)
    devices = DeviceStage(
        to_persons, CachedStates(tables.devices, DeviceState.from_dict, STATES_CACHED,
                                 to_persons.partition_of),
        dead_letters, metrics, config, settings.topics)
    persons = PersonStage(
        CachedStates(tables.persons, PersonState.from_dict, STATES_CACHED,
                     to_persons.partition_of),
        pipeline.aggregates, send_credit=topics.credits.send, send_profile=topics.profiles.send,
        queue_views=pipeline.views.queue, dead_letters=dead_letters, metrics=metrics,
        config=config)
    spend = SpendStage(
        CachedStates(tables.spend_facts, SpendState.from_dict, CAMPAIGNS_CACHED, partition_of),
        pipeline.spend_aggregates, dead_letters, metrics, config.spend, config.validation)
    return devices, persons, spend


def register(app: faust.App, pipeline: Pipeline) -> None:
    devices, persons, spend = build_stages(pipeline)
    takes = Takes(pipeline.metrics.take_seconds, committed=partial(committed_offset, app))

    @app.agent(pipeline.topics.device_events, name="stitch_identities")
    async def stitch_identities(stream: faust.StreamT) -> None:
        await takes.run(stream, "stitch", RECORDS_PER_TAKE, BATCH_WITHIN_S,
                        partial(devices.take, partial(TakenPartitions, stream)))

    @app.agent(pipeline.topics.person_events, name="credit_revenue")
    async def credit_revenue(stream: faust.StreamT) -> None:
        await takes.run(stream, "credit", RECORDS_PER_TAKE, BATCH_WITHIN_S,
                        partial(persons.take, partial(TakenPartitions, stream)))

    @app.agent(pipeline.topics.spend, name="count_spend")
    async def count_spend(stream: faust.StreamT) -> None:
        await takes.run(stream, "count", SPEND_PER_TAKE, SPEND_WITHIN_S,
                        partial(spend.take, partial(TakenPartitions, stream)))

    @app.on_partitions_revoked.connect
    async def forget_partition_state(app: faust.App, revoked, **kwargs) -> None:
        """Takes in progress finish first; then what this worker remembers of states another
        worker may now change is dropped."""
        await takes.revoked(revoked)
        for stage in (devices, persons, spend):
            stage.forget()

    @app.on_partitions_assigned.connect
    async def own_partitions(app: faust.App, assigned, **kwargs) -> None:
        takes.assigned(assigned)

    @app.service
    class InputStage(mode.Service):
        """The input stage's thread (streams/intake.py), started once the tables are
        recovered and stopped with the worker."""

        async def on_start(self) -> None:
            self._stop = start_intake(pipeline.settings, pipeline.config, pipeline.metrics)

        async def on_stop(self) -> None:
            await asyncio.to_thread(self._stop)

    health.register(app, pipeline)
