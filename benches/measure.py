#!/usr/bin/env python3
"""Time podcap-merge against mergecap and cat on the same inputs; print a table.

Usage: measure.py PODCAP_BIN MANIFEST_JSON

Environment: BENCH_REPS (timed runs per command and mode, default 5), BENCH_STRICT=1 (exit 3
when a goal is missed).

Every command runs with its stdout sent the same way, in two modes:
  devnull  stdout is /dev/null (writing costs nothing: measures the producer alone)
  pipe     stdout is a pipe read by `cat > /dev/null` (a real consumer, as a pipe to
           Wireshark or a file would be); the time runs until the consumer has read it all
One untimed warm-up of each command and mode comes first (inputs into the page cache), then
the timed runs go round-robin over commands and modes, so drift hits all alike. Wall time is
reported as the median; CPU (user+sys) and peak RSS come from wait4(2) of the producer.
"""

import json
import os
import statistics
import subprocess
import sys
import time

GOAL_VS_MERGECAP = 0.5  # podcap/mergecap wall time at most this
GOAL_VS_CAT = 1.3  # podcap/cat wall time at most this
GOAL_RSS_MIB = 32.0  # peak RSS of podcap-merge below this


def run_once(cmd, mode):
    """Returns (wall_s, cpu_s, maxrss_kib) of one run of `cmd` with stdout per `mode`."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        if mode == "devnull":
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=devnull, stderr=subprocess.DEVNULL)
            _, status, ru = os.wait4(p.pid, 0)
            wall = time.perf_counter() - t0
        else:
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            c = subprocess.Popen(["cat"], stdin=p.stdout, stdout=devnull)
            p.stdout.close()  # only the consumer holds the read end now
            _, status, ru = os.wait4(p.pid, 0)
            c.wait()
            wall = time.perf_counter() - t0
            if c.returncode != 0:
                raise RuntimeError(f"consumer cat exited {c.returncode}")
    finally:
        os.close(devnull)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {p.returncode}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss


def verdict(ok):
    return "PASS" if ok else "MISS"


def main():
    podcap, manifest_path = sys.argv[1], sys.argv[2]
    reps = int(os.environ.get("BENCH_REPS", "5"))
    with open(manifest_path) as f:
        m = json.load(f)
    d = os.path.dirname(os.path.abspath(manifest_path))
    files = [os.path.join(d, e["path"]) for e in m["inputs"]]
    commands = {
        "podcap-merge": [podcap, "merge", *files],
        "mergecap": ["mergecap", "-I", "none", "-F", "pcapng", "-w", "-", *files],
        "cat": ["cat", *files],
    }
    modes = ["devnull", "pipe"]
    total_mb = m["total_size"] / 1e6

    print(
        f"inputs: {len(files)} x {m['params']['packets_per_file']} packets, "
        f"{m['total_packets']} packets, {m['total_size']} bytes ({total_mb:.0f} MB) in {d}"
    )
    print(f"runs: 1 warm-up + {reps} timed per command and mode; median wall time\n")
    sys.stdout.flush()

    for mode in modes:
        for cmd in commands.values():
            run_once(cmd, mode)

    res = {(n, mo): [] for n in commands for mo in modes}
    for _ in range(reps):
        for mo in modes:
            for n, cmd in commands.items():
                res[(n, mo)].append(run_once(cmd, mo))

    hdr = f"{'stdout':<8} {'command':<13} {'median s':>9} {'min s':>8} {'max s':>8} {'cpu s':>7} {'MB/s':>7} {'peak RSS':>10}"
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
                f"{mo:<8} {n:<13} {med[(n, mo)]:>9.3f} {min(walls):>8.3f} {max(walls):>8.3f} "
                f"{cpu:>7.2f} {total_mb / med[(n, mo)]:>7.0f} {rss:>7.1f} MiB"
            )
        print()

    ok = True
    print("goals (podcap-merge):")
    for mo in modes:
        r_mc = med[("podcap-merge", mo)] / med[("mergecap", mo)]
        r_cat = med[("podcap-merge", mo)] / med[("cat", mo)]
        ok &= r_mc <= GOAL_VS_MERGECAP and r_cat <= GOAL_VS_CAT
        print(
            f"  {mo:<8} podcap/mergecap = {r_mc:5.2f}  (goal <= {GOAL_VS_MERGECAP:.2f}: {verdict(r_mc <= GOAL_VS_MERGECAP)}, "
            f"{1 / r_mc:.1f}x faster)   podcap/cat = {r_cat:5.2f}  (goal <= {GOAL_VS_CAT:.2f}: {verdict(r_cat <= GOAL_VS_CAT)})"
        )
    rss = max(r[2] for mo in modes for r in res[("podcap-merge", mo)]) / 1024
    ok &= rss < GOAL_RSS_MIB
    print(f"  peak RSS  {rss:.1f} MiB over all runs  (goal < {GOAL_RSS_MIB:.0f} MiB: {verdict(rss < GOAL_RSS_MIB)})")
    if os.environ.get("BENCH_STRICT") == "1" and not ok:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
