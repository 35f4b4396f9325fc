#!/usr/bin/env bash
# natlab.sh - LiveWire's NAT lab: three network namespaces joined by veth pairs (run as root).
#
#   ${P}_lan (client)          ${P}_rtr (NAT)                          ${P}_wan (server)
#   eth0 10.0.0.2/24  <-veth->  lan0 10.0.0.1/24 | wan0 W.1/24 <-veth-> eth0 W.2/24, W.3/24
#   (W = NATLAB_WAN_NET, default 192.0.2)
#
# Everything is created inside namespaces of our own (veths are made with -n/netns): nothing
# touches the host's root namespace, so no packet can leave the machine. The WAN side has no
# route to 10.0.0.0/24: LAN->WAN traffic only works through the router's masquerade.
# The prefix P (NATLAB_PREFIX, default "lw") keeps parallel labs apart; tests use one per run.
#
# Usage: natlab.sh CMD [ARGS]      (environment: NATLAB_PREFIX, NATLAB_STATE_DIR, NATLAB_WAN_NET)
#   up                  create namespaces, veths, routes, nftables masquerade (random ports)
#   down                kill what runs in the lab's namespaces and delete them (idempotent)
#   rebind              force a NAT rebinding: switch the masquerade port range, flush conntrack
#   flush               flush the router's conntrack table (next packet gets a new mapping)
#   loss PCT|off        random UDP drop in the router's forward path, both directions
#   blackout on|off     drop every forwarded UDP datagram (an outage)
#   udp-timeout SECS    the router's UDP conntrack timeouts (NAT mapping expiry)
#   counters            print the impairment counters (dropped packets)
#   mappings            print the router's UDP conntrack entries
#   upnp start|stop     miniupnpd (UPnP IGD + NAT-PMP/PCP) on the router, LAN side lan0
#                       (NATLAB_UPNP_MIN_LIFETIME / _MAX_LIFETIME bound the lifetimes it grants)
#   upnp-rules          print the port-forwarding rules miniupnpd installed
#   exec lan|rtr|wan CMD...   run a command in one namespace
#   check               tools present and root? (exit 0 yes, 3 no, with the reason)
set -euo pipefail

P=${NATLAB_PREFIX:-lw}
LAN=${P}_lan; RTR=${P}_rtr; WAN=${P}_wan
STATE=${NATLAB_STATE_DIR:-${TMPDIR:-/tmp}/natlab-$P}
# The WAN /24. miniupnpd refuses to map ports when the router's WAN address is private or
# reserved (192.0.2.0/24 included), so the port-mapping lab sets NATLAB_WAN_NET to a
# "public-looking" /24: it exists only on the lab's own veths and is routed nowhere else.
WAN_NET=${NATLAB_WAN_NET:-192.0.2}
LAN_IP=10.0.0.2; RTR_LAN_IP=10.0.0.1; RTR_WAN_IP=$WAN_NET.1; WAN_IP=$WAN_NET.2; WAN_IP2=$WAN_NET.3
PORT_A="40000-44999"; PORT_B="50000-54999"

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

check() {
  if [ "$(id -u)" != 0 ]; then echo "not root"; exit 3; fi
  for t in ip nft conntrack; do
    command -v "$t" >/dev/null 2>&1 || { echo "missing tool: $t"; exit 3; }
  done
  # Can we really make namespaces here (containers may forbid it)?
  local probe="${P}_probe$$"
  if ! ip netns add "$probe" 2>/dev/null; then echo "cannot create network namespaces"; exit 3; fi
  ip netns del "$probe"
  echo ok
}

nat_rule() {
  local ports=$1
  nsx "$RTR" nft -f - <<EOF
table ip lwnat
delete table ip lwnat
table ip lwnat {
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan0" meta l4proto udp masquerade to :$ports random
    oifname "wan0" masquerade
  }
}
EOF
  echo "$ports" > "$STATE/ports"
}

up() {
  mkdir -p "$STATE"
  ip netns add "$LAN"; ip netns add "$RTR"; ip netns add "$WAN"
  for ns in "$LAN" "$RTR" "$WAN"; do ip -n "$ns" link set lo up; done
  ip -n "$LAN" link add eth0 type veth peer name lan0 netns "$RTR"
  ip -n "$WAN" link add eth0 type veth peer name wan0 netns "$RTR"
  ip -n "$LAN" addr add $LAN_IP/24 dev eth0;      ip -n "$LAN" link set eth0 up
  ip -n "$RTR" addr add $RTR_LAN_IP/24 dev lan0;  ip -n "$RTR" link set lan0 up
  ip -n "$RTR" addr add $RTR_WAN_IP/24 dev wan0;  ip -n "$RTR" link set wan0 up
  ip -n "$WAN" addr add $WAN_IP/24 dev eth0
  ip -n "$WAN" addr add $WAN_IP2/24 dev eth0;     ip -n "$WAN" link set eth0 up
  ip -n "$LAN" route add default via $RTR_LAN_IP
  # SSDP (UPnP discovery) multicast leaves the LAN host on eth0 towards the router.
  ip -n "$LAN" route add 239.0.0.0/8 dev eth0
  nsx "$RTR" sysctl -qw net.ipv4.ip_forward=1
  nat_rule "$PORT_A"
  echo "natlab $P up"
}

down() {
  for ns in "$LAN" "$RTR" "$WAN"; do
    # Only processes that live inside our own namespaces.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
  done
  sleep 0.2
  for ns in "$LAN" "$RTR" "$WAN"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$STATE"
  echo "natlab $P down"
}

flush() { nsx "$RTR" conntrack -F >/dev/null 2>&1 || true; }

rebind() {
  local cur next
  cur=$(cat "$STATE/ports" 2>/dev/null || echo "$PORT_A")
  if [ "$cur" = "$PORT_A" ]; then next=$PORT_B; else next=$PORT_A; fi
  nat_rule "$next"
  flush
  echo "masquerade ports $next; conntrack flushed"
}

impair() {
  # impair RULE...: replace the forward-path impairment with the given rule (none: clear it)
  nsx "$RTR" nft -f - <<EOF
table ip lwimpair
delete table ip lwimpair
EOF
  [ $# -eq 0 ] && return 0
  nsx "$RTR" nft -f - <<EOF
table ip lwimpair {
  chain impair {
    type filter hook forward priority filter; policy accept;
    $*
  }
}
EOF
}

loss() {
  if [ "$1" = off ]; then impair; echo "loss off"; return; fi
  impair "meta l4proto udp numgen random mod 100 < $1 counter drop"
  echo "loss $1%"
}

blackout() {
  if [ "$1" = off ]; then impair; echo "blackout off"; return; fi
  impair "meta l4proto udp counter drop"
  echo "blackout on"
}

counters() { nsx "$RTR" nft list table ip lwimpair 2>/dev/null | grep -o 'packets [0-9]*' || echo "packets 0"; }

udp_timeout() {
  nsx "$RTR" sysctl -qw net.netfilter.nf_conntrack_udp_timeout="$1" \
    net.netfilter.nf_conntrack_udp_timeout_stream="$1"
  echo "udp conntrack timeout ${1}s"
}

mappings() { nsx "$RTR" conntrack -L -p udp 2>/dev/null || true; }

upnp() {
  case "$1" in
    start)
      cat > "$STATE/miniupnpd.conf" <<EOF
ext_ifname=wan0
listening_ip=lan0
http_port=0
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=yes
min_lifetime=${NATLAB_UPNP_MIN_LIFETIME:-60}
max_lifetime=${NATLAB_UPNP_MAX_LIFETIME:-3600}
uuid=3d3cec3a-8cf0-11e0-98ee-001a6b$(printf '%06x' $((RANDOM * 7 % 16777215)))
upnp_table_name=lwupnp
upnp_nat_table_name=lwupnp
upnp_forward_chain=forward_lw
upnp_nat_chain=prerouting_lw
upnp_nat_postrouting_chain=postrouting_lw
allow 1024-65535 10.0.0.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
EOF
      # The chains miniupnpd fills (Debian's nft_init.sh does this for the real service;
      # here the forward policy stays "accept" so the lab's other traffic is untouched).
      nsx "$RTR" nft -f - <<EOF
table inet lwupnp
delete table inet lwupnp
table inet lwupnp {
  chain forward { type filter hook forward priority 0; policy accept; jump forward_lw; }
  chain forward_lw { }
  chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_lw; }
  chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_lw; }
  chain prerouting_lw { }
  chain postrouting_lw { }
}
EOF
      # -d: stay in the foreground (ours to kill); output goes to the state dir.
      nsx "$RTR" miniupnpd -d -f "$STATE/miniupnpd.conf" -P "$STATE/miniupnpd.pid" \
        > "$STATE/miniupnpd.log" 2>&1 &
      echo $! > "$STATE/miniupnpd.wrapper"
      # Ready when the NAT-PMP/PCP port is bound.
      for _ in $(seq 50); do
        if nsx "$RTR" ss -lun 2>/dev/null | grep -q ':5351 '; then echo "miniupnpd up"; return 0; fi
        sleep 0.1
      done
      echo "miniupnpd did not start:"; cat "$STATE/miniupnpd.log"; return 1
      ;;
    stop)
      if [ -f "$STATE/miniupnpd.pid" ]; then kill "$(cat "$STATE/miniupnpd.pid")" 2>/dev/null || true; fi
      if [ -f "$STATE/miniupnpd.wrapper" ]; then kill "$(cat "$STATE/miniupnpd.wrapper")" 2>/dev/null || true; fi
      echo "miniupnpd stopped"
      ;;
    *) echo "upnp start|stop"; exit 2 ;;
  esac
}

upnp_rules() { nsx "$RTR" nft list chain inet lwupnp prerouting_lw 2>/dev/null | grep -E 'dnat' || true; }

cmd=${1:-}; shift || true
case "$cmd" in
  check) check ;;
  up) up ;;
  down) down ;;
  flush) flush ;;
  rebind) rebind ;;
  loss) loss "${1:?PCT|off}" ;;
  blackout) blackout "${1:?on|off}" ;;
  counters) counters ;;
  udp-timeout) udp_timeout "${1:?SECS}" ;;
  mappings) mappings ;;
  upnp) upnp "${1:?start|stop}" ;;
  upnp-rules) upnp_rules ;;
  exec) ns=$1; shift
        case $ns in lan) nsx "$LAN" "$@" ;; rtr) nsx "$RTR" "$@" ;; wan) nsx "$WAN" "$@" ;;
          *) echo "lan|rtr|wan"; exit 2 ;; esac ;;
  *) sed -n '2,30p' "$0"; exit 2 ;;
esac
