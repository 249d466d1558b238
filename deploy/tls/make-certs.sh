#!/bin/sh
# Makes the certificates for a Quorum cluster's mutual TLS with the openssl CLI.
#
#   deploy/tls/make-certs.sh DIR NAME [SAN ...]
#
# The first call creates a CA in DIR (ca.crt, ca.key); every call issues NAME.crt and
# NAME.key signed by it. SANs are openssl's: DNS:host, DNS:*.domain, IP:address. Each
# certificate is good both as a server and as a client, so one per node serves for its
# clients (--cert-file) and for its peers (--peer-cert-file); a client such as etcdctl gets
# one without SANs. Every name a node is dialled by must be a SAN: peers dial the host of
# --initial-cluster, and a follower forwards a write to the leader's --listen-client host.
#
#   deploy/tls/make-certs.sh tls n1 DNS:q1.example.com IP:10.0.0.1
#   deploy/tls/make-certs.sh tls client
#
# DAYS (default 365) sets the validity. Keys are EC P-256, written with mode 0600.
set -eu

if [ "$#" -lt 2 ]; then
  echo "usage: $0 DIR NAME [SAN ...]   (SAN: DNS:name or IP:address)" >&2
  exit 2
fi
dir=$1
name=$2
shift 2
days=${DAYS:-365}

case "$name" in
  ca | *[!A-Za-z0-9._-]*)
    echo "$0: NAME must be letters, digits, '.', '_' or '-' (and not 'ca'): $name" >&2
    exit 2
    ;;
esac
for san in "$@"; do
  case "$san" in
    DNS:?* | IP:?*) ;;
    *)
      echo "$0: a SAN is DNS:name or IP:address, not '$san'" >&2
      exit 2
      ;;
  esac
done

mkdir -p "$dir"
umask 077
if [ ! -f "$dir/ca.crt" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" -days "$days" -subj "/CN=quorum-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
  chmod 644 "$dir/ca.crt"
fi

ext="$dir/$name.ext"
{
  echo "basicConstraints=CA:FALSE"
  echo "keyUsage=critical,digitalSignature,keyEncipherment"
  echo "extendedKeyUsage=serverAuth,clientAuth"
  if [ "$#" -gt 0 ]; then
    (IFS=,; echo "subjectAltName=$*")
  fi
} >"$ext"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "/CN=$name" 2>/dev/null
openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
  -out "$dir/$name.crt" -days "$days" -extfile "$ext" 2>/dev/null
rm -f "$dir/$name.csr" "$ext"
chmod 644 "$dir/$name.crt"
echo "$dir/$name.crt and $dir/$name.key, signed by $dir/ca.crt"
