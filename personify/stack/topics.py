"""Create the public and internal topics with explicit partition counts (idempotent)."""

from __future__ import annotations

from personify.settings import Settings


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Every topic the project owns, with its per-topic config; profiles are compacted."""
    t = settings.topics
    keep_forever = {"retention.ms": "-1"}
    return {
        t.page_views: keep_forever,
        t.signups: keep_forever,
        t.billing: keep_forever,
        t.credits: keep_forever,
        t.dead_letters: keep_forever,
        t.profiles: {"cleanup.policy": "compact"},
        t.device_events: keep_forever,
        t.person_events: keep_forever,
    }


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create the missing topics and return their names; existing topics are left as they are."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
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
