"""`personify views rebuild`: fill Redis's serving views from Kafka, the state of record
(streams/views_rebuild.py; a worker also does it by itself when it finds Redis emptied)."""

from __future__ import annotations

import argparse

import redis

from streams.topology import Settings
from streams.views_rebuild import rebuild


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("rebuild",),
                        help="rebuild: rewrite every view from the profiles and credits topics")


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        written = rebuild(settings)
    except redis.RedisError as exc:
        print(f"personify: Redis at {settings.redis_url} is not reachable ({exc}); start it "
              "with `personify stack up` or set PERSONIFY_REDIS_URL")
        return 2
    print(f"{written:,} view writes applied to {settings.redis_url}")
    return 0
