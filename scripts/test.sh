#!/usr/bin/env bash
# Installs what the tests need and runs the whole test suite (as root: the
# end-to-end tests create namespaces, bridges and veths, and remove them).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --no-build
if ! command -v swift >/dev/null 2>&1; then export PATH="/opt/swift/usr/bin:$PATH"; fi
swift build --build-tests
swift test "$@"
