"""`personify topics`: create the project's topics and changelogs, or list them (`--list`).

What the local stack and docker-compose's init container run before any worker starts; the
names, partition counts and configs come from the one topology (streams/topology.py).
"""

from __future__ import annotations

import argparse

from streams.topology import Settings, ensure_topics, topic_configs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--list", action="store_true",
                        help="print every topic with its partitions and config; create nothing")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.list:
        for name, config in topic_configs(settings).items():
            settings_line = " ".join(f"{key}={value}" for key, value in sorted(config.items()))
            print(f"{name}\tpartitions={settings.partitions}\t{settings_line}")
        return 0
    created = ensure_topics(settings)
    print(f"created {len(created)} topics: {', '.join(sorted(created))}" if created
          else f"every topic already exists on {settings.kafka_bootstrap}")
    return 0
