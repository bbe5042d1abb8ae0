import pytest
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Producer
from hypothesis import given
from hypothesis import strategies as st

from streams.partitioner import murmur2, partition_for

# Kafka's own UtilsTest.testMurmur2 vectors (signed Java ints).
KAFKA_UTILS_TEST_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]

# Partitions the Java producer's default partitioner gives these keys among 1,000 partitions.
JAVA_PARTITIONS_OF_1000 = [
    (b"", 681),
    (b"a", 524),
    (b"ab", 434),
    (b"abc", 107),
    (b"123456789", 566),
    (b"\x00 ", 742),
]


@pytest.mark.parametrize(("data", "expected"), KAFKA_UTILS_TEST_VECTORS)
def test_murmur2_matches_kafkas_own_test_vectors(data, expected):
    assert murmur2(data) == expected


@pytest.mark.parametrize(("key", "expected"), JAVA_PARTITIONS_OF_1000)
def test_partition_matches_the_java_default_partitioner(key, expected):
    assert partition_for(key, 1000) == expected


@given(key=st.binary(max_size=64), partitions=st.integers(min_value=1, max_value=512))
def test_partition_agrees_with_the_partitioner_faust_uses(key, partitions):
    everyone = list(range(partitions))
    assert partition_for(key, partitions) == DefaultPartitioner()(key, everyone, everyone)


@given(data=st.binary(max_size=64))
def test_murmur2_is_a_signed_32_bit_int(data):
    assert -(2**31) <= murmur2(data) < 2**31


def test_partition_for_refuses_a_topic_without_partitions():
    with pytest.raises(ValueError, match="positive"):
        partition_for(b"key", 0)


def _placed_by_librdkafka(topic, keys, **config):
    """Partitions librdkafka's in-process mock cluster (4 partitions a topic, no broker) gives."""
    producer = Producer({"test.mock.num.brokers": 1, "log_level": 0, **config})
    placed = {}

    def record(error, message):
        placed[message.key()] = message.partition()

    for key in keys:
        producer.produce(topic, b"{}", key, on_delivery=record)
    assert producer.flush(10) == 0
    assert len(producer.list_topics(topic).topics[topic].partitions) == 4
    return placed


def test_confluent_kafka_murmur2_random_puts_keys_where_kafka_does():
    keys = [f"anon-{index}".encode() for index in range(200)] + [b"21", b"foobar"]
    placed = _placed_by_librdkafka("partitioner-check", keys, partitioner="murmur2_random")
    assert placed == {key: partition_for(key, 4) for key in keys}


def test_confluent_kafkas_default_partitioner_would_not():
    keys = [f"anon-{index}".encode() for index in range(50)]
    placed = _placed_by_librdkafka("partitioner-default", keys)
    assert placed != {key: partition_for(key, 4) for key in keys}
