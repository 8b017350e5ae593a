#!/usr/bin/env bash
# Runs the churn test (32 workers doing ADD/CHECK/DEL cycles of the release
# `berth` on one bridge, with ipMasq and macspoofchk) for as long as asked,
# then checks that nothing leaked. As root.
#   scripts/soak.sh [SECONDS]      (default 600)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "soak: SECONDS must be a whole number, not '$seconds'" >&2; exit 2; }
scripts/setup.sh
source scripts/lib/swift.sh
swift build --build-tests >/dev/null
log="$(mktemp /tmp/berth-soak.XXXXXX)"
trap 'rm -f "$log"' EXIT
status=0
BERTH_CHURN_SECONDS="$seconds" BERTH_BIN_DIR="$PWD/.build/release" \
  swift test --skip-build --filter 'FirewallTouchingTests.ChurnTests' >"$log" 2>&1 || status=$?
grep -E '^churn:|Expectation failed|✔ Test run|✘ Test run' "$log" || cat "$log"
exit "$status"
