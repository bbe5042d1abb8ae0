"""The topology, declared once: settings, every topic with its config, every table.

The worker (streams/topics.py, streams/tables.py declare them to Faust), the input stage, the
local stack, the tools and `personify topics` (what docker-compose's init container runs) all
read this module, so a topic or a table is named in one place only.

Settings are parsed once from the environment into an immutable object: every knob is an
environment variable named `PERSONIFY_<FIELD>`; nothing reads the environment anywhere else, so
tests build `Settings(...)` directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Topics:
    """Kafka topic names; inputs and outputs are the public contract, the `personify-` topics
    the worker's own."""

    page_views: str = "page-views-v1"
    signups: str = "signups-v1"
    billing: str = "billing-v1"
    spend: str = "marketing-spend-v1"
    """`spend/1`: what each campaign cost per UTC day (its own stage: streams/stages/spend.py)."""
    credits: str = "attribution-credits-v2"
    """`credit/2` records, corrections included (`-v1` carried `credit/1`, without them)."""
    profiles: str = "profiles-v1"
    dead_letters: str = "dead-letters-v1"
    device_events: str = "personify-device-events-v2"
    person_events: str = "personify-person-events-v2"

    def inputs(self) -> tuple[str, str, str]:
        """The product's events: the person pipeline's inputs."""
        return (self.page_views, self.signups, self.billing)

    def all_inputs(self) -> tuple[str, ...]:
        """Every input topic: the product's events and the marketing spend."""
        return (*self.inputs(), self.spend)


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:19092"
    """Bootstrap servers of the broker (host:port, comma separated)."""
    kafka_controller_port: int = 19093
    """KRaft controller port of the local broker started by `personify stack`."""
    redis_url: str = "redis://127.0.0.1:16379/0"
    """Redis holding the serving views."""
    prometheus_port: int = 19090
    """Port of the local Prometheus started by `personify stack`."""
    partitions: int = 4
    """Partition count of every topic the project creates (inputs, internal, outputs)."""
    web_host: str = "127.0.0.1"
    """Interface the worker's HTTP server binds to (loopback unless told otherwise)."""
    web_port: int = 16066
    """Port of the worker's HTTP server (/metrics, /health, the query API)."""
    api_token: str = ""
    """When set, every HTTP route except /health requires `Authorization: Bearer <token>`."""
    store: str = "rocksdb://"
    """Faust table store: `rocksdb://` (durable local state) or `memory://`."""
    app_id: str = "personify"
    """Faust application id: the consumer group and the prefix of changelog topics."""
    data_dir: Path = PROJECT_ROOT / ".personify" / "worker"
    """Where the worker keeps its local table state."""
    cache_dir: Path = PROJECT_ROOT / ".personify"
    """Project cache: Kafka jars, server data, logs and pid files of the local stack."""
    config_file: str = ""
    """Optional TOML file with the pipeline's rules (channels, identity, attribution, segments);
    see config/personify.example.toml. Empty means the DESIGN.md defaults."""
    collector_host: str = "127.0.0.1"
    """Interface the HTTP collector (`personify collect`) binds to."""
    collector_port: int = 16080
    """Port of the HTTP collector."""
    collector_config_file: str = ""
    """TOML with the collector's sources and write keys, allowed origins and limits; see
    config/collector.example.toml. Empty: no source, so every request is refused (401)."""
    kafka_version: str = "4.1.1"
    """Apache Kafka release resolved through Maven for the local broker."""
    topics: Topics = field(default_factory=Topics)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read `PERSONIFY_*` variables once; unknown values fail loudly with the variable name."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            if f.name == "topics":
                continue
            raw = env.get(f"PERSONIFY_{f.name.upper()}")
            if raw is None:
                continue
            default = getattr(cls(), f.name)
            try:
                values[f.name] = type(default)(raw)
            except ValueError as exc:
                raise ValueError(
                    f"PERSONIFY_{f.name.upper()}={raw!r} is not a valid {type(default).__name__}"
                ) from exc
        topic_values = {
            t.name: env[f"PERSONIFY_TOPIC_{t.name.upper()}"]
            for t in fields(Topics)
            if f"PERSONIFY_TOPIC_{t.name.upper()}" in env
        }
        return cls(**values, topics=replace(Topics(), **topic_values))

    @property
    def intake_group(self) -> str:
        """The consumer group of the input stage (the stateful stages use `app_id`)."""
        return f"{self.app_id}-intake"

    def changelog(self, table: str) -> str:
        """The changelog topic Faust gives `table`."""
        return f"{self.app_id}-{table}-changelog"

    def to_env(self) -> dict[str, str]:
        """The `PERSONIFY_*` variables that reproduce these settings in a child process."""
        env = {f"PERSONIFY_{f.name.upper()}": str(getattr(self, f.name))
               for f in fields(self) if f.name != "topics"}
        env.update({f"PERSONIFY_TOPIC_{t.name.upper()}": getattr(self.topics, t.name)
                    for t in fields(Topics)})
        return env


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    about: str


DEVICES = Table("device-facts", "device facts: page views and links")
PERSONS = Table("person-facts",
                "person facts: device shares, signups, billing, emitted credits")
AGGREGATES = Table("aggregates", "rolling aggregates by partition, hour and measure")
SPEND_FACTS = Table("spend-facts", "spend lines seen, by campaign")
SPEND_AGGREGATES = Table("spend-aggregates", "spend by partition, hour and channel")
TABLES = (DEVICES, PERSONS, AGGREGATES, SPEND_FACTS, SPEND_AGGREGATES)
"""The worker's tables, each changelogged (`Settings.changelog`)."""

KEEP_FOREVER = {"retention.ms": "-1"}
COMPACTED = {"cleanup.policy": "compact"}


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Every topic the project owns, with its per-topic config; profiles and changelogs are
    compacted, every log is kept. Changelogs are created before the worker starts, so that the
    worker's consumer knows them from its first metadata (a changelog topic it learns about
    only at the next metadata refresh cannot be written to until then)."""
    t = settings.topics
    logs = (*t.all_inputs(), t.credits, t.dead_letters, t.device_events, t.person_events)
    return {**{settings.changelog(table.name): COMPACTED for table in TABLES},
            **dict.fromkeys(logs, KEEP_FOREVER), t.profiles: COMPACTED}


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create the missing topics and return their names; existing topics are left as they are."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from streams.broker import client_config

    admin = AdminClient(client_config(settings.kafka_bootstrap))
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [
        NewTopic(name, num_partitions=settings.partitions, replication_factor=1, config=config)
        for name, config in topic_configs(settings).items()
        if name not in existing
    ]
    if not wanted:
        return []
    for future in admin.create_topics(wanted, request_timeout=timeout_s).values():
        try:
            future.result()
        except Exception as exc:  # a concurrent creator is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return [t.topic for t in wanted]
