"""Junk identifiers: values that must never link anything (the "identity squishing" bug)."""

from __future__ import annotations

import re
from collections.abc import Iterable

DEFAULT_JUNK_IDS = frozenset(
    {"", "0", "-1", "null", "none", "nil", "undefined", "anonymous", "nan"}
)
_ALL_ZERO = re.compile(r"^[0\-_.:{}]*$")


def is_junk_id(value: str | None, block_list: Iterable[str] = ()) -> bool:
    """True for ids that identify nobody: empty, placeholder words, all zeros, or blocked.

    Compared trimmed and lower-cased, so `"  NULL "` and `00000000-0000-0000-0000-000000000000`
    are junk as well.
    """
    if value is None:
        return True
    normalised = value.strip().lower()
    if normalised in DEFAULT_JUNK_IDS or _ALL_ZERO.match(normalised):
        return True
    return normalised in {b.strip().lower() for b in block_list}
