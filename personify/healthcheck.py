"""`python -m personify.healthcheck URL`: exit 0 when URL answers 200, 1 otherwise.

The container images have no curl; docker-compose.yml checks the worker's `/ready` and the
collector's `/health` with this. `PERSONIFY_API_TOKEN`, when set, is sent as the worker wants it.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 3.0


def healthy(url: str, token: str = "") -> tuple[bool, str]:
    """(answered 200, what was seen)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=TIMEOUT_S) as response:
            return response.status == 200, f"{url}: {response.status}"
    except urllib.error.HTTPError as error:
        return False, f"{url}: {error.code} {error.read()[:200].decode(errors='replace')}"
    except OSError as error:
        return False, f"{url}: {error}"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m personify.healthcheck URL", file=sys.stderr)
        return 2
    ok, seen = healthy(argv[0], os.environ.get("PERSONIFY_API_TOKEN", ""))
    print(seen, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
