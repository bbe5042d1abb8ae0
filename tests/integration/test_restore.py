import shutil
from dataclasses import replace

from confluent_kafka import Consumer, Producer, TopicPartition

from streams.faust_internals import OFFSET_KEY, open_store, store_path
from streams.restore import restore_before_start, restore_stores
from streams.topology import DEVICES, PERSONS, TABLES
from tests.integration.test_attribution_end_to_end import _cli, _simulate
from tests.integration.test_event_time_through_the_broker import CreditReader, reference
from tests.unit.test_restore import contents


def every_store(settings, data_dir):
    """(table, partition) → the store's keys and values, the offset record included; stores
    that hold nothing are left out (Faust creates them on assignment, the restorer too)."""
    stores = {}
    for table in TABLES:
        for partition in range(settings.partitions):
            path = store_path(data_dir, table.name, partition)
            if path.exists() and (items := contents(path)):
                stores[table.name, partition] = items
    return stores


def last_offsets(settings):
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "offsets"})
    try:
        ends = {(table.name, partition): consumer.get_watermark_offsets(
            TopicPartition(settings.changelog(table.name), partition), timeout=10)[1]
            for table in TABLES for partition in range(settings.partitions)}
    finally:
        consumer.close()
    return {where: str(end - 1).encode() for where, end in ends.items() if end}


def produce_to(settings, table, partition, records):
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for key, value in records:
        producer.produce(settings.changelog(table.name), key=key, value=value,
                         partition=partition)
    assert producer.flush(30) == 0


def test_restored_stores_equal_the_workers_own_and_the_worker_goes_on_from_them(
        settings, start_worker, tmp_path):
    settings = replace(settings, store="rocksdb://")
    (tmp_path / "first").mkdir(), (tmp_path / "second").mkdir()
    first, _ = _simulate(tmp_path / "first", people=1500, seed=7)
    second, _ = _simulate(tmp_path / "second", people=500, seed=1007)
    first_lines, second_lines = first.read_bytes().splitlines(), second.read_bytes().splitlines()
    worker = start_worker(settings)
    reader = CreditReader(settings)
    _cli(settings, "send", "--no-progress", str(first))
    expected, _ = reference(first_lines)
    assert reader.read_until(expected) == expected
    worker.stop()
    kept = tmp_path / "kept"
    shutil.copytree(settings.data_dir, kept)
    shutil.rmtree(settings.data_dir)

    restored = restore_stores(settings)

    stores = every_store(settings, settings.data_dir)
    assert restored.records > 1_000
    assert len(stores) == restored.stores > 4
    assert stores == every_store(settings, kept)
    assert {where: items[OFFSET_KEY] for where, items in stores.items()} == last_offsets(settings)

    start_worker(settings, name="restored")
    reader = CreditReader(settings)
    _cli(settings, "send", "--no-progress", str(second))
    expected, _ = reference(first_lines + second_lines)
    assert reader.read_until(expected) == expected


def test_a_warm_store_gets_only_its_changelog_tail_and_a_tombstone_deletes(settings):
    settings = replace(settings, store="rocksdb://")
    produce_to(settings, PERSONS, 2, [(b"a", b"1"), (b"b", b"1"), (b"c", b"1")])
    assert restore_stores(settings).records == 3
    path = store_path(settings.data_dir, PERSONS.name, 2)
    db = open_store(path)
    db[b"c"] = b"set after the restore: a replay from the beginning would overwrite it"
    db.close()
    produce_to(settings, PERSONS, 2, [(b"a", None), (b"b", b"2")])

    tail = restore_stores(settings)

    assert (tail.records, tail.stores) == (2, 1)
    assert contents(path) == {
        b"b": b"2", OFFSET_KEY: b"4",
        b"c": b"set after the restore: a replay from the beginning would overwrite it"}
    assert restore_stores(settings).records == 0


def test_a_store_held_by_a_running_worker_leaves_recovery_to_faust_without_failing(
        settings, capsys):
    settings = replace(settings, store="rocksdb://")
    produce_to(settings, DEVICES, 0, [(b"d", b"1")])
    held = open_store(store_path(settings.data_dir, DEVICES.name, 0))
    try:
        assert restore_before_start(settings) is None
    finally:
        held.close()
    assert "fast restore of the tables failed" in capsys.readouterr().err
    assert restore_before_start(settings).records == 1
