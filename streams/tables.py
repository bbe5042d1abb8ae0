"""The worker's state: one table per key space, changelogged, values are versioned JSON records.

Each table is updated only from the stream keyed like it (devices from device events, persons
from person events), so a changelog record lands in the partition its key hashes to.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from streams.topology import (
    AGGREGATES,
    DEVICES,
    PERSONS,
    SPEND_AGGREGATES,
    SPEND_FACTS,
    Settings,
    Table,
)

RECOVERY_BATCH = 10_000
"""Changelog records applied to the store per write batch while rebuilding a table."""
ROCKSDB_OPTIONS = {"write_buffer_size": 16 * 2**20, "max_write_buffer_number": 2,
                   "block_cache_size": 32 * 2**20}
"""Memory per RocksDB database, one per table and partition (16 with 4 partitions): Faust's
defaults (a 2 GiB block cache and three 64 MiB write buffers each) let a worker's memory grow
with its state; these bound it to about 1 GiB in all."""


@dataclass(frozen=True)
class TableRegistry:
    devices: faust.Table
    """anonymous_id → DeviceState: the device's page views and links, and the shares sent."""
    persons: faust.Table
    """user_id → PersonState: device shares, signups, billing, basis and what was emitted."""
    aggregates: faust.Table
    """"{partition}|{hour or all}|{measure group}" → cells of the rolling business aggregates."""
    spend_facts: faust.Table
    """source/medium/campaign → SpendState: the event ids of that campaign's spend lines."""
    spend_aggregates: faust.Table
    """Like `aggregates`, for the spend partitions (streams/stages/spend.py): spend by channel."""


def declare_tables(app: faust.App, settings: Settings) -> TableRegistry:
    def table(spec: Table) -> faust.Table:
        return app.Table(spec.name, key_type=bytes, value_type=bytes,
                         partitions=settings.partitions, recovery_buffer_size=RECOVERY_BATCH,
                         options=dict(ROCKSDB_OPTIONS), help=spec.about)

    return TableRegistry(devices=table(DEVICES), persons=table(PERSONS),
                         aggregates=table(AGGREGATES), spend_facts=table(SPEND_FACTS),
                         spend_aggregates=table(SPEND_AGGREGATES))
