"""One topology: the topics and tables the worker declares are the ones the stack creates."""

import faust

from personify.cli import main
from streams.tables import declare_tables
from streams.topics import declare_topics
from streams.topology import COMPACTED, KEEP_FOREVER, TABLES, Settings, topic_configs

SETTINGS = Settings(app_id="topology-test", store="memory://")


def test_every_topic_name_and_every_table_changelog_has_a_config():
    configs = topic_configs(SETTINGS)
    topics = SETTINGS.topics
    for field in topics.__dataclass_fields__:
        assert getattr(topics, field) in configs
    for table in TABLES:
        assert configs[SETTINGS.changelog(table.name)] == COMPACTED
    assert configs[topics.profiles] == COMPACTED
    assert configs[topics.billing] == KEEP_FOREVER == configs[topics.credits]
    assert len(configs) == len(topics.__dataclass_fields__) + len(TABLES)


def test_the_worker_declares_exactly_the_topology():
    app = faust.App(SETTINGS.app_id, store=SETTINGS.store, topic_partitions=SETTINGS.partitions)
    declared = declare_topics(app, SETTINGS)
    topics = {name for value in vars(declared).values() for name in value.topics}
    tables = declare_tables(app, SETTINGS)
    changelogs = {table.changelog_topic.get_topic_name() for table in vars(tables).values()}
    assert topics | changelogs == set(topic_configs(SETTINGS))
    assert changelogs == {SETTINGS.changelog(table.name) for table in TABLES}


def test_personify_topics_lists_the_topology(capsys, monkeypatch):
    monkeypatch.setenv("PERSONIFY_PARTITIONS", "6")
    assert main(["topics", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == list(topic_configs(Settings()))
    assert all("\tpartitions=6\t" in line for line in lines)
