#!/usr/bin/env bash
# The main job: install, bring up the local stack and the worker, then run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh
exec .venv/bin/personify demo "$@"
