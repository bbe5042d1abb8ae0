"""The headless browser of the collector's snippet test: Debian's `chromium` (and its driver),
installed like the stack's servers when missing. `python -m personify.stack.browser` ensures
both and prints the browser's path (`scripts/test.sh` runs it before the tests)."""

from __future__ import annotations

import sys

from personify.stack.debian import ensure_program
from personify.stack.processes import StackError

HEADLESS_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")
"""Flags for a browser run by tests: no sandbox (root in containers), no traffic of its own."""


def ensure_chromium(progress=print) -> str:
    """The path of `chromium`, installing `chromium` and `chromium-driver` when missing."""
    browser = ensure_program("chromium", "chromium", progress)
    ensure_program("chromedriver", "chromium-driver", progress)
    return browser


if __name__ == "__main__":
    try:
        print(ensure_chromium())
    except StackError as exc:
        print(f"personify: {exc}", file=sys.stderr)
        sys.exit(2)
