"""Create the public and internal topics with explicit partition counts (idempotent)."""

from __future__ import annotations

from personify.settings import Settings

TABLES = ("device-facts", "person-facts", "aggregates", "spend-facts", "spend-aggregates")
"""The worker's tables; their changelogs are `{app_id}-{table}-changelog`."""


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Every topic the project owns, with its per-topic config; profiles and changelogs are
    compacted. Changelogs are created here, before the worker starts, so that the worker's
    consumer knows them from its first metadata (a changelog topic it learns about only at
    the next metadata refresh cannot be written to until then)."""
    t = settings.topics
    keep_forever = {"retention.ms": "-1"}
    changelogs = {f"{settings.app_id}-{table}-changelog": {"cleanup.policy": "compact"}
                  for table in TABLES}
    return {
        **changelogs,
        t.page_views: keep_forever,
        t.signups: keep_forever,
        t.billing: keep_forever,
        t.spend: keep_forever,
        t.credits: keep_forever,
        t.dead_letters: keep_forever,
        t.profiles: {"cleanup.policy": "compact"},
        t.device_events: keep_forever,
        t.person_events: keep_forever,
    }


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create the missing topics and return their names; existing topics are left as they are."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from personify.broker import client_config

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
