#!/usr/bin/env bash
# Installs everything Berth needs on a fresh Debian machine (as root) and
# builds it. Safe to run again: it only installs what is missing.
#   scripts/setup.sh            install packages, build release binaries
#   scripts/setup.sh --no-build install packages only
#   scripts/setup.sh --demo     only what building the plugins and the demo need (no build)
set -euo pipefail
cd "$(dirname "$0")/.."

# What building Berth and running the demo need.
demo_packages=(
  libnl-3-dev libnl-route-3-dev pkg-config   # netlink through libnl-3
  libnftables-dev                            # masquerade and MAC spoof rules through libnftables
  iproute2 iputils-ping                      # tests and the demo wire and probe namespaces
)
# What the tests, the benchmarks and packaging need beside them.
packages=(
  "${demo_packages[@]}"
  containernetworking-plugins                # reference plugins: host-local, static, portmap, bridge
  tcpdump                                    # policy tests read logged drops from NFLOG
  prometheus                                 # a real Prometheus scrapes the agents in tests (and promtool checks /metrics)
  iptables nftables                          # ipMasqBackend iptables; the reference portmap, firewall
  python3                                    # the benchmarks, and small servers in traffic tests
  time                                       # /usr/bin/time: peak memory in the benchmarks
  busybox-static                             # scripts/make-rootfs.sh, for berthctl run --rootfs
  lxcfs                                      # berthctl run --lxcfs (the tests start it)
  etcd-server etcd-client                    # clusters: the store berth-agent uses (the tests start their own)
  openssl                                    # scripts/etcd-certs.sh: certificates for etcd over TLS (the tests make theirs)
  libssl-dev                                 # berth-agent: X25519 for WireGuard keys from libcrypto
  wireguard-go wireguard-tools               # the wireguard mode where the kernel has no WireGuard (wg inspects it in tests)
  iperf3                                     # scripts/bench_cluster.py: one TCP stream between pods on two nodes
  graphviz                                   # berthctl lab graph
  runc                                       # scripts/bench_runtime.py: the runtime Berth is measured against
  dnsmasq-base                               # names on a network: one dnsmasq per network (the binary only, no host service)
  podman                                     # names on a network: podman with its CNI backend in tests
  dpkg-dev binutils lintian man-db           # scripts/package.sh (dpkg-shlibdeps, strip), its test (lintian, man)
)
[[ "${1:-}" == "--demo" ]] && packages=("${demo_packages[@]}")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: these packages are missing and installing them needs root: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

source "$(dirname "$0")/lib/swift.sh"

if [[ "${1:-}" != "--no-build" && "${1:-}" != "--demo" ]]; then
  echo "setup: building release binaries"
  scripts/build.sh
fi
