"""Prometheus metrics of one worker process; label values come only from closed sets."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATE_EVENT_OUTCOMES = ("corrected", "beyond_horizon")
"""What became of an event that arrived after a credit it changes (DESIGN.md §11)."""
STAGES = ("validate", "stitch", "credit")
"""The worker's stages as `personify_take_seconds` labels them (streams/intake.py, stages/)."""


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    events_consumed: Counter
    events_processed: Counter
    dead_letters: Counter
    link_refusals: Counter
    touches_dropped: Counter
    touches_stitched: Counter
    credits_emitted: Counter
    credit_corrections: Counter
    late_events: Counter
    replayed: Counter
    duplicate_events: Counter
    mrr_movements: Counter
    processing_latency: Histogram
    take_seconds: Histogram
    table_keys: Gauge
    consumer_lag: Gauge
    redis_up: Gauge
    top_customers_revenue_share: Gauge
    view_writes_pending: Gauge
    view_rebuilds: Counter
    broker_up: Gauge


def zero_known_labels(metrics: Metrics, input_topics: tuple[str, ...],
                      models: tuple[str, ...]) -> None:
    """Create every series of the closed label sets at 0, so `rate()` and `increase()` see the
    first event (a series that appears at 1 has no earlier sample to grow from)."""
    from processors.aggregates import MOVEMENT_KINDS
    from processors.identity import DROP_REASONS, REFUSAL_REASONS
    from processors.validation import REASONS
    from schemas.contract import load_schema

    for topic in input_topics:
        metrics.events_consumed.labels(topic)
        metrics.events_processed.labels(topic)
        metrics.replayed.labels(topic)
        metrics.duplicate_events.labels(topic)
        for reason in REASONS:
            metrics.dead_letters.labels(topic, reason)
    for reason in REFUSAL_REASONS:
        metrics.link_refusals.labels(reason)
    for reason in DROP_REASONS:
        metrics.touches_dropped.labels(reason)
    causes = [c for c in load_schema("credit/2")["properties"]["cause"]["enum"] if c]
    for model in models:
        for kind in ("payment", "refund"):
            metrics.credits_emitted.labels(model, kind)
        for cause in causes:
            metrics.credit_corrections.labels(model, cause)
    for outcome in LATE_EVENT_OUTCOMES:
        metrics.late_events.labels(outcome)
    for stage in STAGES:
        metrics.take_seconds.labels(stage)
    for kind in MOVEMENT_KINDS:
        metrics.mrr_movements.labels(kind)


def create_metrics() -> Metrics:
    registry = CollectorRegistry()
    return Metrics(
        registry=registry,
        events_consumed=Counter(
            "personify_events_consumed_total", "Input events read, by topic.",
            ["topic"], registry=registry),
        events_processed=Counter(
            "personify_events_processed_total",
            "Input events fully processed (not dead-lettered), by topic.", ["topic"],
            registry=registry),
        dead_letters=Counter(
            "personify_dead_letters_total", "Events sent to the dead-letter topic, by source "
            "topic and reason code.", ["topic", "reason"], registry=registry),
        link_refusals=Counter(
            "personify_identity_link_refusals_total",
            "Identity links refused, by reason.", ["reason"], registry=registry),
        touches_dropped=Counter(
            "personify_touches_dropped_total",
            "Touchpoints stitched to nobody, by reason.", ["reason"], registry=registry),
        touches_stitched=Counter(
            "personify_touches_stitched_total", "Touchpoints assigned to a person.",
            registry=registry),
        credits_emitted=Counter(
            "personify_credits_emitted_total",
            "Revenue events credited (first asserts), by model and kind.",
            ["model", "kind"], registry=registry),
        credit_corrections=Counter(
            "personify_credit_corrections_total",
            "Credits restated (a retract and the next revision's assert), by model and cause.",
            ["model", "cause"], registry=registry),
        late_events=Counter(
            "personify_late_events_total",
            "Events that arrived after a credit they change: corrected, or beyond the "
            "restatement horizon (they affect only the future).", ["outcome"],
            registry=registry),
        replayed=Counter(
            "personify_replayed_events_total",
            "Input messages read again after a crash; their effects were already out.",
            ["topic"], registry=registry),
        duplicate_events=Counter(
            "personify_duplicate_events_total",
            "Input events dropped because their (topic, event_id) was already accepted.",
            ["topic"], registry=registry),
        mrr_movements=Counter(
            "personify_mrr_movements_total", "MRR movements, by kind.", ["kind"],
            registry=registry),
        processing_latency=Histogram(
            "personify_processing_latency_seconds",
            "Event time to processed, for revenue events.", ["topic"], registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600,
                     86400, float("inf"))),
        take_seconds=Histogram(
            "personify_take_seconds",
            "Processing time: a take read by a stage → its outputs delivered and its state "
            "written, by stage.", ["stage"], registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                     60, float("inf"))),
        table_keys=Gauge(
            "personify_table_keys", "Keys held in this worker's active partitions, by table.",
            ["table"], registry=registry),
        top_customers_revenue_share=Gauge(
            "personify_top_customers_revenue_share_ratio",
            "Share of lifetime revenue from the top 20 % of paying customers (0..1).",
            registry=registry),
        redis_up=Gauge(
            "personify_redis_up", "1 when the last write of the serving views reached Redis.",
            registry=registry),
        view_writes_pending=Gauge(
            "personify_view_writes_pending",
            "Serving-view writes waiting for Redis (latest per key).", registry=registry),
        view_rebuilds=Counter(
            "personify_view_rebuilds",
            "Times the serving views were rebuilt from Kafka because Redis had lost them.",
            registry=registry),
        broker_up=Gauge(
            "personify_broker_up",
            "1 while a bootstrap server of the broker accepts connections (probed every 2 s).",
            registry=registry),
        consumer_lag=Gauge(
            "personify_consumer_lag_messages",
            "Messages behind the end of the partitions this worker owns, by topic.", ["topic"],
            registry=registry),
    )
