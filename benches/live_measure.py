#!/usr/bin/env python3
"""Time podcap-merge's live engine against its offline merge and mergecap; print one table.

Usage: live_measure.py PODCAP_BIN THROUGHPUT_MANIFEST MEMORY_MANIFEST

Two runs, on inputs made by gen_inputs.py (the manifests it writes):
  throughput  K files (8 x 200,000 packets at full scale), three commands on the same data:
                live      podcap-merge -q --cmd s0='cat FILE0' ... --cmd sK-1='cat FILEK-1'
                offline   podcap-merge merge -q FILE0 ... FILEK-1
                mergecap  mergecap -I none -F pcapng -w - FILE0 ... FILEK-1
  memory      many small sources (32 x 25,000 packets at full scale): live and offline

Every command runs with stdout to /dev/null (`devnull`) and into a pipe read by
`cat > /dev/null` (`pipe`). The runner is measure.py's (same modes, same /usr/bin/time -f %M
for peak RSS, same CPU accounting and quiet-machine check): one untimed warm-up of every
command and mode, then BENCH_REPS timed rounds that go round-robin over runs, modes and
commands, so drift hits all alike. Wall time is the median.

Peak RSS of `live` is the largest of podcap-merge and the processes it reaps (the `sh -c` and
`cat` of each source, ~1-2 MiB each): in practice podcap-merge's own. Its CPU time includes
those `cat`s (they read the files, as tcpdump would have to).

Environment: BENCH_REPS (default 5), BENCH_STRICT=1 (exit 3 when a goal is missed),
BENCH_PIPE_SIZE (as measure.py), BENCH_LIVE_ARGS (extra arguments of the live command, split on
white space, e.g. "--source-buffer 256").
"""

import json
import os
import shlex
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import measure  # noqa: E402  (run_once, cpu_jiffies, verdict, OUR_CPU, PIPE_SIZE)

GOAL_LIVE_VS_OFFLINE = 1.5  # live/offline wall time at most this (throughput run)
GOAL_MEM_RSS_MIB = 64.0  # peak RSS of the live path with many sources below this (memory run)

MODES = ["devnull", "pipe"]


def load(manifest_path):
    with open(manifest_path) as f:
        m = json.load(f)
    d = os.path.dirname(os.path.abspath(manifest_path))
    m["files"] = [os.path.join(d, e["path"]) for e in m["inputs"]]
    m["dir"] = d
    return m


def live_cmd(podcap, files):
    cmd = [podcap, "-q"]
    for i, f in enumerate(files):
        cmd += ["--cmd", f"s{i}=cat {shlex.quote(f)}"]
    return cmd + shlex.split(os.environ.get("BENCH_LIVE_ARGS", ""))


def main():
    podcap, tp_path, mem_path = sys.argv[1], sys.argv[2], sys.argv[3]
    reps = int(os.environ.get("BENCH_REPS", "5"))
    tp, mem = load(tp_path), load(mem_path)

    def label(m):
        return f"K={len(m['files'])} x {m['params']['packets_per_file']}"

    runs = {
        "throughput": (tp, {
            "live": live_cmd(podcap, tp["files"]),
            "offline": [podcap, "merge", "-q", *tp["files"]],
            "mergecap": ["mergecap", "-I", "none", "-F", "pcapng", "-w", "-", *tp["files"]],
        }),
        "memory": (mem, {
            "live": live_cmd(podcap, mem["files"]),
            "offline": [podcap, "merge", "-q", *mem["files"]],
        }),
    }

    for name, (m, _) in runs.items():
        print(
            f"{name:<10} {label(m)}: {m['total_packets']} packets, {m['total_size']} bytes "
            f"({m['total_size'] / 1e6:.0f} MB) in {m['dir']}"
        )
    extra = os.environ.get("BENCH_LIVE_ARGS", "")
    print(f"live:      podcap-merge -q --cmd s0='cat FILE0' ...{' ' + extra if extra else ''}")
    print(f"runs:      1 warm-up + {reps} timed per command and mode, round-robin; median wall time")
    print(f"pipe mode: `CMD | cat > /dev/null`, pipe size {measure.PIPE_SIZE or 'default (64 KiB)'}\n")
    sys.stdout.flush()

    for _, (_, cmds) in runs.items():
        for mo in MODES:
            for cmd in cmds.values():
                measure.run_once(cmd, mo)

    res = {(r, n, mo): [] for r, (_, cmds) in runs.items() for n in cmds for mo in MODES}
    measure.OUR_CPU[0] = 0.0
    busy0, steal0 = measure.cpu_jiffies()
    t0 = time.perf_counter()
    for _ in range(reps):
        for r, (_, cmds) in runs.items():
            for mo in MODES:
                for n, cmd in cmds.items():
                    res[(r, n, mo)].append(measure.run_once(cmd, mo))
    elapsed = time.perf_counter() - t0
    busy1, steal1 = measure.cpu_jiffies()
    others = max(0.0, (busy1 - busy0) - measure.OUR_CPU[0]) / elapsed
    steal = (steal1 - steal0) / elapsed
    ncpu = os.cpu_count() or 1

    med = {k: statistics.median(x[0] for x in v) for k, v in res.items()}
    rss = {k: max(x[2] for x in v) / 1024 for k, v in res.items()}
    ok = True

    hdr = (
        f"{'run':<14} {'stdout':<8} {'command':<9} {'median s':>9} {'min s':>7} {'max s':>7} "
        f"{'cpu s':>6} {'Mpkt/s':>7} {'MB/s':>6} {'peak RSS':>10} {'/offline':>8} {'/mergecap':>9}  goal"
    )
    print(hdr)
    print("-" * (len(hdr) + 30))
    for r, (m, cmds) in runs.items():
        first = True
        for mo in MODES:
            for n in cmds:
                k = (r, n, mo)
                walls = [x[0] for x in res[k]]
                cpu = statistics.median(x[1] for x in res[k])
                vs_off = vs_mc = goal = ""
                if n == "live":
                    q = med[k] / med[(r, "offline", mo)]
                    vs_off = f"{q:.3f}"
                    if (r, "mergecap", mo) in med:
                        vs_mc = f"{med[k] / med[(r, 'mergecap', mo)]:.3f}"
                    if r == "throughput":
                        ok &= q <= GOAL_LIVE_VS_OFFLINE
                        goal = f"/offline <= {GOAL_LIVE_VS_OFFLINE}: {measure.verdict(q <= GOAL_LIVE_VS_OFFLINE)}"
                    else:
                        good = rss[k] < GOAL_MEM_RSS_MIB
                        ok &= good
                        goal = f"RSS < {GOAL_MEM_RSS_MIB:.0f} MiB: {measure.verdict(good)}"
                print(
                    f"{label(m) if first else '':<14} {mo:<8} {n:<9} {med[k]:>9.3f} {min(walls):>7.3f} "
                    f"{max(walls):>7.3f} {cpu:>6.2f} {m['total_packets'] / med[k] / 1e6:>7.2f} "
                    f"{m['total_size'] / 1e6 / med[k]:>6.0f} {rss[k]:>6.1f} MiB {vs_off:>8} {vs_mc:>9}  {goal}".rstrip()
                )
                first = False
        print()
    print("Mpkt/s and MB/s: packets and input bytes of all K files over the median wall time")
    print(
        f"other load while timing: {others:.2f} of {ncpu} cores busy with other processes, "
        f"steal {steal:.2f} cores"
    )
    if others > 0.15 or steal > 0.05:
        print("WARNING: the machine was not quiet while timing; the numbers are not reliable")

    print("\nsummary (live path):")
    for mo in MODES:
        k = ("throughput", "live", mo)
        q = med[k] / med[("throughput", "offline", mo)]
        qm = med[k] / med[("throughput", "mergecap", mo)]
        print(
            f"  {label(tp)} {mo:<8} {med[k]:.3f} s, {tp['total_packets'] / med[k] / 1e6:.2f} Mpkt/s, "
            f"{tp['total_size'] / 1e6 / med[k]:.0f} MB/s, peak RSS {rss[k]:.1f} MiB; "
            f"live/offline {q:.3f} (goal <= {GOAL_LIVE_VS_OFFLINE}: {measure.verdict(q <= GOAL_LIVE_VS_OFFLINE)}), "
            f"live/mergecap {qm:.3f}"
        )
    mem_rss = max(rss[("memory", "live", mo)] for mo in MODES)
    times = ", ".join(f"{mo} {med[('memory', 'live', mo)]:.3f} s" for mo in MODES)
    print(
        f"  {label(mem)} peak RSS {mem_rss:.1f} MiB over all runs (goal < {GOAL_MEM_RSS_MIB:.0f} MiB: "
        f"{measure.verdict(mem_rss < GOAL_MEM_RSS_MIB)}); median time {times}"
    )
    if os.environ.get("BENCH_STRICT") == "1" and not ok:
        return 3
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        os.unlink(measure.RSS_FILE)
