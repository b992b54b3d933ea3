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
#   BENCH_DEEP_CHECK  0: skip comparing every packet's time, length and source with
#                 mergecap's output through tshark (~1 min at full scale)
#   BENCH_PIPE_SIZE  enlarge the pipe of the pipe mode to this many bytes (default: 64 KiB,
#                 as a shell leaves it)
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
source "$here/podcap_bin.sh"

# --- disk space: inputs (~724 B/packet) plus two merged outputs for the check (~1.05x each) -
need=$((total * 724 * 32 / 10 + 100 * 1024 * 1024))
mkdir -p "$dir"
avail=$(df --output=avail -B1 "$dir" | tail -1 | tr -d ' ')
have_inputs=0
[[ -f "$dir/manifest.json" ]] && have_inputs=1
if ((have_inputs)); then need=$((total * 724 * 22 / 10)); fi
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
trap 'rm -f "$out" "$dir"/check.mergecap.pcapng "$dir"/check.*.txt' EXIT
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
if [[ "${BENCH_DEEP_CHECK:-1}" == 1 ]]; then
    command -v tshark >/dev/null || { echo "missing tool: tshark" >&2; exit 2; }
    mergecap -I none -F pcapng -w "$dir/check.mergecap.pcapng" "${files[@]}" 2>/dev/null
    # The same packets (time to the µs of the inputs, length, source address = input index):
    # compared as sorted lists, since mergecap 4.0 orders packets of equal time differently
    # (last input first). podcap-merge's order of equal times should be input order: every file
    # has strictly increasing times, so within one timestamp the input index must increase.
    fields() {
        tshark -n --disable-protocol tcp -r "$1" -T fields -e frame.time_epoch -e frame.len -e ip.src 2>/dev/null |
            awk '{ print substr($1, 1, 17), $2, $3 }'
    }
    fields "$out" >"$dir/check.podcap.txt"
    fields "$dir/check.mergecap.pcapng" >"$dir/check.mergecap.txt"
    a=$(sort "$dir/check.podcap.txt" | md5sum); b=$(sort "$dir/check.mergecap.txt" | md5sum)
    n=$(wc -l <"$dir/check.podcap.txt")
    if [[ "$a" != "$b" || "$n" != "$total" ]]; then
        echo "FAIL: podcap-merge's packets differ from mergecap's" >&2; exit 1
    fi
    ties=$(awk '{ split($3, ip, "."); idx = ip[3] + 0 }
        $1 == t { n++; if (idx <= last) bad++ } { t = $1; last = idx } END { print n + 0, bad + 0 }' \
        "$dir/check.podcap.txt")
    diff_mc=$(cmp -s "$dir/check.podcap.txt" "$dir/check.mergecap.txt" && echo same || echo different)
    echo "   tshark: same $n packets as mergecap; packets sharing a timestamp with the one before: ${ties% *}, out of input order: ${ties#* }; order vs mergecap: $diff_mc" >&2
    if [[ "${ties#* }" != 0 ]]; then
        echo "   WARNING: podcap-merge does not keep input order for equal timestamps" >&2
    fi
fi
rm -f "$out" "$dir"/check.mergecap.pcapng "$dir"/check.*.txt "$dir/check.stderr"

# --- timing ---------------------------------------------------------------------------------
echo "== timing (podcap-merge: $bin)" >&2
echo "machine: $(nproc) cores, $(uname -r); $(mergecap --version | head -1)"
python3 "$here/measure.py" "$bin" "$manifest"
