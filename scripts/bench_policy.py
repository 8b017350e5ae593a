#!/usr/bin/env python3
"""Network policy: what it costs a plugin ADD and DEL, and what a change costs.

1. ADD and DEL of the `berth` plugin (whole processes, as a runtime execs
   them) with no policy in force and with 100 policies in force (10
   namespaces; the measured pods are selected by two of them and are peers
   of others), interleaved in rounds in the same run; the reference bridge
   plugin in the same rounds as the anchor of what an ADD costs anyway.
2. One policy change (`berthctl policy apply`, one nftables transaction)
   with 1,000 pods on the node (their endpoint records), as berthctl
   measures it and as a whole process; and the rules Berth keeps against
   the rules a rule-per-pair design needs for the same pods.

    python3 scripts/bench_policy.py [--rounds 6] [--per-round 20] [--pods 1000]
"""
import argparse, json, os, random, re, shutil, statistics, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import sh, machine_line, require_root, report, BridgePlugin, REF_DIR  # noqa: E402



def policies(count, namespaces, extra_port=None):
    """`count` policies over `namespaces` (the first is the measured pods'):
    policy i selects app=a<i % 10>; even ones let in every pod of their
    namespace, odd ones app=b<i % 10>. In the first namespace two select the
    measured pods (app=web) and two name them as peers."""
    docs = []
    for i in range(count):
        ns = namespaces[i % len(namespaces)]
        selected, port = f"a{i % 10}", 8000 + i
        peer = {} if i % 2 == 0 else {"matchLabels": {"app": f"b{i % 10}"}}
        if i == 0:
            selected, peer = "web", {"matchLabels": {"app": "client"}}
        elif i == 1:
            selected = "web"
        elif i in (2, 3):
            peer = {"matchLabels": {"app": "web"}}
        ports = [{"port": port}] + ([{"port": extra_port}] if extra_port and i == 0 else [])
        docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": f"p{i}", "namespace": ns},
                     "spec": {"podSelector": {"matchLabels": {"app": selected}},
                              "ingress": [{"from": [{"podSelector": peer}], "ports": ports}]}})
    return {"apiVersion": "v1", "kind": "List", "items": docs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--berth-dir", default=".build/release")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--per-round", type=int, default=20)
    ap.add_argument("--policies", type=int, default=100)
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--changes", type=int, default=10)
    args = ap.parse_args()
    require_root("bench_policy")
    berth_dir = os.path.abspath(args.berth_dir)
    berthctl = f"{berth_dir}/berthctl"
    if json.loads(sh(berthctl, "policy", "ls", "--json").stdout)["policies"]:
        sys.exit("bench_policy: policies are in force on this machine; it would replace them")
    tag = f"{random.randrange(16**4):04x}"
    scratch = tempfile.mkdtemp(prefix="berth-bench-policy-")
    namespaces = [f"bench{tag}"] + [f"bench{tag}-{i}" for i in range(1, 10)]
    used = sh("ip", "-4", "route", "show", "table", "all").stdout
    seconds = [s for s in range(200, 240) if f"10.{s}." not in used][:2]
    berth = BridgePlugin(berth_dir, "berth", f"bp{tag}b", f"10.{seconds[0]}.0.0/16", f"{scratch}/b",
                         extra={"args": {"cni": {"namespace": namespaces[0], "labels": {"app": "web"}}}})
    reference = BridgePlugin(REF_DIR, "bridge", f"bp{tag}r", f"10.{seconds[1]}.0.0/16", f"{scratch}/r")
    policy_file = f"{scratch}/policies.json"
    with open(policy_file, "w") as f:
        json.dump(policies(args.policies, namespaces), f)
    netns = []
    samples = {k: [] for k in ["none ADD", "none DEL", "in force ADD", "in force DEL", "reference ADD", "reference DEL"]}
    change = {"reported": [], "process": []}
    counts = {}
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        forwarding = f.read().strip()
    try:
        for name in ["b", "r"]:
            ns = f"berth-bench-p{tag}{name}"
            sh("ip", "netns", "add", ns)
            netns.append(ns)
        # Warm-up: bridges made, caches warm.
        berth.run("ADD", netns[0], "warm")
        berth.run("DEL", netns[0], "warm")
        reference.run("ADD", netns[1], "warm")
        reference.run("DEL", netns[1], "warm")
        for r in range(args.rounds):
            for state in (["none", "in force"] if r % 2 == 0 else ["in force", "none"]):
                if state == "in force":
                    sh(berthctl, "policy", "apply", "-f", policy_file)
                else:
                    sh(berthctl, "policy", "delete", "--all")
                for i in range(args.per_round):
                    cid = f"c{r}-{i}"
                    samples[f"{state} ADD"].append(berth.run("ADD", netns[0], cid)[0])
                    samples[f"{state} DEL"].append(berth.run("DEL", netns[0], cid)[0])
                    samples["reference ADD"].append(reference.run("ADD", netns[1], cid)[0])
                    samples["reference DEL"].append(reference.run("DEL", netns[1], cid)[0])
        # Peak memory of one ADD with the policies in force.
        sh(berthctl, "policy", "apply", "-f", policy_file)
        env = dict(berth.env, CNI_COMMAND="ADD", CNI_NETNS=f"/run/netns/{netns[0]}", CNI_CONTAINERID="mem")
        p = subprocess.run(["/usr/bin/time", "-f", "%M", berth.path], input=json.dumps(berth.config), env=env, capture_output=True, text=True)
        memory = int(p.stderr.strip().splitlines()[-1])
        berth.run("DEL", netns[0], "mem")
        sh(berthctl, "policy", "delete", "--all")

        # 2. A change with many pods on the node: their endpoint records.
        endpoints = f"{scratch}/endpoints"
        os.makedirs(endpoints)
        for i in range(args.pods):
            ns = namespaces[i % len(namespaces)]
            app = ["web", "client"][i % 2] if i % 10 < 2 else f"{'ab'[i % 2]}{(i // 10) % 10}"
            record = {"network": "n", "containerID": f"c{i}", "ifname": "eth0", "namespace": ns, "name": f"p{i}",
                      "labels": {"app": app}, "addresses": [f"10.{seconds[0]}.{100 + i // 250}.{i % 250 + 1}"]}
            with open(f"{endpoints}/n:c{i}:eth0", "w") as f:
                json.dump(record, f)
        sh(berthctl, "policy", "apply", "-f", policy_file, "--endpoints", endpoints)
        changed = f"{scratch}/changed.json"
        for k in range(args.changes):
            with open(changed, "w") as f:
                json.dump(policies(args.policies, namespaces, extra_port=9000 + k), f)
            start = time.perf_counter()
            out = sh(berthctl, "policy", "apply", "-f", changed, "--endpoints", endpoints).stdout
            change["process"].append(time.perf_counter() - start)
            change["reported"].append(float(re.search(r"in ([0-9.]+) ms", out).group(1)) / 1000)
        ruleset = sh("nft", "list", "table", "inet", "berth-policy").stdout
        counts["berth rules"] = sum(1 for line in ruleset.splitlines() if line.strip().endswith(("accept", "drop")) or " jump " in line)
        elements = json.loads(sh("nft", "-j", "list", "table", "inet", "berth-policy").stdout)
        counts["set elements"] = sum(len(i["set"].get("elem", [])) for i in elements["nftables"] if "set" in i)
        # A rule per (selected pod, peer pod, port): what a design without sets keeps.
        pods = [json.load(open(f"{endpoints}/{n}")) for n in os.listdir(endpoints)]
        pairs = 0
        for doc in policies(args.policies, namespaces)["items"]:
            ns = doc["metadata"]["namespace"]
            sel = doc["spec"]["podSelector"]["matchLabels"]["app"]
            peer = doc["spec"]["ingress"][0]["from"][0]["podSelector"].get("matchLabels", {}).get("app")
            selected = sum(1 for p in pods if p["namespace"] == ns and p["labels"]["app"] == sel)
            peers = sum(1 for p in pods if p["namespace"] == ns and peer in (None, p["labels"]["app"]))
            pairs += selected * peers * len(doc["spec"]["ingress"][0]["ports"])
        counts["pairwise rules"] = pairs
        sh(berthctl, "policy", "delete", "--all", "--endpoints", endpoints)
    finally:
        subprocess.run([berthctl, "policy", "delete", "--all"], capture_output=True)
        for ns in netns:
            sh("ip", "netns", "del", ns, check=False)
        for bridge in [f"bp{tag}b", f"bp{tag}r"]:
            sh("ip", "link", "del", bridge, check=False)
        shutil.rmtree(scratch, ignore_errors=True)
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write(forwarding)

    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    print("### Network policy: ADD/DEL with policies in force, and a policy change\n")
    print(machine_line(f"{args.rounds} rounds of {args.per_round} ADD+DEL per state, states alternating; release build"))
    print()
    print("| | median ms | vs none | target |")
    print("|---|---|---|---|")
    for op in ["ADD", "DEL"]:
        ratio = med[f"in force {op}"] / med[f"none {op}"]
        print(f"| berth {op}, no policy | {med[f'none {op}']:.2f} | 1.00x | |")
        print(f"| berth {op}, {args.policies} policies in force | {med[f'in force {op}']:.2f} | {ratio:.2f}x | at most 1.2x |")
        print(f"| reference bridge {op} (anchor) | {med[f'reference {op}']:.2f} | {med[f'reference {op}'] / med[f'none {op}']:.2f}x | |")
    print(f"\nPeak memory of one berth ADD with {args.policies} policies in force: {memory} KB.\n")
    print(f"| one policy change, {args.pods} pods on the node ({args.changes} changes) | median ms | max ms | target |")
    print("|---|---|---|---|")
    print(f"| as berthctl measures it (read, compile, transaction, state) | {statistics.median(change['reported']) * 1000:.1f} | {max(change['reported']) * 1000:.1f} | under 50 ms |")
    print(f"| the whole berthctl process | {statistics.median(change['process']) * 1000:.1f} | {max(change['process']) * 1000:.1f} | |")
    print(f"\nRules Berth keeps for {args.policies} policies and {args.pods} pods: {counts['berth rules']} "
          f"(and {counts['set elements']} set elements); a rule per (pod, peer, port) would be {counts['pairwise rules']}.")


if __name__ == "__main__":
    report("bench_policy", main)
