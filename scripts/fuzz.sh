#!/usr/bin/env bash
# Fuzzes the decoders of untrusted input (network config, prevResult, CNI_ARGS)
# with libFuzzer (swiftc -sanitize=fuzzer,address) for a bounded time, starting
# from the example configs and the bad-input corpus. Prints libFuzzer's final
# statistics; exits non-zero when it found a crash (saved as crash-* in
# .build/fuzz/).
#   scripts/fuzz.sh [SECONDS]      (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz: SECONDS must be a whole number, not '$seconds'" >&2; exit 2; }
source scripts/lib/swift.sh

work=".build/fuzz"
rm -rf "$work/src" "$work/seeds"
mkdir -p "$work/src" "$work/seeds" "$work/corpus"
# One module: BerthJSON, BerthNet, BerthCNI, the IPAM and bridge config readers, the
# address plan and the target (their imports of each other dropped).
for f in Sources/BerthJSON/*.swift Sources/BerthNet/*.swift Sources/BerthCNI/*.swift Sources/BerthIPAM/IPAMConfig.swift Sources/BerthIPAM/NodeFile.swift \
         Sources/BerthFirewall/FirewallBackend.swift \
         Sources/BerthPlugin/BridgeConfig.swift Sources/BerthPlugin/AddressPlan.swift scripts/probes/fuzz/BerthFuzz.swift; do
  sed -e '/^import Berth[A-Za-z]*$/d' "$f" > "$work/src/$(basename "$f")"
done
swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name BerthFuzz \
  "$work"/src/*.swift -o "$work/berth-fuzz" 2>&1 | grep -v "ld.gold: warning: Cannot export local symbol" || true

# Seeds: the example configs and every stdin of the bad-input corpus.
cp conf/*.conflist "$work/seeds/"
python3 - "$work/seeds" <<'PY'
import json, sys
cases = json.load(open("Tests/PluginEndToEndTests/Corpus/bad-input.json"))
for i, case in enumerate(cases):
    if "stdin" in case:
        open(f"{sys.argv[1]}/corpus-{i}", "w", encoding="utf-8", errors="surrogateescape").write(case["stdin"])
PY

cd "$work"
rm -f crash-* leak-* timeout-* oom-*
./berth-fuzz -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 \
  -dict=../../scripts/probes/fuzz/cni.dict corpus seeds 2>&1 | grep -E "^stat::|^#[0-9]+ *DONE|ERROR|SUMMARY|crash-|Test unit written" || true
if ls crash-* leak-* timeout-* oom-* >/dev/null 2>&1; then
  echo "fuzz: found inputs that fail: $(ls crash-* leak-* timeout-* oom-* 2>/dev/null | tr '\n' ' ')" >&2
  exit 1
fi
