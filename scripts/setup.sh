#!/usr/bin/env bash
# Create .venv and install Strata with its test extras (torch pinned by constraints.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
log=$(mktemp)
if ! .venv/bin/python -m pip install -q -c constraints.txt -e ".[test]" >"$log" 2>&1; then
  grep -v "^WARNING: Location" "$log" >&2
  rm -f "$log"
  echo "setup failed: pip could not install Strata's dependencies" >&2
  exit 1
fi
rm -f "$log"
