#!/usr/bin/env bash
# Benchmark of the live merge's latency (issue 13, the adaptive watermark): how long after its
# capture a packet is written, with real tcpdumps in network namespaces as `--cmd` sources,
#     podcap-merge --duration 15 -w - --cmd s0='ip netns exec NS0 tcpdump -U --immediate-mode ... -w -' ... | reader
# The reader (benches/latency_measure.py) notes when each packet's block arrives on the pipe;
# latency = that time - the packet's timestamp (the kernel's capture time, same host clock).
# Scenarios, each with the default window (the adaptive watermark) and --reorder-window 300ms
# for comparison:
#     immediate    3 sources, all `tcpdump -U --immediate-mode`, ping every 10 ms in each
#     one-bursty   the same with one `tcpdump -U` without --immediate-mode (libpcap hands its
#                  packets over in blocks, up to ~1 s late)
# Prints one table: latency p50/p90/p99/max, late packets (summary; and in the output after the
# first 2 s), backward steps of the output, podcap-merge's CPU time, and the issue's targets
# with PASS/FAIL (default window only):
#     immediate-mode sources: p50 <= 50 ms, p99 <= 100 ms
#     every scenario: no late packet and no backward step after the first 2 s of capture
# There is no peer that merges live captures to compare with, so the figures are raw.
#
#   benches/latency.sh                          # from the repo root; ~1 min of capture
#   BENCH_DURATION=5 benches/latency.sh         # a quick look
#
# Environment:
#   BENCH_DURATION       seconds per run (default 15)
#   BENCH_SOURCES        tcpdump sources (default 3; one-bursty makes the last one bursty)
#   BENCH_PING_INTERVAL  ping interval in each namespace (default 0.01)
#   BENCH_WINDOWS        comma-separated: default (no --reorder-window) and/or TIMEs
#                        (default "default,300ms")
#   BENCH_SCENARIOS      comma-separated: immediate, one-bursty (default both)
#   BENCH_STRICT         1: exit 3 when a target is missed
#   BENCH_VERBOSE        1: print podcap-merge's summary of every run
#   PODCAP_BIN           use this binary and skip `cargo build --release`
#
# Needs root (network namespaces), iproute2, tcpdump, ping, python3.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

for tool in python3 tcpdump ip ping; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool (apt-get install -y tcpdump iproute2 iputils-ping python3)" >&2; exit 2; }
done
if [[ "$(id -u)" != 0 ]]; then
    echo "benches/latency.sh needs root (it builds network namespaces)" >&2
    exit 2
fi
dur="${BENCH_DURATION:-15}"
[[ "$dur" =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk "BEGIN {exit !($dur >= 3)}" || {
    echo "BENCH_DURATION must be a number of seconds, at least 3 (the first 2 s are exempt)" >&2; exit 2; }

# --- the binary ---------------------------------------------------------------------------
source "$here/podcap_bin.sh"

echo "== measuring (podcap-merge: $bin)" >&2
echo "machine: $(nproc) cores, $(uname -r); $(tcpdump --version 2>&1 | head -1), $(tcpdump --version 2>&1 | sed -n 2p)"
python3 "$here/latency_measure.py" "$bin"
