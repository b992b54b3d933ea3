#!/usr/bin/env bash
# Benchmark of packet identity (copies across pods): the offline merge without it (--no-link),
# with it (the default), with --dedup, and `mergecap -I none -F pcapng -w -`, on
#   - the usual corpus (benches/gen_inputs.py: 8 x 200,000 unrelated packets, reused with
#     vs_mergecap.sh): every packet is identified and matched, none has a copy;
#   - a corpus with real pairs (benches/gen_pairs.py: 4 pairs of SLL2 captures, 8 x 200,000
#     packets, every packet in two files 20-80 us apart).
# Checks once (untimed) that the pairs are found: the linked run reports every packet of the
# pairs corpus as a copy, the de-duplicated output holds each packet once (capinfos) and
# tshark flags no retransmission in it. Then times everything (benches/copies_measure.py).
# Goal: linking and --dedup each cost at most 15 % of the plain merge's throughput.
#
#   bash benches/copies_vs_mergecap.sh            # full: 8 x 200,000 per corpus
#   BENCH_SCALE=small bash benches/...            # smoke: 8 x 20,000
#
# Environment: BENCH_SCALE, BENCH_DIR (default target/bench-data), BENCH_REPS (default 5),
# BENCH_STRICT (1: exit 3 when a goal is missed), BENCH_PIPE_SIZE, PODCAP_BIN (skip the build).
# Needs python3, mergecap, capinfos, tshark.
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
base="${BENCH_DIR:-$root/target/bench-data}"
for tool in python3 mergecap capinfos tshark; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done

source "$here/podcap_bin.sh"

total=$((8 * per_file))
need=$((total * 1100 * 2 + 100 * 1024 * 1024))
mkdir -p "$base"
avail=$(df --output=avail -B1 "$base" | tail -1 | tr -d ' ')
if ((avail < need)) && [[ ! -f "$base/pairs-8x$per_file/manifest.json" ]]; then
    echo "not enough disk space in $base: $((avail >> 20)) MiB free, need ~$((need >> 20)) MiB" >&2
    exit 2
fi
echo "== inputs: 8 x $per_file packets, unrelated and in pairs, in $base" >&2
usual="$(python3 "$here/gen_inputs.py" "$base/8x$per_file" 8 "$per_file")"
pairs="$(python3 "$here/gen_pairs.py" "$base/pairs-8x$per_file" 8 "$per_file")"

echo "== checking that the pairs are found" >&2
mapfile -t files < <(python3 -c '
import json, os, sys
m = json.load(open(sys.argv[1]))
for e in m["inputs"]: print(os.path.join(os.path.dirname(sys.argv[1]), e["path"]))' "$pairs")
npairs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pairs"])' "$pairs")
dir="$(dirname "$pairs")"
trap 'rm -f "$dir"/check.*' EXIT
"$bin" merge "${files[@]}" -w /dev/null 2>"$dir/check.linked.txt"
if ! grep -q "copies across sources: $npairs packet" "$dir/check.linked.txt"; then
    echo "FAIL: not every pair was linked ($npairs expected):" >&2; cat "$dir/check.linked.txt" >&2; exit 1
fi
"$bin" merge "${files[@]}" --dedup -w "$dir/check.dedup.pcapng" 2>"$dir/check.dedup.txt"
count=$(capinfos -c -M "$dir/check.dedup.pcapng" | awk -F': *' '/^Number of packets/ {print $2}')
flagged=$(tshark -r "$dir/check.dedup.pcapng" -Y 'tcp.analysis.retransmission || tcp.analysis.duplicate_ack || tcp.analysis.out_of_order' 2>/dev/null | wc -l)
echo "   linked: $npairs of $npairs packets found in two files; --dedup: $count packets written (expected $npairs), tshark flags $flagged" >&2
grep -E 'latency|->' "$dir/check.linked.txt" | sed 's/^/   /' >&2
if [[ "$count" != "$npairs" || "$flagged" != 0 ]]; then
    echo "FAIL: the de-duplicated output is wrong" >&2; cat "$dir/check.dedup.txt" >&2; exit 1
fi
rm -f "$dir"/check.*

echo "== timing (podcap-merge: $bin)" >&2
echo "machine: $(nproc) cores, $(uname -r); $(mergecap --version | head -1)"
python3 "$here/copies_measure.py" "$bin" "$usual" "$pairs"
