from __future__ import annotations

import json
import math
import re
import string
from dataclasses import fields, is_dataclass
from itertools import product
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, get_args, get_type_hints

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from processors.junk import is_junk_id
from processors.validation import REASONS, Rejection, ValidationConfig, decode
from schemas.contract import (
    INPUT_SCHEMAS,
    OUTPUT_SCHEMAS,
    SCHEMA_DIR,
    SchemaError,
    load_schema,
    schema_file,
    validator,
)
from schemas.events import (
    Campaign,
    PageView,
    Payment,
    Refund,
    Signup,
    Spend,
    SubscriptionChange,
    Traits,
)

SCHEMA_NAMES = (*INPUT_SCHEMAS.values(), *OUTPUT_SCHEMAS)
SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.schema.json"))
EXAMPLES = sorted((SCHEMA_DIR / "examples").glob("*.json"))
NOW_MS = 1_743_465_600_000  # 2025-04-01T00:00:00Z
DAY_MS = 86_400_000
EVERY_CURRENCY_SHAPE = frozenset(map("".join, product(string.ascii_uppercase, repeat=3)))
ONLY_SCHEMA_RULES = ValidationConfig(
    known_currencies=EVERY_CURRENCY_SHAPE, max_age_ms=10**30, max_future_ms=10**30
)

REGISTRY = Registry().with_resources(
    (path.name, Resource.from_contents(json.loads(path.read_text()))) for path in SCHEMA_FILES
)
"""Each schema under its file name: the files have no `$id`, so a `$ref` resolves beside them."""


def reference_validator(schema_name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(schema_name), registry=REGISTRY)


def compiled_accepts(schema_name: str, payload: Any) -> bool:
    try:
        validator(schema_name)(payload)
    except SchemaError:
        return False
    return True


def schema_name_of_example(path: Path) -> str:
    kind, version = path.name.split(".")[:2]
    return f"{kind}/{version.removeprefix('v')}"


def resolve(
    node: dict[str, Any], document: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Follow `$ref`s within this folder; returns the node and the document it lives in."""
    while "$ref" in node:
        target, _, pointer = node["$ref"].partition("#")
        if target:
            document = json.loads((SCHEMA_DIR / target).read_text())
        node = document
        for part in pointer.strip("/").split("/"):
            node = node[part]
    return node, document


def properties(node: dict[str, Any], document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    node, document = resolve(node, document)
    return {name: resolve(sub, document)[0] for name, sub in node["properties"].items()}


def billing_kind_properties(kind: str) -> tuple[dict[str, Any], set[str]]:
    document = load_schema("billing/1")
    specific = document["$defs"][kind]
    merged = {**properties(document, document), **properties(specific, document)}
    del merged["schema"], merged["kind"]
    return merged, set(document["required"]) | set(specific["required"]) - {"schema", "kind"}


def top_level(schema_name: str) -> tuple[dict[str, Any], set[str]]:
    document = load_schema(schema_name)
    props = properties(document, document)
    del props["schema"]
    return props, set(document["required"]) - {"schema"}


def nested(schema_name: str, field: str) -> tuple[dict[str, Any], set[str]]:
    document = load_schema(schema_name)
    node, home = resolve(document["properties"][field], document)
    return properties(node, home), set(node.get("required", ()))


EVENT_TYPES = {
    PageView: lambda: top_level("page_view/1"),
    Campaign: lambda: nested("page_view/1", "campaign"),
    Signup: lambda: top_level("signup/1"),
    Traits: lambda: nested("signup/1", "traits"),
    Payment: lambda: billing_kind_properties("payment"),
    Refund: lambda: billing_kind_properties("refund"),
    SubscriptionChange: lambda: billing_kind_properties("subscription_change"),
    Spend: lambda: top_level("spend/1"),
}


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_every_schema_is_valid_draft_2020_12_with_title_and_description(path: Path) -> None:
    document = json.loads(path.read_text())
    Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["title"] and document["description"]


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_every_ref_resolves_beside_the_schema_file(path: Path) -> None:
    text = path.read_text()
    assert '"$id"' not in text  # an `$id` would become the base of every `$ref`
    for ref in re.findall(r'"\$ref":\s*"([^"]*)"', text):
        target, _, _ = ref.partition("#")
        assert "://" not in ref and (not target or (SCHEMA_DIR / target).exists()), ref


@pytest.mark.parametrize("schema_name", SCHEMA_NAMES)
def test_every_message_schema_has_golden_examples(schema_name: str) -> None:
    assert schema_file(schema_name).exists()
    assert any(schema_name_of_example(path) == schema_name for path in EXAMPLES)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_golden_examples_pass_the_compiled_and_the_reference_validator(path: Path) -> None:
    payload = orjson.loads(path.read_bytes())
    schema_name = schema_name_of_example(path)
    assert payload["schema"] == schema_name
    assert compiled_accepts(schema_name, payload)
    reference_validator(schema_name).validate(payload)


@pytest.mark.parametrize(
    "path",
    [p for p in EXAMPLES if schema_name_of_example(p) in INPUT_SCHEMAS.values()],
    ids=lambda p: p.name,
)
def test_golden_input_examples_decode_to_events(path: Path) -> None:
    topic_kind = path.name.split(".")[0]
    result = decode(path.read_bytes(), topic_kind, now_ms=NOW_MS, config=ONLY_SCHEMA_RULES)
    assert not isinstance(result, Rejection), result


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
def test_event_dataclass_fields_equal_the_schema_properties(event_type: type) -> None:
    props, _ = EVENT_TYPES[event_type]()
    assert [f.name for f in fields(event_type)] == list(props)


JSON_TYPE_OF = {str: "string", int: "integer", NoneType: "null"}


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
def test_event_field_types_follow_the_schema_types(event_type: type) -> None:
    props, required = EVENT_TYPES[event_type]()
    hints = get_type_hints(event_type)
    for name, prop in props.items():
        hint = hints[name]
        schema_types = {prop["type"]} if isinstance(prop["type"], str) else set(prop["type"])
        python_types = set(get_args(hint)) if isinstance(hint, UnionType) else {hint}
        if name == "ts":
            assert (hint, schema_types) == (int, {"string", "integer"})  # normalised to epoch ms
        elif any(is_dataclass(t) for t in python_types):
            assert schema_types == {"object", "null"}  # null or absent: None or the empty record
            assert name not in required
        else:
            assert {JSON_TYPE_OF[t] for t in python_types} == schema_types, name
            assert (name in required) == (NoneType not in python_types), name


def test_no_input_field_is_a_fractional_number() -> None:
    text = "".join(schema_file(name).read_text() for name in INPUT_SCHEMAS.values())
    text += (SCHEMA_DIR / "common.v1.schema.json").read_text()
    assert '"number"' not in text


def test_dead_letter_schema_lists_exactly_the_closed_reason_set() -> None:
    document = load_schema("dead_letter/1")
    assert tuple(document["properties"]["reason"]["enum"]) == REASONS


def test_readme_reason_table_explains_every_reason_once() -> None:
    readme = (SCHEMA_DIR / "README.md").read_text()
    rows = re.findall(r"^\| `([a-z_]+)` \| [^|]+ \| [^|]+ \|$", readme, flags=re.MULTILINE)
    assert tuple(rows) == REASONS



# credit/2: corrections as retract + assert pairs (the golden examples tell one story: a payment
# credited, then corrected by a late touch, then partly refunded under the corrected weights).

AMOUNT_FIELDS = ("amount_minor", "reporting_amount_minor")


def credit_example(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = orjson.loads((SCHEMA_DIR / "examples" / f"credit.v2.{name}.json")
                                           .read_bytes())
    return payload


def negated(record: dict[str, Any]) -> dict[str, Any]:
    """The retract of an assert: the same record with op retract and every amount negated."""
    lines = [{**line, **{f: -line[f] for f in AMOUNT_FIELDS}} for line in record["lines"]]
    return {**record, "op": "retract", **{f: -record[f] for f in AMOUNT_FIELDS},
            "lines": lines}


def credit_v2_accepts(payload: dict[str, Any]) -> bool:
    accepted = compiled_accepts("credit/2", payload)
    assert accepted == reference_validator("credit/2").is_valid(payload)
    return accepted


@pytest.mark.parametrize(
    "path", [p for p in EXAMPLES if p.name.startswith("credit.")], ids=lambda p: p.name
)
def test_credit_examples_split_their_amounts_exactly_with_the_sign_of_their_side(
    path: Path,
) -> None:
    record = orjson.loads(path.read_bytes())
    assert record["credit_id"] == f"{record['revenue_event_id']}/{record['model']}"
    for f in AMOUNT_FIELDS:
        assert sum(line[f] for line in record["lines"]) == record[f]
        assert all(line[f] * record[f] >= 0 for line in record["lines"])
    assert math.isclose(sum(line["weight"] for line in record["lines"]), 1.0)


def test_a_retract_repeats_its_assert_exactly_with_every_amount_negated() -> None:
    first, retract = credit_example("payment_assert"), credit_example("payment_retract")
    assert (first["op"], first["revision"], first["cause"]) == ("assert", 1, None)
    assert retract == negated(first)


def test_the_correction_follows_its_retract_and_the_sum_of_records_is_the_newest_assert() -> None:
    first, retract = credit_example("payment_assert"), credit_example("payment_retract")
    correction = credit_example("payment_correction_assert")
    assert correction["credit_id"] == retract["credit_id"]
    assert (correction["op"], correction["revision"]) == ("assert", retract["revision"] + 1)
    assert correction["cause"] == "late_touch"
    assert {f: correction[f] for f in AMOUNT_FIELDS} == {f: first[f] for f in AMOUNT_FIELDS}

    def by_touch(*records: dict[str, Any]) -> dict[str | None, tuple[int, int]]:
        totals: dict[str | None, tuple[int, int]] = {}
        for record in records:
            for line in record["lines"]:
                amount, reporting = totals.get(line["touch_event_id"], (0, 0))
                totals[line["touch_event_id"]] = (amount + line["amount_minor"],
                                                  reporting + line["reporting_amount_minor"])
        return {touch: total for touch, total in totals.items() if total != (0, 0)}

    assert by_touch(first, retract, correction) == by_touch(correction)


def test_the_refund_is_split_over_the_corrected_lines() -> None:
    correction = credit_example("payment_correction_assert")
    refund = credit_example("refund_assert")
    assert (refund["kind"], refund["op"], refund["revision"], refund["cause"]) == (
        "refund", "assert", 1, None)
    assert refund["person_id"] == correction["person_id"]
    assert refund["revenue_ts"] > correction["revenue_ts"]
    assert refund["amount_minor"] < 0 and -refund["amount_minor"] <= correction["amount_minor"]
    strip = ("amount_minor", "reporting_amount_minor")
    assert [{k: v for k, v in line.items() if k not in strip} for line in refund["lines"]] == [
        {k: v for k, v in line.items() if k not in strip} for line in correction["lines"]]


@pytest.mark.parametrize(
    ("name", "change"),
    [
        pytest.param("payment_assert", {"cause": "late_touch"}, id="revision 1 with a cause"),
        pytest.param("payment_correction_assert", {"cause": None}, id="revision 2 without cause"),
        pytest.param("payment_correction_assert", {"cause": "late"}, id="unknown cause"),
        pytest.param("payment_assert", {"revision": 0}, id="revision 0"),
        pytest.param("payment_assert", {"op": "upsert"}, id="unknown op"),
        pytest.param("payment_assert", {"op": "retract"}, id="payment retract, positive amounts"),
        pytest.param("payment_retract", {"op": "assert"}, id="payment assert, negative amounts"),
        pytest.param("refund_assert", {"op": "retract"}, id="refund retract, negative amounts"),
        pytest.param("payment_assert", {"amount_minor": 10**15 + 1}, id="amount above 10^15"),
        pytest.param("refund_assert", {"reporting_amount_minor": -(10**15) - 1},
                     id="amount below -10^15"),
        pytest.param("payment_assert", {"schema": "credit/1"}, id="the previous version"),
    ],
)
def test_credit_v2_rejects_records_that_break_the_correction_rules(
    name: str, change: dict[str, Any]
) -> None:
    assert credit_v2_accepts(credit_example(name))
    assert not credit_v2_accepts({**credit_example(name), **change})


def test_credit_v2_requires_op_revision_and_cause() -> None:
    for field_name in ("op", "revision", "cause"):
        record = credit_example("payment_assert")
        del record[field_name]
        assert not credit_v2_accepts(record), field_name


def test_a_retract_of_a_refund_is_a_valid_credit_side_record() -> None:
    refund = credit_example("refund_assert")
    assert credit_v2_accepts(negated(refund))
    correction = credit_example("payment_correction_assert")
    assert credit_v2_accepts(negated(correction))


# Near-valid payloads: a valid event, then a few fields deleted or replaced by arbitrary JSON.

NOT_JUNK_IDS = st.from_regex(r"[a-z0-9-]{0,12}", fullmatch=True).map(lambda s: "id-" + s)
LABELS = st.text(max_size=12)
TIMESTAMPS = st.integers(NOW_MS - 3000 * DAY_MS, NOW_MS + 20 * DAY_MS)
AMOUNTS = st.integers(1, 10**15)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


CAMPAIGNS = st.fixed_dictionaries(
    {}, optional={k: optional(LABELS) for k in ("source", "medium", "name", "term", "content")}
)
TRAITS = st.fixed_dictionaries(
    {},
    optional={
        "company": optional(LABELS),
        "company_size": optional(st.integers(0, 10**8)),
        "industry": optional(LABELS),
        "plan": optional(LABELS),
        "country": optional(LABELS),
    },
)
COMMON = {"event_id": NOT_JUNK_IDS, "ts": TIMESTAMPS}
MONEY = {"amount_minor": AMOUNTS, "currency": st.sampled_from(["USD", "EUR", "JPY"])}

VALID_PAYLOADS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "page_view": st.fixed_dictionaries(
        {
            "schema": st.just("page_view/1"),
            **COMMON,
            "anonymous_id": NOT_JUNK_IDS,
            "url": st.just("https://example.com/?utm_source=x"),
        },
        optional={
            "user_id": optional(NOT_JUNK_IDS),
            "referrer": optional(LABELS),
            "campaign": optional(CAMPAIGNS),
        },
    ),
    "signup": st.fixed_dictionaries(
        {
            "schema": st.just("signup/1"),
            **COMMON,
            "anonymous_id": NOT_JUNK_IDS,
            "user_id": NOT_JUNK_IDS,
        },
        optional={"traits": optional(TRAITS)},
    ),
    "billing": st.one_of(
        st.fixed_dictionaries(
            {
                "schema": st.just("billing/1"),
                **COMMON,
                "user_id": NOT_JUNK_IDS,
                "kind": st.just("payment"),
                **MONEY,
            }
        ),
        st.fixed_dictionaries(
            {
                "schema": st.just("billing/1"),
                **COMMON,
                "user_id": NOT_JUNK_IDS,
                "kind": st.just("refund"),
                **MONEY,
                "refund_of": NOT_JUNK_IDS,
            }
        ),
        st.fixed_dictionaries(
            {
                "schema": st.just("billing/1"),
                **COMMON,
                "user_id": NOT_JUNK_IDS,
                "kind": st.just("subscription_change"),
                "subscription_id": NOT_JUNK_IDS,
                "plan": LABELS,
                "mrr_minor": st.integers(0, 10**15),
                "currency": st.sampled_from(["USD", "EUR"]),
            }
        ),
    ),
}
EDGE_VALUES = st.sampled_from(
    [
        None,
        True,
        0,
        -1,
        1.0,
        4900.5,
        "signup/1",
        "page_view/2",
        1e20,
        10**15 + 1,
        "",
        "0",
        "usd",
        "USDX",
        "x" * 600,
        "2025-02-30T00:00:00Z",
        "2025-03-01T00:00:00",
        {"company_size": -3},
        {"source": 7},
        [],
        {},
    ]
)
ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
REPLACEMENTS = st.none() | st.tuples(st.one_of(EDGE_VALUES, EDGE_VALUES, ANY_JSON))
"""None deletes the field; a 1-tuple holds its new value."""


@st.composite
def near_valid_payloads(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    topic_kind = draw(st.sampled_from(list(VALID_PAYLOADS)))
    payload = draw(VALID_PAYLOADS[topic_kind])
    for _ in range(draw(st.integers(0, 2))):
        field_name = draw(st.sampled_from([*payload, "unknown_field"]))
        replacement = draw(REPLACEMENTS)
        if replacement is None:
            payload.pop(field_name, None)
        else:
            payload[field_name] = replacement[0]
    return topic_kind, payload


@settings(max_examples=400, derandomize=True, deadline=None)
@given(near_valid_payloads())
def test_compiled_validators_agree_with_the_reference_draft_2020_12_validator(
    case: tuple[str, dict[str, Any]],
) -> None:
    topic_kind, payload = case
    parsed = orjson.loads(json.dumps(payload).encode())  # what the pipeline sees
    schema_name = INPUT_SCHEMAS[topic_kind]
    assert compiled_accepts(schema_name, parsed) == reference_validator(schema_name).is_valid(
        parsed
    )


@settings(max_examples=400, derandomize=True, deadline=None)
@given(near_valid_payloads())
def test_a_payload_becomes_an_event_exactly_when_the_schema_accepts_it(
    case: tuple[str, dict[str, Any]],
) -> None:
    topic_kind, payload = case
    raw = json.dumps(payload).encode()
    parsed = orjson.loads(raw)
    needs_user = topic_kind != "page_view"
    expect_event = (
        compiled_accepts(INPUT_SCHEMAS[topic_kind], parsed)
        and not (needs_user and is_junk_id(parsed["user_id"]))
        and not has_integer_written_as_float(topic_kind, payload)
    )
    result = decode(raw, topic_kind, now_ms=NOW_MS, config=ONLY_SCHEMA_RULES)
    assert isinstance(result, Rejection) is not expect_event, result
    if isinstance(result, Rejection):
        assert result.reason in REASONS
    else:
        assert_fields_have_their_annotated_types(result)


def has_integer_written_as_float(topic_kind: str, payload: dict[str, Any]) -> bool:
    """`29.0` passes JSON Schema's `integer` but not the wire contract (DESIGN.md §10); the
    payload is the generated one, before `json.dumps` writes its floats with a fraction."""
    values = [payload.get("ts")]
    if topic_kind == "billing":
        kind = payload.get("kind")
        if kind in ("payment", "refund", "subscription_change"):
            values.append(payload.get("mrr_minor" if kind == "subscription_change"
                                      else "amount_minor"))
    traits = payload.get("traits") if topic_kind == "signup" else None
    if isinstance(traits, dict):
        values.append(traits.get("company_size"))
    return any(isinstance(value, float) for value in values)


def assert_fields_have_their_annotated_types(record: Any) -> None:
    hints = get_type_hints(type(record))
    for f in fields(record):
        value = getattr(record, f.name)
        hint = hints[f.name]
        allowed = get_args(hint) if isinstance(hint, UnionType) else (hint,)
        assert isinstance(value, allowed) and not isinstance(value, bool), (f.name, value)
        if is_dataclass(value):
            assert_fields_have_their_annotated_types(value)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x2FF), max_size=12),
       st.sampled_from(["event_id", "anonymous_id", "user_id"]))
def test_ids_with_any_character_are_judged_like_the_contract_s_not_rule(text: str, field: str):
    """The compiled validators check ids with one positive pattern instead of the contract's
    `not`; a control character anywhere (a trailing newline too) is refused either way."""
    payload = {"schema": "page_view/1", "event_id": "pv-1", "ts": NOW_MS, "anonymous_id": "a-1",
               "url": "https://example.com/", field: text}
    assert compiled_accepts("page_view/1", payload) == reference_validator(
        "page_view/1").is_valid(payload)
    assert compiled_accepts("page_view/1", {**payload, field: text + "\n"}) is False
