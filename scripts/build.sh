#!/usr/bin/env bash
# Builds Berth's release binaries into .build/release, with the plugin
# processes tuned (none of this is in Package.swift, so that other packages
# can depend on Berth by version: SwiftPM refuses unsafe flags there):
#   - berth-agent, with the Swift standard library linked statically;
#   - then `berth` and `berth-ipam` again, in a scratch directory of their own
#     (.build-plugins), as fully static executables (-static-executable: a
#     plugin process starts in about 1.4 ms instead of 4), without the implicit
#     _StringProcessing import (1.2 MB of regex code stays out, peak memory
#     -450 KB), with a section per function placed by gold in the order of
#     scripts/generated/hot-sections.txt (made by scripts/hot-sections.sh from callgrind
#     traces: the pages an ADD touches, and so its peak memory, -0.9 MB);
#     these two replace the untuned ones in .build/release;
#   - and `berthctl` as a static executable (-static-executable: no dynamic
#     loading or symbol relocation of its 80 MB at each start; `berthctl ps`
#     3.4 ms instead of 7.2).
#   scripts/build.sh            all the steps
#   scripts/build.sh --plugins  only the tuned plugins
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/swift.sh
source scripts/lib/quiet.sh

if [[ "${1:-}" != "--plugins" ]]; then
  # Only the agent here: the plugins and berthctl are built below with their own flags.
  swift build -c release --static-swift-stdlib --product berth-agent 2>&1 | quiet
fi
plugin_flags=(
  -Xswiftc -Xfrontend -Xswiftc -disable-implicit-string-processing-module-import
  -Xswiftc -Xfrontend -Xswiftc -function-sections
  -Xswiftc -static-executable
  -Xlinker "--section-ordering-file=$PWD/scripts/generated/hot-sections.txt"
)
mkdir -p .build/release
for product in berth berth-ipam; do
  # Always relinked: the build system does not see the ordering file change.
  rm -f ".build-plugins/release/$product"
  swift build -c release --scratch-path .build-plugins --product "$product" "${plugin_flags[@]}" 2>&1 | quiet
  install -m 0755 ".build-plugins/release/$product" ".build/release/$product"
done
if [[ "${1:-}" != "--plugins" ]]; then
  swift build -c release --scratch-path .build-plugins --product berthctl -Xswiftc -static-executable 2>&1 | quiet
  install -m 0755 .build-plugins/release/berthctl .build/release/berthctl
fi
test -x .build/release/berth && test -x .build/release/berth-ipam || { echo "build: the plugins were not built" >&2; exit 1; }
