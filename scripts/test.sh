#!/usr/bin/env bash
# Installs what the tests need and runs the whole test suite (as root: the
# end-to-end tests create namespaces, bridges and veths, and remove them).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --no-build
source scripts/lib/swift.sh
swift build --build-tests
# The Debian package, which the package tests install (built before them:
# SwiftPM's build directory is locked while tests run). Made of the debug
# build just done, relinked: a release build would double the run's time.
scripts/package.sh --debug
swift test "$@"
