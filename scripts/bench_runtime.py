#!/usr/bin/env python3
"""The whole container cycle, Berth against the same work done by hand, in one run.

Berth:     berthctl run --net NET -- /bin/true   (namespaces, cgroup, network ADD,
           run, network DEL)  +  berthctl rm     (cgroup and state removed)
Reference: ip netns add; reference bridge + host-local ADD; ip netns exec ...
           unshare --pid --mount --uts --ipc --fork --mount-proc /bin/true;
           reference DEL; ip netns del   (no cgroup: the reference does less)

Both networks use the same config shape (a /24, isGateway) on bridges of
their own; cycles are interleaved. Everything made is removed at the end.
"""
import argparse, json, os, platform, random, shutil, statistics, subprocess, tempfile, time

def sh(*args, check=True, env=None, input=None):
    return subprocess.run(args, check=check, capture_output=True, text=True, env=env, input=input)

def pct(v, p):
    v = sorted(v); k = (len(v) - 1) * p; lo = int(k); hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--berth-dir", default=".build/release")
    ap.add_argument("--cycles", type=int, default=50)
    args = ap.parse_args()
    bindir = os.path.abspath(args.berth_dir)
    tag = f"{random.randrange(16**4):04x}"
    used = sh("ip", "-4", "route", "show", "table", "all").stdout
    subnets = [f"10.{s}.{t}" for s in range(230, 240) for t in (7, 8) if f"10.{s}.{t}." not in used][:2]
    work = tempfile.mkdtemp(prefix="berth-bench-runtime-")
    confdir = f"{work}/net.d"
    os.makedirs(confdir)
    berth_net, ref_net = f"benchb{tag}", f"benchr{tag}"
    berth_bridge, ref_bridge = f"bbrt{tag}b", f"bbrt{tag}r"
    with open(f"{confdir}/berth.conflist", "w") as f:
        json.dump({"cniVersion": "1.0.0", "name": berth_net, "plugins": [
            {"type": "berth", "bridge": berth_bridge, "isGateway": True,
             "ipam": {"type": "berth-ipam", "dataDir": f"{work}/ipam", "subnet": f"{subnets[0]}.0/24"}}]}, f)
    ref_conf = json.dumps({"cniVersion": "1.0.0", "name": ref_net, "type": "bridge", "bridge": ref_bridge,
                           "isGateway": True, "ipam": {"type": "host-local", "dataDir": f"{work}/ref-ipam",
                                                        "subnet": f"{subnets[1]}.0/24"}})
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        forwarding = f.read().strip()
    env = dict(os.environ, CNI_PATH=f"{bindir}:/usr/lib/cni")
    berthctl = f"{bindir}/berthctl"
    samples = {"berth": [], "reference": []}

    def berth_cycle(i):
        name = f"bench-{tag}-{i}"
        t = time.perf_counter()
        sh(berthctl, "run", "--name", name, "--net", berth_net, "--cni-conf-dir", confdir, "--", "/bin/true", env=env)
        sh(berthctl, "rm", name, env=env)
        return time.perf_counter() - t

    def ref_cycle(i):
        ns = f"bench-{tag}-r{i}"
        cni = dict(env, CNI_CONTAINERID=ns, CNI_NETNS=f"/run/netns/{ns}", CNI_IFNAME="eth0", CNI_PATH="/usr/lib/cni")
        t = time.perf_counter()
        sh("ip", "netns", "add", ns)
        sh("/usr/lib/cni/bridge", env=dict(cni, CNI_COMMAND="ADD"), input=ref_conf)
        sh("ip", "netns", "exec", ns, "unshare", "--pid", "--mount", "--uts", "--ipc", "--fork", "--mount-proc", "/bin/true")
        sh("/usr/lib/cni/bridge", env=dict(cni, CNI_COMMAND="DEL"), input=ref_conf)
        sh("ip", "netns", "del", ns)
        return time.perf_counter() - t

    try:
        for i in range(args.cycles):
            order = [("berth", berth_cycle), ("reference", ref_cycle)]
            for label, fn in (order if i % 2 == 0 else order[::-1]):
                samples[label].append(fn(i) * 1000)
    finally:
        for name in os.listdir("/run/berth/containers") if os.path.isdir("/run/berth/containers") else []:
            if name.startswith(f"bench-{tag}-"):
                sh(berthctl, "rm", name, check=False)
        for ns in sh("ip", "netns", "list").stdout.split():
            if ns.startswith(f"bench-{tag}-"):
                sh("ip", "netns", "del", ns, check=False)
        for br in (berth_bridge, ref_bridge):
            sh("ip", "link", "del", br, check=False)
        shutil.rmtree(work, ignore_errors=True)
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write(forwarding)

    b, r = samples["berth"], samples["reference"]
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, kernel {platform.release()}")
    print(f"{args.cycles} interleaved cycles each (ms): create, network ADD, run /bin/true, network DEL, remove.")
    print()
    print("| figure | berthctl run + rm | unshare + ip netns + reference bridge | berth / reference |")
    print("|---|---:|---:|---:|")
    for label, fn in (("median", statistics.median), ("p90", lambda v: pct(v, 0.9))):
        print(f"| {label} | {fn(b):.2f} | {fn(r):.2f} | {fn(b) / fn(r):.2f}x |")

if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("bench_runtime: run as root")
    main()
