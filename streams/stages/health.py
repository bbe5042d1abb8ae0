"""The worker's timers: the broker probe, consumer lag, the reports to Redis, revenue
concentration and the tables' key counts; and the serving views' write-behind."""

from __future__ import annotations

import logging

import faust

from processors.aggregates import windows
from readmodels.serving_views import aggregate_writes
from streams.business_metrics import BusinessCollector
from streams.context import Pipeline
from streams.faust_internals import committed_offset, keys_in
from streams.logs import RepeatLimiter, limit_repeated_logs
from streams.operations import broker_reachable
from streams.views import revenue_share_of_top

BROKER_PROBE_EVERY_S = 2.0
log = logging.getLogger(__name__)


def register(app: faust.App, pipeline: Pipeline) -> None:
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
            metrics.table_keys.labels(name).set(keys_in(getattr(tables, name)))
