# Sourced by the scripts that run swift: puts the toolchain on PATH when it
# is not there yet (this machine keeps it in /opt/swift), or says where it looked.
if ! command -v swift >/dev/null 2>&1 && [[ -x /opt/swift/usr/bin/swift ]]; then
  export PATH="/opt/swift/usr/bin:$PATH"
fi
command -v swift >/dev/null 2>&1 || { echo "$(basename "$0"): no Swift toolchain found (expected swift on PATH or in /opt/swift)" >&2; exit 1; }
