#!/usr/bin/env bash
# Benchmark: podcap-merge vs `mergecap -I none -F pcapng -w -` vs `cat`, merging 8 classic-pcap
# inputs to pcapng on stdout. Builds the release binary, generates the inputs (once), checks the
# merged output, then times every command with stdout to /dev/null and into a pipe.
#
#   bash benches/vs_mergecap.sh            # full: 8 x 200,000 packets (~1.15 GB of input)
#   BENCH_SCALE=small bash benches/...     # smoke: 8 x 20,000 packets (~115 MB)
#   BENCH_SCALE=50000 bash benches/...     # 8 x 50,000
#
# Environment:
#   BENCH_SCALE   full (default) | small | packets per file
#   BENCH_FILES   number of inputs (default 8)
#   BENCH_DIR     where inputs are kept (default target/bench-data); reused when present
#   BENCH_REPS    timed runs per command and mode (default 5), after one warm-up
#   BENCH_STRICT  1: exit 3 when a goal is missed
#   BENCH_DEEP_CHECK  1: also compare every packet's time and length with mergecap's output
#                 (default: only when there are at most 200,000 packets)
#   PODCAP_BIN    use this binary and skip `cargo build --release`
#
# Needs python3, mergecap, capinfos (and tshark for the deep check).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

case "${BENCH_SCALE:-full}" in
    full) per_file=200000 ;;
    small) per_file=20000 ;;
    *[!0-9]* | "") echo "BENCH_SCALE must be full, small or a number" >&2; exit 2 ;;
    *) per_file="$BENCH_SCALE" ;;
esac
nfiles="${BENCH_FILES:-8}"
base="${BENCH_DIR:-$root/target/bench-data}"
dir="$base/${nfiles}x${per_file}"
total=$((nfiles * per_file))

for tool in python3 mergecap capinfos; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done

# --- the binary ---------------------------------------------------------------------------
if [[ -n "${PODCAP_BIN:-}" ]]; then
    bin="$PODCAP_BIN"
else
    echo "== cargo build --release" >&2
    cargo build --release --quiet --bin podcap-merge
    bin="$root/target/release/podcap-merge"
fi
[[ -x "$bin" ]] || { echo "not executable: $bin" >&2; exit 2; }

# --- disk space: inputs (~724 B/packet) plus one merged output for the check (~1.05x) ------
need=$((total * 724 * 22 / 10 + 100 * 1024 * 1024))
mkdir -p "$dir"
avail=$(df --output=avail -B1 "$dir" | tail -1 | tr -d ' ')
have_inputs=0
[[ -f "$dir/manifest.json" ]] && have_inputs=1
if ((have_inputs)); then need=$((total * 724 * 12 / 10)); fi
if ((avail < need)); then
    echo "not enough disk space in $dir: $((avail >> 20)) MiB free, need ~$((need >> 20)) MiB" >&2
    exit 2
fi

# --- inputs ---------------------------------------------------------------------------------
echo "== inputs: $nfiles x $per_file packets in $dir" >&2
manifest="$(python3 "$here/gen_inputs.py" "$dir" "$nfiles" "$per_file")"
mapfile -t files < <(python3 -c '
import json, os, sys
m = json.load(open(sys.argv[1]))
for e in m["inputs"]: print(os.path.join(os.path.dirname(sys.argv[1]), e["path"]))' "$manifest")
data_bytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total_data_bytes"])' "$manifest")

# --- correctness check (once, untimed) ------------------------------------------------------
echo "== checking podcap-merge's output" >&2
out="$dir/check.pcapng"
trap 'rm -f "$out" "$dir/check.mergecap.pcapng"' EXIT
rc=0
"$bin" merge "${files[@]}" >"$out" 2>"$dir/check.stderr" || rc=$?
if ((rc != 0)); then
    echo "FAIL: podcap-merge exited $rc:" >&2; cat "$dir/check.stderr" >&2; exit 1
fi
info="$(capinfos -c -d -o -M "$out")"
count=$(awk -F': *' '/^Number of packets/ {print $2}' <<<"$info")
bytes=$(awk -F': *' '/^Data size/ {print $2+0}' <<<"$info")
order=$(awk -F': *' '/^Strict time order/ {print $2}' <<<"$info")
echo "   capinfos: $count packets (expected $total), $bytes data bytes (expected $data_bytes), strict time order: $order" >&2
if [[ "$count" != "$total" || "$bytes" != "$data_bytes" || "$order" != "True" ]]; then
    echo "FAIL: podcap-merge's output is wrong:" >&2; echo "$info" >&2; exit 1
fi
if [[ "${BENCH_DEEP_CHECK:-}" == 1 || ( -z "${BENCH_DEEP_CHECK:-}" && $total -le 200000 ) ]]; then
    command -v tshark >/dev/null || { echo "missing tool: tshark" >&2; exit 2; }
    mergecap -I none -F pcapng -w "$dir/check.mergecap.pcapng" "${files[@]}"
    # Same packets in the same order: time (to the µs of the inputs), length, and bytes 30..33.
    fields() {
        tshark -r "$1" -T fields -e frame.time_epoch -e frame.len -e ip.src |
            awk '{ print substr($1, 1, 17), $2, $3 }' | md5sum
    }
    a=$(fields "$out"); b=$(fields "$dir/check.mergecap.pcapng")
    if [[ "$a" != "$b" ]]; then
        echo "FAIL: podcap-merge and mergecap put the packets in a different order" >&2; exit 1
    fi
    echo "   tshark: every packet's time, length and source match mergecap's output, in order" >&2
fi
rm -f "$out" "$dir/check.mergecap.pcapng" "$dir/check.stderr"

# --- timing ---------------------------------------------------------------------------------
echo "== timing (podcap-merge: $bin)" >&2
echo "machine: $(nproc) cores, $(uname -r); $(mergecap --version | head -1)"
python3 "$here/measure.py" "$bin" "$manifest"
