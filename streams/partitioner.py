"""Kafka's default key partitioning, reproduced so tools can predict where a key lands.

The Java producer (and Faust, through aiokafka) sends a keyed record to partition
`(murmur2(key) & 0x7fffffff) % partitions`, where `murmur2` is Kafka's 32-bit MurmurHash2 with
seed 0x9747b28c read as a signed Java int. Producers outside Faust must agree with it or the
input topics stop being co-partitioned with Faust's own topics (DESIGN.md §9); librdkafka agrees
only when configured with `partitioner=murmur2_random`.
"""

from __future__ import annotations

_SEED = 0x9747B28C
_M = 0x5BD1E995
_R = 24
_MASK32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2`: MurmurHash2 of the bytes, as the signed 32-bit int Java returns."""
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    whole = length - length % 4
    for offset in range(0, whole, 4):
        k = int.from_bytes(data[offset : offset + 4], "little")
        k = (k * _M) & _MASK32
        k ^= k >> _R
        k = (k * _M) & _MASK32
        h = ((h * _M) & _MASK32) ^ k
    tail = data[whole:]
    if tail:
        h = ((h ^ int.from_bytes(tail, "little")) * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a non-null key among `partitions`."""
    if partitions <= 0:
        raise ValueError(f"partitions must be positive, got {partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions
