"""`create_app(settings)`: the Faust application with its topics, tables, agents and web views."""

from __future__ import annotations

import gc
import logging

import faust

from streams.context import Pipeline
from streams.faust_internals import report_gaps_instead_of_skipping
from streams.operations import BoundedStopApp, never_a_gap
from streams.restore import restore_before_start
from streams.topology import Settings, ensure_topics


def create_app(settings: Settings) -> faust.App:
    app = BoundedStopApp(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap.replace(',', ';')}",
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        web_host=settings.web_host,
        web_bind=settings.web_host,  # web_host only names URLs; Faust binds 0.0.0.0 unless told
        web_port=settings.web_port,
        # Faust's own pages (/router, /table/<name>/<key>, /graph, statistics) would serve the
        # tables' contents without the token: off. Only "/" stays, a bare status like /health.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_in_thread=False,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=2000,
        stream_buffer_maxsize=8192,
        producer_linger=0.005,
        consumer_max_fetch_size=8 * 1024 * 1024,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        producer_max_batch_size=1024 * 1024,
        table_standby_replicas=0,
        stream_wait_empty=False,
    )
    # Table writes queue here until sent; past this many the stream waits, polling per message.
    # A batch writes hundreds of keys at once, so let the queue take a few batches.
    app.producer.buffer.max_messages = 20_000
    report_gaps_instead_of_skipping(app, never_a_gap)
    pipeline = Pipeline.build(app, settings)
    from streams import stages, web

    stages.register(app, pipeline)
    web.register(app, pipeline)
    return app


def freeze_startup_objects() -> None:
    """Keep what exists at start-up (modules, classes, the app and its wiring: about 90,000
    objects) out of the garbage collector's passes, which otherwise walk all of them again on
    every full collection while the streams wait."""
    gc.collect()
    gc.freeze()


def run_worker(settings: Settings, loglevel: str = "info", fast_restore: bool = True) -> int:
    """Run the worker in this process until SIGTERM/SIGINT (the exit code of Faust's worker)."""
    ensure_topics(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if fast_restore:
        restore_before_start(settings, loglevel)  # Faust then finds every table's store current
    app = create_app(settings)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # Faust's spinner handler listens at DEBUG, which makes every send format a debug record.
    for name in ("faust", "mode"):
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLevelName(loglevel.upper())))
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    freeze_startup_objects()
    worker.execute_from_commandline()
    return 0
