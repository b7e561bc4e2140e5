#!/usr/bin/env bash
# Set up (system packages, .venv) if needed, then open Strata with the bundled sample as a job.
# Without a display (a server), it runs under Xvfb: set STRATA_XVFB=1 or have no $DISPLAY.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh
if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] || [ -n "${STRATA_XVFB:-}" ]; then
  exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python main.py gui --with-sample "$@"
fi
exec .venv/bin/python main.py gui --with-sample "$@"
