"""The wire contract as data: the JSON Schemas of this folder, loaded and compiled (DESIGN §2, §7).

The schema files are the one source of truth. A schema name `kind/major` (the `schema` field of
every message) lives in `kind.v{major}.schema.json`; `$ref`s between files resolve from this folder
by their `$id`, never over the network. Validators are compiled once per process and cached.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal

import fastjsonschema
import orjson

SCHEMA_DIR: Final = Path(__file__).resolve().parent
ID_BASE: Final = "https://personify.dev/schemas/"
"""Prefix of every `$id`: an identifier, not an address to fetch."""

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


@cache
def validator(schema_name: str) -> Callable[[Any], Any]:
    """The compiled validator of `schema_name`: returns its argument or raises `SchemaError`."""
    return fastjsonschema.compile(load_schema(schema_name), handlers={"https": _load_by_id})


def _load_by_id(uri: str) -> dict[str, Any]:
    if not uri.startswith(ID_BASE):
        raise ValueError(f"{uri} is not a schema of this contract")
    return _load_file(uri.removeprefix(ID_BASE).partition("#")[0])


def _load_file(file_name: str) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads((SCHEMA_DIR / file_name).read_bytes())
    return document
