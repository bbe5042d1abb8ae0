"""The collector's Prometheus metrics, in a registry of its own (one per app, so tests can run
several in one process)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from processors.validation import REASONS
from schemas.contract import INPUT_SCHEMAS

ROUTES = ("/v1/batch", "/v1/{type}", "/v1/{tail}", "/personify.js", "/health", "/metrics", "other")
"""The `route` label's closed set: matched routes by their pattern (`/v1/{tail}` is the CORS
preflight), anything else `other`."""


@dataclass(frozen=True)
class CollectorMetrics:
    registry: CollectorRegistry
    requests: Counter
    accepted: Counter
    rejected: Counter
    latency: Histogram


def create_collector_metrics() -> CollectorMetrics:
    registry = CollectorRegistry()
    metrics = CollectorMetrics(
        registry=registry,
        requests=Counter("personify_collector_requests_total",
                         "HTTP requests answered, by route and status code.",
                         ["route", "status"], registry=registry),
        accepted=Counter("personify_collector_events_accepted_total",
                         "Events acknowledged by the broker on their input topic, by schema.",
                         ["schema"], registry=registry),
        rejected=Counter("personify_collector_events_rejected_total",
                         "Events refused and sent to the dead-letter topic, by reason.",
                         ["reason"], registry=registry),
        latency=Histogram("personify_collector_request_duration_seconds",
                          "Time from a request's arrival to its answer, by route.",
                          ["route"], registry=registry,
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                   2.5, 5, 10)),
    )
    for schema in INPUT_SCHEMAS.values():
        metrics.accepted.labels(schema)
    for reason in REASONS:
        metrics.rejected.labels(reason)
    return metrics
