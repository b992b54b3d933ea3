#!/usr/bin/env bash
# Benchmark of the live engine: K local command sources stream capture files as fast as they
# can, merged live to stdout,
#     podcap-merge -q --cmd s0='cat FILE0' ... --cmd s7='cat FILE7' > SINK
# against the offline merge of the same files (`podcap-merge merge -q FILE0 ...`) and
# `mergecap -I none -F pcapng -w - FILE0 ...`, with SINK = /dev/null and SINK = a pipe into
# `cat > /dev/null`. Then a memory run with many sources (32 x 25,000 packets): peak RSS and time.
# Builds the release binary, generates the inputs (once, kept), checks once (untimed) that the
# live path delivers every packet, then times everything in one round-robin session
# (benches/live_measure.py) and prints one table with the goals:
#     throughput run: live/offline wall time <= 1.5 (live/mergecap is shown too)
#     memory run:     peak RSS of the live path < 64 MiB
# Note: the files' timestamps are from 2023, so by the local clock every packet is older than
# --reorder-window and the live engine writes without waiting for every source: its output is
# complete (checked) but not in strict time order; the check prints how many packets were late.
#
#   bash benches/live_vs_offline.sh            # full: 8 x 200,000 and 32 x 25,000 packets
#   BENCH_SCALE=small bash benches/...         # smoke (< 1 min): 8 x 20,000 and 32 x 2,500
#   BENCH_SCALE=50000 bash benches/...         # 8 x 50,000 (memory run at full scale)
#
# Environment:
#   BENCH_SCALE        full (default) | small | packets per file of the throughput run
#   BENCH_FILES        K, sources of the throughput run (default 8)
#   BENCH_MEM_FILES    sources of the memory run (default 32)
#   BENCH_MEM_PACKETS  packets per file of the memory run (default 25000; small: 2500)
#   BENCH_DIR          where inputs are kept (default target/bench-data, shared with
#                      vs_mergecap.sh: DIR/8x200000, DIR/32x25000, ...); reused when present
#   BENCH_REPS         timed runs per command and mode (default 5), after one warm-up
#   BENCH_STRICT       1: exit 3 when a goal is missed
#   BENCH_PIPE_SIZE    enlarge the pipe of the pipe mode to this many bytes (default 64 KiB)
#   BENCH_LIVE_ARGS    extra arguments of the live command (e.g. "--source-buffer 256")
#   PODCAP_BIN         use this binary and skip `cargo build --release`
#
# Needs python3, mergecap, capinfos.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

case "${BENCH_SCALE:-full}" in
    full) per_file=200000 mem_default=25000 ;;
    small) per_file=20000 mem_default=2500 ;;
    *[!0-9]* | "") echo "BENCH_SCALE must be full, small or a number" >&2; exit 2 ;;
    *) per_file="$BENCH_SCALE" mem_default=25000 ;;
esac
nfiles="${BENCH_FILES:-8}"
mem_files="${BENCH_MEM_FILES:-32}"
mem_per_file="${BENCH_MEM_PACKETS:-$mem_default}"
for v in "$nfiles" "$mem_files" "$mem_per_file"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "not a positive number: $v" >&2; exit 2; }
done
base="${BENCH_DIR:-$root/target/bench-data}"

for tool in python3 mergecap capinfos; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done

# --- the binary ---------------------------------------------------------------------------
source "$here/podcap_bin.sh"

# --- inputs (as vs_mergecap.sh: ~724 B/packet; plus one live output for the check) ----------
# Sets `manifest` to DIR/FILESxPACKETS/manifest.json, generating the inputs when absent.
make_inputs() {
    local n=$1 per=$2 dir="$base/$1x$2" total need avail
    total=$((n * per))
    mkdir -p "$dir"
    need=$((total * 724 * 22 / 10 + 100 * 1024 * 1024))
    [[ -f "$dir/manifest.json" ]] && need=$((total * 724 * 12 / 10))
    avail=$(df --output=avail -B1 "$dir" | tail -1 | tr -d ' ')
    if ((avail < need)); then
        echo "not enough disk space in $dir: $((avail >> 20)) MiB free, need ~$((need >> 20)) MiB" >&2
        exit 2
    fi
    echo "== inputs: $n x $per packets in $dir" >&2
    manifest="$(python3 "$here/gen_inputs.py" "$dir" "$n" "$per")"
}
make_inputs "$nfiles" "$per_file"
tp_manifest="$manifest"
make_inputs "$mem_files" "$mem_per_file"
mem_manifest="$manifest"

# --- check the live path once (untimed): every packet delivered ----------------------------
check_dir="$(mktemp -d "$base/live-check.XXXXXX")"
trap 'rm -rf "$check_dir"' EXIT
check_live() {
    local manifest=$1 dir total data_bytes files args=() i rc=0 info count bytes order
    dir="$(dirname "$manifest")"
    mapfile -t files < <(python3 -c '
import json, os, sys
m = json.load(open(sys.argv[1]))
for e in m["inputs"]: print(os.path.join(os.path.dirname(sys.argv[1]), e["path"]))' "$manifest")
    read -r total data_bytes < <(python3 -c '
import json, sys; m = json.load(open(sys.argv[1])); print(m["total_packets"], m["total_data_bytes"])' "$manifest")
    for i in "${!files[@]}"; do
        args+=(--cmd "$(printf 's%d=cat %q' "$i" "${files[$i]}")")
    done
    # Without -q: the summary (late packets and the rest) goes to stderr, kept for the report.
    # shellcheck disable=SC2086  # BENCH_LIVE_ARGS is split on white space on purpose
    "$bin" "${args[@]}" ${BENCH_LIVE_ARGS:-} >"$check_dir/out.pcapng" 2>"$check_dir/stderr" || rc=$?
    if ((rc != 0)); then
        echo "FAIL: live podcap-merge on $dir exited $rc:" >&2; cat "$check_dir/stderr" >&2; exit 1
    fi
    info="$(capinfos -c -d -o -M "$check_dir/out.pcapng")"
    count=$(awk -F': *' '/^Number of packets/ {print $2}' <<<"$info")
    bytes=$(awk -F': *' '/^Data size/ {print $2+0}' <<<"$info")
    order=$(awk -F': *' '/^Strict time order/ {print $2}' <<<"$info")
    echo "   live, ${#files[@]} sources: capinfos: $count packets (expected $total), $bytes data bytes (expected $data_bytes), strict time order: $order" >&2
    grep -m1 '^podcap-merge:' "$check_dir/stderr" | sed 's/^/   /' >&2 || true
    if [[ "$count" != "$total" || "$bytes" != "$data_bytes" ]]; then
        echo "FAIL: the live path lost or changed packets:" >&2; echo "$info" >&2
        cat "$check_dir/stderr" >&2; exit 1
    fi
    rm -f "$check_dir/out.pcapng" "$check_dir/stderr"
}
echo "== checking the live path's output" >&2
check_live "$tp_manifest"
check_live "$mem_manifest"

# --- timing ---------------------------------------------------------------------------------
echo "== timing (podcap-merge: $bin)" >&2
echo "machine: $(nproc) cores, $(uname -r); $(mergecap --version | head -1)"
python3 "$here/live_measure.py" "$bin" "$tp_manifest" "$mem_manifest"
