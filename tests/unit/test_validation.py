from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.dead_letters import MAX_ORIGINAL_BYTES, dead_letter_record
from processors.validation import (
    DAY_MS,
    REASONS,
    Reason,
    Rejection,
    ValidationConfig,
    decode,
    epoch_ms,
)
from schemas.contract import SCHEMA_DIR, SchemaError, load_schema, validator
from schemas.events import Campaign, PageView, Payment, Refund, Signup, SubscriptionChange, Traits

NOW_MS = 1_743_465_600_000  # 2025-04-01T00:00:00Z
CONFIG = ValidationConfig(
    known_currencies=frozenset({"USD", "EUR", "JPY"}), junk_block_list=frozenset({"test-user"})
)


def golden(name: str, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((SCHEMA_DIR / "examples" / f"{name}.json").read_text())
    payload.update(changes)
    return payload


def without(payload: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in names}


def decode_payload(payload: Any, topic_kind: str, config: ValidationConfig = CONFIG) -> Any:
    return decode(orjson.dumps(payload), topic_kind, now_ms=NOW_MS, config=config)


PAYMENT = golden("billing.v1.payment")
PAGE_VIEW = golden("page_view.v1.anonymous")
SIGNUP = golden("signup.v1.with_traits")

DECODE_REASON_CASES = [
    # (reason, topic kind, raw bytes, words the message must contain)
    (
        "oversized_payload",
        "page_view",
        orjson.dumps(PAGE_VIEW | {"url": "https://example.com/" + "a" * 70_000}),
        ["65536"],
    ),
    ("not_json", "page_view", b'{"schema": "page_view/1",', ["JSON"]),
    ("not_json", "billing", b'{"user_id": "\xff\xfe"}', ["UTF-8"]),
    ("not_an_object", "signup", b'[{"schema": "signup/1"}]', ["array", "object"]),
    ("unknown_schema", "page_view", orjson.dumps(SIGNUP), ["signup/1", "page_view/1"]),
    (
        "unknown_schema",
        "page_view",
        orjson.dumps(PAGE_VIEW | {"schema": "page_view/2"}),
        ["page_view/2"],
    ),
    ("missing_field", "page_view", orjson.dumps(without(PAGE_VIEW, "schema")), ["'schema'"]),
    (
        "missing_field",
        "billing",
        orjson.dumps(without(golden("billing.v1.refund"), "refund_of")),
        ["'refund_of'"],
    ),
    (
        "wrong_type",
        "billing",
        orjson.dumps(PAYMENT | {"amount_minor": "4900"}),
        ["amount_minor", "an integer", "string"],
    ),
    (
        "wrong_type",
        "signup",
        orjson.dumps(SIGNUP | {"traits": {"company_size": "250"}}),
        ["traits.company_size"],
    ),
    ("wrong_type", "page_view", orjson.dumps(PAGE_VIEW | {"ts": 1743465600000.5}), ["'ts'"]),
    (
        "wrong_type",
        "billing",
        orjson.dumps(PAYMENT | {"amount_minor": 4900.0}),
        ["'amount_minor'", "fraction or exponent", "got 4900.0", "major units"],
    ),
    (
        "invalid_value",
        "billing",
        orjson.dumps(PAYMENT | {"currency": "usd"}),
        ["currency", "ISO 4217"],
    ),
    (
        "invalid_value",
        "billing",
        orjson.dumps(PAYMENT | {"kind": "chargeback"}),
        ["payment, refund, subscription_change"],
    ),
    (
        "invalid_value",
        "page_view",
        orjson.dumps(PAGE_VIEW | {"anonymous_id": "a" * 257}),
        ["256 characters"],
    ),
    (
        "invalid_value",
        "page_view",
        orjson.dumps(PAGE_VIEW | {"event_id": ""}),
        ["'event_id' must not be empty"],
    ),
    (
        "invalid_value",
        "billing",
        orjson.dumps(PAYMENT | {"amount_minor": 10**15 + 1}),
        ["above the maximum 1000000000000000"],
    ),
    (
        "invalid_value",
        "signup",
        orjson.dumps(SIGNUP | {"traits": {"company_size": -1}}),
        ["'traits.company_size' is below the minimum 0"],
    ),
    (
        "non_positive_amount",
        "billing",
        orjson.dumps(PAYMENT | {"amount_minor": 0}),
        ["amount_minor", "greater than 0"],
    ),
    (
        "non_positive_amount",
        "billing",
        orjson.dumps(golden("billing.v1.refund", amount_minor=-1200)),
        ["amount_minor"],
    ),
    (
        "unknown_currency",
        "billing",
        orjson.dumps(PAYMENT | {"currency": "XTS"}),
        ["XTS", "currency table"],
    ),
    (
        "unknown_currency",
        "billing",
        orjson.dumps(PAYMENT | {"currency": ""}),
        ["currency is empty", "ISO 4217"],
    ),
    (
        "timestamp_too_old",
        "page_view",
        orjson.dumps(PAGE_VIEW | {"ts": "2015-01-01T00:00:00Z"}),
        ["3650 days", "milliseconds, not seconds"],
    ),
    ("timestamp_too_old", "billing", orjson.dumps(PAYMENT | {"ts": NOW_MS // 1000}), ["days"]),
    (
        "timestamp_in_future",
        "signup",
        orjson.dumps(SIGNUP | {"ts": NOW_MS * 1000}),
        ["30 days", "microseconds"],
    ),
    (
        "invalid_timestamp",
        "page_view",
        orjson.dumps(PAGE_VIEW | {"ts": "2025-03-01T09:15:00"}),
        ["'ts'", "RFC 3339"],
    ),
    (
        "invalid_timestamp",
        "page_view",
        orjson.dumps(PAGE_VIEW | {"ts": "2025-02-29T09:15:00Z"}),
        ["2025-02-29"],
    ),
    ("junk_user_id", "signup", orjson.dumps(SIGNUP | {"user_id": "undefined"}), ["undefined"]),
    (
        "junk_user_id",
        "billing",
        orjson.dumps(PAYMENT | {"user_id": "00000000-0000-0000-0000-000000000000"}),
        ["user_id"],
    ),
    ("junk_user_id", "billing", orjson.dumps(PAYMENT | {"user_id": "Test-User"}), ["user_id"]),
]


@pytest.mark.parametrize(
    ("reason", "topic_kind", "raw", "words"),
    DECODE_REASON_CASES,
    ids=[f"{case[0]}-{i}" for i, case in enumerate(DECODE_REASON_CASES)],
)
def test_each_refusal_has_its_reason_and_a_message_saying_what_to_fix(
    reason: str, topic_kind: str, raw: bytes, words: list[str]
) -> None:
    result = decode(raw, topic_kind, now_ms=NOW_MS, config=CONFIG)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    for word in words:
        assert word in result.message


def test_every_reason_produced_at_the_edge_has_a_case() -> None:
    downstream = {
        "duplicate_event_id",
        "refund_unknown_payment",
        "refund_exceeds_payment",
        "refund_currency_mismatch",
        "refund_before_payment",
        "processing_error",
    }
    collector = {"unmapped_event", "source_not_allowed"}
    assert {case[0] for case in DECODE_REASON_CASES} == set(REASONS) - downstream - collector
    assert downstream | collector <= set(REASONS)


def test_golden_inputs_decode_to_the_typed_events() -> None:
    assert decode_payload(PAGE_VIEW, "page_view") == PageView(
        event_id="pv-0001",
        ts=1_740_820_500_250,
        anonymous_id="anon-7f3a9c",
        user_id=None,
        url=PAGE_VIEW["url"],
        referrer="https://www.google.com/",
    )
    assert decode_payload(golden("page_view.v1.logged_in_with_campaign"), "page_view").campaign == (
        Campaign(source="newsletter", medium="email", name="march-digest", content="hero-link")
    )
    assert decode_payload(SIGNUP, "signup") == Signup(
        event_id="su-0001",
        ts=1_740_924_312_000,
        anonymous_id="anon-7f3a9c",
        user_id="user-1042",
        traits=Traits("Acme GmbH", 250, "Manufacturing", "trial", "DE"),
    )
    assert decode_payload(PAYMENT, "billing") == Payment(
        "pay-0001", 1_741_161_600_000, "user-1042", 4900, "EUR"
    )
    assert decode_payload(golden("billing.v1.refund"), "billing") == Refund(
        "ref-0001", 1_741_537_200_000, "user-1042", 1200, "EUR", "pay-0001"
    )
    assert decode_payload(golden("billing.v1.subscription_change"), "billing") == (
        SubscriptionChange(
            "sub-0001", 1_741_161_601_000, "user-1042", "sub_8Hk2", "pro-monthly", 4900, "EUR"
        )
    )


def test_signup_without_traits_or_with_null_traits_has_empty_traits() -> None:
    assert decode_payload(golden("signup.v1.without_traits"), "signup").traits == Traits()
    assert decode_payload(SIGNUP | {"traits": None}, "signup").traits == Traits()


def test_unknown_fields_are_ignored() -> None:
    assert decode_payload(PAYMENT | {"coupon": {"code": "X"}, "v": 9}, "billing") == (
        decode_payload(PAYMENT, "billing")
    )


def with_number(payload: dict[str, Any], path: tuple[str, ...], text: str) -> bytes:
    """`payload` with the number at `path` spelled exactly `text`, as a producer might."""
    marker = "\u0001number\u0001"
    changed = json.loads(json.dumps(payload))
    node = changed
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = marker
    return orjson.dumps(changed).replace(orjson.dumps(marker), text.encode())


SUBSCRIPTION_CHANGE = golden("billing.v1.subscription_change")
INTEGER_FIELDS = [
    # (topic kind, valid payload, path of an integer field, its valid value)
    ("page_view", PAGE_VIEW, ("ts",), NOW_MS),
    ("signup", SIGNUP, ("ts",), NOW_MS),
    ("billing", PAYMENT, ("ts",), NOW_MS),
    ("billing", PAYMENT, ("amount_minor",), 4900),
    ("billing", golden("billing.v1.refund"), ("amount_minor",), 1200),
    ("billing", SUBSCRIPTION_CHANGE, ("mrr_minor",), 9900),
    ("signup", SIGNUP, ("traits", "company_size"), 250),
]
NON_INTEGER_SPELLINGS = ["{n}.0", "{n}.000", "{n}e0", "{n}E+0", "{n}0e-1", "{m}.{last}e1"]


@pytest.mark.parametrize(
    ("topic_kind", "payload", "path", "value"),
    INTEGER_FIELDS,
    ids=[f"{case[0]}-{'.'.join(case[2])}-{case[3]}" for case in INTEGER_FIELDS],
)
@pytest.mark.parametrize("spelling", NON_INTEGER_SPELLINGS)
def test_integers_written_with_a_fraction_or_exponent_are_wrong_type(
    topic_kind: str, payload: dict[str, Any], path: tuple[str, ...], value: int, spelling: str
) -> None:
    text = spelling.format(n=value, m=str(value)[:-1] or "0", last=str(value)[-1])
    result = decode(with_number(payload, path, text), topic_kind, now_ms=NOW_MS, config=CONFIG)
    assert isinstance(result, Rejection), text
    assert result.reason == "wrong_type"
    assert f"'{'.'.join(path)}' must be an integer written without a fraction" in result.message
    plain = decode(with_number(payload, path, str(value)), topic_kind, now_ms=NOW_MS, config=CONFIG)
    assert not isinstance(plain, Rejection), plain


@pytest.mark.parametrize(
    ("field", "text", "reason"),
    [
        ("amount_minor", "0.0", "wrong_type"),  # mistyped before it is non-positive
        ("amount_minor", "-5.0", "wrong_type"),
        ("amount_minor", "1e22", "wrong_type"),  # mistyped before it is too large
        ("amount_minor", "10000000000000000000000", "invalid_value"),  # an integer, too large
        ("amount_minor", "-10000000000000000000000", "non_positive_amount"),
        ("ts", "1e22", "wrong_type"),
        ("ts", "10000000000000000000000", "timestamp_in_future"),
        ("ts", "-10000000000000000000000", "timestamp_too_old"),
    ],
)
def test_integers_beyond_64_bits_fail_their_range_and_exponents_their_type(
    field: str, text: str, reason: str
) -> None:
    """orjson reads both as floats; only the spelling tells a mistyped number from a big one."""
    result = decode(with_number(PAYMENT, (field,), text), "billing", now_ms=NOW_MS, config=CONFIG)
    assert result.reason == reason


def test_a_negative_zero_integer_is_a_json_integer() -> None:
    event = decode(
        with_number(SUBSCRIPTION_CHANGE, ("mrr_minor",), "-0"),
        "billing",
        now_ms=NOW_MS,
        config=CONFIG,
    )
    assert event.mrr_minor == 0 and type(event.mrr_minor) is int
    minus_zero = with_number(SUBSCRIPTION_CHANGE, ("mrr_minor",), "-0.0")
    assert decode(minus_zero, "billing", now_ms=NOW_MS, config=CONFIG).reason == "wrong_type"


def test_a_float_in_an_unknown_or_other_kinds_field_is_ignored() -> None:
    """Only the fields the schema types as integers are held to it: extra fields stay free."""
    assert isinstance(
        decode_payload(PAYMENT | {"mrr_minor": 2.5, "score": 1.0}, "billing"), Payment
    )
    change = SUBSCRIPTION_CHANGE | {"amount_minor": 49.5}
    assert isinstance(decode_payload(change, "billing"), SubscriptionChange)
    assert isinstance(decode_payload(PAGE_VIEW | {"amount_minor": 1.0}, "page_view"), PageView)


def test_decoded_integer_fields_are_ints() -> None:
    event = decode_payload(PAYMENT | {"ts": NOW_MS}, "billing")
    assert type(event.amount_minor) is int and type(event.ts) is int
    assert type(decode_payload(SIGNUP, "signup").traits.company_size) is int


@pytest.mark.parametrize(
    "path",
    [("ts",), ("amount_minor",), ("mrr_minor",), ("traits", "properties", "company_size")],
    ids=lambda path: path[-1],
)
def test_schema_descriptions_say_integers_are_json_integers(path: tuple[str, ...]) -> None:
    node = load_schema("common/1")["$defs"]
    for key in path:
        node = node[key]
    assert "fraction or exponent" in node["description"]
    assert "stricter than JSON Schema's integer" in node["description"]


# Empty currency: `unknown_currency`, found at the currency step of the documented order.


@pytest.mark.parametrize(
    "payload", [PAYMENT, golden("billing.v1.refund"), SUBSCRIPTION_CHANGE], ids=lambda p: p["kind"]
)
def test_an_empty_currency_is_unknown_currency_on_every_billing_kind(
    payload: dict[str, Any],
) -> None:
    assert decode_payload(payload | {"currency": ""}, "billing").reason == "unknown_currency"


def test_an_empty_currency_is_unknown_even_when_the_table_has_the_stand_in_code() -> None:
    config = ValidationConfig(known_currencies=frozenset({"USD", "XXX", ""}))
    assert decode_payload(PAYMENT | {"currency": ""}, "billing", config).reason == (
        "unknown_currency"
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"currency": "", "amount_minor": 0}, "non_positive_amount"),  # the schema step first
        ({"currency": "", "ts": NOW_MS // 1000}, "timestamp_too_old"),  # then the time range
        ({"currency": "", "user_id": "undefined"}, "unknown_currency"),  # then currency, user id
        ({"currency": "XTS", "user_id": "undefined"}, "unknown_currency"),
        ({"currency": " ", "ts": NOW_MS // 1000}, "invalid_value"),  # badly formed, not empty
        ({"currency": "usd"}, "invalid_value"),
        ({"amount_minor": 4900.0, "currency": "usd"}, "wrong_type"),  # integers first
        ({"amount_minor": 4900.0, "ts": NOW_MS // 1000}, "wrong_type"),
    ],
)
def test_the_documented_order_of_checks_holds(changes: dict[str, Any], reason: str) -> None:
    """schemas/README.md: integers, the schema, then time range, currency and user id."""
    assert decode_payload(PAYMENT | changes, "billing").reason == reason


DESIGN_JUNK_IDS = [
    "",
    "0",
    "-1",
    "null",
    "undefined",
    "anonymous",
    "00000000-0000-0000-0000-000000000000",
    "0000",
    " NULL ",
    "Undefined",
]
"""DESIGN.md §3: the identifiers that never link anything, in a few spellings."""


@pytest.mark.parametrize("junk", DESIGN_JUNK_IDS)
def test_every_junk_id_of_the_design_is_refused_as_a_user_id(junk: str) -> None:
    assert decode_payload(SIGNUP | {"user_id": junk}, "signup").reason == "junk_user_id"
    assert decode_payload(PAYMENT | {"user_id": junk}, "billing").reason == "junk_user_id"


CONTROL_CHARACTERS = ["\x00", "\x07", "\n", "\x1b", "\x7f"]


@pytest.mark.parametrize("control", CONTROL_CHARACTERS)
@pytest.mark.parametrize(("payload", "kind", "field"), [
    (PAGE_VIEW, "page_view", "anonymous_id"), (PAGE_VIEW, "page_view", "event_id"),
    (SIGNUP, "signup", "user_id"), (PAYMENT, "billing", "user_id"),
    (golden("billing.v1.refund"), "billing", "refund_of"),
    (golden("billing.v1.subscription_change"), "billing", "subscription_id")])
def test_an_id_with_a_control_character_is_refused_anywhere_in_it(
        payload: dict[str, Any], kind: str, field: str, control: str) -> None:
    for value in (f"{control}id", f"id{control}", f"i{control}d"):
        rejection = decode_payload(payload | {field: value}, kind)
        assert rejection.reason == "invalid_value", (field, value)
        assert f"'{field}' contains a control character" in rejection.message


def test_printable_unicode_ids_and_an_empty_anonymous_id_are_accepted() -> None:
    assert isinstance(decode_payload(PAGE_VIEW | {"anonymous_id": "gerät-ü 7"}, "page_view"),
                      PageView)
    assert isinstance(decode_payload(PAGE_VIEW | {"anonymous_id": ""}, "page_view"), PageView)


def test_page_view_with_a_junk_user_id_is_still_a_page_view() -> None:
    assert isinstance(decode_payload(PAGE_VIEW | {"user_id": "null"}, "page_view"), PageView)


def test_subscription_change_to_zero_is_a_cancellation_not_a_non_positive_amount() -> None:
    event = decode_payload(golden("billing.v1.subscription_change", mrr_minor=0), "billing")
    assert event.mrr_minor == 0
    negative = decode_payload(golden("billing.v1.subscription_change", mrr_minor=-1), "billing")
    assert negative.reason == "invalid_value"


@pytest.mark.parametrize(
    ("offset_ms", "reason"),
    [
        (-3650 * DAY_MS - 1, "timestamp_too_old"),
        (-3650 * DAY_MS, None),
        (30 * DAY_MS, None),
        (30 * DAY_MS + 1, "timestamp_in_future"),
    ],
)
def test_accepted_time_range_bounds_are_inclusive(offset_ms: int, reason: str | None) -> None:
    result = decode_payload(PAGE_VIEW | {"ts": NOW_MS + offset_ms}, "page_view")
    assert getattr(result, "reason", None) == reason


@pytest.mark.parametrize(
    ("ts", "expected_ms"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T01:00:00+01:00", 0),
        ("1969-12-31T23:30:00-00:30", 0),
        ("2025-03-01T09:15:00.25Z", 1_740_820_500_250),
        ("2025-03-01T09:15:00.2509999Z", 1_740_820_500_250),
        ("2025-03-01t09:15:00.250z", 1_740_820_500_250),
        ("2024-02-29T23:59:59.999-23:59", 1_709_337_539_999),
        ("0001-01-01T00:00:00Z", -62_135_596_800_000),
        (1_740_820_500_250, 1_740_820_500_250),
        (-5, -5),
        (1.5e12, 1_500_000_000_000),
    ],
)
def test_timestamps_normalise_to_epoch_milliseconds(ts: str | int, expected_ms: int) -> None:
    assert epoch_ms(ts) == expected_ms


TS_PATTERN = load_schema("common/1")["$defs"]["ts"]["pattern"]


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.from_regex(TS_PATTERN, fullmatch=True))
def test_every_timestamp_the_schema_admits_is_an_existing_instant(ts: str) -> None:
    local_ms = (datetime.fromisoformat(ts[:19].upper()) - datetime(1970, 1, 1)) // timedelta(
        milliseconds=1
    )
    zone = ts[-6:] if ts[-1] not in "Zz" else "+00:00"
    offset_ms = (int(zone[1:3]) * 60 + int(zone[4:])) * 60_000 * (1 if zone[0] == "+" else -1)
    fraction = ts[20 : len(ts) - (1 if ts[-1] in "Zz" else 6)] if ts[19] == "." else ""
    assert epoch_ms(ts) == local_ms - offset_ms + int(fraction[:3].ljust(3, "0"))


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(-23 * 60 - 59, 23 * 60 + 59),
)
def test_rfc3339_rendering_of_any_instant_reads_back_to_the_millisecond(
    moment: datetime, offset_minutes: int
) -> None:
    zone = timezone(timedelta(minutes=offset_minutes))
    local = moment.replace(tzinfo=UTC).astimezone(zone)
    text = local.isoformat(timespec="microseconds")
    truncated_ms = (moment - datetime(1970, 1, 1)) // timedelta(milliseconds=1)
    assert validator("page_view/1")(PAGE_VIEW | {"ts": text})
    assert epoch_ms(text) == truncated_ms


def test_compiled_patterns_do_not_accept_a_trailing_newline() -> None:
    with pytest.raises(SchemaError):
        validator("billing/1")(PAYMENT | {"currency": "USD\n"})


def test_dead_letter_keeps_the_original_bytes_source_and_reason() -> None:
    raw = orjson.dumps(PAYMENT | {"amount_minor": 0})
    rejection = decode(raw, "billing", now_ms=NOW_MS, config=CONFIG)
    record = dead_letter_record(
        raw=raw,
        topic="billing-v1",
        partition=2,
        offset=18231,
        reason=rejection.reason,
        message=rejection.message,
        ts_ms=NOW_MS,
    )
    validator("dead_letter/1")(record)
    assert base64.b64decode(record["original_b64"]) == raw
    assert record["original_preview"] == raw.decode()
    assert record["reason"] == "non_positive_amount" and type(record["reason"]) is str
    assert (record["topic"], record["partition"], record["offset"]) == ("billing-v1", 2, 18231)
    assert json.loads(orjson.dumps(record)) == record


def test_dead_letter_of_undecodable_bytes_has_no_preview() -> None:
    raw = b'{"user_id": "\xff"}'
    record = dead_letter_record(
        raw=raw,
        topic="signups-v1",
        partition=0,
        offset=7,
        reason=Reason.NOT_JSON,
        message="not json",
        ts_ms=NOW_MS,
    )
    validator("dead_letter/1")(record)
    assert record["original_preview"] is None
    assert base64.b64decode(record["original_b64"]) == raw


def test_dead_letter_of_a_huge_message_keeps_its_start_and_says_so() -> None:
    raw = b"x" * (MAX_ORIGINAL_BYTES + 10)
    record = dead_letter_record(
        raw=raw,
        topic="page-views-v1",
        partition=1,
        offset=3,
        reason="oversized_payload",
        message="m" * 5000,
        ts_ms=NOW_MS,
    )
    validator("dead_letter/1")(record)
    assert base64.b64decode(record["original_b64"]) == raw[:MAX_ORIGINAL_BYTES]
    assert record["original_truncated"] is True
    assert record["original_size"] == len(raw)


def test_dead_letter_reason_must_come_from_the_closed_set() -> None:
    with pytest.raises(ValueError, match="unknown dead-letter reason"):
        dead_letter_record(
            raw=b"{}",
            topic="t",
            partition=0,
            offset=0,
            reason="bad stuff",
            message="",
            ts_ms=NOW_MS,
        )
