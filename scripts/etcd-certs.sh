#!/usr/bin/env bash
# Makes the certificates of an etcd with TLS and client-certificate auth, with
# openssl: a CA, etcd's server certificate, and a client certificate per node
# agent (or berthctl user). The tests make theirs with it; docs/cluster.md
# shows it in use.
#
#   scripts/etcd-certs.sh DIR ca
#       DIR/ca.pem, DIR/ca-key.pem: a new CA (ECDSA P-256, 10 years)
#   scripts/etcd-certs.sh DIR server NAME SAN[,SAN...] [--days N | --dates START END]
#       DIR/NAME.pem, DIR/NAME-key.pem for etcd's --cert-file/--key-file;
#       SAN as openssl says them: IP:10.0.0.5,DNS:etcd.example
#   scripts/etcd-certs.sh DIR client NAME [--days N | --dates START END]
#       DIR/NAME.pem, DIR/NAME-key.pem for --etcd-certfile/--etcd-keyfile
#       (the common name is NAME)
# START and END are YYYYMMDDHHMMSSZ (a certificate valid in the past, to
# see what an expired one does); the default is 365 days from now.
set -euo pipefail

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
(($# >= 2)) || usage
dir=$1 kind=$2
shift 2
mkdir -p "$dir"
command -v openssl >/dev/null || { echo "etcd-certs: openssl is not installed (apt-get install openssl)" >&2; exit 1; }

# `openssl ca` (not `x509 -req`) so that start and end dates can be given.
ca_config() {
  mkdir -p "$dir/.ca/new"
  [[ -f "$dir/.ca/index.txt" ]] || : >"$dir/.ca/index.txt"
  [[ -f "$dir/.ca/serial" ]] || openssl rand -hex 8 >"$dir/.ca/serial"
  cat >"$dir/.ca/ca.cnf" <<EOF
[ca]
default_ca = berth
[berth]
dir = $dir/.ca
database = \$dir/index.txt
new_certs_dir = \$dir/new
serial = \$dir/serial
certificate = $dir/ca.pem
private_key = $dir/ca-key.pem
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[anything]
commonName = supplied
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = \${ENV::BERTH_SAN}
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
EOF
}

sign() { # NAME EXTENSIONS [--days N | --dates START END]
  local name=$1 ext=$2
  shift 2
  local dates=(-days 365)
  case "${1:-}" in
    --days) dates=(-days "$2") ;;
    --dates) dates=(-startdate "$2" -enddate "$3") ;;
    "") ;;
    *) usage ;;
  esac
  [[ -f "$dir/ca.pem" ]] || { echo "etcd-certs: no CA in $dir (run: $0 $dir ca)" >&2; exit 1; }
  ca_config
  openssl ecparam -name prime256v1 -genkey -noout -out "$dir/$name-key.pem" 2>/dev/null
  openssl req -new -key "$dir/$name-key.pem" -subj "/CN=$name" -out "$dir/$name.csr" 2>/dev/null
  BERTH_SAN=${BERTH_SAN:-DNS:$name} openssl ca -batch -notext -config "$dir/.ca/ca.cnf" -extensions "$ext" \
    "${dates[@]}" -in "$dir/$name.csr" -out "$dir/$name.pem" 2>"$dir/.ca/last.log" ||
    { cat "$dir/.ca/last.log" >&2; exit 1; }
  rm -f "$dir/$name.csr"
  chmod 600 "$dir/$name-key.pem"
}

case "$kind" in
  ca)
    openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca-key.pem" 2>/dev/null
    openssl req -x509 -new -key "$dir/ca-key.pem" -subj "/CN=berth etcd CA" -days 3650 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$dir/ca.pem" 2>/dev/null
    chmod 600 "$dir/ca-key.pem"
    ;;
  server)
    (($# >= 2)) || usage
    name=$1 san=$2
    shift 2
    BERTH_SAN=$san sign "$name" server "$@"
    ;;
  client)
    (($# >= 1)) || usage
    name=$1
    shift
    sign "$name" client "$@"
    ;;
  *) usage ;;
esac
