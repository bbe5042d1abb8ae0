import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.segments import SEGMENTS, SegmentConfig, segment_of
from schemas.events import Traits

DEFAULT = SegmentConfig()


@pytest.mark.parametrize(
    ("company_size", "segment"),
    [
        (None, "Unknown"),
        (0, "SMB"),
        (1, "SMB"),
        (99, "SMB"),
        (100, "Mid-Market"),
        (999, "Mid-Market"),
        (1000, "Enterprise"),
        (250_000, "Enterprise"),
    ],
)
def test_segment_is_decided_by_company_size(company_size, segment):
    assert segment_of(Traits(company_size=company_size), DEFAULT) == segment


def test_a_person_without_traits_is_unknown():
    assert segment_of(None, DEFAULT) == "Unknown"


def test_other_traits_do_not_decide_the_segment():
    assert segment_of(Traits(company="Acme", plan="enterprise"), DEFAULT) == "Unknown"


def test_thresholds_are_configurable():
    config = SegmentConfig(mid_market_from=50, enterprise_from=500)
    sizes = (49, 50, 499, 500)
    assert [segment_of(Traits(company_size=s), config) for s in sizes] == [
        "SMB", "Mid-Market", "Mid-Market", "Enterprise"]


@pytest.mark.parametrize(("mid_market_from", "enterprise_from"), [(0, 10), (500, 100)])
def test_thresholds_out_of_order_are_rejected(mid_market_from, enterprise_from):
    with pytest.raises(ValueError):
        SegmentConfig(mid_market_from=mid_market_from, enterprise_from=enterprise_from)


@given(size=st.one_of(st.none(), st.integers(0, 10**7)))
def test_every_person_falls_in_one_closed_segment(size):
    assert segment_of(Traits(company_size=size), DEFAULT) in SEGMENTS
