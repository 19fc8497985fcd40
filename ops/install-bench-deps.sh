#!/usr/bin/env bash
# Installs what tests/bench needs, from the package registries only: the client-test
# virtualenv (psycopg), DuckDB, pyarrow and the ADBC Flight SQL driver from PyPI into it, and
# PostgreSQL 15 with pgbench from Debian if the server binaries are missing. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CREEK_VENV:-$HOME/.cache/creek-venv}"
ops/install-test-deps.sh
"$VENV/bin/pip" install -q --disable-pip-version-check -r tests/bench/requirements.txt
PG_BIN="${CREEK_BENCH_PG_BIN:-/usr/lib/postgresql/15/bin}"
if [ ! -x "$PG_BIN/postgres" ] || ! command -v pgbench >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq postgresql-15 postgresql-client-15) >/dev/null
fi
