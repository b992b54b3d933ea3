#!/usr/bin/env python3
"""Measure the live merge's latency: capture of a packet to podcap-merge writing it.

Usage: latency_measure.py PODCAP_BIN

Builds BENCH_SOURCES (default 3) pairs of network namespaces joined by a veth pair, with
steady traffic in each (ping -i BENCH_PING_INTERVAL, default 0.01 s: an echo request and its
reply every 10 ms, ~200 packets/s per capture), and runs, for each scenario and window,
    podcap-merge --duration BENCH_DURATION -w - [--reorder-window W] \
        --cmd s0='ip netns exec NS0 tcpdump -U --immediate-mode -n -i IF0 -w -' ...
with its stdout a pipe read here. Each packet's latency is the time this reader received it
(time.time_ns() when read() returned the bytes of its block) less its timestamp (the kernel's
capture time; same host, same clock). podcap-merge flushes its output every 25 ms, so that
much is part of every figure.

Scenarios:
  immediate   every source is `tcpdump -U --immediate-mode` (packets handed over at once)
  one-bursty  the last source is `tcpdump -U` without --immediate-mode: libpcap hands its
              packets over in blocks, up to ~1 s after capture (TPACKET_V3 block timeout)
Windows: the default (no --reorder-window: the adaptive watermark, capped at 2 s) and
`--reorder-window 300ms` for comparison (BENCH_WINDOWS, comma-separated, "default" for none).

Reported per run, over the packets captured after the first 2 s of capture time (a source's
delivery lag is learned from what it has delivered; the first 2 s are exempt from the goals):
latency p50/p90/p99/max; late packets as the summary counts them (whole run) and as seen in
the output after 2 s (older than a packet written before them); backward steps in the output
(adjacent packets going back in time), whole run and after 2 s.

The issue's targets (issue 13), judged on the default window only (the 300ms rows are a
comparison): with immediate-mode sources p50 <= 50 ms and p99 <= 100 ms; in every scenario no
late packet and no backward step after the first 2 s. There is no peer to measure live merge
latency against, so the table shows raw figures.

Environment: BENCH_DURATION (s, default 15), BENCH_SOURCES (default 3), BENCH_PING_INTERVAL
(default 0.01), BENCH_WINDOWS (default "default,300ms"), BENCH_SCENARIOS (default
"immediate,one-bursty"), BENCH_STRICT=1 (exit 3 when a target is missed). Needs root.
"""

import math
import os
import re
import shlex
import signal
import struct
import subprocess
import sys
import threading
import time

LEARN_NS = 2_000_000_000  # first 2 s of capture time: exempt from the targets
GOAL_P50_MS = 50.0
GOAL_P99_MS = 100.0


def sh(cmd):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"`{cmd}` failed (needs root and iproute2): {r.stderr.strip()}")


class Namespaces:
    """`n` pairs of namespaces (pcmlat<pid>_<k>a / ...b) joined by veth, removed on close."""

    def __init__(self, n):
        tag = os.getpid() % 100000
        self.pairs = []
        try:
            for k in range(n):
                a, b = f"pcml{tag}_{k}a", f"pcml{tag}_{k}b"
                ip_a, ip_b = f"10.214.{k}.1", f"10.214.{k}.2"
                for ns in (a, b):
                    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
                sh(f"ip netns add {a} && ip netns add {b}")
                self.pairs.append((a, b, ip_a, ip_b))
                sh(
                    f"ip link add {a}-v netns {a} type veth peer name {b}-v netns {b} && "
                    f"ip -n {a} addr add {ip_a}/24 dev {a}-v && ip -n {b} addr add {ip_b}/24 dev {b}-v && "
                    f"ip -n {a} link set {a}-v up && ip -n {b} link set {b}-v up && "
                    f"ip -n {a} link set lo up && ip -n {b} link set lo up"
                )
        except Exception:
            self.close()
            raise

    def close(self):
        for a, b, _, _ in self.pairs:
            for ns in (a, b):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.pairs = []


class Traffic:
    """ping from a to b in every pair, each in its own process group (killed on close)."""

    def __init__(self, pairs, interval):
        self.procs = [
            subprocess.Popen(
                ["ip", "netns", "exec", a, "ping", "-q", "-i", interval, ip_b],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            for a, _, _, ip_b in pairs
        ]

    def close(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


class NgStream:
    """Incremental pcapng reader: (iface name, ts ns) of each EPB, interfaces per section."""

    def __init__(self):
        self.buf = bytearray()
        self.e = "<"
        self.ifaces = []  # (name, units per second, offset s)

    def feed(self, data, out, recv):
        self.buf += data
        at = 0
        buf = self.buf
        while len(buf) - at >= 12:
            kind = struct.unpack_from("<I", buf, at)[0]
            if kind == 0x0A0D0D0A:
                self.e = ">" if buf[at + 8 : at + 12] == b"\x1a\x2b\x3c\x4d" else "<"
                self.ifaces = []
            e = self.e
            length = struct.unpack_from(e + "I", buf, at + 4)[0]
            if length < 12 or length % 4:
                raise ValueError(f"bad pcapng block length {length}")
            if len(buf) - at < length:
                break
            kind = struct.unpack_from(e + "I", buf, at)[0]
            if kind == 1:  # IDB: options after link type, reserved, snap length
                name, resol, offset = "", 10**6, 0
                o, end = at + 16, at + length - 4
                while o + 4 <= end:
                    code, olen = struct.unpack_from(e + "HH", buf, o)
                    val = bytes(buf[o + 4 : o + 4 + olen])
                    if code == 0:
                        break
                    if code == 2:
                        name = val.rstrip(b"\0").decode("utf-8", "replace")
                    elif code == 9 and olen >= 1:
                        r = val[0]
                        resol = 2 ** (r & 0x7F) if r & 0x80 else 10**r
                    elif code == 14 and olen == 8:
                        offset = struct.unpack(e + "q", val)[0]
                    o += 4 + ((olen + 3) & ~3)
                self.ifaces.append((name, resol, offset))
            elif kind == 6:  # EPB
                if_id, hi, lo = struct.unpack_from(e + "III", buf, at + 8)
                name, resol, offset = self.ifaces[if_id]
                raw = (hi << 32) | lo
                ts = (raw // resol + offset) * 10**9 + (raw % resol) * 10**9 // resol
                out.append((recv, ts, name))
            at += length
        del self.buf[:at]


def quantile(sorted_v, q):
    """Nearest-rank quantile of a sorted list."""
    if not sorted_v:
        return float("nan")
    k = max(0, min(len(sorted_v) - 1, math.ceil(q * len(sorted_v)) - 1))
    return sorted_v[k]


def run(podcap, sources, window, duration):
    """One run; returns a dict of the figures and podcap-merge's summary."""
    cmd = [podcap, "--duration", str(duration), "-w", "-"]
    if window != "default":
        cmd += ["--reorder-window", window]
    for name, c in sources:
        cmd += ["--cmd", f"{name}={c}"]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err = []
    t = threading.Thread(target=lambda: err.append(p.stderr.read()))
    t.start()
    stream, pkts = NgStream(), []
    fd = p.stdout.fileno()
    while True:
        data = os.read(fd, 1 << 16)
        if not data:
            break
        stream.feed(data, pkts, time.time_ns())
    _, status, ru = os.wait4(p.pid, 0)
    t.join()
    stderr = err[0].decode("utf-8", "replace") if err else ""
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise RuntimeError(f"podcap-merge exited {rc}: {shlex.join(cmd)}\n{stderr}")
    m = re.search(r"^podcap-merge: .* (\d+) late,", stderr, re.M)
    summary_late = int(m.group(1)) if m else None

    t0 = min((ts for _, ts, _ in pkts), default=0)
    start = next((i for i, (_, ts, _) in enumerate(pkts) if ts >= t0 + LEARN_NS), len(pkts))
    late_after = backward_all = backward_after = 0
    hi = 0
    for i, (_, ts, _) in enumerate(pkts):
        if i >= start and ts < hi:
            late_after += 1
        hi = max(hi, ts)
        if i > 0 and ts < pkts[i - 1][1]:
            backward_all += 1
            if i > start:
                backward_after += 1
    bursty = {n for n, c in sources if "--immediate-mode" not in c}
    lat_all = sorted((r - ts) / 1e6 for r, ts, _ in pkts[start:])
    lat_imm = sorted((r - ts) / 1e6 for r, ts, n in pkts[start:] if n not in bursty)
    return {
        "packets": len(pkts),
        "steady": len(pkts) - start,
        "lat": lat_all,
        "lat_imm": lat_imm if bursty else None,
        "summary_late": summary_late,
        "late_after": late_after,
        "backward_all": backward_all,
        "backward_after": backward_after,
        "cpu": ru.ru_utime + ru.ru_stime,
        "stderr": stderr,
    }


def main():
    podcap = sys.argv[1]
    duration = float(os.environ.get("BENCH_DURATION", "15"))
    nsrc = int(os.environ.get("BENCH_SOURCES", "3"))
    interval = os.environ.get("BENCH_PING_INTERVAL", "0.01")
    windows = [w.strip() for w in os.environ.get("BENCH_WINDOWS", "default,300ms").split(",") if w.strip()]
    scenarios = [
        s.strip() for s in os.environ.get("BENCH_SCENARIOS", "immediate,one-bursty").split(",") if s.strip()
    ]
    for s in scenarios:
        if s not in ("immediate", "one-bursty"):
            raise SystemExit(f"unknown scenario {s!r} (immediate, one-bursty)")
    if nsrc < 2:
        raise SystemExit("BENCH_SOURCES must be at least 2")

    ns = Namespaces(nsrc)
    traffic = None
    results = {}
    try:
        traffic = Traffic(ns.pairs, interval)
        time.sleep(0.5)  # the first pings are answered
        for sc in scenarios:
            sources = []
            for k, (a, _, _, _) in enumerate(ns.pairs):
                immediate = sc == "immediate" or k < nsrc - 1
                flag = " --immediate-mode" if immediate else ""
                sources.append((f"s{k}", f"ip netns exec {a} tcpdump -U{flag} -n -i {a}-v -w -"))
            for w in windows:
                print(f"== {sc}, window {w}: {duration:g} s", file=sys.stderr, flush=True)
                results[(sc, w)] = run(podcap, sources, w, duration)
    finally:
        if traffic:
            traffic.close()
        ns.close()

    rate = max(r["packets"] for r in results.values()) / duration / nsrc
    print(f"sources:   {nsrc} tcpdumps in network namespaces, ping -i {interval} in each "
          f"(request and reply: {rate:.0f} packets/s per source measured)")
    print(f"runs:      podcap-merge --duration {duration:g} -w - | this reader; latency = receive time - "
          "packet timestamp (same clock)")
    print("           figures over the packets captured after the first 2 s; the output is flushed every 25 ms\n")
    hdr = (
        f"{'scenario':<11} {'window':<8} {'packets':>7} {'after 2s':>8} {'p50 ms':>7} {'p90 ms':>7} "
        f"{'p99 ms':>7} {'max ms':>7} {'late':>6} {'late>2s':>7} {'back':>5} {'back>2s':>7} {'cpu s':>6}  targets"
    )
    print(hdr)
    print("-" * (len(hdr) + 40))
    ok = True

    def verdict(good):
        return "PASS" if good else "FAIL"

    for (sc, w), r in results.items():
        lat = r["lat"]
        p50, p90, p99, mx = (quantile(lat, q) for q in (0.5, 0.9, 0.99, 1.0))
        checks = []
        if sc == "immediate":
            checks += [(f"p50<={GOAL_P50_MS:g}", p50 <= GOAL_P50_MS), (f"p99<={GOAL_P99_MS:g}", p99 <= GOAL_P99_MS)]
        checks.append(("no late>2s", r["late_after"] == 0 and r["backward_after"] == 0))
        text = " ".join(f"{n} {verdict(g)}" for n, g in checks)
        if w == "default":
            ok &= all(g for _, g in checks)
        else:
            text = f"({text}; comparison)"
        late = "?" if r["summary_late"] is None else str(r["summary_late"])
        print(
            f"{sc:<11} {w:<8} {r['packets']:>7} {r['steady']:>8} {p50:>7.1f} {p90:>7.1f} {p99:>7.1f} {mx:>7.1f} "
            f"{late:>6} {r['late_after']:>7} {r['backward_all']:>5} {r['backward_after']:>7} {r['cpu']:>6.2f}  {text}"
        )
        if r["lat_imm"] is not None:
            li = r["lat_imm"]
            print(
                f"{'  immediate':<11} {'sources':<8} {'':>7} {len(li):>8} {quantile(li, 0.5):>7.1f} "
                f"{quantile(li, 0.9):>7.1f} {quantile(li, 0.99):>7.1f} {quantile(li, 1.0):>7.1f}"
            )
    print()
    print("late: the summary's count (whole run); late>2s: packets after the first 2 s older than one written")
    print("before them; back / back>2s: adjacent packets going back in time (whole run / after 2 s);")
    print("cpu s: podcap-merge's user+sys time. Targets (issue 13), on the default window: immediate-mode")
    print(f"sources p50 <= {GOAL_P50_MS:g} ms and p99 <= {GOAL_P99_MS:g} ms; no late packet after the first 2 s.")
    print(f"overall: {verdict(ok)}")
    if os.environ.get("BENCH_VERBOSE") == "1":
        for (sc, w), r in results.items():
            print(f"\n--- summary of {sc}, window {w}:\n{r['stderr'].rstrip()}")
    if os.environ.get("BENCH_STRICT") == "1" and not ok:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
