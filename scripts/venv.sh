#!/usr/bin/env bash
# Create or reuse .venv and install the project (again only when pyproject.toml changed).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "personify needs Python 3.11 or newer as \`$PYTHON\`; set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "==> creating the virtualenv .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.personify-installed
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "==> installing personify, the pipeline and the test tools into .venv (a minute the first time)"
  .venv/bin/python -m pip install --disable-pip-version-check -q --upgrade pip
  .venv/bin/python -m pip install --disable-pip-version-check -q -e '.[pipeline,dev]'
  echo "$wanted" > "$stamp"
fi
