#!/usr/bin/env bash
# What Berth's own JSON code buys over FoundationEssentials' JSONDecoder in a
# fully static executable like `berth`: two probes read the same CNI config
# from stdin and print two fields, one with BerthJSON, one with
# FoundationEssentials (decoding into a Codable struct and encoding it back).
# Both built as `berth` is (scripts/build.sh: -static-executable, no implicit
# _StringProcessing), run interleaved; prints binary size, time per process
# (start-up and parse) and peak resident memory.
#   scripts/bench_json.sh [RUNS]    (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-300}"
source scripts/lib/swift.sh
work=".build/json-probe"
mkdir -p "$work"
flags=(-O -static-executable -Xfrontend -disable-implicit-string-processing-module-import -parse-as-library)
swiftc "${flags[@]}" -module-name BerthProbe Sources/BerthJSON/*.swift scripts/probes/json/berth.swift -o "$work/berthjson" 2>&1 \
  | grep -v "statically linked applications requires" || true
swiftc "${flags[@]}" -module-name FoundationProbe scripts/probes/json/foundation.swift -o "$work/foundation" 2>&1 \
  | grep -v "statically linked applications requires" || true
python3 - "$work" "$runs" <<'PY'
import os, statistics, sys, time
work, runs = sys.argv[1], int(sys.argv[2])
config = b'{"cniVersion":"1.1.0","name":"bench","type":"berth","bridge":"berth0","isGateway":true,"ipMasq":true,"mtu":1500,"ipam":{"type":"berth-ipam","subnet":"10.88.0.0/16","dataDir":"/var/lib/berth/ipam"}}'
probes = {"BerthJSON": f"{work}/berthjson", "FoundationEssentials": f"{work}/foundation"}
times = {k: [] for k in probes}
rss = {k: [] for k in probes}
for _ in range(runs):
    for name, path in probes.items():
        r, w = os.pipe()
        os.write(w, config); os.close(w)
        out = os.open(os.devnull, os.O_WRONLY)
        t = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.dup2(r, 0); os.dup2(out, 1)
            os.execv(path, [path])
        _, status = os.waitpid(pid, 0)
        times[name].append((time.perf_counter() - t) * 1000)
        os.close(r); os.close(out)
        if status != 0: sys.exit(f"{name} failed")
# Peak RSS through /usr/bin/time (a fork of this Python process would count Python's pages).
import subprocess
for _ in range(20):
    for name, path in probes.items():
        p = subprocess.run(["/usr/bin/time", "-f", "%M", path], input=config, capture_output=True)
        rss[name].append(int(p.stderr.decode().strip().splitlines()[-1]))
print(f"{runs} interleaved runs each; one process reads a CNI config on stdin, parses it, prints two fields\n")
print("| probe | binary (KB) | median ms | p90 ms | peak RSS (KB) |")
print("|---|---:|---:|---:|---:|")
for name, path in probes.items():
    t = sorted(times[name])
    print(f"| {name} | {os.path.getsize(path) // 1024} | {statistics.median(t):.2f} | {t[int(len(t) * 0.9)]:.2f} | {max(rss[name])} |")
b, f = statistics.median(times["BerthJSON"]), statistics.median(times["FoundationEssentials"])
print(f"\nBerthJSON / FoundationEssentials: time {b / f:.2f}x, peak RSS {max(rss['BerthJSON']) / max(rss['FoundationEssentials']):.2f}x")
PY
