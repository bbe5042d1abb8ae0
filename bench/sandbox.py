"""A run's own corner of the shared broker: unique topics, groups, app id and state directory.

Other people use the same broker at the same time, so every name a run creates carries one
random token; cleaning up deletes exactly the topics and groups whose names carry it.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, fields, replace
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from personify.stack.processes import free_port
from streams.topology import TABLES, Settings, Topics, ensure_topics


def broker_missing(settings: Settings) -> bool:
    """True, with what to do said on stderr, when no broker answers at the settings' address."""
    try:
        AdminClient({"bootstrap.servers": settings.kafka_bootstrap}).list_topics(timeout=10)
    except Exception as exc:  # any failure here means the same
        print(f"bench: no Kafka broker at {settings.kafka_bootstrap} ({exc}); start the local "
              "stack with `.venv/bin/personify stack up`", file=sys.stderr)
        return True
    return False


@dataclass(frozen=True)
class Sandbox:
    token: str
    settings: Settings
    """Settings of the worker under test: unique topics and app id, RocksDB state in `workdir`."""
    workdir: Path
    """Generated files, worker logs and state; removed by `clean_up`."""

    @classmethod
    def create(cls, base: Settings, partitions: int = 4) -> Sandbox:
        token = uuid.uuid4().hex[:8]
        workdir = Path(tempfile.mkdtemp(prefix=f"personify-bench-{token}-"))
        topics = Topics(**{f.name: f"{getattr(Topics(), f.name)}-bench-{token}"
                           for f in fields(Topics)})
        settings = replace(base, app_id=f"personify-bench-{token}", topics=topics,
                           partitions=partitions, data_dir=workdir / "state",
                           web_port=free_port(), store="rocksdb://")
        ensure_topics(settings)
        return cls(token, settings, workdir)

    def name(self, purpose: str) -> str:
        """A topic or group name for `purpose` that `clean_up` will find."""
        return f"personify-bench-{purpose}-{self.token}"

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap})

    def create_topic(self, topic: str) -> None:
        admin = self.admin()  # kept referenced: the future fails once its client is collected
        futures = admin.create_topics(
            [NewTopic(topic, num_partitions=self.settings.partitions, replication_factor=1)])
        futures[topic].result()

    def own_topics(self) -> list[str]:
        return sorted(t for t in self.admin().list_topics(timeout=10).topics if self.token in t)

    def changelog_topics(self) -> list[str]:
        return [self.settings.changelog(table.name) for table in TABLES]

    def clean_up(self, keep_files: bool = False) -> list[str]:
        """Delete this run's topics and consumer groups (and its files unless `keep_files`)."""
        admin = self.admin()
        topics = self.own_topics()
        if topics:
            for future in admin.delete_topics(topics, operation_timeout=30).values():
                future.result()
        groups = [g.group_id for g in admin.list_consumer_groups().result().valid
                  if self.token in g.group_id]
        if groups:
            for future in admin.delete_consumer_groups(groups).values():
                with contextlib.suppress(Exception):  # a group still closing just expires
                    future.result()
        if not keep_files:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return topics

