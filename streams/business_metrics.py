"""Business aggregates on /metrics: computed at scrape time from the partitions this worker
owns now, so a worker that loses a partition stops reporting it and Prometheus `sum()` across
workers counts every person once. Amounts are minor units of the reporting currency."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from processors.aggregates import (
    ALL_TIME,
    CONVERSION_TIME_BOUNDS,
    Aggregate,
    channel_segment_report,
    ltv_by_channel,
    merge,
    mrr_movements,
    spend_by_channel,
    time_to_conversion,
    windows,
)


class BusinessCollector(Collector):
    def __init__(self, aggregates: Callable[[set[int]], list[Aggregate]],
                 models: tuple[str, ...], currency: str,
                 owned_partitions: Callable[[], set[int]]) -> None:
        self._aggregates, self._models, self._currency = aggregates, models, currency
        self._owned = owned_partitions

    def collect(self) -> Iterator:
        cells_by_window = windows(merge(self._aggregates(self._owned())))
        unit = f"minor units of {self._currency}"
        attributed = GaugeMetricFamily(
            "personify_attributed_revenue_minor_units",
            f"Revenue credited to a channel under a model ({unit}), by event-time window.",
            labels=["model", "channel", "segment", "window"])
        revenue = GaugeMetricFamily(
            "personify_revenue_minor_units",
            f"Payments minus refunds by acquisition channel ({unit}), by event-time window.",
            labels=["channel", "segment", "window"])
        customers = GaugeMetricFamily(
            "personify_new_customers", "Customers who converted (first payment), by "
            "acquisition channel and event-time window; window=all is every customer.",
            labels=["channel", "segment", "window"])
        movements = GaugeMetricFamily(
            "personify_mrr_movement_minor_units",
            f"Signed MRR movements ({unit}) by kind and event-time window.",
            labels=["kind", "channel", "segment", "window"])
        for window, cells in cells_by_window.items():
            for model in self._models:
                for row in channel_segment_report(cells, model):
                    attributed.add_metric([model, row.channel, row.segment, window],
                                          row.revenue_minor)
            for row in ltv_by_channel(cells):
                revenue.add_metric([row.channel, row.segment, window], row.lifetime_revenue_minor)
                customers.add_metric([row.channel, row.segment, window], row.customers)
            for row in mrr_movements(cells):
                for kind, amount in row.movement_minor.items():
                    movements.add_metric([kind, row.channel, row.segment, window], amount)
        yield from (attributed, revenue, customers, movements)
        yield from self._all_time(cells_by_window[ALL_TIME], unit)

    def _all_time(self, cells, unit: str) -> Iterator:
        """Average LTV is not exported: an average is not additive across workers; divide
        `personify_revenue_minor_units` by `personify_new_customers` (window="all")."""
        mrr = GaugeMetricFamily("personify_mrr_minor_units",
                                f"Current monthly recurring revenue ({unit}).",
                                labels=["channel", "segment"])
        for row in mrr_movements(cells):
            mrr.add_metric([row.channel, row.segment], row.mrr_minor)
        conversion = HistogramMetricFamily(
            "personify_time_to_conversion_seconds",
            "Time from a customer's first touch to their first payment.",
            labels=["channel", "segment"])
        for row in time_to_conversion(cells):
            buckets = [(_le(bound), count) for (_, bound), count in
                       zip(CONVERSION_TIME_BOUNDS, row.cumulative_counts, strict=True)]
            conversion.add_metric([row.channel, row.segment], buckets, row.total_ms / 1000)
        yield from (mrr, conversion, _spend(cells, unit))


def _le(bound_ms: int | None) -> str:
    return "+Inf" if bound_ms is None else repr(bound_ms / 1000)


def _spend(cells, unit: str) -> CounterMetricFamily:
    """All-time spend by channel: it only grows, so a counter; a window's spend is
    `increase(...[30d])`. CAC, ROAS and LTV:CAC are ratios, not additive across workers:
    divide in PromQL (README, Metrics)."""
    spend = CounterMetricFamily("personify_spend_minor_units",
                                f"Marketing spend by channel ({unit}).", labels=["channel"])
    for channel, amount in spend_by_channel(cells).items():
        spend.add_metric([channel], amount)
    return spend
