"""Everything an agent needs, built once per app: settings, topics, tables, metrics, rules."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import faust

from processors.aggregates import Aggregate, AggregateConfig, merge
from processors.config import PipelineConfig
from streams.aggregate_store import AggregateStore
from streams.metrics import Metrics, create_metrics, zero_known_labels
from streams.tables import TableRegistry, declare_tables
from streams.topics import TopicRegistry, declare_topics
from streams.topology import Settings
from streams.views import ServingViews
from streams.views_rebuild import rebuild


@dataclass
class WorkerStatus:
    """What the health checks know beyond Faust's own state."""

    broker_reachable: bool = True


@dataclass(frozen=True)
class Pipeline:
    settings: Settings
    config: PipelineConfig
    topics: TopicRegistry
    tables: TableRegistry
    metrics: Metrics
    views: ServingViews
    aggregates: AggregateStore
    spend_aggregates: AggregateStore
    """Spend by channel, per spend partition (streams/stages/spend.py)."""
    status: WorkerStatus

    def owned_aggregates(self, partitions: set[int]) -> list[Aggregate]:
        """Each owned partition's aggregate with its spend, in partition order: every topic
        has the same partition count, so the assignment gives a worker the same partition
        numbers of the person events and of the spend."""
        return [merge(pair) for pair in zip(self.aggregates.keep_only(partitions),
                                            self.spend_aggregates.keep_only(partitions),
                                            strict=True)]

    @classmethod
    def build(cls, app: faust.App, settings: Settings) -> Pipeline:
        from streams.config_files import load_pipeline_config

        metrics, config = create_metrics(), load_pipeline_config(settings)
        zero_known_labels(metrics, settings.topics.all_inputs(), config.attribution.models)
        tables = declare_tables(app, settings)
        aggregate_config = AggregateConfig.for_models(config.attribution.models)
        aggregates = AggregateStore(tables.aggregates, aggregate_config)
        return cls(settings=settings, config=config, topics=declare_topics(app, settings),
                   tables=tables, metrics=metrics,
                   views=ServingViews(settings.redis_url, metrics,
                                      partial(rebuild, settings, progress=False)),
                   aggregates=aggregates,
                   spend_aggregates=AggregateStore(tables.spend_aggregates, aggregate_config),
                   status=WorkerStatus())
