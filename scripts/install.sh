#!/usr/bin/env bash
# Installs Berth's CNI plugins where runtimes look for them.
#   scripts/install.sh [--prefix DIR] [--bindir DIR] [--conf FILE] [--confdir DIR]
# --prefix  where the CNI plugins go (default /opt/cni/bin)
# --bindir  where berthctl and berth-agent go (default /usr/local/bin)
# --conf    also install this conflist (for example conf/berth-docker0.conflist)
# --confdir where conflists go (default /etc/cni/net.d)
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/opt/cni/bin
bindir=/usr/local/bin
conf=""
confdir=/etc/cni/net.d
while (($#)); do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --bindir) bindir="$2"; shift 2 ;;
    --conf) conf="$2"; shift 2 ;;
    --confdir) confdir="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "install: unknown option $1" >&2; exit 2 ;;
  esac
done

# The demo builds only the plugins: anything missing is built here.
for bin in berth berth-ipam berthctl berth-agent; do
  if [[ ! -x .build/release/$bin ]]; then scripts/setup.sh; break; fi
done
install -d -m 0755 "$prefix"
for bin in berth berth-ipam; do
  install -m 0755 ".build/release/$bin" "$prefix/$bin"
done
install -d -m 0755 "$bindir"
install -m 0755 .build/release/berthctl "$bindir/berthctl"
install -m 0755 .build/release/berth-agent "$bindir/berth-agent"
echo "installed berth and berth-ipam into $prefix, berthctl and berth-agent into $bindir"
if [[ -n "$conf" ]]; then
  install -d -m 0755 "$confdir"
  install -m 0644 "$conf" "$confdir/$(basename "$conf")"
  echo "installed $(basename "$conf") into $confdir"
fi
