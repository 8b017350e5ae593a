#!/usr/bin/env python3
"""ADD+DEL cost of berth-ipam and of the reference host-local, in one run,
with 10, 1,000 and 5,000 allocations already in the store.

Both run as executables (as a runtime's bridge plugin execs its IPAM), with
the same config: one IPv4 /16. Cycles are interleaved so machine noise hits
both alike. No namespaces or links are involved: IPAM only writes its store,
here in a temporary directory that is removed at the end.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import machine_line, report  # noqa: E402 (after the path)

REF = "/usr/lib/cni/host-local"


class Plugin:
    def __init__(self, label, path, data):
        self.label, self.path, self.data = label, path, data
        self.config = json.dumps({"cniVersion": "1.0.0", "name": f"bench-{label}", "type": "bridge",
                                  "ipam": {"type": os.path.basename(path), "dataDir": data,
                                           "subnet": "10.200.0.0/16"}})
        self.count = 0

    def run(self, command, cid):
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_IFNAME": "eth0",
               "CNI_NETNS": "/run/netns/none", "CNI_PATH": os.path.dirname(self.path)}
        start = time.perf_counter()
        p = subprocess.run([self.path], input=self.config, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if p.returncode != 0:
            raise SystemExit(f"{self.label} {command} {cid} failed: {p.stdout}{p.stderr}")
        return elapsed

    def fill_to(self, n):
        while self.count < n:
            self.run("ADD", f"fill{self.count}")
            self.count += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--berth-dir", default=".build/release")
    ap.add_argument("--cycles", type=int, default=60)
    ap.add_argument("--sizes", default="10,1000,5000")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="berth-bench-ipam-")
    try:
        plugins = [Plugin("berth-ipam", os.path.abspath(f"{args.berth_dir}/berth-ipam"), f"{root}/berth"),
                   Plugin("host-local", REF, f"{root}/ref")]
        results = {}
        for n in [int(s) for s in args.sizes.split(",")]:
            for p in plugins:
                p.fill_to(n)
            cycles = {p.label: [] for p in plugins}
            for i in range(args.cycles):
                for p in (plugins if i % 2 == 0 else plugins[::-1]):
                    t = p.run("ADD", f"cycle{n}-{i}") + p.run("DEL", f"cycle{n}-{i}")
                    cycles[p.label].append(t * 1000)
            results[n] = {label: statistics.median(v) for label, v in cycles.items()}
    finally:
        shutil.rmtree(root, ignore_errors=True)

    sizes = sorted(results)
    base = results[sizes[0]]["berth-ipam"]
    print(machine_line())
    print(f"Median of {args.cycles} interleaved ADD+DEL cycles (ms, whole processes), IPv4 /16.")
    print()
    print("| allocations | berth-ipam | host-local | berth-ipam / host-local | berth-ipam / its own at %d |" % sizes[0])
    print("|---:|---:|---:|---:|---:|")
    for n in sizes:
        b, r = results[n]["berth-ipam"], results[n]["host-local"]
        print(f"| {n} | {b:.2f} | {r:.2f} | {b / r:.2f}x | {b / base:.2f}x |")


if __name__ == "__main__":
    report("bench_ipam.py", main)
