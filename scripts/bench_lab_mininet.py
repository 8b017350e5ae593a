"""Mininet's side of scripts/bench_lab.py: HOSTS hosts spread over NETWORKS
Linux-bridge switches (no controller, no Open vSwitch), up and down timed.
Run with Debian's /usr/bin/python3 (where the mininet package installs);
prints {"up": seconds, "down": seconds} on its last line.
  /usr/bin/python3 scripts/bench_lab_mininet.py HOSTS NETWORKS
"""
import json, sys, time
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.nodelib import LinuxBridge

def main():
    hosts, networks = int(sys.argv[1]), int(sys.argv[2])
    setLogLevel("warning")
    # Mininet makes each host's namespace and each link as they are added: all of it counts.
    t = time.perf_counter()
    net = Mininet(switch=LinuxBridge, controller=None, autoSetMacs=False, waitConnected=False)
    switches = [net.addSwitch(f"bms{n}") for n in range(networks)]
    for h in range(hosts):
        host = net.addHost(f"bmh{h}", ip=f"10.254.{h // 250}.{h % 250 + 1}/16")
        net.addLink(host, switches[h % networks])
    net.build()
    net.start()
    up = time.perf_counter() - t
    t = time.perf_counter()
    net.stop()
    down = time.perf_counter() - t
    print(json.dumps({"up": up, "down": down}))

if __name__ == "__main__":
    main()
