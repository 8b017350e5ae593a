#!/usr/bin/env python3
"""Times ADD and DEL of Berth and of the reference bridge plugin, in one run.

Both plugins get the same config (host-local IPAM on a /16, isGateway) on
bridges of their own, with `--base` containers already attached. Runs are
interleaved (Berth, reference, Berth, ...) so machine noise hits both alike.
Each timing is one whole plugin process, as a runtime execs it.

Network safety: all traffic-free; every namespace, bridge and IPAM directory
it makes is removed at the end, also on failure.
"""
import argparse, json, os, random, statistics, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import sh, machine_line, require_root, write_section  # noqa: E402 (after the path)

REF_DIR = "/usr/lib/cni"




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
        if self.plugin == "berth":
            # GC with nothing valid: the containers left on the bridge give back
            # their addresses, rules and endpoint records (/run/berth/endpoints).
            gc = dict(json.loads(self.config), cniVersion="1.1.0")
            gc["cni.dev/valid-attachments"] = []
            subprocess.run([f"{self.plugin_dir}/{self.plugin}"], input=json.dumps(gc), capture_output=True, text=True,
                           env=dict(self.env, CNI_COMMAND="GC"))
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", self.bridge, check=False)
        sh("rm", "-rf", self.data, check=False)


def floor_cycle(tag, i, bridge, second):
    """The kernel floor of one container: the same netlink work as an ADD done by
    `ip -batch` (veth with its peer in the namespace, enslaved and up; then, in
    the namespace, address, up, route), and one plain veth deletion."""
    ns = f"berth-bench-floor-{tag}"
    sh("ip", "netns", "add", ns)
    host_side = f"link add vf{tag} up master {bridge} type veth peer name eth0 netns {ns}\n"
    container_side = (f"addr add 10.{second}.200.{i % 250 + 1}/16 dev eth0\n"
                      f"link set eth0 up\n"
                      f"route add 10.{second}.201.0/24 dev eth0\n")
    start = time.perf_counter()
    subprocess.run(["ip", "-batch", "-"], input=host_side, text=True, check=True, capture_output=True)
    subprocess.run(["ip", "-n", ns, "-batch", "-"], input=container_side, text=True, check=True, capture_output=True)
    add = time.perf_counter() - start
    start = time.perf_counter()
    sh("ip", "link", "del", f"vf{tag}")
    delete = time.perf_counter() - start
    sh("ip", "netns", "del", ns)
    return add, delete


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
    ap.add_argument("--parallel", type=int, default=64, help="ADDs started at once (0 to skip)")
    ap.add_argument("--large", type=int, default=1000, help="then fill each bridge to this many containers and measure again (0 to skip)")
    ap.add_argument("--settle", type=float, default=15, help="seconds to let the kernel finish the fill's background work before measuring at --large")
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
    second = subnets[0].split(".")[1]
    def measure_floor(i, ports_bridge):
        return floor_cycle(tag, i, ports_bridge, second)
    floor = {"ADD": [], "DEL": []}
    floor_bridge = f"bb{tag}f"
    parallel = {}
    memory = {}
    try:
        sh("ip", "link", "add", floor_bridge, "type", "bridge")
        sh("ip", "link", "set", floor_bridge, "up")
        for s in setups:
            for i in range(args.base):
                s.run("ADD", s.new_ns(), f"base{i}")
        def interleaved(rounds, into, prefix, after_round):
            """ADD+DEL cycles, alternating the setups' order each round so noise hits all alike."""
            for i in range(rounds):
                for s in (setups if i % 2 == 0 else setups[::-1]):
                    ns = s.new_ns()
                    into[s.label]["ADD"].append(s.run("ADD", ns, f"{prefix}{i}"))
                    into[s.label]["DEL"].append(s.run("DEL", ns, f"{prefix}{i}"))
                    sh("ip", "netns", "del", ns)
                    s.namespaces.remove(ns)
                after_round(i)

        def floor_round(i):
            floor_add, floor_del = measure_floor(i, ports_bridge=floor_bridge)
            floor["ADD"].append(floor_add)
            floor["DEL"].append(floor_del)

        interleaved(args.iterations, samples, "it", floor_round)
        # Peak resident memory of one plugin process (ADD), by /usr/bin/time.
        for s in setups:
            ns = s.new_ns()
            env = dict(s.env, CNI_COMMAND="ADD", CNI_NETNS=f"/run/netns/{ns}", CNI_CONTAINERID="mem")
            p = subprocess.run(["/usr/bin/time", "-f", "%M", f"{s.plugin_dir}/{s.plugin}"], input=s.config,
                               env=env, capture_output=True, text=True)
            memory[s.label] = int(p.stderr.strip().splitlines()[-1])
            s.run("DEL", ns, "mem")
        # N ADDs started at once on a fresh bridge, then N DELs at once.
        if args.parallel:
            for s in setups:
                sh("ip", "link", "del", s.bridge, check=False)
                names = [s.new_ns() for _ in range(args.parallel)]
                def start_all(command):
                    procs = []
                    t0 = time.perf_counter()
                    for i, ns in enumerate(names):
                        env = dict(s.env, CNI_COMMAND=command, CNI_NETNS=f"/run/netns/{ns}", CNI_CONTAINERID=f"par{i}")
                        procs.append(subprocess.Popen([f"{s.plugin_dir}/{s.plugin}"], stdin=subprocess.PIPE,
                                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True))
                    for p in procs:
                        p.stdin.write(s.config)
                        p.stdin.close()
                    outs = [(p.wait(), p.stdout.read()) for p in procs]
                    return time.perf_counter() - t0, outs
                add_wall, outs = start_all("ADD")
                addresses = [json.loads(o)["ips"][0]["address"] for rc, o in outs if rc == 0]
                del_wall, douts = start_all("DEL")
                parallel[s.label] = (add_wall, del_wall, sum(1 for rc, _ in outs if rc == 0),
                                     len(set(addresses)) == len(addresses), sum(1 for rc, _ in douts if rc == 0))
        # The same cycles with `--large` containers on each bridge.
        large = {s.label: {"ADD": [], "DEL": []} for s in setups}
        floor_large = []
        if args.large > args.base:
            for s in setups:
                for i in range(args.base, args.large):
                    s.run("ADD", s.new_ns(), f"fill{i}")
            # Thousands of new ports leave the kernel busy for a while (timers,
            # workqueues): measure the steady state, not the fill's aftermath.
            time.sleep(args.settle)
            interleaved(min(args.iterations, 40), large, "big",
                        lambda i: floor_large.append(measure_floor(i, ports_bridge=setups[0].bridge)[0]))
    finally:
        for s in setups:
            s.cleanup()
        sh("ip", "link", "del", floor_bridge, check=False)
        sh("ip", "link", "del", f"vf{tag}", check=False)
        sh("ip", "netns", "del", f"berth-bench-floor-{tag}", check=False)
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
        machine_line(),
        f"{args.iterations} interleaved ADD+DEL cycles per setup, {args.base} containers already on each bridge;",
        "each figure is one whole plugin process as a runtime execs it (ms).",
        "",
        "| figure | berth + berth-ipam (in-process) | berth + host-local | reference bridge + host-local | berth / reference | berth+host-local / reference |",
        "|---|---:|---:|---:|---:|---:|",
    ] + [f"| {name} | {b:.2f} | {h:.2f} | {r:.2f} | {b / r:.2f}x | {h / r:.2f}x |" for name, b, h, r in rows]
    fa, fd = statistics.median(floor["ADD"]) * 1000, statistics.median(floor["DEL"]) * 1000
    b_add, b_del = statistics.median(samples["berth"]["ADD"]) * 1000, statistics.median(samples["berth"]["DEL"]) * 1000
    lines += [
        "",
        "| kernel floor (same run) | ms | berth / floor |",
        "|---|---:|---:|",
        f"| two `ip -batch` runs: veth with peer in the netns, enslaved and up; then address, up, route inside | {fa:.2f} | ADD {b_add / fa:.2f}x |",
        f"| plain veth deletion (`ip link del`) | {fd:.2f} | DEL {b_del / fd:.2f}x |",
        "",
        "| peak resident memory of one ADD process | KB |",
        "|---|---:|",
    ] + [f"| {label} | {kb} |" for label, kb in memory.items()]
    if large["berth"]["ADD"]:
        lines += [
            "",
            f"| ADD median with {args.large} containers on the bridge | ms | / its own at {args.base} | / reference at {args.large} |",
            "|---|---:|---:|---:|",
        ]
        ref_large = statistics.median(large["reference"]["ADD"])
        for s in setups:
            at_large = statistics.median(large[s.label]["ADD"])
            at_base = statistics.median(samples[s.label]["ADD"])
            lines.append(f"| {s.label} | {at_large * 1000:.2f} | {at_large / at_base:.2f}x | {at_large / ref_large:.2f}x |")
        fl = statistics.median(floor_large)
        lines.append(f"| kernel floor on berth's bridge ({args.large} ports) | {fl * 1000:.2f} | {fl / statistics.median(floor['ADD']):.2f}x | |")
    if parallel:
        ref = parallel["reference"]
        lines += [
            "",
            f"| {args.parallel} processes at once | ADD wall (ms) | ADDs ok | addresses distinct | DEL wall (ms) | DELs ok | ADD wall / reference |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ] + [f"| {label} | {a * 1000:.0f} | {ok}/{args.parallel} | {'yes' if distinct else 'NO'} | {d * 1000:.0f} | {dok}/{args.parallel} | {a / ref[0]:.2f}x |"
             for label, (a, d, ok, distinct, dok) in parallel.items()]
    lines += ["", "Against the performance issue's targets (this run):", "",
              "| target | measured | met |", "|---|---|---|"]
    def target(name, value, limit, shown):
        lines.append(f"| {name} | {shown} | {'yes' if value <= limit else 'no'} |")
    add10 = statistics.median(samples["berth"]["ADD"])
    ref10 = statistics.median(samples["reference"]["ADD"])
    target("ADD median at 10 containers at most 0.35x the reference", add10 / ref10, 0.35, f"{add10 / ref10:.2f}x")
    if large["berth"]["ADD"]:
        grow = statistics.median(large["berth"]["ADD"]) / add10
        target(f"ADD median at {args.large} at most 1.5x Berth's own at 10", grow, 1.5, f"{grow:.2f}x")
    veth = statistics.median(samples["berth"]["DEL"]) / statistics.median(floor["DEL"])
    target("DEL median at most 1.15x the plain veth deletion", veth, 1.15, f"{veth:.2f}x")
    if parallel:
        a, _, ok, distinct, _ = parallel["berth"]
        wall = a / parallel["reference"][0]
        target(f"{args.parallel} parallel ADDs: wall at most 0.4x the reference, addresses distinct",
               wall if distinct and ok == args.parallel else 99, 0.4, f"{wall:.2f}x, {'all distinct' if distinct else 'DUPLICATES'}")
    target("peak memory of one berth process no more than the reference's", memory["berth"], memory["reference"],
           f"{memory['berth']} KB vs {memory['reference']} KB")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        write_section(args.markdown, "bench.py", text)


if __name__ == "__main__":
    require_root("bench")
    main()
