#!/bin/sh
# citadel-iptables: Istio-style transparent capture in a Marathon pod's network namespace, then
# the proxy as its own user. Marathon pods have no init containers, so the sidecar runs this
# itself before Envoy. Needs root with NET_ADMIN, sh, iptables, and one of setpriv, su-exec or
# chroot --userspec to drop to the proxy user.
#
#   citadel-iptables.sh [-p 15001] [-z 15006] [-u 1337] [-g 1337] [-b PORTS|*] [-d PORTS]
#                       [-i CIDRS|*] [-x CIDRS] [-o PORTS] -- COMMAND [ARG...]
#
#   -p  outbound capture port (Envoy's virtual outbound listener)
#   -z  inbound capture port
#   -u  -g  uid and gid of the proxy: its own traffic is never captured
#   -b  inbound ports redirected to -z (comma list, or * for all)
#   -d  inbound ports never redirected
#   -i  outbound destinations redirected to -p (comma list of IPv4 CIDRs, or * for all)
#   -x  outbound destinations never redirected
#   -o  outbound ports never redirected
set -eu
set -f # label values must not expand as file names

PROXY_PORT=15001
INBOUND_CAPTURE_PORT=15006
PROXY_UID=1337
PROXY_GID=1337
INBOUND_PORTS=
EXCLUDE_INBOUND_PORTS=
OUTBOUND_IP_RANGES='*'
EXCLUDE_OUTBOUND_IP_RANGES=
EXCLUDE_OUTBOUND_PORTS=

die() {
  echo "citadel-iptables: $*" >&2
  exit 2
}

list() { echo "$1" | tr ',' ' '; }

# Values come from Marathon labels: let through only what iptables should see.
check_port() {
  case "$2" in '' | *[!0-9]*) die "$1: \"$2\" is not a port" ;; esac
  [ "$2" -ge 1 ] && [ "$2" -le 65535 ] || die "$1: $2 is not a port (1-65535)"
}
check_ports() {
  for p in $(list "$2"); do check_port "$1" "$p"; done
}
check_cidrs() {
  for c in $(list "$2"); do
    case "$c" in *[!0-9./]* | '' | */*/* | .* | */) die "$1: \"$c\" is not an IPv4 address or CIDR" ;; esac
  done
}

while getopts 'p:z:u:g:b:d:i:x:o:' opt; do
  case "$opt" in
    p) PROXY_PORT=$OPTARG ;;
    z) INBOUND_CAPTURE_PORT=$OPTARG ;;
    u) PROXY_UID=$OPTARG ;;
    g) PROXY_GID=$OPTARG ;;
    b) INBOUND_PORTS=$OPTARG ;;
    d) EXCLUDE_INBOUND_PORTS=$OPTARG ;;
    i) OUTBOUND_IP_RANGES=$OPTARG ;;
    x) EXCLUDE_OUTBOUND_IP_RANGES=$OPTARG ;;
    o) EXCLUDE_OUTBOUND_PORTS=$OPTARG ;;
    *) die "usage: citadel-iptables.sh [-p port] [-z port] [-u uid] [-g gid] [-b ports|*] [-d ports] [-i cidrs|*] [-x cidrs] [-o ports] -- command [arg...]" ;;
  esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || die "no command to run after the rules (-- envoy ...)"

check_port -p "$PROXY_PORT"
check_port -z "$INBOUND_CAPTURE_PORT"
case "$PROXY_UID$PROXY_GID" in '' | *[!0-9]*) die "-u and -g must be numeric ids" ;; esac
[ "$INBOUND_PORTS" = '*' ] || check_ports -b "$INBOUND_PORTS"
check_ports -d "$EXCLUDE_INBOUND_PORTS"
[ "$OUTBOUND_IP_RANGES" = '*' ] || check_cidrs -i "$OUTBOUND_IP_RANGES"
check_cidrs -x "$EXCLUDE_OUTBOUND_IP_RANGES"
check_ports -o "$EXCLUDE_OUTBOUND_PORTS"
command -v iptables >/dev/null 2>&1 || die "iptables is not in the image; redirect capture needs it (or use citadel.io/capture: explicit)"

nat() { iptables -w -t nat "$@"; }

# Start clean: a restarted container finds its pod's namespace with the rules of its last run.
while nat -D PREROUTING -p tcp -j CITADEL_INBOUND 2>/dev/null; do :; done
while nat -D OUTPUT -p tcp -j CITADEL_OUTPUT 2>/dev/null; do :; done
for chain in CITADEL_INBOUND CITADEL_OUTPUT CITADEL_REDIRECT CITADEL_IN_REDIRECT; do
  nat -F "$chain" 2>/dev/null || true
  nat -X "$chain" 2>/dev/null || true
done

nat -N CITADEL_REDIRECT
nat -A CITADEL_REDIRECT -p tcp -j REDIRECT --to-ports "$PROXY_PORT"
nat -N CITADEL_IN_REDIRECT
nat -A CITADEL_IN_REDIRECT -p tcp -j REDIRECT --to-ports "$INBOUND_CAPTURE_PORT"

# Inbound: connections to the pod's ports go to the inbound capture port.
if [ -n "$INBOUND_PORTS" ]; then
  nat -N CITADEL_INBOUND
  nat -A PREROUTING -p tcp -j CITADEL_INBOUND
  for p in $(list "$EXCLUDE_INBOUND_PORTS"); do nat -A CITADEL_INBOUND -p tcp --dport "$p" -j RETURN; done
  if [ "$INBOUND_PORTS" = '*' ]; then
    nat -A CITADEL_INBOUND -p tcp --dport "$PROXY_PORT" -j RETURN
    nat -A CITADEL_INBOUND -p tcp --dport "$INBOUND_CAPTURE_PORT" -j RETURN
    nat -A CITADEL_INBOUND -p tcp -j CITADEL_IN_REDIRECT
  else
    for p in $(list "$INBOUND_PORTS"); do nat -A CITADEL_INBOUND -p tcp --dport "$p" -j CITADEL_IN_REDIRECT; done
  fi
fi

# Outbound: everything the app opens goes to the proxy, except the proxy's own connections
# and loopback (as Istio: 127.0.0.6 is the proxy's inbound passthrough source; the proxy
# reaching the pod's own address over lo goes back through inbound).
nat -N CITADEL_OUTPUT
nat -A OUTPUT -p tcp -j CITADEL_OUTPUT
nat -A CITADEL_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
nat -A CITADEL_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --uid-owner "$PROXY_UID" -j CITADEL_IN_REDIRECT
nat -A CITADEL_OUTPUT -o lo -m owner ! --uid-owner "$PROXY_UID" -j RETURN
nat -A CITADEL_OUTPUT -m owner --uid-owner "$PROXY_UID" -j RETURN
nat -A CITADEL_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --gid-owner "$PROXY_GID" -j CITADEL_IN_REDIRECT
nat -A CITADEL_OUTPUT -o lo -m owner ! --gid-owner "$PROXY_GID" -j RETURN
nat -A CITADEL_OUTPUT -m owner --gid-owner "$PROXY_GID" -j RETURN
nat -A CITADEL_OUTPUT -d 127.0.0.1/32 -j RETURN
for p in $(list "$EXCLUDE_OUTBOUND_PORTS"); do nat -A CITADEL_OUTPUT -p tcp --dport "$p" -j RETURN; done
for c in $(list "$EXCLUDE_OUTBOUND_IP_RANGES"); do nat -A CITADEL_OUTPUT -d "$c" -j RETURN; done
if [ "$OUTBOUND_IP_RANGES" = '*' ]; then
  nat -A CITADEL_OUTPUT -j CITADEL_REDIRECT
else
  for c in $(list "$OUTBOUND_IP_RANGES"); do nat -A CITADEL_OUTPUT -d "$c" -j CITADEL_REDIRECT; done
fi

echo "citadel-iptables: capturing outbound to :$PROXY_PORT, inbound [${INBOUND_PORTS:-none}] to :$INBOUND_CAPTURE_PORT; proxy uid $PROXY_UID" >&2

# The proxy runs unprivileged: leaving root drops every capability, NET_ADMIN included.
if command -v setpriv >/dev/null 2>&1; then
  exec setpriv --reuid="$PROXY_UID" --regid="$PROXY_GID" --clear-groups -- "$@"
elif command -v su-exec >/dev/null 2>&1; then
  exec su-exec "$PROXY_UID:$PROXY_GID" "$@"
elif chroot --help 2>&1 | grep -q -- --userspec; then
  exec chroot --userspec="$PROXY_UID:$PROXY_GID" --skip-chdir / "$@"
fi
die "found none of setpriv, su-exec or chroot --userspec to run the proxy as uid $PROXY_UID"
