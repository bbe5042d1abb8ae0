from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.validation import REASONS, Rejection, ValidationConfig, decode
from schemas.events import PageView, Payment, Refund, Signup, SubscriptionChange

NOW_MS = 1_743_465_600_000
CONFIG = ValidationConfig(known_currencies=frozenset({"USD", "EUR"}))
TOPIC_KINDS = ("page_view", "signup", "billing")
EVENT_TYPES = (PageView, Signup, Payment, Refund, SubscriptionChange)
VALID = {
    "page_view": {
        "schema": "page_view/1",
        "event_id": "pv-1",
        "ts": NOW_MS,
        "anonymous_id": "anon-1",
        "user_id": None,
        "url": "https://example.com/",
        "referrer": None,
    },
    "signup": {
        "schema": "signup/1",
        "event_id": "su-1",
        "ts": NOW_MS,
        "anonymous_id": "anon-1",
        "user_id": "user-1",
        "traits": {"company_size": 12},
    },
    "billing": {
        "schema": "billing/1",
        "event_id": "pay-1",
        "ts": NOW_MS,
        "user_id": "user-1",
        "kind": "payment",
        "amount_minor": 100,
        "currency": "USD",
    },
}
FUZZ = settings(max_examples=250, derandomize=True, deadline=None)


def decode_anywhere(raw: bytes) -> list[Any]:
    return [decode(raw, kind, now_ms=NOW_MS, config=CONFIG) for kind in TOPIC_KINDS]


def assert_total(results: list[Any]) -> None:
    for result in results:
        if isinstance(result, Rejection):
            assert result.reason in REASONS
            assert result.message
        else:
            assert isinstance(result, EVENT_TYPES)


def with_raw_value(topic_kind: str, field: str, raw_value: bytes) -> bytes:
    """The valid payload with `field` set to raw JSON text (which may be broken on purpose)."""
    marker = "\u0001marker\u0001"
    text = orjson.dumps(VALID[topic_kind] | {field: marker})
    return text.replace(orjson.dumps(marker), raw_value)


FIELDS = sorted({field for payload in VALID.values() for field in payload} | {"campaign", "extra"})


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_never_raise(raw: bytes) -> None:
    assert_total(decode_anywhere(raw))


@FUZZ
@given(st.sampled_from(TOPIC_KINDS), st.sampled_from(FIELDS), st.binary(min_size=1, max_size=64))
def test_random_bytes_inside_a_field_never_raise(topic_kind: str, field: str, junk: bytes) -> None:
    assert_total(decode_anywhere(with_raw_value(topic_kind, field, junk)))


INVALID_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80"]


@pytest.mark.parametrize("bad", INVALID_UTF8)
@pytest.mark.parametrize("topic_kind", TOPIC_KINDS)
def test_invalid_utf8_in_a_string_is_not_json(topic_kind: str, bad: bytes) -> None:
    raw = with_raw_value(topic_kind, "event_id", b'"id-' + bad + b'"')
    assert decode(raw, topic_kind, now_ms=NOW_MS, config=CONFIG).reason == "not_json"


@pytest.mark.parametrize("escape", [b'"\\ud800"', b'"\\udfff"', b'"a\\ud83d"', b'"\\ud83d\\u0041"'])
def test_lone_surrogate_escapes_are_not_json(escape: bytes) -> None:
    raw = with_raw_value("page_view", "anonymous_id", escape)
    assert decode(raw, "page_view", now_ms=NOW_MS, config=CONFIG).reason == "not_json"


@pytest.mark.parametrize("depth", [1, 100, 1000, 1023, 1024, 1025, 20_000])
@pytest.mark.parametrize("field", ["extra", "campaign", "url", "ts"])
def test_deep_nesting_never_raises(depth: int, field: str) -> None:
    nested = b"[" * depth + b"]" * depth
    assert_total(decode_anywhere(with_raw_value("page_view", field, nested)))
    objects = b'{"a":' * depth + b"1" + b"}" * depth
    assert_total(decode_anywhere(with_raw_value("signup", "traits", objects)))


@pytest.mark.parametrize(
    ("field", "number", "reason"),
    [
        ("amount_minor", b"1" + b"0" * 30, "invalid_value"),
        ("amount_minor", b"18446744073709551616", "invalid_value"),
        ("amount_minor", b"-" + b"9" * 40, "non_positive_amount"),
        ("amount_minor", b"1e308", "wrong_type"),
        ("amount_minor", b"1e400", "not_json"),
        ("amount_minor", b"NaN", "not_json"),
        ("amount_minor", b"Infinity", "not_json"),
        ("amount_minor", b"1e-400", "wrong_type"),
        ("amount_minor", b"100.0", "wrong_type"),
        ("amount_minor", b"1" + b"0" * 30 + b".0", "wrong_type"),
        ("ts", b"9" * 300, "timestamp_in_future"),
        ("ts", b"-" + b"9" * 300, "timestamp_too_old"),
        ("ts", b"9" * 300 + b".0", "wrong_type"),
        ("ts", b"1.5e-3", "wrong_type"),
        ("ts", str(NOW_MS).encode() + b".0", "wrong_type"),
    ],
)
def test_huge_and_special_numbers_are_refused_by_type_range_or_as_not_json(
    field: str, number: bytes, reason: str
) -> None:
    raw = with_raw_value("billing", field, number)
    assert decode(raw, "billing", now_ms=NOW_MS, config=CONFIG).reason == reason


ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False).filter(lambda x: abs(x) != float("inf"))
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(st.sampled_from(TOPIC_KINDS), st.sampled_from(FIELDS), ANY_JSON)
def test_any_json_value_in_any_field_never_raises(topic_kind: str, field: str, value: Any) -> None:
    raw = orjson.dumps(VALID[topic_kind] | {field: value})
    assert_total([decode(raw, topic_kind, now_ms=NOW_MS, config=CONFIG)])


MAX_AGE_MS, MAX_FUTURE_MS = CONFIG.max_age_ms, CONFIG.max_future_ms
INTEGER_FIELDS = [
    # (topic kind, payload, path of a field that must be a JSON integer, its valid range)
    ("page_view", VALID["page_view"], ("ts",), (NOW_MS - MAX_AGE_MS, NOW_MS + MAX_FUTURE_MS)),
    ("billing", VALID["billing"], ("amount_minor",), (1, 10**15)),
    (
        "billing",
        VALID["billing"] | {"kind": "refund", "refund_of": "pay-0"},
        ("amount_minor",),
        (1, 10**15),
    ),
    (
        "billing",
        {k: v for k, v in VALID["billing"].items() if k != "amount_minor"}
        | {"kind": "subscription_change", "subscription_id": "s-1", "plan": "pro", "mrr_minor": 0},
        ("mrr_minor",),
        (0, 10**15),
    ),
    ("signup", VALID["signup"], ("traits", "company_size"), (0, 10**8)),
]


def with_number_at(payload: dict[str, Any], path: tuple[str, ...], text: bytes) -> bytes:
    """`payload` with the number at `path` spelled exactly `text`."""
    marker = "\u0001number\u0001"
    changed = orjson.loads(orjson.dumps(payload))
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = marker
    return orjson.dumps(changed).replace(orjson.dumps(marker), text)


@st.composite
def non_integer_spellings(draw: st.DrawFn, n: int) -> bytes:
    """`n` ≥ 0 written exactly but with a fraction or exponent: `4900.00`, `49.00e2`, `49000e-1`."""
    digits = str(n)
    point = draw(st.integers(1, len(digits)))
    zeros = "0" * draw(st.integers(0, 3))
    exponent = draw(st.sampled_from(["e", "E", "e+", "E+"])) + str(len(digits) - point)
    shifted = f"{digits}{zeros}e-{len(zeros)}" if n else f"0e{len(zeros)}"
    spelling = draw(
        st.sampled_from(
            [
                f"{digits}.0{zeros}",
                f"{digits[:point]}.{digits[point:] + zeros or '0'}{exponent}",
                shifted,
            ]
        )
    )
    return spelling.encode()


@st.composite
def integer_field_cases(draw: st.DrawFn) -> tuple[str, dict[str, Any], tuple[str, ...], int]:
    topic_kind, payload, path, (low, high) = draw(st.sampled_from(INTEGER_FIELDS))
    return topic_kind, payload, path, draw(st.integers(low, high))


@FUZZ
@given(integer_field_cases(), st.data())
def test_an_integer_field_is_accepted_exactly_when_written_as_a_json_integer(
    case: tuple[str, dict[str, Any], tuple[str, ...], int], data: st.DataObject
) -> None:
    topic_kind, payload, path, n = case
    plain = decode(
        with_number_at(payload, path, str(n).encode()), topic_kind, now_ms=NOW_MS, config=CONFIG
    )
    assert isinstance(plain, EVENT_TYPES), plain
    spelled = data.draw(non_integer_spellings(n))
    result = decode(
        with_number_at(payload, path, spelled), topic_kind, now_ms=NOW_MS, config=CONFIG
    )
    assert isinstance(result, Rejection), spelled
    assert result.reason == "wrong_type", (spelled, result)


@FUZZ
@given(
    st.sampled_from(INTEGER_FIELDS),
    st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**40), 10**40),
)
def test_no_number_but_a_json_integer_in_range_reaches_an_event(
    field: tuple[str, dict[str, Any], tuple[str, ...], tuple[int, int]], number: float | int
) -> None:
    topic_kind, payload, path, (low, high) = field
    raw = with_number_at(
        payload, path, orjson.dumps(number) if abs(number) < 2**63 else str(number).encode()
    )
    result = decode(raw, topic_kind, now_ms=NOW_MS, config=CONFIG)
    accepted = type(number) is int and low <= number <= high
    assert isinstance(result, EVENT_TYPES) is accepted, (number, result)
    if isinstance(number, float):
        assert result.reason == "wrong_type"
    elif not accepted:
        assert result.reason != "wrong_type"


@FUZZ
@given(ANY_JSON)
def test_any_json_document_never_raises(document: Any) -> None:
    assert_total(decode_anywhere(orjson.dumps(document)))


@FUZZ
@given(
    st.sampled_from(TOPIC_KINDS),
    st.sampled_from(FIELDS),
    st.integers(0, 70_000),
    st.characters(codec="utf-8"),
)
def test_very_long_strings_never_raise(topic_kind: str, field: str, length: int, char: str) -> None:
    raw = orjson.dumps(VALID[topic_kind] | {field: char * length})
    result = decode(raw, topic_kind, now_ms=NOW_MS, config=CONFIG)
    assert_total([result])
    if len(raw) > CONFIG.max_payload_bytes:
        assert result.reason == "oversized_payload"


def test_the_valid_payloads_used_for_fuzzing_are_events() -> None:
    for topic_kind, payload in VALID.items():
        assert not isinstance(
            decode(orjson.dumps(payload), topic_kind, now_ms=NOW_MS, config=CONFIG), Rejection
        )
