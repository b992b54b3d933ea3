#!/usr/bin/env python3
"""Time what recognising copies across pods costs: the offline merge without it (--no-link),
with it (the default: packet ids, directions, latency), with --dedup, and mergecap, on two
corpora: the usual one (8 unrelated captures: every packet is matched against the window, none
is found) and one with real pairs (every packet in two files). Prints one table per corpus and
the goals.

Usage: copies_measure.py PODCAP_BIN USUAL_MANIFEST PAIRS_MANIFEST

Runs are measure.py's (`run_once`: wall time, CPU, peak RSS through /usr/bin/time -f %M; stdout
to /dev/null or into a pipe read by `cat > /dev/null`), one warm-up of each, then BENCH_REPS
(default 5) timed runs round-robin over commands and modes; the median wall time is reported.

Goal: linking and de-duplicating each cost at most 15 % of the plain merge's throughput
(wall time of --no-link / wall time of the mode <= 1/1.15 ... i.e. time ratio <= 1.15), in each
mode and on each corpus. Peak RSS of every command is printed; the matcher's own bound with the
default window is in the summary of the linked run. BENCH_STRICT=1: exit 3 when a goal is
missed.
"""

import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import measure  # noqa: E402  (run_once, cpu_jiffies, verdict, OUR_CPU)

GOAL_COST = 0.15


def corpus(path):
    with open(path) as f:
        m = json.load(f)
    d = os.path.dirname(os.path.abspath(path))
    return m, [os.path.join(d, e["path"]) for e in m["inputs"]]


def main():
    podcap, usual, pairs = sys.argv[1], sys.argv[2], sys.argv[3]
    reps = int(os.environ.get("BENCH_REPS", "5"))
    modes = ["devnull", "pipe"]
    ok = True
    print(f"runs: 1 warm-up + {reps} timed per command and mode; median wall time")
    print(f"pipe mode: `CMD | cat > /dev/null`, pipe size {measure.PIPE_SIZE or 'default (64 KiB)'}\n")
    for label, manifest in (("usual corpus (no pairs)", usual), ("corpus with real pairs", pairs)):
        m, files = corpus(manifest)
        commands = {
            "plain": [podcap, "merge", "-q", "--no-link", *files],
            "linked": [podcap, "merge", "-q", *files],
            "dedup": [podcap, "merge", "-q", "--dedup", *files],
            "mergecap": ["mergecap", "-I", "none", "-F", "pcapng", "-w", "-", *files],
        }
        total_mb = m["total_size"] / 1e6
        print(
            f"== {label}: {len(files)} x {m['params']['packets_per_file']} packets, "
            f"{m['total_packets']} packets, {total_mb:.0f} MB"
            + (f", {m['pairs']} packets in two files" if "pairs" in m else "")
        )
        sys.stdout.flush()
        for mode in modes:
            for cmd in commands.values():
                measure.run_once(cmd, mode)
        res = {(n, mo): [] for n in commands for mo in modes}
        measure.OUR_CPU[0] = 0.0
        busy0, steal0 = measure.cpu_jiffies()
        t0 = time.perf_counter()
        for _ in range(reps):
            for mo in modes:
                for n, cmd in commands.items():
                    res[(n, mo)].append(measure.run_once(cmd, mo))
        elapsed = time.perf_counter() - t0
        busy1, steal1 = measure.cpu_jiffies()
        others = max(0.0, (busy1 - busy0) - measure.OUR_CPU[0]) / elapsed
        hdr = f"{'stdout':<8} {'command':<9} {'median s':>9} {'min s':>8} {'max s':>8} {'cpu s':>7} {'MB/s':>7} {'Mpkt/s':>7} {'peak RSS':>10}"
        print(hdr)
        print("-" * len(hdr))
        med = {}
        for mo in modes:
            for n in commands:
                runs = res[(n, mo)]
                walls = [r[0] for r in runs]
                med[(n, mo)] = statistics.median(walls)
                cpu = statistics.median(r[1] for r in runs)
                rss = max(r[2] for r in runs) / 1024
                print(
                    f"{mo:<8} {n:<9} {med[(n, mo)]:>9.3f} {min(walls):>8.3f} {max(walls):>8.3f} "
                    f"{cpu:>7.2f} {total_mb / med[(n, mo)]:>7.0f} {m['total_packets'] / med[(n, mo)] / 1e6:>7.2f} {rss:>7.1f} MiB"
                )
        print(f"other load while timing: {others:.2f} of {os.cpu_count()} cores busy with other processes")
        if others > 0.15 or (steal1 - steal0) / elapsed > 0.05:
            print("WARNING: the machine was not quiet while timing; the numbers are not reliable")
        print("goals (cost = wall time / plain merge's - 1):")
        for mo in modes:
            for n in ("linked", "dedup"):
                cost = med[(n, mo)] / med[("plain", mo)] - 1
                ok &= cost <= GOAL_COST
                vs_mc = med[(n, mo)] / med[("mergecap", mo)]
                print(
                    f"  {mo:<8} {n:<7} cost {cost * 100:+6.1f} %  (goal <= {GOAL_COST * 100:.0f} %: "
                    f"{measure.verdict(cost <= GOAL_COST)})   vs mergecap: {measure.speed(vs_mc)}"
                )
        print()
    if os.environ.get("BENCH_STRICT") == "1" and not ok:
        return 3
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        os.unlink(measure.RSS_FILE)
