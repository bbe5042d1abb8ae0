"""`personify demo`: the local stack and the worker, up and ready, and where to look."""

from __future__ import annotations

import argparse
import time

from personify.settings import Settings
from personify.stack import services


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-worker", action="store_true", help="bring up only the servers")


def run(args: argparse.Namespace, settings: Settings) -> int:
    t0 = time.monotonic()
    print("==> local stack (Kafka, Redis, Prometheus)")
    services.up(settings)
    if not args.no_worker:
        print("==> worker")
        state = services.start_worker(settings)
        print(f"worker                                        {state}")
    web = f"http://{settings.web_host}:{settings.web_port}"
    print(f"\nready in {time.monotonic() - t0:.1f} s\n"
          f"  metrics     {web}/metrics\n"
          f"  health      {web}/health  and  {web}/ready\n"
          f"  Prometheus  http://127.0.0.1:{settings.prometheus_port}\n"
          f"  Kafka       {settings.kafka_bootstrap}  (inputs: "
          f"{', '.join(settings.topics.inputs())})\n"
          f"  Redis       {settings.redis_url}\n\n"
          "send events:  .venv/bin/personify simulate --people 1000 --out events.jsonl && "
          ".venv/bin/personify send events.jsonl\n"
          "status:       .venv/bin/personify stack status\n"
          "stop:         .venv/bin/personify stack down")
    return 0
