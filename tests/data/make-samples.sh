#!/usr/bin/env bash
# Regenerates the bundled sample captures with real tools (needs root, iproute2, tcpdump,
# dumpcap, python3, curl): two network namespaces, an HTTP server in one, a client in the other,
# captured by tcpdump (µs, one interface), tcpdump (ns, -i any) and dumpcap (pcapng).
set -euo pipefail
cd "$(dirname "$0")"
A=pcmclient B=pcmserver
cleanup() { ip netns del $A 2>/dev/null || true; ip netns del $B 2>/dev/null || true; }
cleanup; trap cleanup EXIT
ip netns add $A; ip netns add $B
ip link add $A-v netns $A type veth peer name $B-v netns $B
ip -n $A addr add 10.99.0.1/24 dev $A-v; ip -n $B addr add 10.99.0.2/24 dev $B-v
ip -n $A link set $A-v up; ip -n $B link set $B-v up; ip -n $A link set lo up; ip -n $B link set lo up
ip netns exec $B python3 -m http.server 8080 --bind 10.99.0.2 >/dev/null 2>&1 &
SRV=$!
ip netns exec $A tcpdump -n -U -i $A-v -w client.pcap 2>/dev/null & T1=$!
ip netns exec $B tcpdump -n -U -i any --time-stamp-precision=nano -w server.pcap 2>/dev/null & T2=$!
ip netns exec $B dumpcap -q -i $B-v -i lo -w server-dumpcap.pcapng 2>/dev/null & T3=$!
sleep 1.5
for i in 1 2 3; do ip netns exec $A curl -s -o /dev/null http://10.99.0.2:8080/ ; done
ip netns exec $B ping -c 3 -i 0.2 127.0.0.1 >/dev/null
sleep 0.5
kill -INT $T1 $T2 $T3; wait $T1 $T2 $T3 || true
kill $SRV; wait $SRV 2>/dev/null || true
ls -l client.pcap server.pcap server-dumpcap.pcapng
