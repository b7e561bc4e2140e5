#!/usr/bin/env bash
# Build the standalone Strata folder with PyInstaller: dist/Strata (run from anywhere).
#
#   bash packaging/build.sh                 # lean build into dist/Strata
#   STRATA_TRIM=0 bash packaging/build.sh   # the same without trimming, to compare
#   DIST=/tmp/strata-dist WORK=/tmp/strata-build bash packaging/build.sh
#
# Prints the bundle's size before trimming (everything the analysis collected) and
# after (what dist/Strata holds).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
DIST="${DIST:-dist}"
WORK="${WORK:-build/pyinstaller}"

if [ ! -x "$PY" ]; then
  echo "no Python at $PY: run scripts/setup.sh first (or set PYTHON)" >&2
  exit 1
fi
if ! "$PY" -c "import PyInstaller" 2>/dev/null; then
  echo "installing PyInstaller into the venv"
  "$PY" -m pip install -q "pyinstaller>=6.10" "pyinstaller-hooks-contrib>=2024.8"
fi
if "$PY" -c "import torch, sys; sys.exit(0 if torch.version.cuda is None else 1)"; then :; else
  echo "warning: this torch is a CUDA build; the bundle will be several GB larger (install the CPU wheel)" >&2
fi

start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath "$DIST" --workpath "$WORK" packaging/strata.spec 2>&1 | tee "$WORK.log" | grep -E "strata.spec:|ERROR|Error" || true
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ] || [ ! -x "$DIST/Strata/strata" ]; then
  echo "build failed (exit $status); the full log is in $WORK.log" >&2
  exit 1
fi

# The desktop entry and icon next to the program, for packaging/README.md's install step.
cp packaging/strata.desktop "$DIST/Strata/"
icon=$(ls resources/icons/strata.svg resources/icons/strata.png resources/strata.svg resources/strata.png 2>/dev/null | head -1 || true)
[ -n "$icon" ] && cp "$icon" "$DIST/Strata/"

size_mib() { du -sm "$1" | cut -f1; }
echo
echo "built $DIST/Strata in $(( $(date +%s) - start )) s"
grep -h "strata.spec:" "$WORK.log" | tail -1 | sed 's/^/  /'
echo "  bundle on disk: $(size_mib "$DIST/Strata") MiB ($(find "$DIST/Strata" -type f | wc -l) files)"
echo "  largest parts:"
du -sm "$DIST/Strata/_internal"/* 2>/dev/null | sort -rn | head -8 | sed 's/^/    /'
echo "run it: $DIST/Strata/strata    smoke test: bash packaging/smoke_test.sh $DIST/Strata"
