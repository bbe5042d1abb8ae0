#!/usr/bin/env bash
# The test command: install, start the local stack if needed, run every test, stop what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh
started=$(mktemp)
stop_started() {
  if [ -s "$started" ]; then
    echo "==> stopping what the tests started: $(cat "$started")"
    .venv/bin/personify stack down --only "$(tr ' ' ',' < "$started")" || true
  fi
  rm -f "$started"
}
trap stop_started EXIT
echo "==> starting the local stack (Kafka, Redis, Prometheus) unless it is running"
.venv/bin/personify stack up --started-file "$started"
echo "==> the headless browser of the snippet test (Debian's chromium, unless installed)"
.venv/bin/python -m personify.stack.browser
echo "==> tests: ${PERSONIFY_TEST_PATHS:-unit, integration and chaos} (${PERSONIFY_CHAOS_KILLS:-3} kills per chaos test)"
# shellcheck disable=SC2086  # the paths are words on purpose
.venv/bin/python -m pytest ${PERSONIFY_TEST_PATHS:-tests} \
  -p no:cacheprovider "$@"
