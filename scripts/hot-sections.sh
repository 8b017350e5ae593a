#!/usr/bin/env bash
# Regenerates scripts/generated/hot-sections.txt: the code sections an ADD, CHECK,
# DEL and VERSION of `berth` and `berth-ipam` execute (callgrind traces of the
# release build), which the linker places side by side (see scripts/build.sh).
# Run it, as root, after changes to the plugin's code paths; then rebuild.
# A stale list costs memory, not correctness.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v valgrind >/dev/null 2>&1; then
  [[ $(id -u) -eq 0 ]] || { echo "hot-sections: valgrind is missing and installing it needs root" >&2; exit 1; }
  apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi
source scripts/lib/swift.sh
touch scripts/generated/hot-sections.txt  # the link needs the file, even empty
scripts/build.sh --plugins

work="$(mktemp -d /tmp/berth-hot.XXXXXX)"
tag="bh$$"
cleanup() {
  [[ -x .build/release/berthctl ]] && .build/release/berthctl policy delete "$tag/web" >/dev/null 2>&1 || true
  ip netns del "$tag" 2>/dev/null || true
  ip link del "$tag" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$tag"
export CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni CNI_NETNS="/run/netns/$tag" CNI_CONTAINERID="$tag"
# valgrind cannot read Swift's debug info: trace copies without it (same code layout).
for b in berth berth-ipam; do strip --strip-debug -o "$work/$b" ".build/release/$b"; done
conf="{\"cniVersion\":\"1.1.0\",\"name\":\"$tag\",\"type\":\"berth\",\"bridge\":\"$tag\",\"isGateway\":true,\"ipam\":{\"type\":\"berth-ipam\",\"subnet\":\"10.250.0.0/24\",\"dataDir\":\"$work/data\"}}"
trace() {  # trace BINARY COMMAND STDIN
  echo "$3" | CNI_COMMAND="$2" valgrind --tool=callgrind --demangle=no \
    --callgrind-out-file="$work/cg.$(basename "$1").$2" "$1" >/dev/null 2>&1 || true
}
result="$(echo "$conf" | CNI_COMMAND=ADD ".build/release/berth")"
check="$(python3 -c 'import json,sys; c=json.loads(sys.argv[1]); c["prevResult"]=json.loads(sys.argv[2]); print(json.dumps(c))' "$conf" "$result")"
echo "$conf" | CNI_COMMAND=DEL ".build/release/berth" >/dev/null
trace "$work/berth" ADD "$conf"
trace "$work/berth" CHECK "$check"
trace "$work/berth" DEL "$conf"
trace "$work/berth" VERSION '{"cniVersion":"1.1.0"}'
for c in ADD DEL VERSION; do trace "$work/berth-ipam" "$c" "$conf"; done
# And an ADD and a DEL of a pod a policy in force selects (its sets, libnftables).
[[ -x .build/release/berthctl ]] || swift build -c release --static-swift-stdlib --product berthctl >/dev/null
printf '%s' "{\"apiVersion\":\"networking.k8s.io/v1\",\"kind\":\"NetworkPolicy\",\"metadata\":{\"name\":\"web\",\"namespace\":\"$tag\"},\"spec\":{\"podSelector\":{\"matchLabels\":{\"app\":\"web\"}},\"ingress\":[{\"from\":[{\"podSelector\":{\"matchLabels\":{\"app\":\"web\"}}}],\"ports\":[{\"port\":80}]}]}}" > "$work/policy.json"
.build/release/berthctl policy apply -f "$work/policy.json" >/dev/null
pconf="${conf%\}},\"args\":{\"cni\":{\"namespace\":\"$tag\",\"labels\":{\"app\":\"web\"}}}}"
echo "$pconf" | CNI_COMMAND=ADD ".build/release/berth" >/dev/null
echo "$pconf" | CNI_COMMAND=DEL ".build/release/berth" >/dev/null
trace "$work/berth" ADD "$pconf"
trace "$work/berth" DEL "$pconf"
{
  grep -h '^c\?fn=([0-9]*) ' "$work"/cg.* | sed 's/^c\?fn=([0-9]*) //' | sort -u | sed 's/^/.text./'
} > scripts/generated/hot-sections.txt
echo "hot-sections: $(($(wc -l < scripts/generated/hot-sections.txt) - 1)) sections in scripts/generated/hot-sections.txt"
