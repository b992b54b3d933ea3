#!/usr/bin/env python3
"""Time podcap-merge against mergecap and cat on the same inputs; print a table.

Usage: measure.py PODCAP_BIN MANIFEST_JSON

Environment: BENCH_REPS (timed runs per command and mode, default 5), BENCH_STRICT=1 (exit 3
when a goal is missed), BENCH_PIPE_SIZE (bytes: the harness enlarges the pipe of the pipe mode
to this with F_SETPIPE_SZ; default: leave it as a shell would, 64 KiB).

Every command runs with its stdout sent the same way, in two modes:
  devnull  stdout is /dev/null (writing costs nothing: measures the producer alone)
  pipe     stdout is a pipe read by `cat > /dev/null` (a real consumer, as a pipe to
           Wireshark or a file would be); the time runs until the consumer has read it all
One untimed warm-up of each command and mode comes first (inputs into the page cache), then
the timed runs go round-robin over commands and modes, so drift hits all alike. Wall time is
reported as the median; CPU (user+sys) comes from wait4(2) of the producer, peak RSS from
/usr/bin/time -f %M, which wraps every command alike (wait4's own ru_maxrss would count the
forked copy of this Python process before exec). The CPU time other processes used while
timing (from /proc/stat, less what the benchmarked commands used) is printed with a warning
when the machine was not quiet: on 2 cores any other load skews the pipe numbers badly.
"""

import fcntl
import json
import os
import tempfile
import statistics
import subprocess
import sys
import time

GOAL_VS_MERGECAP = 0.5  # podcap/mergecap wall time at most this
GOAL_VS_CAT = 1.3  # podcap/cat wall time at most this
GOAL_RSS_MIB = 32.0  # peak RSS of podcap-merge below this


F_SETPIPE_SZ = 1031
PIPE_SIZE = int(os.environ.get("BENCH_PIPE_SIZE", "0"))  # 0: the system's default (64 KiB)
OUR_CPU = [0.0]  # CPU seconds used by the benchmarked commands and their consumers


def cpu_jiffies():
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
    return (user + nice + system + irq + softirq) / hz, steal / hz


RSS_FILE = tempfile.NamedTemporaryFile(prefix="podcap-bench-rss.", delete=False).name


def run_once(cmd, mode):
    """Returns (wall_s, cpu_s, maxrss_kib) of one run of `cmd` with stdout per `mode`."""
    cmd = ["/usr/bin/time", "-f", "%M", "-o", RSS_FILE, *cmd]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        if mode == "devnull":
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=devnull, stderr=subprocess.DEVNULL)
            _, status, ru = os.wait4(p.pid, 0)
            wall = time.perf_counter() - t0
        else:
            r, w = os.pipe()
            if PIPE_SIZE:
                fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_SIZE)
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=w, stderr=subprocess.DEVNULL)
            c = subprocess.Popen(["cat"], stdin=r, stdout=devnull)
            os.close(w)  # only the producer holds the write end, the consumer the read end
            os.close(r)
            _, status, ru = os.wait4(p.pid, 0)
            _, cstatus, cru = os.wait4(c.pid, 0)
            wall = time.perf_counter() - t0
            c.returncode = os.waitstatus_to_exitcode(cstatus)
            if c.returncode != 0:
                raise RuntimeError(f"consumer cat exited {c.returncode}")
            OUR_CPU[0] += cru.ru_utime + cru.ru_stime
    finally:
        os.close(devnull)
    OUR_CPU[0] += ru.ru_utime + ru.ru_stime
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[5]} exited {p.returncode}")
    with open(RSS_FILE) as f:
        maxrss = int(f.read().split()[-1])
    return wall, ru.ru_utime + ru.ru_stime, maxrss


def speed(ratio):
    return f"{1 / ratio:.1f}x faster" if ratio <= 1 else f"{ratio:.1f}x slower"


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
    print(f"runs: 1 warm-up + {reps} timed per command and mode; median wall time")
    print(f"pipe mode: `CMD | cat > /dev/null`, pipe size {PIPE_SIZE or 'default (64 KiB)'}\n")
    sys.stdout.flush()

    for mode in modes:
        for cmd in commands.values():
            run_once(cmd, mode)

    res = {(n, mo): [] for n in commands for mo in modes}
    OUR_CPU[0] = 0.0
    busy0, steal0 = cpu_jiffies()
    t0 = time.perf_counter()
    for _ in range(reps):
        for mo in modes:
            for n, cmd in commands.items():
                res[(n, mo)].append(run_once(cmd, mo))

    elapsed = time.perf_counter() - t0
    busy1, steal1 = cpu_jiffies()
    others = max(0.0, (busy1 - busy0) - OUR_CPU[0]) / elapsed
    steal = (steal1 - steal0) / elapsed
    ncpu = os.cpu_count() or 1

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

    print(
        f"other load while timing: {others:.2f} of {ncpu} cores busy with other processes, "
        f"steal {steal:.2f} cores"
    )
    if others > 0.15 or steal > 0.05:
        print("WARNING: the machine was not quiet while timing; the numbers are not reliable")
    print()
    ok = True
    print("goals (podcap-merge):")
    for mo in modes:
        r_mc = med[("podcap-merge", mo)] / med[("mergecap", mo)]
        r_cat = med[("podcap-merge", mo)] / med[("cat", mo)]
        ok &= r_mc <= GOAL_VS_MERGECAP and r_cat <= GOAL_VS_CAT
        print(
            f"  {mo:<8} podcap/mergecap = {r_mc:5.3f}  (goal <= {GOAL_VS_MERGECAP:.2f}: {verdict(r_mc <= GOAL_VS_MERGECAP)}, "
            f"{speed(r_mc)})   podcap/cat = {r_cat:5.3f}  (goal <= {GOAL_VS_CAT:.2f}: {verdict(r_cat <= GOAL_VS_CAT)})"
        )
    rss = max(r[2] for mo in modes for r in res[("podcap-merge", mo)]) / 1024
    ok &= rss < GOAL_RSS_MIB
    print(f"  peak RSS  {rss:.1f} MiB over all runs  (goal < {GOAL_RSS_MIB:.0f} MiB: {verdict(rss < GOAL_RSS_MIB)})")
    if os.environ.get("BENCH_STRICT") == "1" and not ok:
        return 3
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        os.unlink(RSS_FILE)
