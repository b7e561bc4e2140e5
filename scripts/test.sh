#!/usr/bin/env bash
# Set up (system packages, .venv) if needed, then run the default test suite (GUI tests under Xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
