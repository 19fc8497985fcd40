#!/usr/bin/env bash
# Installs what the client tests need, from the package registries only:
# a Python virtualenv with pytest and the client libraries, psql, and node-postgres.
# Idempotent; the venv lives outside the clone so repeated CI runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CREEK_VENV:-$HOME/.cache/creek-venv}"
if ! command -v psql >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq postgresql-client) >/dev/null
fi
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check -r tests/clients/requirements.txt
if [ ! -d tests/clients/node_modules/pg ]; then
  (cd tests/clients && npm install --silent --no-audit --no-fund) >/dev/null
fi
