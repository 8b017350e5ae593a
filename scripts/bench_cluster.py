#!/usr/bin/env python3
"""Cluster convergence: N simulated nodes (network namespaces on an underlay
bridge, each running berth-agent) join a cluster network in etcd at once;
measures the time until every node has a route to every other node's block,
then the time until a node joining afterwards is known to all of them, and
the same for a node leaving (its agent stopped, its lease revoked by waiting
out the TTL is not measured: the agent is removed with etcdctl lease revoke).
Then one TCP stream (iperf3, 3 s) between a pod on node 0 and one on node 1
through the mode, beside the same stream between the two nodes' own
underlay addresses. A mode "MODE+tls" runs MODE with etcd over TLS.
As root; everything it makes is removed at the end.
  python3 scripts/bench_cluster.py [--nodes 50] [--modes host-gw,vxlan,wireguard,host-gw+tls] [--agent-dir .build/release]
"""
import argparse, json, os, random, shutil, signal, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import sh, report, require_root  # noqa: E402 (after the path)


def route_counts(namespaces):
    counts = []
    for ns in namespaces:
        out = sh("ip", "-n", ns, "-4", "route", "show", "proto", "77", check=False).stdout
        counts.append(len([l for l in out.splitlines() if l.strip()]))
    return counts

def wait_until(predicate, timeout):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    return None

def tcp_stream(client_ns, server_ns, server_address, port):
    """Gbit/s of one TCP stream from client_ns to server_address (in server_ns), 3 s."""
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", server_address, "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            r = sh("ip", "netns", "exec", client_ns, "iperf3", "-c", server_address, "-p", str(port), "-t", "3", "-J", check=False)
            try:
                return json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
            except (ValueError, KeyError):
                time.sleep(0.1)  # the server not listening yet
        return None
    finally:
        server.kill()
        server.wait()

def measure_throughput(args, namespaces, work, base, cluster):
    """A pod on node 0 and one on node 1 (the berth plugin in each node's
    namespace, berth-ipam reading the node file), one stream between them;
    and one between the nodes' underlay addresses."""
    plugin = os.path.join(args.agent_dir, "berth")
    pods = []
    try:
        for i in (0, 1):
            pod = f"{namespaces[i]}-pod"
            sh("ip", "netns", "add", pod)
            config = json.dumps({"cniVersion": "1.1.0", "name": cluster, "type": "berth", "bridge": "cbr0", "isGateway": True,
                                 "isDefaultGateway": True, "runDir": f"{work}/run{i}",
                                 "ipam": {"type": "berth-ipam", "dataDir": f"{work}/ipam{i}",
                                          "ranges": [[{"subnetFile": f"{work}/node{i}.json"}]]}})
            env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": f"bench{i}", "CNI_NETNS": f"/run/netns/{pod}", "CNI_IFNAME": "eth0",
                   "CNI_PATH": args.agent_dir, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
            r = subprocess.run(["ip", "netns", "exec", namespaces[i], plugin], input=config, capture_output=True, text=True, env=env)
            if r.returncode != 0:
                raise SystemExit(f"bench_cluster: ADD of a pod on node {i}: {r.stdout}")
            address = json.loads(r.stdout)["ips"][0]["address"].split("/")[0]
            pods.append((pod, address, i, config, env))
        port = random.randrange(40000, 49000)
        through = tcp_stream(pods[0][0], pods[1][0], pods[1][1], port)
        underlay = tcp_stream(namespaces[0], namespaces[1], f"{base}.11", port + 1)
        return through, underlay
    finally:
        for pod, _, i, config, env in pods:
            subprocess.run(["ip", "netns", "exec", namespaces[i], plugin], input=config, capture_output=True, text=True,
                           env=dict(env, CNI_COMMAND="DEL"))
            sh("ip", "netns", "del", pod, check=False)

def policy_chain(namespace, name):
    """The chain of a policy's ingress rules, as Berth names it."""
    import hashlib
    return "p" + hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:12] + "-in"


def measure_policy(agent, url, cluster, namespaces, work):
    """A policy stored in etcd, then a change of it: the time until every
    node's table holds it (each node polled in turn until it does, so the
    figure is at most one sweep of polls late)."""
    def document(port):
        return json.dumps({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                           "metadata": {"name": "web", "namespace": "bench"},
                           "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                                                 "ports": [{"port": port}]}]}})
    chain = policy_chain("bench", "web")
    results = []
    for port in (8080, 8081):
        path = f"{work}/policy-{port}.json"
        with open(path, "w") as f:
            f.write(document(port))
        start = time.monotonic()
        sh(agent, "policy", "apply", "--etcd", url, "--cluster", cluster, "-f", path)
        pending = list(namespaces)
        deadline = start + 30
        while pending and time.monotonic() < deadline:
            out = sh("ip", "netns", "exec", pending[0], "nft", "list", "chain", "inet", "berth-policy", chain, check=False).stdout
            if f"dport {port}" in out:
                pending.pop(0)
            else:
                time.sleep(0.01)
        results.append(time.monotonic() - start if not pending else None)
    # A new pod on node 0 (its endpoint record, as the plugin writes it) in the
    # policy's peer set on every other node.
    import hashlib
    group = "g" + hashlib.sha256(b"ns=bench;pods={app=client}").hexdigest()[:12] + "4"
    block = json.load(open(f"{work}/node0.json"))["block"]
    address = block.split("/")[0].rsplit(".", 1)[0] + ".200"
    os.makedirs(f"{work}/run0/endpoints", exist_ok=True)
    record = {"network": "bench", "containerID": "newpod", "ifname": "eth0", "namespace": "bench", "name": "newpod",
              "labels": {"app": "client"}, "addresses": [address]}
    start = time.monotonic()
    with open(f"{work}/run0/endpoints/.tmp", "w") as f:
        json.dump(record, f)
    os.rename(f"{work}/run0/endpoints/.tmp", f"{work}/run0/endpoints/bench:newpod:eth0")
    pending = list(namespaces[1:])
    deadline = start + 30
    while pending and time.monotonic() < deadline:
        out = sh("ip", "netns", "exec", pending[0], "nft", "list", "set", "inet", "berth-policy", group, check=False).stdout
        if address in out:
            pending.pop(0)
        else:
            time.sleep(0.01)
    results.append(time.monotonic() - start if not pending else None)
    return results


def run_mode(args, mode):
    """One run; a mode "MODE+tls" is MODE with etcd over TLS and client
    certificates (made by scripts/etcd-certs.sh), to see what TLS costs."""
    mode, _, secured = mode.partition("+")
    tls = secured == "tls"
    tag = f"{random.randrange(16**5):05x}"
    work = tempfile.mkdtemp(prefix=f"berth-bench-cluster-{tag}-")
    bridge, base = f"bk{tag}", f"10.{random.randrange(200, 240)}.{random.randrange(256)}"
    while base + "." in sh("ip", "-4", "route", "show", "table", "all").stdout:
        base = f"10.{random.randrange(200, 240)}.{random.randrange(256)}"
    port = random.randrange(30000, 39000)
    url = f"{'https' if tls else 'http'}://{base}.1:{port}"
    agent = os.path.join(args.agent_dir, "berth-agent")
    namespaces, agents, etcd = [], {}, None
    etcd_flags, ctl_flags, client_flags = [], [], []
    if tls:
        pki = f"{work}/pki"
        certs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "etcd-certs.sh")
        sh("bash", certs, pki, "ca")
        sh("bash", certs, pki, "server", "etcd", f"IP:{base}.1")
        sh("bash", certs, pki, "client", "node")
        etcd_flags = ["--cert-file", f"{pki}/etcd.pem", "--key-file", f"{pki}/etcd-key.pem",
                      "--trusted-ca-file", f"{pki}/ca.pem", "--client-cert-auth"]
        ctl_flags = ["--cacert", f"{pki}/ca.pem", "--cert", f"{pki}/node.pem", "--key", f"{pki}/node-key.pem"]
        client_flags = ["--etcd-cafile", f"{pki}/ca.pem", "--etcd-certfile", f"{pki}/node.pem", "--etcd-keyfile", f"{pki}/node-key.pem"]

    def ctl(*command, check=True):
        return sh("etcdctl", "--endpoints", url, *ctl_flags, *command, check=check, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})

    try:
        sh("ip", "link", "add", bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{base}.1/24", "dev", bridge)
        sh("ip", "link", "set", bridge, "up")
        for i in range(args.nodes + 1):
            ns = f"bk-{tag}-{i}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", f"bk{tag}h{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", f"bk{tag}h{i}", "master", bridge, "up")
            sh("ip", "-n", ns, "addr", "add", f"{base}.{10 + i}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")  # the agent's /metrics listens on loopback
            namespaces.append(ns)
        etcd = subprocess.Popen(["etcd", "--name", tag, "--data-dir", f"{work}/etcd", "--listen-client-urls", url,
                                 "--advertise-client-urls", url, "--listen-peer-urls", f"http://127.0.0.1:{port + 1}",
                                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{port + 1}",
                                 "--initial-cluster", f"{tag}=http://127.0.0.1:{port + 1}"] + etcd_flags,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: ctl("endpoint", "health", check=False).returncode == 0, 20)
        sh(agent, "init", "--etcd", url, *client_flags, "--cluster", f"bench{tag}", "--network", "10.250.0.0/16", "--mode", mode)

        def start(i):
            log = open(f"{work}/agent{i}.log", "w")
            agents[i] = subprocess.Popen(["ip", "netns", "exec", namespaces[i], agent, "run", "--etcd", url,
                                          "--cluster", f"bench{tag}", "--node", f"n{i}", "--address", f"{base}.{10 + i}",
                                          "--subnet-file", f"{work}/node{i}.json", "--ttl", "30",
                                          "--run-dir", f"{work}/run{i}", "--state-dir", f"{work}/state{i}"] + client_flags,
                                         stdout=subprocess.DEVNULL, stderr=log)
        n = args.nodes
        for i in range(n):
            start(i)
        converged = wait_until(lambda: all(c == n - 1 for c in route_counts(namespaces[:n])), 120)
        start(n)
        joined = wait_until(lambda: all(c == n for c in route_counts(namespaces[:n + 1])), 60)
        agents.pop(n).send_signal(signal.SIGKILL)
        lease = ctl("get", f"/berth/clusters/bench{tag}/nodes/n{n}", "-w", "json").stdout
        if "kvs" not in json.loads(lease):
            raise SystemExit("bench_cluster: node n%d has no record; its log: %s" % (n, open(f"{work}/agent{n}.log").read()[-2000:]))
        lease_id = json.loads(lease)["kvs"][0]["lease"]
        ctl("lease", "revoke", format(lease_id, "x"))
        left = wait_until(lambda: all(c == n - 1 for c in route_counts(namespaces[:n])), 60)
        policy = measure_policy(agent, url, f"bench{tag}", namespaces[:n], work) if not tls and mode == args.modes.split(",")[0] else None
        throughput = measure_throughput(args, namespaces, work, base, f"bench{tag}") if not tls else (None, None)
        rss = []
        for p in agents.values():
            try:
                children = sh("pgrep", "-P", str(p.pid), check=False).stdout.split()
                pid = children[0] if children else str(p.pid)
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith("VmRSS:"):
                        rss.append(int(line.split()[1]))
            except (OSError, IndexError):
                pass
        return {"mode": mode + (" (etcd over TLS, client certificates)" if tls else ""), "nodes": n, "throughput": throughput, "converged": converged, "joined": joined, "left": left, "policy": policy,
                "rss": sorted(rss)[len(rss) // 2] if rss else 0}
    finally:
        for p in agents.values():
            p.send_signal(signal.SIGTERM)
        for p in agents.values():
            p.wait()
        if etcd:
            etcd.terminate()
            etcd.wait()
        for ns in namespaces:
            # wireguard-go outlives its agent (as a kernel device would): asked to end, it removes its socket.
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGTERM)
                except OSError:
                    pass
            for _ in range(20):
                if not sh("ip", "netns", "pids", ns, check=False).stdout.split():
                    break
                time.sleep(0.05)
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", bridge, check=False)
        shutil.rmtree(work, ignore_errors=True)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--modes", default="host-gw,vxlan,wireguard,host-gw+tls")
    ap.add_argument("--agent-dir", default=".build/release")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_cluster: needs root")
    rows = [run_mode(args, m) for m in args.modes.split(",")]
    fmt = lambda v: f"{v:.2f}" if v is not None else "timed out"
    print(f"{args.nodes} nodes started at once, then one more joining, then that one leaving (lease revoked)\n")
    print("| mode | all nodes have all routes (s) | a later node known to all (s) | a leaving node gone from all (s) | agent RSS, median (KB) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['mode']} | {fmt(r['converged'])} | {fmt(r['joined'])} | {fmt(r['left'])} | {r['rss']} |")
    streams = [r for r in rows if r["throughput"][0] is not None]
    if streams:
        print("\nOne TCP stream (iperf3, 3 s) between a pod on node 0 and one on node 1, and between the two nodes' underlay addresses:\n")
        print("| mode | pod to pod (Gbit/s) | underlay, node to node (Gbit/s) | pod to pod / underlay |")
        print("|---|---:|---:|---:|")
        for r in streams:
            through, underlay = r["throughput"]
            ratio = f"{through / underlay:.2f}" if through and underlay else "-"
            print(f"| {r['mode']} | {fmt(through)} | {fmt(underlay)} | {ratio} |")
    for r in rows:
        if r.get("policy"):
            new, changed, pod = r["policy"]
            print(f"\nNetwork policy ({r['mode']}, {r['nodes']} nodes): a policy stored in etcd was in force on every node "
                  f"after {fmt(new)} s, a change of it after {fmt(changed)} s, a new pod of node 0 in the policy's set on "
                  f"every other node after {fmt(pod)} s (target: under 1 s; each node polled in turn, so at most one "
                  f"sweep of {r['nodes']} polls late).")

if __name__ == "__main__":
    require_root("bench_cluster.py")
    report("bench_cluster.py", main)
