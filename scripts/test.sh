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
# End-to-end suites run their tests on threads of their own (OwnThreads in
# Tests/BerthTestSupport): at most this many tests at once, most of them waiting
# on processes and packets rather than using a core.
export SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH="${SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH:-8}"
swift test "$@"
