#!/usr/bin/env bash
# Usage: fuzz/run.sh TARGET SECONDS [extra libFuzzer flags...]
#   TARGET: pcap | pcapng | detect
# Seeds fuzz/corpus/TARGET from fuzz/seeds/TARGET, runs the target for SECONDS seconds
# (release build with debug assertions, overflow checks and AddressSanitizer), and prints the
# final execution count. Crash inputs land in fuzz/artifacts/TARGET/, the log in
# fuzz/logs/TARGET.log. Exits non-zero if the run found a crash, leak, timeout or
# over-limit allocation.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 TARGET SECONDS [extra libFuzzer flags...]" >&2
    exit 2
fi
target=$1
seconds=$2
shift 2

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
cd "$fuzz_dir/.."

if [ ! -d "fuzz/seeds/$target" ]; then
    echo "unknown target '$target' (no fuzz/seeds/$target)" >&2
    exit 2
fi
mkdir -p "fuzz/corpus/$target" fuzz/logs
cp -n "fuzz/seeds/$target"/* "fuzz/corpus/$target"/ 2>/dev/null || true

log="fuzz/logs/$target.log"
status=0
# -malloc_limit_mb=64: any single allocation above 64 MiB is reported as a crash, so a decoder
#   that allocates from a header's claim (capped at MAX_BLOCK_LEN = 16 MiB) cannot slip by.
# -timeout=10: one input taking over 10 s counts as a hang.
cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=512 -malloc_limit_mb=64 \
    -timeout=10 -print_final_stats=1 "$@" 2>&1 | tee "$log" || status=$?

echo "---- $target: summary ($log)"
grep -E '^#[0-9]+[[:space:]]+DONE|^Done [0-9]+ runs|stat::number_of_executed_units|^SUMMARY|^==[0-9]+== ?ERROR|Test unit written to' "$log" || true
exit "$status"
