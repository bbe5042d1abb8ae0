"""Who may post: the source a write key names, and the browser origins allowed to call.

Write keys arrive as Segment's libraries send them: HTTP Basic auth with the key as the user
name and an empty password, or (from browsers, whose `sendBeacon` cannot set headers) in the
body's `writeKey`. Keys are compared in constant time against every source, and never logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable
from typing import Any

from personify.collector.config import Source

CORS_PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
}


class Unauthorized(Exception):
    """No source has the write key the request carries (or it carries none)."""


def authenticate(
    authorization: str | None, document: Any, sources: Iterable[Source]
) -> Source:
    """The source of the request's write key: the Authorization header's when present, else the
    body's `writeKey`; raises `Unauthorized` with what was wrong."""
    if authorization is not None:
        key = basic_user(authorization)
        if key is None:
            raise Unauthorized("the Authorization header must be Basic auth with the write key "
                               "as the user name and an empty password")
    else:
        key = document.get("writeKey") if isinstance(document, dict) else None
        if not isinstance(key, str):
            raise Unauthorized("a write key is needed: Basic auth with the write key as the "
                               "user name, or 'writeKey' in the JSON body")
    source = source_of(key, sources)
    if source is None:
        raise Unauthorized("unknown write key")
    return source


def basic_user(authorization: str) -> str | None:
    """The user name of a Basic `Authorization` header, or None when it is not one."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, _password = decoded.partition(":")
    return user or None


def source_of(key: str, sources: Iterable[Source]) -> Source | None:
    """The source whose write key is `key`: every key is compared, so the time taken does not
    tell how much of a key was right."""
    wanted = key.encode()
    found = None
    for source in sources:
        if hmac.compare_digest(wanted, source.write_key.encode()):
            found = source
    return found
