#!/usr/bin/env bash
# Benchmark: ADD and DEL latency of berth against the reference bridge plugin
# (Debian's containernetworking-plugins), same config, same run, interleaved.
#   scripts/bench.sh [--iterations N] [--base N] [--markdown FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec python3 scripts/bench.py "$@"
