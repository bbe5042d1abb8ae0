#!/usr/bin/env bash
# The chaos suite: the SIGKILL test with 20 kills, then the faults of tests/chaos, on the local
# stack (started here unless it runs, and stopped again if this started it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh
started=$(mktemp)
stop_started() {
  if [ -s "$started" ]; then
    .venv/bin/personify stack down --only "$(tr ' ' ',' < "$started")" || true
  fi
  rm -f "$started"
}
trap stop_started EXIT
.venv/bin/personify stack up --started-file "$started"
PERSONIFY_CHAOS_KILLS="${PERSONIFY_CHAOS_KILLS:-20}" .venv/bin/python -m pytest -p no:cacheprovider \
  -s tests/integration/test_chaos.py tests/chaos "$@"
