#!/usr/bin/env python3
"""Times ADD and DEL of Berth and of the reference bridge plugin, in one run.

Both plugins get the same config (host-local IPAM on a /16, isGateway) on
bridges of their own, with `--base` containers already attached. Runs are
interleaved (Berth, reference, Berth, ...) so machine noise hits both alike.
Each timing is one whole plugin process, as a runtime execs it.

Network safety: all traffic-free; every namespace, bridge and IPAM directory
it makes is removed at the end, also on failure.
"""
import argparse, json, os, platform, random, statistics, subprocess, sys, tempfile, time

REF_DIR = "/usr/lib/cni"


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


class Setup:
    def __init__(self, label, plugin_dir, plugin, ipam, subnet, tag, letter):
        self.label, self.plugin_dir, self.plugin = label, plugin_dir, plugin
        self.bridge = f"bb{tag}{letter}"[:15]
        self.data = tempfile.mkdtemp(prefix=f"berth-bench-{label}-")
        self.config = json.dumps({
            "cniVersion": "1.0.0", "name": f"bench-{letter}", "type": plugin,
            "bridge": self.bridge, "isGateway": True,
            "ipam": {"type": ipam, "subnet": subnet, "dataDir": self.data},
        })
        self.namespaces = []
        self.env = dict(os.environ, CNI_IFNAME="eth0", CNI_PATH=f"{plugin_dir}:{REF_DIR}")

    def new_ns(self):
        name = f"berth-bench-{self.bridge}-{len(self.namespaces)}"
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        return name

    def run(self, command, ns, cid):
        env = dict(self.env, CNI_COMMAND=command, CNI_NETNS=f"/run/netns/{ns}", CNI_CONTAINERID=cid)
        start = time.perf_counter()
        p = subprocess.run([f"{self.plugin_dir}/{self.plugin}"], input=self.config, env=env,
                           capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if p.returncode != 0:
            raise RuntimeError(f"{self.label} {command} failed: {p.stdout} {p.stderr}")
        return elapsed

    def cleanup(self):
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", self.bridge, check=False)
        sh("rm", "-rf", self.data, check=False)


def free_subnets(count):
    used = sh("ip", "-4", "route", "show", "table", "all").stdout
    out = []
    for second in range(200, 240):
        if f"10.{second}." not in used:
            out.append(f"10.{second}.0.0/16")
        if len(out) == count:
            return out
    raise SystemExit("bench: no free 10.x.0.0/16 for the test bridges")


def pct(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--berth-dir", default=".build/release")
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--base", type=int, default=10, help="containers already on each bridge")
    ap.add_argument("--markdown", help="also write the table to this file")
    args = ap.parse_args()

    # The reference bridge plugin turns IPv4 forwarding on (isGateway); put it back afterwards.
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        forwarding = f.read().strip()
    tag = f"{random.randrange(16**4):04x}"
    subnets = free_subnets(3)
    berth_dir = os.path.abspath(args.berth_dir)
    setups = [Setup("berth", berth_dir, "berth", "berth-ipam", subnets[0], tag, "b"),
              Setup("berth+host-local", berth_dir, "berth", "host-local", subnets[1], tag, "h"),
              Setup("reference", REF_DIR, "bridge", "host-local", subnets[2], tag, "r")]
    samples = {s.label: {"ADD": [], "DEL": []} for s in setups}
    try:
        for s in setups:
            for i in range(args.base):
                s.run("ADD", s.new_ns(), f"base{i}")
        for i in range(args.iterations):
            for s in (setups if i % 2 == 0 else setups[::-1]):
                ns = s.new_ns()
                samples[s.label]["ADD"].append(s.run("ADD", ns, f"it{i}"))
                samples[s.label]["DEL"].append(s.run("DEL", ns, f"it{i}"))
                sh("ip", "netns", "del", ns)
                s.namespaces.remove(ns)
    finally:
        for s in setups:
            s.cleanup()
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write(forwarding)

    rows = []
    for op in ("ADD", "DEL"):
        for stat, fn in (("median", statistics.median), ("p90", lambda v: pct(v, 0.9))):
            b = fn(samples["berth"][op]) * 1000
            h = fn(samples["berth+host-local"][op]) * 1000
            r = fn(samples["reference"][op]) * 1000
            rows.append((f"{op} {stat}", b, h, r))
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, kernel {platform.release()}",
        f"{args.iterations} interleaved ADD+DEL cycles per setup, {args.base} containers already on each bridge;",
        "each figure is one whole plugin process as a runtime execs it (ms).",
        "",
        "| figure | berth + berth-ipam (in-process) | berth + host-local | reference bridge + host-local | berth / reference | berth+host-local / reference |",
        "|---|---:|---:|---:|---:|---:|",
    ] + [f"| {name} | {b:.2f} | {h:.2f} | {r:.2f} | {b / r:.2f}x | {h / r:.2f}x |" for name, b, h, r in rows]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench: run as root (it creates namespaces and bridges)")
    main()
