#!/usr/bin/env bash
# Builds a small root file system from Debian's busybox-static, for
# `berthctl run --rootfs DIR` in tests and demos.
#   scripts/make-rootfs.sh DIR
set -euo pipefail
dir="${1:?usage: scripts/make-rootfs.sh DIR}"
if [[ ! -x /bin/busybox ]] || ! /bin/busybox --list >/dev/null 2>&1 || ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed"; then
  if [[ $(id -u) -ne 0 ]]; then echo "make-rootfs: busybox-static is missing and installing it needs root" >&2; exit 1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
mkdir -p "$dir"/{bin,etc,proc,sys,dev,tmp,root}
chmod 1777 "$dir/tmp"
install -m 0755 /bin/busybox "$dir/bin/busybox"
for applet in $("$dir/bin/busybox" --list); do
  [[ -e "$dir/bin/$applet" ]] || ln -s busybox "$dir/bin/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" > "$dir/etc/passwd"
echo "root:x:0:" > "$dir/etc/group"
echo "berth" > "$dir/etc/hostname"
echo "made a busybox root file system in $dir"
