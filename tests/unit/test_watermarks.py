from processors.watermarks import (
    END_OF_TIME,
    NO_WATERMARK,
    NOT_YET,
    Watermark,
    input_mark,
    low_watermark,
    person_watermark,
)


def test_a_fully_consumed_input_partition_is_idle():
    assert input_mark(newest_ts=50, position=10, highwater=10) is None


def test_a_partition_with_backlog_marks_its_newest_forwarded_time():
    assert input_mark(newest_ts=50, position=9, highwater=10) == 50


def test_a_partition_with_backlog_and_nothing_forwarded_holds_everything():
    assert input_mark(newest_ts=None, position=0, highwater=10) == NOT_YET
    assert input_mark(newest_ts=None, position=None, highwater=None) == NOT_YET


def test_the_low_watermark_is_the_least_busy_partition():
    assert low_watermark({"pv:0": 30, "pv:1": None, "su:0": 20}, expected_partitions=3) == 20


def test_all_idle_partitions_let_everything_through():
    assert low_watermark({"pv:0": None, "su:0": None}, expected_partitions=2) == END_OF_TIME


def test_an_unheard_input_partition_holds_the_watermark():
    assert low_watermark({"pv:0": None}, expected_partitions=2) == NOT_YET


def test_a_person_partition_waits_for_every_device_partition():
    views = {0: Watermark(10, 100), 1: Watermark(20, 90)}
    assert person_watermark(views, device_partitions=3) == NO_WATERMARK
    views[2] = Watermark(15, 120)
    assert person_watermark(views, device_partitions=3) == Watermark(10, 90)


def test_a_watermark_passes_events_it_covers_and_knew_about():
    watermark = Watermark(upto_ms=100, fresh_ms=1_000)
    assert watermark.passed(100, validated_at_ms=1_000)
    assert not watermark.passed(101, validated_at_ms=0)
    assert not watermark.passed(5, validated_at_ms=1_001)
