"""The wire contract as data: the JSON Schemas of this folder, loaded and compiled (DESIGN §2, §7).

The schema files are the one source of truth. A schema name `kind/major` (the `schema` field of
every message) lives in `kind.v{major}.schema.json`. The files carry no `$id`: a `$ref` such as
`common.v1.schema.json#/$defs/currency` is relative to the file that holds it, so any validator
(`check-jsonschema --schemafile schemas/credit.v2.schema.json …`) resolves it from this folder,
never over the network. Validators are compiled once per process and cached.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit
from urllib.request import url2pathname

import fastjsonschema
import orjson

SCHEMA_DIR: Final = Path(__file__).resolve().parent

TopicKind = Literal["page_view", "signup", "billing", "spend"]

INPUT_SCHEMAS: Final[dict[TopicKind, str]] = {
    "page_view": "page_view/1",
    "signup": "signup/1",
    "billing": "billing/1",
    "spend": "spend/1",
}
"""The one schema each input topic carries (page-views-v1, signups-v1, billing-v1,
marketing-spend-v1)."""

OUTPUT_SCHEMAS: Final = ("credit/1", "credit/2", "profile/1", "dead_letter/1")
"""The output schemas; `credit/1` (attribution-credits-v1, before corrections) stays published
for the consumers that have not moved to `credit/2` yet."""

SchemaError = fastjsonschema.JsonSchemaValueException
"""Raised by a validator; `.rule`, `.rule_definition`, `.name`, `.value`, `.definition` say why."""


def schema_file(schema_name: str) -> Path:
    """`"page_view/1"` → `schemas/page_view.v1.schema.json`."""
    kind, _, major = schema_name.partition("/")
    if not kind or not major.isdigit():
        raise ValueError(f"schema names look like 'page_view/1', got {schema_name!r}")
    return SCHEMA_DIR / f"{kind}.v{major}.schema.json"


def load_schema(schema_name: str) -> dict[str, Any]:
    """A fresh copy of the parsed schema document (callers may mutate it)."""
    return _load_file(schema_file(schema_name).name)


CONTROL_CHARACTER: Final = "[\\u0000-\\u001F\\u007F]"
"""The pattern the contract's `not` keeps out of ids: any control character."""
NO_CONTROL_CHARACTER: Final = "^[^\\u0000-\\u001F\\u007F]*$"
"""The same rule as one positive pattern, which the compiled validators use instead: a failed
`not` costs the validator a raised and caught exception on every valid string."""


@cache
def validator(schema_name: str) -> Callable[[Any], Any]:
    """The compiled validator of `schema_name`: returns its argument or raises `SchemaError`."""
    path = schema_file(schema_name)
    located = {**load_schema(schema_name), "$id": path.as_uri()}  # the base of relative `$ref`s
    return fastjsonschema.compile(_positive(located), handlers={"file": _load_file_uri})


def _load_file_uri(uri: str) -> dict[str, Any]:
    path = Path(url2pathname(urlsplit(uri).path))
    if path.parent != SCHEMA_DIR:
        raise ValueError(f"{uri} is not a schema of this contract")
    return _positive(_load_file(path.name))


def _positive(node: Any) -> Any:
    """`node` with every `not: {type: string, pattern: CONTROL_CHARACTER}` written as the
    equivalent `pattern: NO_CONTROL_CHARACTER` (fastjsonschema anchors `$` at the very end, as
    JSON Schema's regular expressions do, so a trailing newline is refused too)."""
    if isinstance(node, list):
        return [_positive(item) for item in node]
    if not isinstance(node, dict):
        return node
    rewritten = {key: _positive(value) for key, value in node.items()}
    if rewritten.get("not") == {"type": "string", "pattern": CONTROL_CHARACTER}:
        del rewritten["not"]
        rewritten["pattern"] = NO_CONTROL_CHARACTER
    return rewritten


def _load_file(file_name: str) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads((SCHEMA_DIR / file_name).read_bytes())
    return document


Headers = tuple[tuple[str, bytes], ...]
CONTENT_TYPE: Final = b"application/json"


@cache
def headers_for(schema_name: str) -> Headers:
    """The Kafka headers of every record the pipeline writes: `content-type`, `schema` (the
    record's `schema` field, `credit/2`) and `schema-version` (its major version, `2`), so a
    consumer can route or refuse a record before parsing its value."""
    schema_file(schema_name)  # refuses a name that is no schema name
    return (("content-type", CONTENT_TYPE), ("schema", schema_name.encode()),
            ("schema-version", schema_name.partition("/")[2].encode()))
