#!/usr/bin/env bash
# Smoke test of a built Strata folder, run by hand (slow): under Xvfb, the frozen
# app starts and shows its main window; `strata sample`, `strata run --until-idle`
# and `strata jobs --json` work from the bundle. Prints start-up times.
#
#   bash packaging/smoke_test.sh [dist/Strata]
#
# Needs xvfb-run and xwininfo (Debian: xvfb x11-utils); uses a throw-away
# workspace and settings file, never the user's own.
set -uo pipefail
BUNDLE="$(cd "${1:-dist/Strata}" && pwd)"
APP="$BUNDLE/strata"
[ -x "$APP" ] || { echo "FAIL: no program at $APP (build it with packaging/build.sh)"; exit 1; }
for tool in xvfb-run xwininfo; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (apt-get install xvfb x11-utils)"; exit 1; }
done

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
export STRATA_HOME="$TMP/workspace" STRATA_SETTINGS="$TMP/settings.ini" QT_QPA_PLATFORM=xcb
failures=0
pass() { echo "PASS  $*"; }
fail() { echo "FAIL  $*"; failures=$((failures + 1)); }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

echo "bundle: $BUNDLE ($(du -sm "$BUNDLE" | cut -f1) MiB)"

# 1. The command line: start-up, then the sample job through conversion.
t0=$(now)
if version=$("$APP" --version 2>&1); then pass "strata --version: $version ($(secs "$t0" "$(now)") s)"; else fail "strata --version: $version"; fi

t0=$(now)
if job=$("$APP" sample 2>"$TMP/sample.err" | tail -1) && [ -n "$job" ]; then
  pass "strata sample: job $job ($(secs "$t0" "$(now)") s)"
else
  fail "strata sample: $(tail -3 "$TMP/sample.err")"
fi
t0=$(now)
if "$APP" run --until-idle >"$TMP/run.out" 2>&1; then
  pass "strata run --until-idle ($(secs "$t0" "$(now)") s)"
else
  fail "strata run --until-idle: $(tail -3 "$TMP/run.out")"
fi
t0=$(now)
if "$APP" jobs --json >"$TMP/jobs.json" 2>"$TMP/jobs.err"; then
  status=$(grep -o '"status": "[a-z_]*"' "$TMP/jobs.json" | head -1 | cut -d'"' -f4)
  shape=$(tr -d ' \n' <"$TMP/jobs.json" | grep -o '"shape":\[[0-9,]*\]' | head -1)
  if [ "$status" = "converted" ]; then
    pass "strata jobs --json: status converted, $shape ($(secs "$t0" "$(now)") s)"
  else
    fail "strata jobs --json: status '$status', expected converted"
  fi
else
  fail "strata jobs --json: $(tail -3 "$TMP/jobs.err")"
fi

# 2. The window: time from launch until the main window is mapped on the display;
#    then it is left running for SETTLE seconds, a screenshot is taken, and its
#    output must show no page that failed to load and no traceback.
cat >"$TMP/window.sh" <<'INNER'
#!/usr/bin/env bash
app="$1"; out="$2"; settle="$3"
start=$(date +%s.%N)
"$app" >"$out.log" 2>&1 &
pid=$!
for _ in $(seq 1 1200); do
  # The main window: titled "Strata ..." and larger than the 1x1 leader window Qt makes first.
  if xwininfo -root -tree 2>/dev/null | grep -qE '"Strata[^"]*": \(.*\) +[0-9]{3,}x[0-9]{3,}'; then
    echo "shown $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')" >"$out"
    sleep "$settle"
    command -v import >/dev/null && import -window root "$out.png" 2>/dev/null
    xwininfo -root -tree | grep -E '"Strata[^"]*": \(.*\) +[0-9]{3,}x[0-9]{3,}' | head -1 >>"$out"
    kill -0 "$pid" 2>/dev/null || echo "crashed" >>"$out"
    break
  fi
  kill -0 "$pid" 2>/dev/null || { echo "exited early" >"$out"; break; }
  sleep 0.1
done
[ -s "$out" ] || echo "timeout" >"$out"
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
INNER

check_window() {  # name settle screenshot
  local name="$1" settle="$2" shot="$3" result
  rm -f "$TMP/window" "$TMP/window.log" "$TMP/window.png"
  xvfb-run -a -s "-screen 0 1600x1000x24" bash "$TMP/window.sh" "$APP" "$TMP/window" "$settle" >/dev/null 2>&1
  result=$(head -1 "$TMP/window")
  if [[ "$result" != shown* ]]; then
    fail "$name: $result; last lines of its output:"
    tail -15 "$TMP/window.log" | sed 's/^/      /'
  elif grep -q crashed "$TMP/window"; then
    fail "$name: the app died within $settle s; last lines of its output:"
    tail -15 "$TMP/window.log" | sed 's/^/      /'
  elif grep -qE "failed to load|Traceback" "$TMP/window.log"; then
    fail "$name: shown after ${result#shown } s, but its output has errors:"
    grep -E -A3 "failed to load|Traceback|Error" "$TMP/window.log" | head -12 | sed 's/^/      /'
  else
    pass "$name: shown after ${result#shown } s: $(sed -n 2p "$TMP/window" | sed 's/^ *//' | cut -c1-90)"
  fi
  if [ -f "$TMP/window.png" ]; then cp "$TMP/window.png" "$shot" && echo "      screenshot: $shot"; fi
}

SHOTS="${SMOKE_SCREENSHOTS:-/tmp/strata-smoke}"
check_window "window start-up" 3 "$SHOTS-window.png"
# The window reopens on the page that was in front last time (Settings are an INI
# file): open it on Annotate, so the embedded napari viewer loads from the bundle.
printf '[window]\npage=Annotate\n' >"$STRATA_SETTINGS"
check_window "window on the Annotate page (napari)" 15 "$SHOTS-annotate.png"
printf '[window]\npage=3D\n' >"$STRATA_SETTINGS"
check_window "window on the 3D page (VTK)" 10 "$SHOTS-3d.png"

echo
if [ "$failures" -eq 0 ]; then echo "smoke test passed"; else echo "smoke test: $failures failure(s)"; fi
exit "$failures"
