#!/usr/bin/env python3
"""The container cycle: Berth against runc (Debian's), in one run, interleaved.

Without a network:
  Berth: berthctl run --rm --rootfs ROOT -- /bin/true
  runc:  runc run ID  (a bundle on the same busybox root, args /bin/true)
Each creates pid, mount, uts, ipc and net namespaces and a cgroup in every
hierarchy, pivots into the root, runs /bin/true, and removes it all again.

With a network (a /24, isGateway, on a bridge of its own):
  Berth: berthctl run --rm --rootfs ROOT --net NET -- /bin/true
         (berth + berth-ipam ADD, the run, DEL, removal)
  runc:  ip netns add; the reference bridge + host-local ADD; runc run ID
         with that namespace; the reference DEL; ip netns del

Targets (issue 16): Berth at most 0.8x runc without a network, at most 0.7x
with one. Everything made is removed at the end.
"""
import argparse, json, os, random, shutil, statistics, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import sh, machine_line, report, require_root  # noqa: E402 (after the path)


def pct(v, p):
    v = sorted(v); k = (len(v) - 1) * p; lo = int(k); hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)

def runc_bundle(path, rootfs, netns=None):
    """A runc bundle running /bin/true on `rootfs`, in a new or the given network namespace."""
    os.makedirs(path)
    sh("runc", "spec", "--bundle", path)
    with open(f"{path}/config.json") as f:
        config = json.load(f)
    config["root"] = {"path": rootfs, "readonly": False}
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    if netns:
        for ns in config["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = netns
    with open(f"{path}/config.json", "w") as f:
        json.dump(config, f)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--berth-dir", default=".build/release")
    ap.add_argument("--cycles", type=int, default=50)
    args = ap.parse_args()
    if not shutil.which("runc"):
        raise SystemExit("bench_runtime: runc is missing (scripts/setup.sh installs it)")
    bindir = os.path.abspath(args.berth_dir)
    here = os.path.dirname(os.path.abspath(__file__))
    tag = f"{random.randrange(16**4):04x}"
    used = sh("ip", "-4", "route", "show", "table", "all").stdout
    subnets = [f"10.{s}.{t}" for s in range(230, 240) for t in (7, 8) if f"10.{s}.{t}." not in used][:2]
    work = tempfile.mkdtemp(prefix="berth-bench-runtime-")
    rootfs = f"{work}/rootfs"
    sh(f"{here}/make-rootfs.sh", rootfs)
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
    runc_bundle(f"{work}/bundle", rootfs)
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        forwarding = f.read().strip()
    env = dict(os.environ, CNI_PATH=f"{bindir}:/usr/lib/cni")
    berthctl = f"{bindir}/berthctl"
    runc_root = f"{work}/runc-state"
    kinds = ["berth", "runc", "berth+net", "runc+net"]
    samples = {k: [] for k in kinds}

    def berth(i, net):
        extra = ["--net", berth_net, "--cni-conf-dir", confdir] if net else []
        t = time.perf_counter()
        sh(berthctl, "run", "--rm", "--name", f"bench-{tag}-{i}", "--rootfs", rootfs, *extra, "--", "/bin/true", env=env)
        return time.perf_counter() - t

    def runc(i):
        t = time.perf_counter()
        sh("runc", "--root", runc_root, "run", "--bundle", f"{work}/bundle", f"bench-{tag}-{i}")
        return time.perf_counter() - t

    def runc_net(i):
        ns = f"bench-{tag}-r{i}"
        bundle = f"{work}/bundle-{i}"
        runc_bundle(bundle, rootfs, netns=f"/run/netns/{ns}")  # written before the clock starts
        cni = dict(env, CNI_CONTAINERID=ns, CNI_NETNS=f"/run/netns/{ns}", CNI_IFNAME="eth0", CNI_PATH="/usr/lib/cni")
        t = time.perf_counter()
        sh("ip", "netns", "add", ns)
        sh("/usr/lib/cni/bridge", env=dict(cni, CNI_COMMAND="ADD"), input=ref_conf)
        sh("runc", "--root", runc_root, "run", "--bundle", bundle, ns)
        sh("/usr/lib/cni/bridge", env=dict(cni, CNI_COMMAND="DEL"), input=ref_conf)
        sh("ip", "netns", "del", ns)
        elapsed = time.perf_counter() - t
        shutil.rmtree(bundle)
        return elapsed

    steps = {"berth": lambda i: berth(i, False), "runc": runc,
             "berth+net": lambda i: berth(i, True), "runc+net": runc_net}
    try:
        for i in range(args.cycles):
            order = kinds if i % 2 == 0 else kinds[::-1]
            for k in order:
                samples[k].append(steps[k](i) * 1000)
    finally:
        for name in os.listdir("/run/berth/containers") if os.path.isdir("/run/berth/containers") else []:
            if name.startswith(f"bench-{tag}-"):
                sh(berthctl, "rm", name, check=False)
        if os.path.isdir(runc_root):
            for name in os.listdir(runc_root):
                sh("runc", "--root", runc_root, "delete", "--force", name, check=False)
        for ns in sh("ip", "netns", "list").stdout.split():
            if ns.startswith(f"bench-{tag}-"):
                sh("ip", "netns", "del", ns, check=False)
        for br in (berth_bridge, ref_bridge):
            sh("ip", "link", "del", br, check=False)
        shutil.rmtree(work, ignore_errors=True)
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write(forwarding)

    runc_version = sh("runc", "--version").stdout.split("\n")[0]
    print(machine_line(runc_version))
    print(f"{args.cycles} interleaved cycles each (ms), /bin/true on a busybox root.")
    print()
    print("| cycle | figure | Berth | runc | Berth / runc | target |")
    print("|---|---|---:|---:|---:|---:|")
    for (b, r, what, target) in (("berth", "runc", "`run --rm` / `runc run`", 0.8),
                                 ("berth+net", "runc+net", "with a network (runc: + ip netns + reference bridge)", 0.7)):
        for label, fn in (("median", statistics.median), ("p90", lambda v: pct(v, 0.9))):
            ratio = fn(samples[b]) / fn(samples[r])
            print(f"| {what} | {label} | {fn(samples[b]):.2f} | {fn(samples[r]):.2f} | {ratio:.2f}x | {target}x |")

if __name__ == "__main__":
    require_root("bench_runtime.py")
    report("bench_runtime.py", main)
