#!/usr/bin/env python3
"""Names on a network: what they cost an ADD, how soon a name answers, and
whether 1,000 names answer as fast as 10.

1. ADD and DEL of the `berth` plugin (whole processes, as a runtime execs
   them) on a network without names and on one with names (its dnsmasq
   running: another attachment holds it up), interleaved in rounds in the
   same run; the reference bridge plugin in the same rounds as the anchor.
2. From ADD's return to the first answer of the network's server for the
   new name (a DNS query every millisecond to the gateway).
3. The server's answer time (a query's round trip from this host, median
   of many) with 10 names on the network and with 1,000 (ten attachments
   of a hundred names each), and its memory.

    python3 scripts/bench_names.py [--rounds 6] [--per-round 20] [--queries 2000]
"""
import argparse, json, os, random, shutil, socket, statistics, struct, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import sh, machine_line, require_root, report, BridgePlugin, REF_DIR  # noqa: E402

def dns_query(sock, server, port, name):
    """One A query; returns (rcode, answers)."""
    tid = random.randrange(65536)
    packet = struct.pack(">HHHHHH", tid, 0x0100, 1, 0, 0, 0)
    packet += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    sock.sendto(packet, (server, port))
    while True:
        data = sock.recv(4096)
        if struct.unpack(">H", data[:2])[0] == tid:
            return data[3] & 0xF, struct.unpack(">H", data[6:8])[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--berth-dir", default=".build/release")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--per-round", type=int, default=20)
    ap.add_argument("--queries", type=int, default=2000)
    args = ap.parse_args()
    require_root("bench_names")
    berth_dir = os.path.abspath(args.berth_dir)
    tag = f"{random.randrange(16**4):04x}"
    scratch = tempfile.mkdtemp(prefix="berth-bench-names-")
    used = sh("ip", "-4", "route", "show", "table", "all").stdout
    seconds = [s for s in range(200, 240) if f"10.{s}." not in used][:3]
    plain = BridgePlugin(berth_dir, "berth", f"bn{tag}p", f"10.{seconds[0]}.0.0/16", f"{scratch}/p")
    named = BridgePlugin(berth_dir, "berth", f"bn{tag}n", f"10.{seconds[1]}.0.0/16", f"{scratch}/n",
                         extra={"runDir": f"{scratch}/run", "names": True})
    reference = BridgePlugin(REF_DIR, "bridge", f"bn{tag}r", f"10.{seconds[2]}.0.0/16", f"{scratch}/r")
    gateway = f"10.{seconds[1]}.0.1"
    server_dir = f"{scratch}/run/dns/{named.name}"
    samples = {k: [] for k in ["plain ADD", "plain DEL", "names ADD", "names DEL", "reference ADD", "reference DEL"]}
    first_answer, query_times, memory = [], {}, {}
    netns, held = [], []
    try:
        for name in ["p", "n", "r", "h"]:
            ns = f"berth-bench-n{tag}{name}"
            sh("ip", "netns", "add", ns)
            netns.append(ns)
        # The server kept up by an attachment of its own; every plugin warm.
        named.run("ADD", netns[3], "holder", name="holder")
        held.append(("holder", "eth0"))
        for plugin, ns in [(plain, netns[0]), (named, netns[1]), (reference, netns[2])]:
            plugin.run("ADD", ns, "warm", name="warm" if plugin is not reference else None)
            plugin.run("DEL", ns, "warm")
        with open(f"{server_dir}/dnsmasq.args") as f:
            port = int([l for l in f.read().splitlines() if l.startswith("port ")][0][5:])
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(1)
        for r in range(args.rounds):
            for kind in (["plain", "names"] if r % 2 == 0 else ["names", "plain"]):
                plugin, ns = (plain, netns[0]) if kind == "plain" else (named, netns[1])
                for i in range(args.per_round):
                    cid = f"c{r}-{i}"
                    elapsed, _ = plugin.run("ADD", ns, cid, name=f"pod-{r}-{i}")
                    samples[f"{kind} ADD"].append(elapsed)
                    if kind == "names":
                        # 2. From ADD's return to the first answer.
                        start = time.perf_counter()
                        while dns_query(sock, gateway, port, f"pod-{r}-{i}.berth.internal") != (0, 1):
                            if time.perf_counter() - start > 2:
                                raise RuntimeError(f"pod-{r}-{i} did not resolve within 2 s")
                            time.sleep(0.001)
                        first_answer.append(time.perf_counter() - start)
                    samples[f"{kind} DEL"].append(plugin.run("DEL", ns, cid)[0])
            for i in range(args.per_round):
                samples["reference ADD"].append(reference.run("ADD", netns[2], f"c{r}-{i}")[0])
                samples["reference DEL"].append(reference.run("DEL", netns[2], f"c{r}-{i}")[0])

        # 3. Answer times with 10 names, then 1,000.
        def measure(label, name):
            times = []
            for _ in range(args.queries):
                start = time.perf_counter()
                rcode, answers = dns_query(sock, gateway, port, name)
                times.append(time.perf_counter() - start)
                if rcode != 0 or answers != 1:
                    raise RuntimeError(f"{name}: rcode {rcode}, {answers} answers")
            query_times[label] = times
            with open(f"{server_dir}/dnsmasq.pid") as f:
                pid = f.read().strip()
            with open(f"/proc/{pid}/status") as f:
                memory[label] = int([l for l in f if l.startswith("VmRSS:")][0].split()[1])

        named.run("ADD", netns[3], "ten", name="ten", aliases=[f"ten-{i}" for i in range(8)], ifname="eth1")
        held.append(("ten", "eth1"))
        measure("10 names", "ten-7.berth.internal")
        for k in range(10):
            named.run("ADD", netns[3], f"many{k}", name=f"many{k}", aliases=[f"m{k}-{i}" for i in range(99)], ifname=f"eth{k + 2}")
            held.append((f"many{k}", f"eth{k + 2}"))
        measure("1,010 names", "m9-98.berth.internal")
    finally:
        for cid, ifname in held:
            subprocess.run([named.path], input=json.dumps(named.config), capture_output=True, text=True,
                           env=dict(named.env, CNI_COMMAND="DEL", CNI_NETNS=f"/run/netns/{netns[3]}", CNI_CONTAINERID=cid, CNI_IFNAME=ifname))
        for ns in netns:
            sh("ip", "netns", "del", ns, check=False)
        for bridge in [f"bn{tag}p", f"bn{tag}n", f"bn{tag}r"]:
            sh("ip", "link", "del", bridge, check=False)
        shutil.rmtree(scratch, ignore_errors=True)

    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    print("### Names on a network: ADD/DEL with names, time to the first answer, 10 against 1,000 names\n")
    print(machine_line(f"{args.rounds} rounds of {args.per_round} ADD+DEL per kind, kinds alternating; release build; dnsmasq "
                       + sh("dnsmasq", "--version").stdout.split()[2]))
    print()
    print("| | median ms | vs no names | target |")
    print("|---|---|---|---|")
    for op in ["ADD", "DEL"]:
        print(f"| berth {op}, no names | {med[f'plain {op}']:.2f} | 1.00x | |")
        print(f"| berth {op}, names on (server running) | {med[f'names {op}']:.2f} | {med[f'names {op}'] / med[f'plain {op}']:.2f}x | {'at most 1.3x' if op == 'ADD' else ''} |")
        print(f"| reference bridge {op} (anchor) | {med[f'reference {op}']:.2f} | {med[f'reference {op}'] / med[f'plain {op}']:.2f}x | |")
    fa = sorted(first_answer)
    print(f"\nFrom ADD's return to the name's first answer ({len(fa)} names): median {statistics.median(fa) * 1000:.2f} ms, "
          f"max {fa[-1] * 1000:.2f} ms (target: within 100 ms).\n")
    print("| names on the network | median answer µs | p99 µs | server RSS KB |")
    print("|---|---|---|---|")
    for label, times in query_times.items():
        times = sorted(times)
        print(f"| {label} | {statistics.median(times) * 1e6:.0f} | {times[int(len(times) * 0.99)] * 1e6:.0f} | {memory[label]} |")


if __name__ == "__main__":
    report("bench_names", main)
