from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from importlib.metadata import version

import pytest
from confluent_kafka import OFFSET_BEGINNING
from faust.stores.rocksdb import Store
from faust.types import TP

from streams.faust_internals import (
    FAUST_CHECKED,
    OFFSET_KEY,
    decode_offset,
    encode_offset,
    open_store,
    resume_offset,
    store_path,
)
from streams.restore import StoreWriter, pending, skip_write_ahead_log
from streams.topology import PERSONS, Settings


def contents(path):
    db = open_store(path)
    try:
        return dict(db.items())
    finally:
        db.close()


def test_a_store_resumes_after_its_last_applied_record_or_from_the_beginning():
    assert resume_offset(None) == OFFSET_BEGINNING
    assert resume_offset(0) == 1
    assert resume_offset(41) == 42


@pytest.mark.parametrize(("start", "end", "expected"), [
    (OFFSET_BEGINNING, 0, False),  # empty changelog
    (OFFSET_BEGINNING, 1, True),
    (5, 5, False),  # store current: its last record was 4
    (4, 5, True),
    (9, 5, False),  # store ahead of its changelog: left to Faust's consistency check
])
def test_a_partition_is_restored_only_when_its_changelog_has_records_past_the_store(
        start, end, expected):
    assert pending(start, end) is expected


def test_faust_is_the_release_whose_store_layout_the_restorer_follows():
    """On an upgrade, check streams/restore.py's Faust block against the new release."""
    assert version("faust-streaming") == FAUST_CHECKED


def test_offsets_are_stored_as_faust_stores_them():
    assert Store.offset_key == OFFSET_KEY
    assert encode_offset(220_313) == b"220313"
    assert decode_offset(encode_offset(220_313)) == 220_313
    assert decode_offset(None) is None


def test_each_write_carries_the_offset_of_its_last_record(tmp_path):
    path = tmp_path / "store.db"
    writer = StoreWriter(open_store(path), batch_size=3)
    for offset in range(7):
        writer.apply(offset, f"k{offset % 4}".encode(), f"v{offset}".encode())
    assert writer.applied == 6
    writer.db.close()
    assert contents(path) == {b"k0": b"v4", b"k1": b"v5", b"k2": b"v2", b"k3": b"v3",
                              OFFSET_KEY: b"5"}


def test_a_tombstone_deletes_its_key(tmp_path):
    path = tmp_path / "store.db"
    writer = StoreWriter(open_store(path))
    writer.apply(10, b"a", b"1")
    writer.apply(11, b"b", b"1")
    writer.apply(12, b"a", None)
    writer.flush()
    writer.db.close()
    assert contents(path) == {b"b": b"1", OFFSET_KEY: b"12"}


def test_faust_opens_the_store_the_restorer_wrote_and_finds_it_current(tmp_path):
    from streams.app import create_app

    settings = replace(Settings(), data_dir=tmp_path, store="rocksdb://",
                       app_id="restore-unit")
    path = store_path(tmp_path, PERSONS.name, 1)
    writer = StoreWriter(open_store(path))
    writer.apply(0, b"p1", b'{"v":1}')
    writer.apply(1, b"p2", b'{"v":2}')
    writer.flush()
    writer.db.close()

    store = create_app(settings).tables[PERSONS.name].data
    tp = TP(settings.changelog(PERSONS.name), 1)

    assert store.partition_path(1) == path
    assert store.persisted_offset(tp) == 1
    assert dict(store._visible_items(store._db_for_partition(1))) == {
        b"p1": b'{"v":1}', b"p2": b'{"v":2}'}


def test_writes_handed_to_a_thread_land_in_order_and_survive_the_close(tmp_path):
    path = tmp_path / "store.db"
    db = open_store(path)
    skip_write_ahead_log(db)
    with ThreadPoolExecutor(1) as writes:
        writer = StoreWriter(db, batch_size=2, writes=writes)
        for offset in range(5):
            writer.apply(offset, b"k", f"v{offset}".encode())
        writer.finish()
    assert writer.applied == 5
    db.flush()
    db.close()
    assert contents(path) == {b"k": b"v4", OFFSET_KEY: b"4"}
