#!/usr/bin/env bash
# Berth's main job, start to finish (as root): installs what is needed,
# builds the two plugins (only them, tuned, once), installs them into
# /opt/cni/bin, wires two network namespaces to a bridge through them, shows
# them reaching each other and the gateway, then tears everything down again.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

scripts/setup.sh --demo
echo "== building the plugins (scripts/build.sh --plugins)"
scripts/build.sh --plugins
install -d -m 0755 /opt/cni/bin
install -m 0755 .build/release/berth .build/release/berth-ipam /opt/cni/bin/
echo "   installed berth and berth-ipam into /opt/cni/bin ($((SECONDS - start)) s since the start)"

tag="$$"
bridge="berthdemo${tag: -4}"
ns1="berth-demo-a-$tag"
ns2="berth-demo-b-$tag"
datadir="$(mktemp -d /tmp/berth-demo-ipam.XXXXXX)"
# A /24 that no route on this machine uses.
for third in $(seq 250 -1 200); do
  subnet="10.250.$third"
  ip -4 route show table all | grep -q "$subnet\." || break
done

cleanup() {
  ip netns del "$ns1" 2>/dev/null || true
  ip netns del "$ns2" 2>/dev/null || true
  ip link del "$bridge" 2>/dev/null || true
  rm -rf "$datadir" /tmp/berth-demo-$tag.json
}
trap cleanup EXIT

config=/tmp/berth-demo-$tag.json
cat > "$config" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "berth-demo",
  "type": "berth",
  "bridge": "$bridge",
  "isDefaultGateway": true,
  "ipam": {"type": "berth-ipam", "subnet": "$subnet.0/24", "dataDir": "$datadir"}
}
JSON

plugin() { # COMMAND NETNS CONTAINERID
  CNI_COMMAND="$1" CNI_NETNS="/run/netns/$2" CNI_CONTAINERID="$3" CNI_IFNAME=eth0 \
    CNI_PATH=/opt/cni/bin /opt/cni/bin/berth < "$config"
}
address_of() { ip netns exec "$1" ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1; }

echo "== two namespaces: $ns1, $ns2"
ip netns add "$ns1"
ip netns add "$ns2"

echo "== ADD $ns1 through /opt/cni/bin/berth (bridge $bridge, subnet $subnet.0/24)"
plugin ADD "$ns1" "demo-a-$tag"
echo "== ADD $ns2"
plugin ADD "$ns2" "demo-b-$tag" >/dev/null
a1=$(address_of "$ns1"); a2=$(address_of "$ns2"); gw="$subnet.1"
echo "   $ns1 has $a1, $ns2 has $a2, the bridge holds the gateway $gw"
ip -br addr show dev "$bridge"
ip -br link show master "$bridge"
echo "== berth-ipam's store: $datadir/berth-demo"
ls "$datadir/berth-demo/addresses"

echo "== $ns1 -> $ns2 ($a2), $((SECONDS - start)) s since the start"
ip netns exec "$ns1" ping -c 2 -W 2 "$a2"
echo "== $ns2 -> $ns1 ($a1)"
ip netns exec "$ns2" ping -c 2 -W 2 "$a1"
echo "== $ns1 -> gateway ($gw)"
ip netns exec "$ns1" ping -c 2 -W 2 "$gw"

echo "== DEL both"
plugin DEL "$ns1" "demo-a-$tag"
plugin DEL "$ns2" "demo-b-$tag"
left=$(ip -o link show master "$bridge" | wc -l)
echo "   ports left on $bridge: $left"
echo "== tearing down namespaces and bridge"
cleanup
trap - EXIT
echo "demo: OK"
