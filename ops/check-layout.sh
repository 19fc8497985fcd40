#!/usr/bin/env bash
# Architecture invariants that a compiler does not check:
# - coordinator and datanode never depend on each other (they talk over the wire);
# - one arrow, tonic, prost and sqlparser version in the dependency tree.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for pair in coordinator:datanode datanode:coordinator; do
  from=${pair%%:*} to=${pair##*:}
  if cargo tree -p "creek-$from" --edges normal --prefix none 2>/dev/null | grep -q "^creek-$to "; then
    echo "creek-$from depends on creek-$to: the two roles must talk over the wire only" >&2
    status=1
  fi
done
duplicates=$(cargo tree --workspace --duplicates --edges normal --depth 0 --prefix none 2>/dev/null \
  | grep -E '^(arrow-array|tonic|prost|sqlparser|datafusion) v' | sort -u || true)
if [ -n "$duplicates" ]; then
  echo "more than one version of: $duplicates" >&2
  status=1
fi
exit $status
