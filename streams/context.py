"""Everything an agent needs, built once per app: settings, topics, tables, metrics, rules."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from personify.settings import Settings
from processors.config import PipelineConfig
from streams.metrics import Metrics, create_metrics
from streams.tables import TableRegistry, declare_tables
from streams.topics import TopicRegistry, declare_topics
from streams.views import ServingViews


@dataclass(frozen=True)
class Pipeline:
    settings: Settings
    config: PipelineConfig
    topics: TopicRegistry
    tables: TableRegistry
    metrics: Metrics
    views: ServingViews

    @classmethod
    def build(cls, app: faust.App, settings: Settings) -> Pipeline:
        from streams.config_files import load_pipeline_config

        metrics = create_metrics()
        return cls(settings=settings, config=load_pipeline_config(settings),
                   topics=declare_topics(app, settings), tables=declare_tables(app, settings),
                   metrics=metrics, views=ServingViews(settings.redis_url, metrics))
