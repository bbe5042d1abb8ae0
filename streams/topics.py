"""Every topic the worker reads or writes, declared in one place.

Values and keys travel as raw bytes: the inputs must keep their original bytes for the
dead-letter topic, and internal records are encoded with orjson by the agents themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from streams.topology import Settings


@dataclass(frozen=True)
class TopicRegistry:
    inputs: faust.TopicT
    """page views, signups and billing: one stream, the source topic tells the schema."""
    spend: faust.TopicT
    """marketing spend, keyed source/medium/campaign: its own stage (streams/stages/spend.py)."""
    device_events: faust.TopicT
    """batches of valid page views and signups, partitioned by anonymous_id (murmur2)."""
    person_events: faust.TopicT
    """batches of touches, links, signups and billing, partitioned by person (user_id)."""
    credits: faust.TopicT
    profiles: faust.TopicT
    dead_letters: faust.TopicT


def declare_topics(app: faust.App, settings: Settings) -> TopicRegistry:
    names = settings.topics

    def topic(*topic_names: str, internal: bool = False) -> faust.TopicT:
        return app.topic(*topic_names, key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=settings.partitions,
                         internal=internal)

    return TopicRegistry(
        inputs=topic(*names.inputs()),
        spend=topic(names.spend),
        device_events=topic(names.device_events, internal=True),
        person_events=topic(names.person_events, internal=True),
        credits=topic(names.credits),
        profiles=topic(names.profiles),
        dead_letters=topic(names.dead_letters),
    )
