"""Every use of a private attribute of Faust (or of its Kafka client), each with its reason.

Checked against faust-streaming 0.15.3 (pinned in pyproject.toml); on an upgrade, read each
function again against the new version. A test (tests/unit/test_faust_internals.py) keeps
private attributes of other objects out of the rest of `streams/`. Beside the running worker's
internals: the layout of Faust's RocksDB stores, which the restorer (streams/restore.py) writes
before Faust starts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
from confluent_kafka import OFFSET_BEGINNING

from streams.tables import ROCKSDB_OPTIONS

FAUST_CHECKED = "0.15.3"
"""The faust-streaming release every function here was checked against (a unit test compares
it with the installed one)."""
OFFSET_KEY = b"__faust\0offset__"
"""The key under which Faust's RocksDB store keeps the offset of the last changelog record in
that store (`faust.stores.rocksdb.Store.offset_key`, faust-streaming 0.15.3)."""
FAUST_APP_VERSION = 1
"""The app's `version` (the app sets none, Faust's default); it names the state directory."""


def store_path(data_dir: Path, table: str, partition: int) -> Path:
    """The RocksDB directory Faust opens for `table`'s `partition`:
    `{datadir}/v{version}/tables/{table}-{partition}.db` (settings `appdir` and `tabledir`,
    `Store.partition_path` with the table name as basename; faust-streaming 0.15.3)."""
    return data_dir / f"v{FAUST_APP_VERSION}" / "tables" / f"{table}-{partition}.db"


def open_store(path: Path) -> Any:
    """The store opened exactly as Faust opens it: its own `RocksDBOptions` over the table's
    options (streams/tables.py), raw keys and values (rocksdict `raw_mode`), same block cache
    and write buffers (faust/stores/rocksdb.py, faust-streaming 0.15.3). Raises when another
    process holds the store's lock."""
    from faust.stores.rocksdb import RocksDBOptions

    return RocksDBOptions(**ROCKSDB_OPTIONS, use_rocksdict=True).open(path)


def new_write_batch() -> Any:
    """A batch in the store's raw mode (what `Store.apply_changelog_batch` builds)."""
    import rocksdict

    return rocksdict.WriteBatch(raw_mode=True)


def encode_offset(offset: int) -> bytes:
    """`Store.set_persisted_offset`: the decimal offset of the last changelog record applied
    (faust-streaming 0.15.3)."""
    return str(offset).encode()


def decode_offset(raw: bytes | None) -> int | None:
    """`Store.persisted_offset`: None when the store holds no offset yet."""
    return None if raw is None else int(raw)


def resume_offset(persisted: int | None) -> int:
    """The first changelog offset still to apply. Faust's recovery seeks to the persisted
    offset and drops every record at or below it (`Recovery._slurp_changelogs`), so it resumes
    at the next one; a store without an offset is read from the log's beginning."""
    return OFFSET_BEGINNING if persisted is None else persisted + 1


def committed_offset(app: faust.App, tp: Any) -> int | None:
    """The group's committed offset of `tp` as the consumer knows it (from the assignment,
    then from each commit; None when the group has none: it starts from the earliest). Faust
    keeps it in `Consumer._committed_offset`; there is no public getter, and asking the broker
    would be a round trip per take."""
    return app.consumer._committed_offset.get(tp)


def report_gaps_instead_of_skipping(
        app: faust.App, on_gap: Callable[[Any, int, int], Awaitable[None]]) -> None:
    """Make `on_gap(tp, offset_from, offset_to)` what the consumer calls when two records it
    delivers are not consecutive. Faust's own `Consumer._add_gap` marks the offsets between as
    done, so its commit moves past them; it has no switch to turn that off."""
    app.consumer._add_gap = on_gap


def set_current_event(stream: faust.StreamT, event: faust.EventT) -> None:
    """Make `event` the current event of `stream` and of the running context, as Faust does
    before it hands an event over (`Stream._set_current_event`): the RocksDB store files a
    write under the current event's partition, and Faust has no public way to say which
    partition a store write belongs to."""
    stream._set_current_event(event)


def keys_in(table: faust.Table) -> int:
    """Keys in the table's active partitions; RocksDB's own estimate where it is the store:
    counting them would scan every key and stop the streams for seconds at a million persons.
    Faust's RocksDB store lists its open databases only privately
    (`Store._dbs_for_actives`)."""
    active_dbs = getattr(table.data, "_dbs_for_actives", None)
    if active_dbs is None:  # the in-memory store
        return len(table)
    return sum(db.property_int_value("rocksdb.estimate-num-keys") or 0 for db in active_dbs())
