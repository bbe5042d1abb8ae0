"""Validation at the pipeline's edge: the raw bytes of one input message → `Event` or `Rejection`.

Checks run in this order and the first failure is the reason (DESIGN.md §2, §10):
size → JSON (orjson, strict UTF-8) → object → `schema` name of the topic → integers written as
JSON integers → the topic's JSON Schema (`schemas/*.schema.json`, the one source of truth,
existing calendar dates included) → what no schema can say: the accepted time range around
`now_ms`, a currency of the currency table (an empty one included), a user id that is not junk
on signups and billing events. Only payloads that passed all of them become `schemas.events`
types.

`decode` never raises for any input bytes. Integers are stricter than JSON Schema's `integer`,
which admits `29.0`: `ts` as epoch milliseconds, `amount_minor`, `mrr_minor` and
`company_size` written with a fraction or exponent are `wrong_type` (a float amount usually
means major units were sent). orjson reads such numbers as floats, and also integers beyond 64
bits; the latter are integers, far outside every accepted range, so they fail as
`invalid_value` (amounts, sizes) or as `timestamp_in_future` / `timestamp_too_old` (ts).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import date
from enum import StrEnum
from typing import Any, Final

import orjson

from processors.junk import is_junk_id
from schemas.contract import (
    INPUT_SCHEMAS,
    NO_CONTROL_CHARACTER,
    SchemaError,
    TopicKind,
    load_schema,
    validator,
)
from schemas.events import (
    Campaign,
    InputEvent,
    PageView,
    Payment,
    Refund,
    Signup,
    Spend,
    SubscriptionChange,
    Traits,
)

DAY_MS: Final = 86_400_000
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_PREVIEW_CHARS: Final = 80


class Reason(StrEnum):
    """Stable dead-letter reason codes, the closed label set of metrics (see schemas/README.md)."""

    OVERSIZED_PAYLOAD = "oversized_payload"
    NOT_JSON = "not_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_SCHEMA = "unknown_schema"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    NON_POSITIVE_AMOUNT = "non_positive_amount"
    UNKNOWN_CURRENCY = "unknown_currency"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    INVALID_TIMESTAMP = "invalid_timestamp"
    JUNK_USER_ID = "junk_user_id"
    # Produced downstream by the stateful stages, listed here so the label set is closed.
    DUPLICATE_EVENT_ID = "duplicate_event_id"
    REFUND_UNKNOWN_PAYMENT = "refund_unknown_payment"
    REFUND_EXCEEDS_PAYMENT = "refund_exceeds_payment"
    REFUND_CURRENCY_MISMATCH = "refund_currency_mismatch"
    REFUND_BEFORE_PAYMENT = "refund_before_payment"
    PROCESSING_ERROR = "processing_error"
    """An event the pipeline failed on (a defect of the pipeline, logged): kept, not lost."""
    # Produced by the HTTP collector (`personify collect`), before an event reaches a topic.
    UNMAPPED_EVENT = "unmapped_event"
    """A Segment-style message that maps to no event of the contract (docs/collector.md)."""
    SOURCE_NOT_ALLOWED = "source_not_allowed"
    """The write key's source may not send events of this schema (say, billing from a browser)."""


REASONS: Final[tuple[str, ...]] = tuple(reason.value for reason in Reason)
NOT_BAD_DATA: Final = frozenset({Reason.DUPLICATE_EVENT_ID, Reason.PROCESSING_ERROR})
"""Reasons that say nothing about the sender's data: a copy of an accepted event (counted as a
duplicate, not dead-lettered), a defect of the pipeline. Every other reason is bad input, which
is what the dead-letter rate alert watches (ops/prometheus/rules.yml)."""


@dataclass(frozen=True, slots=True)
class ValidationConfig:
    known_currencies: frozenset[str]
    """ISO 4217 codes of the currency table; any other well-formed code is `unknown_currency`."""
    junk_block_list: frozenset[str] = frozenset()
    """Extra user ids that identify nobody, on top of `processors.junk`'s defaults."""
    max_payload_bytes: int = 64 * 1024
    """Larger messages are `oversized_payload`, refused before parsing."""
    max_age_ms: int = 3650 * DAY_MS
    """Events older than `now − max_age_ms` are `timestamp_too_old` (bound inclusive)."""
    max_future_ms: int = 30 * DAY_MS
    """Events later than `now + max_future_ms` are `timestamp_in_future` (bound inclusive)."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message was refused: a stable `reason` code, a `message` saying what to fix."""

    reason: Reason
    message: str


def decode(
    raw: bytes, topic_kind: TopicKind, *, now_ms: int, config: ValidationConfig
) -> InputEvent | Rejection:
    """The event in `raw`, read from a topic carrying `topic_kind`, or why it is refused."""
    if len(raw) > config.max_payload_bytes:
        return Rejection(
            Reason.OVERSIZED_PAYLOAD,
            f"payload is {len(raw)} bytes, the limit is {config.max_payload_bytes}: "
            "send smaller events (shorten long URLs, drop unneeded fields)",
        )
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        return Rejection(
            Reason.NOT_JSON,
            f"payload is not UTF-8 JSON ({error}): send one JSON object per message",
        )
    if not isinstance(payload, dict):
        return Rejection(
            Reason.NOT_AN_OBJECT,
            f"payload is a JSON {_json_type(payload)}: send one JSON object per message",
        )
    schema_name = INPUT_SCHEMAS[topic_kind]
    return (
        _schema_name_rejection(payload, schema_name)
        or _integer_rejection(raw, payload, topic_kind, schema_name)
        or _validated(payload, topic_kind, schema_name, now_ms, config)
    )


def _schema_name_rejection(payload: Mapping[str, Any], schema_name: str) -> Rejection | None:
    """`schema` routes the payload; checked first so a v2 event is not blamed on v1 fields."""
    if "schema" not in payload:
        return Rejection(
            Reason.MISSING_FIELD,
            f"required field 'schema' is missing: events on this topic say \"schema\": "
            f'"{schema_name}"',
        )
    if payload["schema"] != schema_name:
        return Rejection(
            Reason.UNKNOWN_SCHEMA,
            f"schema {_preview(payload['schema'])} is not accepted on this topic, which carries "
            f"'{schema_name}' only: send other schemas or major versions to their own topic",
        )
    return None


_COMMON_DEFS: Final = load_schema("common/1")["$defs"]
_INTEGER_HINTS: Final[dict[str, str]] = {
    "ts": _COMMON_DEFS["ts"]["description"],
    "amount_minor": _COMMON_DEFS["amount_minor"]["description"],
    "mrr_minor": _COMMON_DEFS["mrr_minor"]["description"],
    "company_size": _COMMON_DEFS["traits"]["properties"]["company_size"]["description"],
}
"""The schema descriptions of the fields that must be JSON integers, quoted as the fix."""
_SMALLEST_INTEGER_READ_AS_FLOAT: Final = 2**63
"""orjson reads every integer literal in [-2**63, 2**64) as an int, so a float of smaller
magnitude was written with a fraction or an exponent."""


def _integer_rejection(
    raw: bytes, payload: Mapping[str, Any], topic_kind: TopicKind, schema_name: str
) -> Rejection | None:
    """`29.0` is mistyped even though JSON Schema's `integer` admits it (DESIGN.md §10).

    Checked before the schema so that a float is `wrong_type` whatever its value: `0.0` is a
    mistyped amount, not a non-positive one.
    """
    for path, value in _integer_fields(payload, topic_kind):
        if isinstance(value, float) and _written_with_fraction_or_exponent(raw, path, value):
            return Rejection(
                Reason.WRONG_TYPE,
                f"{schema_name}: '{'.'.join(path)}' must be an integer written without a "
                f"fraction or exponent, got {_preview(value)} ({_INTEGER_HINTS[path[-1]]})",
            )
    return None


def _integer_fields(
    payload: Mapping[str, Any], topic_kind: TopicKind
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, value) of each field the topic's schema types as an integer, where present."""
    if "ts" in payload:
        yield ("ts",), payload["ts"]
    if topic_kind == "spend" and "amount_minor" in payload:
        yield ("amount_minor",), payload["amount_minor"]
    if topic_kind == "billing":
        kind = payload.get("kind")
        name = "mrr_minor" if kind == "subscription_change" else "amount_minor"
        if kind in ("payment", "refund", "subscription_change") and name in payload:
            yield (name,), payload[name]
    traits = payload.get("traits") if topic_kind == "signup" else None
    if isinstance(traits, dict) and "company_size" in traits:
        yield ("traits", "company_size"), traits["company_size"]


def _written_with_fraction_or_exponent(raw: bytes, path: tuple[str, ...], value: float) -> bool:
    """Beyond 64 bits orjson gives a float for `10000000000000000000000` as for `1e22`; the
    standard parser, which keeps big integers exact, tells them apart (rare: both are out of
    every range, so only the reason differs). Unreadable there (nesting too deep) counts as a
    fraction."""
    if abs(value) < _SMALLEST_INTEGER_READ_AS_FLOAT:
        return True
    try:
        node = json.loads(raw)
        for key in path:
            node = node[key]
    except (ValueError, RecursionError, LookupError, TypeError):
        return True
    return not isinstance(node, int)


_WITH_CURRENCY: Final = ("billing", "spend")
_WITH_USER: Final = ("signup", "billing")
_NO_CURRENCY: Final = "XXX"
"""ISO 4217's code for "no currency": stands in for an empty `currency` in the schema check, so
that the currency check refuses it as `unknown_currency` (DESIGN.md §10) in the documented
order, while the published schema keeps refusing `""`."""


def _validated(
    payload: dict[str, Any],
    topic_kind: TopicKind,
    schema_name: str,
    now_ms: int,
    config: ValidationConfig,
) -> InputEvent | Rejection:
    shape = payload
    if topic_kind in _WITH_CURRENCY and payload.get("currency") == "":
        shape = payload | {"currency": _NO_CURRENCY}
    try:
        validator(schema_name)(shape)
    except SchemaError as error:
        return _schema_rejection(error, schema_name)
    ts_ms = epoch_ms(payload["ts"])
    return (
        _time_range_rejection(ts_ms, now_ms, config)
        or _semantic_rejection(payload, topic_kind, ts_ms, config)
        or _event(payload, topic_kind, ts_ms)
    )


_REASON_BY_FIELD_RULE: Final[dict[tuple[str, str], Reason]] = {
    ("ts", "pattern"): Reason.INVALID_TIMESTAMP,
    ("amount_minor", "exclusiveMinimum"): Reason.NON_POSITIVE_AMOUNT,
}
"""Schema failures with a reason of their own; any other broken rule is `invalid_value`."""


def _schema_rejection(error: SchemaError, schema_name: str) -> Rejection:
    """Translate the first broken schema rule, quoting the schema's description as the fix."""
    field = error.name.removeprefix("data").removeprefix(".")
    if error.rule == "required":
        missing = next(name for name in error.rule_definition if name not in error.value)
        path = f"{field}.{missing}" if field else missing
        return Rejection(Reason.MISSING_FIELD, f"{schema_name}: required field '{path}' is missing")
    hint = error.definition.get("description") if isinstance(error.definition, dict) else None
    fix = f" ({hint})" if hint else ""
    if error.rule == "type":
        return Rejection(
            Reason.WRONG_TYPE,
            f"{schema_name}: '{field}' must be {_expected_types(error.rule_definition)}, "
            f"got {_json_type(error.value)}{fix}",
        )
    reason = _REASON_BY_FIELD_RULE.get((field, error.rule), Reason.INVALID_VALUE)
    return Rejection(
        reason,
        f"{schema_name}: '{field or 'payload'}' {_broken_rule(error.rule, error.rule_definition)}, "
        f"got {_preview(error.value)}{fix}",
    )


def _broken_rule(rule: str, limit: Any) -> str:
    match rule:
        case "maxLength":
            return f"is longer than {limit} characters"
        case "minLength":
            return "must not be empty" if limit == 1 else f"is shorter than {limit} characters"
        case "pattern" if limit == NO_CONTROL_CHARACTER:
            return "contains a control character"
        case "pattern":
            return "does not have the expected format"
        case "maximum":
            return f"is above the maximum {limit}"
        case "minimum":
            return f"is below the minimum {limit}"
        case "exclusiveMinimum":
            return f"must be greater than {limit}"
        case "enum":
            return f"must be one of {', '.join(map(str, limit))}"
    return f"breaks the schema rule '{rule}'"


def epoch_ms(ts: str | int | float) -> int:
    """Epoch milliseconds of a schema-valid `ts`.

    The schema's pattern admits only existing dates laid out
    `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, so fields are read by position. Fraction digits
    past the millisecond are truncated (floor), and the offset is subtracted to reach UTC.
    Numbers are integers (see the module docstring); `int` also reads an integer literal beyond
    64 bits, which only a time range wider than the defaults lets through.
    """
    if not isinstance(ts, str):
        return int(ts)
    day = date(int(ts[0:4]), int(ts[5:7]), int(ts[8:10])).toordinal() - _EPOCH_ORDINAL
    seconds = ((day * 24 + int(ts[11:13])) * 60 + int(ts[14:16])) * 60 + int(ts[17:19])
    zone_at = len(ts) - (1 if ts[-1] in "Zz" else 6)
    millis = int(ts[20:zone_at][:3].ljust(3, "0")) if ts[19] == "." else 0
    if zone_at == len(ts) - 6:
        sign = 1 if ts[zone_at] == "+" else -1
        seconds -= sign * (int(ts[zone_at + 1 : zone_at + 3]) * 3600 + int(ts[zone_at + 4 :]) * 60)
    return seconds * 1000 + millis


def _time_range_rejection(ts_ms: int, now_ms: int, config: ValidationConfig) -> Rejection | None:
    """Accept `now − max_age ≤ ts ≤ now + max_future`: far-off times are clock or unit bugs."""
    if ts_ms < now_ms - config.max_age_ms:
        return Rejection(
            Reason.TIMESTAMP_TOO_OLD,
            f"ts is {(now_ms - ts_ms) // DAY_MS} days in the past, the limit is "
            f"{config.max_age_ms // DAY_MS} days: check the producer's clock and that epoch "
            "values are milliseconds, not seconds",
        )
    if ts_ms > now_ms + config.max_future_ms:
        return Rejection(
            Reason.TIMESTAMP_IN_FUTURE,
            f"ts is {(ts_ms - now_ms) // DAY_MS} days in the future, the limit is "
            f"{config.max_future_ms // DAY_MS} days: check the producer's clock and that epoch "
            "values are milliseconds, not microseconds",
        )
    return None


def _semantic_rejection(
    payload: Mapping[str, Any], topic_kind: TopicKind, ts_ms: int, config: ValidationConfig
) -> Rejection | None:
    """A spend's day start; a known currency on billing and spend events; a real user id on
    signups and billing events."""
    if topic_kind == "spend" and ts_ms % DAY_MS:
        return Rejection(
            Reason.INVALID_VALUE,
            f"spend/1: 'ts' must be the start of a UTC day (00:00:00.000Z), got "
            f"{_preview(payload['ts'])}: send one line per campaign and UTC day",
        )
    if topic_kind in _WITH_CURRENCY:
        currency = payload["currency"]
        if not currency or currency not in config.known_currencies:
            problem = f"'{currency}' is not in the currency table" if currency else "is empty"
            return Rejection(
                Reason.UNKNOWN_CURRENCY,
                f"currency {problem}: send an ISO 4217 code the pipeline is configured for, "
                "or add it to the table",
            )
    if topic_kind in _WITH_USER and is_junk_id(payload["user_id"], config.junk_block_list):
        return Rejection(
            Reason.JUNK_USER_ID,
            f"user_id {_preview(payload['user_id'])} is a placeholder, not a user: signups and "
            "billing events need the real user id",
        )
    return None


_BILLING_TYPES: Final = {
    "payment": Payment,
    "refund": Refund,
    "subscription_change": SubscriptionChange,
}
_FIELD_NAMES: Final = {
    cls: tuple(f.name for f in fields(cls))
    for cls in (PageView, Campaign, Signup, Traits, Payment, Refund, SubscriptionChange, Spend)
}


def _event(payload: Mapping[str, Any], topic_kind: TopicKind, ts_ms: int) -> InputEvent:
    if topic_kind == "page_view":
        campaign = payload.get("campaign")
        return _record(
            PageView,
            payload,
            ts=ts_ms,
            campaign=None if campaign is None else _record(Campaign, campaign),
        )
    if topic_kind == "spend":
        return _record(Spend, payload, ts=ts_ms)
    if topic_kind == "signup":
        return _record(
            Signup, payload, ts=ts_ms, traits=_record(Traits, payload.get("traits") or {})
        )
    return _record(_BILLING_TYPES[payload["kind"]], payload, ts=ts_ms)


def _record(cls: Any, values: Mapping[str, Any], **given: Any) -> Any:
    """`cls` from the payload fields of the same names; absent optional fields are None."""
    taken = {name: values.get(name) for name in _FIELD_NAMES[cls] if name not in given}
    return cls(**taken, **given)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _expected_types(types: str | list[str]) -> str:
    names = [types] if isinstance(types, str) else types
    return " or ".join(
        t if t == "null" else f"{'an' if t[0] in 'aeiou' else 'a'} {t}" for t in names
    )


def _preview(value: Any) -> str:
    """A short JSON rendering of an offending value for messages."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= _PREVIEW_CHARS else f"{text[:_PREVIEW_CHARS]}…"
