#!/usr/bin/env bash
# Set up (if needed) and start the window, with the bundled sample ready as a job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python main.py gui --with-sample "$@"
