"""`personify collect`: run the HTTP collector in the foreground (one process; run as many as
the load needs behind a load balancer: they share nothing)."""

from __future__ import annotations

import argparse
import gc
import logging

from aiohttp import web

from personify.collector.app import Collector, build_app
from personify.collector.config import load_collector_config
from personify.collector.delivery import Delivery
from personify.collector.metrics import create_collector_metrics
from streams.config_files import load_pipeline_config
from streams.topology import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="interface to bind (default PERSONIFY_COLLECTOR_HOST, "
                                       "127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default PERSONIFY_COLLECTOR_PORT, 16080)")


async def freeze_start_up_objects(_: web.Application) -> None:
    """Keep the garbage collector's full passes short: they scan every tracked object, and the
    ~45,000 of start-up (modules, configuration), which live as long as the process, made
    each pass 30-90 ms, the tail of the request latency. Frozen, they are never scanned."""
    gc.collect()
    gc.freeze()


def run(args: argparse.Namespace, settings: Settings) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    validation = load_pipeline_config(settings).validation
    config = load_collector_config(settings.collector_config_file, validation)
    host = args.host or settings.collector_host
    port = args.port or settings.collector_port
    delivery = Delivery(settings.kafka_bootstrap, timeout_ms=config.delivery_timeout_ms)
    app = build_app(Collector(config=config, topics=settings.topics, delivery=delivery,
                              metrics=create_collector_metrics()))

    async def close_delivery(_: web.Application) -> None:
        delivery.close()

    app.on_startup.append(freeze_start_up_objects)
    app.on_cleanup.append(close_delivery)
    names = ", ".join(source.name for source in config.sources)
    if not names:
        print("personify collect: no source is configured (PERSONIFY_COLLECTOR_CONFIG_FILE), "
              "so every request will be refused with 401; see config/collector.example.toml")
    print(f"collecting on http://{host}:{port} for {names or 'no source'}; events to "
          f"{settings.kafka_bootstrap}", flush=True)
    web.run_app(app, host=host, port=port, access_log=None, print=None,
                handler_cancellation=True)
    return 0
