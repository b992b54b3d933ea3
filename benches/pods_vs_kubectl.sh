#!/usr/bin/env bash
# Benchmark of pod capture on the local test cluster: 8 pods streaming as fast as the test
# cluster lets them, podcap-merge's aggregate throughput and peak RSS, against `kubectl attach`
# (and `kubectl exec`) of one pod on the same cluster in the same run; then 32 pods for peak RSS.
#
#     podcap-merge --kubeconfig KC -n shop -l app=mando -q -w - -c N   (8 pods at once)
#     kubectl attach -i POD -c NAME                                     (one pod)
#
# Every pod's tcpdump is a fake one (`exec cat FILE`, first in the test cluster's PATH) that
# streams one generated classic pcap file (benches/gen_inputs.py; in0.pcap of an existing
# DIR/8xP set is reused, else DIR/1xP is generated once) as fast as it can, then exits.
# benches/pods_measure.py runs everything and prints one table with the goals:
#     throughput: podcap-merge's per-pod stream rate at 8 pods >= kubectl attach's at 1 pod
#     memory:     peak RSS of podcap-merge with 32 pods streaming < 100 MiB
#
# NEEDS ROOT: as root the test cluster gives every pod a network namespace and runs the
# containers' and exec's commands as real host processes (the fake tcpdump). Not root: fails.
#
#   sudo bash benches/pods_vs_kubectl.sh        # full: 200,000 packets (~144 MB) per pod (8
#                                               # pods), 25,000 (~18 MB) per pod (32 pods)
#   BENCH_SCALE=small sudo bash benches/...     # smoke: 20,000 and 2,500 packets per pod
#
# Environment:
#   BENCH_SCALE        full (default) | small | packets per pod of the throughput run
#   BENCH_PODS         pods of the throughput run (default 8)
#   BENCH_MEM_PODS     pods of the memory run (default 32)
#   BENCH_MEM_PACKETS  packets per pod of the memory run (default 25000; small: 2500)
#   BENCH_DIR          where inputs are kept (default target/bench-data, shared with the others)
#   BENCH_REPS         timed rounds (default 5) after one warm-up; BENCH_MEM_REPS (default 2)
#   BENCH_STRICT       1: exit 3 when a goal is missed
#   BENCH_POD_ARGS     extra podcap-merge arguments (e.g. "--source-buffer 256")
#   PODCAP_BIN         use this podcap-merge, PODCAP_TESTCLUSTER_BIN this podcap-testcluster,
#                      and skip `cargo build --release` (cargo bench sets both)
#
# Needs root, python3, kubectl (1.30+: the test cluster speaks WebSocket only), /usr/bin/time.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

if [[ "$(id -u)" != 0 ]]; then
    {
        echo "######################################################################"
        echo "## pods_vs_kubectl.sh NEEDS ROOT (pods are network namespaces and   ##"
        echo "## their commands host processes only as root): not run, FAILED.    ##"
        echo "## Run: sudo -E cargo bench --bench merge -- pods                   ##"
        echo "######################################################################"
    } >&2
    exit 2
fi

case "${BENCH_SCALE:-full}" in
    full) per_pod=200000 mem_default=25000 ;;
    small) per_pod=20000 mem_default=2500 ;;
    *[!0-9]* | "") echo "BENCH_SCALE must be full, small or a number" >&2; exit 2 ;;
    *) per_pod="$BENCH_SCALE" mem_default=25000 ;;
esac
mem_per_pod="${BENCH_MEM_PACKETS:-$mem_default}"
for v in "$per_pod" "$mem_per_pod" "${BENCH_PODS:-8}" "${BENCH_MEM_PODS:-32}"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "not a positive number: $v" >&2; exit 2; }
done
base="${BENCH_DIR:-$root/target/bench-data}"

for tool in python3 kubectl /usr/bin/time ip; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done

# --- the binaries ---------------------------------------------------------------------------
if [[ -n "${PODCAP_BIN:-}" && -n "${PODCAP_TESTCLUSTER_BIN:-}" ]]; then
    bin="$PODCAP_BIN"
    tc_bin="$PODCAP_TESTCLUSTER_BIN"
else
    echo "== cargo build --release" >&2
    cargo build --release --quiet --workspace --bins
    bin="${PODCAP_BIN:-$root/target/release/podcap-merge}"
    tc_bin="${PODCAP_TESTCLUSTER_BIN:-$root/target/release/podcap-testcluster}"
fi
for b in "$bin" "$tc_bin"; do
    [[ -x "$b" ]] || { echo "not executable: $b" >&2; exit 2; }
done

# --- inputs: one file per run, streamed by every pod ------------------------------------------
# Prints the path of a classic pcap of $1 packets: in0.pcap of an existing DIR/NxP set (same
# generator, same content), else DIR/1xP/in0.pcap, generated once.
input_of() {
    local per=$1 m dir need avail
    for m in "$base"/*x"$per"/manifest.json; do
        [[ -f "$m" ]] || continue
        m="$(python3 "$here/gen_inputs.py" "$(dirname "$m")" "$(basename "$(dirname "$m")" | cut -dx -f1)" "$per")"
        echo "$(dirname "$m")/in0.pcap"
        return
    done
    dir="$base/1x$per"
    mkdir -p "$dir"
    need=$((per * 724 + 100 * 1024 * 1024))
    avail=$(df --output=avail -B1 "$dir" | tail -1 | tr -d ' ')
    if ((avail < need)); then
        echo "not enough disk space in $dir: $((avail >> 20)) MiB free, need ~$((need >> 20)) MiB" >&2
        exit 2
    fi
    echo "== input: 1 x $per packets in $dir" >&2
    m="$(python3 "$here/gen_inputs.py" "$dir" 1 "$per")"
    echo "$(dirname "$m")/in0.pcap"
}
tp_pcap="$(input_of "$per_pod")"
mem_pcap="$(input_of "$mem_per_pod")"

# --- timing ---------------------------------------------------------------------------------
echo "== timing (podcap-merge: $bin; test cluster: $tc_bin)" >&2
echo "machine: $(nproc) cores, $(uname -r); $(kubectl version --client 2>/dev/null | head -1)"
python3 "$here/pods_measure.py" "$bin" "$tc_bin" "$tp_pcap" "$mem_pcap"
