#!/usr/bin/env bash
# Benchmarks, each measuring Berth and the reference plugins (Debian's
# containernetworking-plugins) in the same run, interleaved:
#   1. ADD and DEL latency of the bridge plugins (scripts/bench.py);
#   2. ADD+DEL cost of the IPAM plugins as their stores fill (scripts/bench_ipam.py);
#   3. the whole container cycle of berthctl against unshare + ip netns (scripts/bench_runtime.py);
#   4. a lab of 200 hosts on 4 networks against a shell script of ip and the reference plugin (scripts/bench_lab.py);
#   5. BerthJSON against FoundationEssentials' JSON coders in a static probe (scripts/bench_json.sh);
#   6. a cluster of 50 nodes on one etcd, host-gw and vxlan: convergence, join, leave, a policy reaching every node (scripts/bench_cluster.py);
#   7. network policy: ADD and DEL with 100 policies in force against none, a change with 1,000 pods (scripts/bench_policy.py);
#   8. names on a network: ADD and DEL with names against without, time to the first answer, 10 against 1,000 names (scripts/bench_names.py).
# The full run writes each table into docs/benchmarks.md (between the
# markers named after its script); --quick prints them only.
#   scripts/bench.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [[ "${1:-}" == "--quick" ]]; then
  python3 scripts/bench.py --iterations 20 --large 100 --parallel 16
  python3 scripts/bench_ipam.py --cycles 10 --sizes 10,500
  python3 scripts/bench_runtime.py --cycles 10
  python3 scripts/bench_lab.py --hosts 40
  scripts/bench_json.sh 50
  python3 scripts/bench_cluster.py --nodes 10
  python3 scripts/bench_policy.py --rounds 2 --per-round 10 --changes 3
  python3 scripts/bench_names.py --rounds 2 --per-round 10 --queries 500
else
  python3 scripts/bench.py --iterations 100 --markdown docs/benchmarks.md
  echo
  python3 scripts/bench_ipam.py --cycles 60 --markdown docs/benchmarks.md
  echo
  python3 scripts/bench_runtime.py --cycles 40 --markdown docs/benchmarks.md
  echo
  python3 scripts/bench_lab.py --markdown docs/benchmarks.md
  echo
  scripts/bench_json.sh
  echo
  python3 scripts/bench_cluster.py --markdown docs/benchmarks.md
  echo
  python3 scripts/bench_policy.py --markdown docs/benchmarks.md
  echo
  python3 scripts/bench_names.py --markdown docs/benchmarks.md
fi
