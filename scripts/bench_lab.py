#!/usr/bin/env python3
"""200 hosts on 4 networks, up and down: `berthctl lab` against the same
topology built by Mininet (Linux-bridge switches, no controller; Debian's
mininet package, installed here if missing) and by a shell script of `ip`
commands and the reference bridge plugin with host-local, in the same run.
Everything is removed at the end.

Berth and Mininet run in several rounds in alternating order (Berth first,
then Mininet first), after a warm-up run of Berth, and the table gives the
medians, every round, and the worst ratio of each order: one run, always
Berth first on a cold machine, is what this script used to print, and a
single run of either varies by a quarter from one to the next.
  python3 scripts/bench_lab.py [--hosts 200] [--networks 4] [--rounds 4] [--no-mininet] [--no-reference]
"""
import argparse, json, os, random, shutil, statistics, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import sh, machine_line, report, require_root  # noqa: E402 (after the path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--berth-dir", default=".build/release")
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--networks", type=int, default=4)
    ap.add_argument("--no-mininet", action="store_true")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--serial", action="store_true", help="also time lab up --parallel 1 (one host after another)")
    ap.add_argument("--pause", type=float, default=0.0, help="seconds between runs (0: straight after)")
    args = ap.parse_args()
    if not args.no_mininet and (sh("/usr/bin/python3", "-c", "import mininet", check=False).returncode != 0
                                or not shutil.which("brctl")):
        print("bench_lab: installing mininet (Debian's package) for the comparison")
        sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", "mininet", "bridge-utils",
           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    bindir = os.path.abspath(args.berth_dir)
    tag = f"{random.randrange(16**3):03x}"
    used = sh("ip", "-4", "route", "show", "table", "all").stdout
    seconds = [s for s in range(200, 230) if f"10.{s}." not in used]
    if len(seconds) < 2:
        raise SystemExit("bench_lab: no free 10.x.0.0/16 ranges")
    work = tempfile.mkdtemp(prefix="berth-bench-lab-")
    name = f"bl{tag}"
    # Berth's lab file.
    lines = [f"name: {name}", "networks:"]
    for n in range(args.networks):
        lines += [f"  - name: n{n}", f"    subnet: 10.{seconds[0]}.{n}.0/24"]
    lines.append("hosts:")
    for h in range(args.hosts):
        lines += [f"  - name: h{h}", f"    networks: [n{h % args.networks}]"]
    labfile = f"{work}/lab.yaml"
    with open(labfile, "w") as f:
        f.write("\n".join(lines) + "\n")
    env = dict(os.environ, CNI_PATH=bindir)
    berthctl = f"{bindir}/berthctl"
    # The reference: one config per network, a namespace per host.
    confs = [json.dumps({"cniVersion": "1.0.0", "name": f"ref{tag}n{n}", "type": "bridge", "bridge": f"br{tag}r{n}",
                         "ipam": {"type": "host-local", "dataDir": f"{work}/ref-ipam",
                                  "subnet": f"10.{seconds[1]}.{n}.0/24"}}) for n in range(args.networks)]
    def ref(command, h):
        ns = f"ref{tag}-h{h}"
        e = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=ns, CNI_NETNS=f"/run/netns/{ns}",
                 CNI_IFNAME="eth0", CNI_PATH="/usr/lib/cni")
        sh("/usr/lib/cni/bridge", env=e, input=confs[h % args.networks])
    results = {}
    rounds = []   # (order, berth up, berth down, mininet up, mininet down)
    def berth_run():
        t = time.perf_counter()
        sh(berthctl, "lab", "up", labfile, env=env)
        up = time.perf_counter() - t
        t = time.perf_counter()
        sh(berthctl, "lab", "down", labfile, env=env)
        return up, time.perf_counter() - t
    def mininet_run():
        out = sh("/usr/bin/python3", os.path.join(os.path.dirname(__file__), "bench_lab_mininet.py"),
                 str(args.hosts), str(args.networks)).stdout.strip().splitlines()[-1]
        m = json.loads(out)
        return m["up"], m["down"]
    try:
        berth_run()  # warm-up: binaries in the page cache, the lab's conflists
        for r in range(args.rounds if not args.no_mininet else 1):
            first = "berth" if r % 2 == 0 else "mininet"
            if first == "berth":
                b = berth_run()
                time.sleep(args.pause)
                m = mininet_run() if not args.no_mininet else (None, None)
            else:
                m = mininet_run()
                time.sleep(args.pause)
                b = berth_run()
            time.sleep(args.pause)
            rounds.append((first, b[0], b[1], m[0], m[1]))
        if args.serial:
            serial = []
            for _ in range(max(1, args.rounds // 2)):
                t = time.perf_counter()
                sh(berthctl, "lab", "up", "--parallel", "1", labfile, env=env)
                serial.append(time.perf_counter() - t)
                sh(berthctl, "lab", "down", labfile, env=env)
            results["serial up"] = statistics.median(serial)
        results["berth up"] = statistics.median(x[1] for x in rounds)
        results["berth down"] = statistics.median(x[2] for x in rounds)
        if not args.no_mininet:
            results["mininet up"] = statistics.median(x[3] for x in rounds)
            results["mininet down"] = statistics.median(x[4] for x in rounds)
        if not args.no_reference:
            t = time.perf_counter()
            for h in range(args.hosts):
                sh("ip", "netns", "add", f"ref{tag}-h{h}")
                ref("ADD", h)
            results["reference up"] = time.perf_counter() - t
            t = time.perf_counter()
            for h in range(args.hosts):
                ref("DEL", h)
                sh("ip", "netns", "del", f"ref{tag}-h{h}")
            for n in range(args.networks):
                sh("ip", "link", "del", f"br{tag}r{n}", check=False)
            results["reference down"] = time.perf_counter() - t
    finally:
        sh(berthctl, "lab", "down", name, check=False, env=env)
        for ns in sh("ip", "netns", "list").stdout.split():
            if ns.startswith(f"ref{tag}-"):
                sh("ip", "netns", "del", ns, check=False)
        for n in range(args.networks):
            sh("ip", "link", "del", f"br{tag}r{n}", check=False)
        shutil.rmtree(work, ignore_errors=True)
    print(machine_line())
    print(f"{args.hosts} hosts on {args.networks} networks, seconds: medians of {len(rounds)} rounds in alternating order"
          + (f", {args.pause} s between runs" if args.pause else ", each run straight after the other") + ".")
    print()
    print("| step | berthctl lab | Mininet (Linux bridges) | berth / Mininet | shell script: ip netns + reference bridge + host-local | berth / script |")
    print("|---|---:|---:|---:|---:|---:|")
    cell = lambda v: f"{v:.2f}" if v is not None else "-"
    for step in ("up", "down"):
        b, m, r = results[f"berth {step}"], results.get(f"mininet {step}"), results.get(f"reference {step}")
        print(f"| {step} | {b:.2f} | {cell(m)} | {cell(m and b / m)}x | {cell(r)} | {cell(r and b / r)}x |")
    if "serial up" in results:
        print(f"\nlab up --parallel 1 (one host after another): {results['serial up']:.2f} s, median")
    if "mininet up" in results:
        print()
        print("| round | first | berth up | Mininet up | up ratio | berth down | Mininet down | down ratio |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|")
        for i, (first, bu, bd, mu, md) in enumerate(rounds):
            print(f"| {i + 1} | {first} | {bu:.2f} | {mu:.2f} | {bu / mu:.2f}x | {bd:.2f} | {md:.2f} | {bd / md:.2f}x |")
        targets = [("up", 0.2, 1, 3), ("down", 0.25, 2, 4)]
        print()
        for step, limit, bi, mi in targets:
            for order in ("berth", "mininet"):
                ratios = [x[bi] / x[mi] for x in rounds if x[0] == order]
                if not ratios:
                    continue
                worst = max(ratios)
                print(f"target: {step} at most {limit}x Mininet's, {order} first: worst {worst:.2f}x, {'met' if worst <= limit else 'not met'}")

if __name__ == "__main__":
    require_root("bench_lab.py")
    report("bench_lab.py", main)
