#!/usr/bin/env python3
"""Pod capture throughput and memory on the local test cluster, against kubectl; one table.

Usage: pods_measure.py PODCAP_BIN TESTCLUSTER_BIN THROUGHPUT_PCAP MEMORY_PCAP

Needs root (the test cluster then gives every pod its own network namespace and runs the
containers' and exec's commands as host processes) and kubectl.

Set-up: a temporary directory holds a fake `tcpdump` (`exec cat "$PODCAP_BENCH_PCAP"`: it
ignores its arguments, writes one classic pcap file to stdout as fast as the pipe takes it,
and exits) and comes first in the test cluster's PATH, so every capture in a pod streams that
file as fast as the test cluster (and the client) let it.

Throughput run: a cluster with BENCH_PODS (8) pods streaming THROUGHPUT_PCAP each. Commands,
round-robin, one untimed warm-up each (which also checks the packet counts), then BENCH_REPS
timed rounds:
  podcap-8   podcap-merge --kubeconfig KC -n shop -l app=mando -q -w - -c 8*P   (all pods)
  podcap-1   podcap-merge --kubeconfig KC -n shop POD -q -w - -c P              (one pod)
  podcap-1a  the same with --via attach (the fallback design)
  attach-1   kubectl attach -i POD -c NAME: an ephemeral container (added untimed with
             `kubectl debug -i --attach=false`, waited for until running) that runs
             `read x; exec tcpdump`; we send the line, it streams the file (the peer of
             podcap-merge's `--via attach`)
  exec-1     kubectl exec POD -c app -- tcpdump (the peer of podcap-merge's default, exec)
every -c stops podcap-merge right after its last packet.

How it is timed: stdout of every command is a 1 MiB pipe that the harness reads (1 MiB at a
time), counting the bytes and noting when they arrive (it also samples VmHWM every 5 ms).
From that:
  stream MB/s  input bytes (pods x file size) x 0.9 over the time between 5 % and 95 % of the
               final output: the streaming rate, without the set-up (ephemeral container
               injection and start, exec and WebSocket handshakes) and the tail
  setup s      from spawning the command to 5 % of its output
  wall s       from spawning to exit (with set-up; for attach-1 until the last byte: kubectl
               attach only exits when its stdin is closed)
Peak RSS is /usr/bin/time -f %M of the command (podcap-merge has no child processes here).
CPU seconds are the command's own (getrusage of reaped children) and the test cluster's (its
utime + stime + reaped children: the `sh`/`cat` of the fake tcpdump, `ip netns exec`), per run.

Goal 1: podcap-8's stream MB/s per pod (aggregate / 8) at least attach-1's (kubectl attach
of one pod, median, same cluster, same run). Goal 2, memory run: a cluster with BENCH_MEM_PODS
(32) pods streaming MEMORY_PCAP each: podcap-merge's peak RSS below 100 MiB (the largest of
BENCH_MEM_REPS runs).

Environment: BENCH_PODS (8), BENCH_MEM_PODS (32), BENCH_REPS (5), BENCH_MEM_REPS (2),
BENCH_STRICT=1 (exit 3 when a goal is missed), BENCH_POD_ARGS (extra podcap-merge arguments,
split on white space, e.g. "--source-buffer 256").
"""

import fcntl
import json
import os
import resource
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import measure  # noqa: E402  (cpu_jiffies, verdict)

GOAL_PER_POD_VS_KUBECTL = 1.0  # podcap-8 per-pod stream MB/s / kubectl attach's, at least
GOAL_MEM_RSS_MIB = 100.0  # peak RSS of podcap-merge with BENCH_MEM_PODS pods, below
POLL = 0.005
READ = 1 << 20
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = 1031
LO, HI = 0.05, 0.95
RUN_TIMEOUT = 300.0
NS = "shop"


def proc_cpu(pid):
    """utime + stime + cutime + cstime of `pid`, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in rest[11:15]) / os.sysconf("SC_CLK_TCK")


def vm_hwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def child_of(pid, timeout=5.0):
    """The (first) child of `pid` (the command under /usr/bin/time)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = f.read().split()
            if kids:
                return int(kids[0])
        except OSError:
            return None
        time.sleep(0.0005)
    return None


class Cluster:
    """A podcap-testcluster with `pods` pods whose tcpdump is the fake one streaming `pcap`."""

    def __init__(self, binary, pods, pcap, work):
        self.dir = tempfile.mkdtemp(prefix=f"c{pods}.", dir=work)
        self.kc = os.path.join(self.dir, "kubeconfig")
        self.cache = os.path.join(self.dir, "kube-cache")
        env = dict(os.environ)
        env["PATH"] = os.path.join(work, "bin") + ":" + env.get("PATH", "/usr/bin:/bin")
        env["PODCAP_BENCH_PCAP"] = pcap
        env.pop("KUBECONFIG", None)
        self.err = open(os.path.join(self.dir, "stderr"), "wb")
        self.p = subprocess.Popen(
            [binary, "--pods", str(pods), "--kubeconfig", self.kc],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.err, env=env,
        )
        line = self.p.stdout.readline()
        if line.strip() != b"ready":
            self.stop()
            raise RuntimeError(f"test cluster did not start: {line!r}, see {self.err.name}")
        out = self.kubectl("get", "pods", "-n", NS, "-l", "app=mando", "-o", "json")
        pods_json = json.loads(out)["items"]
        self.pods = sorted(p["metadata"]["name"] for p in pods_json)
        if len(self.pods) != pods:
            raise RuntimeError(f"expected {pods} pods, got {len(self.pods)}")
        self.n_debug = 0

    def kubectl_argv(self, *args):
        return ["kubectl", "--kubeconfig", self.kc, "--cache-dir", self.cache, *args]

    def kubectl(self, *args):
        r = subprocess.run(self.kubectl_argv(*args), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {r.stderr.decode(errors='replace')}")
        return r.stdout

    def cpu(self):
        return proc_cpu(self.p.pid)

    def add_waiting_container(self, pod):
        """Adds an ephemeral container that streams the file once it reads a line; waits until
        it runs. Returns its name."""
        self.n_debug += 1
        name = f"kc{self.n_debug}"
        self.kubectl("debug", "-n", NS, pod, "-i", "--attach=false", "--image=busybox",
                     "-c", name, "--", "sh", "-c", "read x; exec tcpdump")
        end = time.monotonic() + 30
        while time.monotonic() < end:
            p = json.loads(self.kubectl("get", "pod", "-n", NS, pod, "-o", "json"))
            for s in p["status"].get("ephemeralContainerStatuses") or []:
                if s["name"] == name and "running" in s.get("state", {}):
                    return name
            time.sleep(0.05)
        raise RuntimeError(f"ephemeral container {name} in {pod} did not start")

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.err.close()


def timed(argv, expect_out, cluster, stdin_line=False, stderr=None):
    """Runs `argv` under /usr/bin/time with stdout into a pipe that this process reads and
    counts (1 MiB pipe), noting when the bytes arrive. With `stdin_line`, its stdin is a pipe:
    a newline is sent at once and stdin closed once `expect_out` bytes are out (kubectl
    attach). Returns a dict of measurements."""
    rss_file = tempfile.NamedTemporaryFile(prefix="podcap-bench-rss.", delete=False).name
    r_fd, w_fd = os.pipe()
    try:
        fcntl.fcntl(w_fd, F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass
    c0 = cluster.cpu()
    t0 = time.perf_counter()
    p = subprocess.Popen(
        ["/usr/bin/time", "-f", "%M", "-o", rss_file, *argv],
        stdin=subprocess.PIPE if stdin_line else subprocess.DEVNULL,
        stdout=w_fd, stderr=stderr if stderr is not None else subprocess.DEVNULL,
    )
    os.close(w_fd)
    pid = child_of(p.pid)
    if stdin_line:
        p.stdin.write(b"\n")
        p.stdin.flush()
    samples = []  # (t, bytes so far)
    out = 0
    hwm = 0
    t_done = None
    next_hwm = 0.0
    while True:
        ready, _, _ = select.select([r_fd], [], [], POLL)
        now = time.perf_counter() - t0
        if ready:
            chunk = os.read(r_fd, READ)
            if not chunk:
                break
            out += len(chunk)
            samples.append((now, out))
            if t_done is None and expect_out and out >= expect_out:
                t_done = now
                if stdin_line:
                    p.stdin.close()
        if pid and now >= next_hwm:
            h = vm_hwm_kib(pid)
            if h:
                hwm = max(hwm, h)
            next_hwm = now + POLL
        if now > RUN_TIMEOUT:
            p.kill()
            p.wait()
            raise RuntimeError(f"timed out after {RUN_TIMEOUT:.0f} s: {shlex.join(argv)}")
    os.close(r_fd)
    code = p.wait()
    wall = time.perf_counter() - t0
    c1 = cluster.cpu()
    if stdin_line and not p.stdin.closed:
        p.stdin.close()
    if code != 0:
        raise RuntimeError(f"exited {code}: {shlex.join(argv)}")
    with open(rss_file) as f:
        maxrss = int(f.read().split()[-1])
    os.unlink(rss_file)
    return {
        "samples": samples, "out": out, "wall": t_done if (stdin_line and t_done) else wall,
        "rss_kib": max(maxrss, hwm), "cluster_cpu": c1 - c0,
        "last": samples[-1][0] if samples else wall,
    }


def cpu_of_last_child():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def window(samples, final):
    """(t at LO of `final`, t at HI of `final`), linearly interpolated between samples."""
    def at(target):
        prev = (0.0, 0)
        for t, w in samples:
            if w >= target:
                if w == prev[1]:
                    return t
                return prev[0] + (t - prev[0]) * (target - prev[1]) / (w - prev[1])
            prev = (t, w)
        return samples[-1][0]
    return at(LO * final), at(HI * final)


def run(argv, expect_out, input_bytes, cluster, **kw):
    cpu0 = cpu_of_last_child()
    r = timed(argv, expect_out, cluster, **kw)
    r["cpu"] = cpu_of_last_child() - cpu0
    final = expect_out or r["out"]
    lo, hi = window(r["samples"], final)
    r["setup"] = lo
    r["stream"] = (HI - LO) * input_bytes / max(hi - lo, 1e-6) / 1e6
    r["input"] = input_bytes
    return r


def summary_packets(stderr_text):
    """(packets, errors) from podcap-merge's summary line."""
    for line in stderr_text.splitlines():
        if line.startswith("podcap-merge:") and " source(s), " in line:
            words = line.replace(",", "").split()
            pk = int(words[words.index("packets") - 1])
            errs = int(words[words.index("error(s)") - 1])
            return pk, errs
    return None, None


def pcap_packets(path):
    """Packets in a classic pcap file (little-endian, as gen_inputs.py writes)."""
    n = 0
    with open(path, "rb") as f:
        f.seek(24)
        while True:
            h = f.read(16)
            if len(h) < 16:
                return n
            caplen = int.from_bytes(h[8:12], "little")
            f.seek(caplen, 1)
            n += 1


def main():
    podcap, tc_bin, tp_pcap, mem_pcap = sys.argv[1:5]
    npods = int(os.environ.get("BENCH_PODS", "8"))
    mem_pods = int(os.environ.get("BENCH_MEM_PODS", "32"))
    reps = int(os.environ.get("BENCH_REPS", "5"))
    mem_reps = int(os.environ.get("BENCH_MEM_REPS", "2"))
    extra = shlex.split(os.environ.get("BENCH_POD_ARGS", ""))
    ncpu = os.cpu_count() or 1

    work = tempfile.mkdtemp(prefix="podcap-bench-pods.")
    os.makedirs(os.path.join(work, "bin"))
    fake = os.path.join(work, "bin", "tcpdump")
    with open(fake, "w") as f:
        f.write('#!/bin/sh\n# fake tcpdump of benches/pods_measure.py: the file, once, fast\n'
                'exec cat "$PODCAP_BENCH_PCAP"\n')
    os.chmod(fake, 0o755)

    tp_size, mem_size = os.path.getsize(tp_pcap), os.path.getsize(mem_pcap)
    tp_pk, mem_pk = pcap_packets(tp_pcap), pcap_packets(mem_pcap)
    print(f"per-pod file (throughput): {tp_pcap}: {tp_pk} packets, {tp_size} bytes ({tp_size / 1e6:.0f} MB)")
    print(f"per-pod file (memory):     {mem_pcap}: {mem_pk} packets, {mem_size} bytes ({mem_size / 1e6:.0f} MB)")
    print(f"fake tcpdump in the pods: `exec cat FILE` (first in the test cluster's PATH)")
    print(f"runs: 1 warm-up (checked) + {reps} timed per command, round-robin; medians")
    if extra:
        print(f"podcap-merge extra arguments: {shlex.join(extra)}")
    print()
    sys.stdout.flush()

    clusters = []
    try:
        # --- throughput ----------------------------------------------------------------------
        c = Cluster(tc_bin, npods, tp_pcap, work)
        clusters.append(c)
        pod = c.pods[0]
        common = [podcap, "--kubeconfig", c.kc, "-n", NS, "-w", "-", *extra]
        cmds = {
            f"podcap-{npods}": (common + ["-l", "app=mando", "-c", str(npods * tp_pk)], npods),
            "podcap-1": (common + [pod, "-c", str(tp_pk)], 1),
            # the same through pods/attach (the fallback design), to pick the default by measurement
            "podcap-1a": (common + [pod, "--via", "attach", "-c", str(tp_pk)], 1),
            "attach-1": (None, 1),
            "exec-1": (c.kubectl_argv("exec", "-n", NS, pod, "-c", "app", "--", "tcpdump"), 1),
        }
        expect = {}

        def one(name, check=False):
            argv, n = cmds[name]
            if name == "attach-1":
                cname = c.add_waiting_container(pod)
                argv = c.kubectl_argv("attach", "-i", "-n", NS, pod, "-c", cname)
                return run(argv, tp_size, tp_size, c, stdin_line=True)
            if check and name.startswith("podcap"):
                errf = tempfile.TemporaryFile()
                r = run(argv, None, n * tp_size, c, stderr=errf)
                errf.seek(0)
                text = errf.read().decode(errors="replace")
                pk, errs = summary_packets(text)
                if pk != n * tp_pk or errs != 0:
                    raise RuntimeError(f"{name}: {pk} packets (expected {n * tp_pk}), {errs} errors:\n{text}")
                print(f"  check {name}: {pk} packets, 0 errors, {r['out']} bytes out")
                return r
            return run(argv + (["-q"] if name.startswith("podcap") else []),
                       expect.get(name), n * tp_size, c)

        print("== warm-up and check", file=sys.stderr)
        for name in cmds:
            r = one(name, check=True)
            expect[name] = r["out"] if name.startswith("podcap") else tp_size
            if not name.startswith("podcap") and r["out"] < tp_size:
                raise RuntimeError(f"{name}: {r['out']} bytes out, expected {tp_size}")
        sys.stdout.flush()

        res = {n: [] for n in cmds}
        busy0, steal0 = measure.cpu_jiffies()
        ours = 0.0
        t0 = time.perf_counter()
        for i in range(reps):
            print(f"== round {i + 1}/{reps}", file=sys.stderr)
            for name in cmds:
                r = one(name)
                res[name].append(r)
                ours += r["cpu"] + r["cluster_cpu"]
        elapsed = time.perf_counter() - t0
        busy1, steal1 = measure.cpu_jiffies()
        c.stop()

        # --- memory --------------------------------------------------------------------------
        print(f"== memory run: {mem_pods} pods", file=sys.stderr)
        cm = Cluster(tc_bin, mem_pods, mem_pcap, work)
        clusters.append(cm)
        argv = [podcap, "--kubeconfig", cm.kc, "-n", NS, "-w", "-", *extra,
                "-l", "app=mando", "-c", str(mem_pods * mem_pk)]
        errf = tempfile.TemporaryFile()
        r = run(argv, None, mem_pods * mem_size, cm, stderr=errf)
        errf.seek(0)
        text = errf.read().decode(errors="replace")
        pk, errs = summary_packets(text)
        if pk != mem_pods * mem_pk or errs != 0:
            raise RuntimeError(f"memory run: {pk} packets (expected {mem_pods * mem_pk}), {errs} errors:\n{text}")
        mem_res = [r]
        for _ in range(mem_reps - 1):
            mem_res.append(run(argv + ["-q"], r["out"], mem_pods * mem_size, cm))
        cm.stop()
    finally:
        for cl in clusters:
            cl.stop()
        shutil.rmtree(work, ignore_errors=True)

    others = max(0.0, (busy1 - busy0) - ours) / elapsed
    steal = (steal1 - steal0) / elapsed

    # --- report ----------------------------------------------------------------------------
    med = {n: {k: statistics.median(r[k] for r in v) for k in ("stream", "setup", "last", "wall", "cpu", "cluster_cpu")}
           for n, v in res.items()}
    rss = {n: max(r["rss_kib"] for r in v) / 1024 for n, v in res.items()}
    hdr = (f"{'command':<10} {'pods':>4} {'stream MB/s':>11} {'min':>6} {'max':>6} {'per pod':>8} "
           f"{'setup s':>7} {'last s':>7} {'wall s':>7} {'cpu s':>6} {'cluster cpu s':>13} {'peak RSS':>10}")
    print(hdr)
    print("-" * len(hdr))
    for n, v in res.items():
        npd = cmds[n][1]
        s = [r["stream"] for r in v]
        print(f"{n:<10} {npd:>4} {med[n]['stream']:>11.0f} {min(s):>6.0f} {max(s):>6.0f} "
              f"{med[n]['stream'] / npd:>8.0f} {med[n]['setup']:>7.2f} {med[n]['last']:>7.2f} {med[n]['wall']:>7.2f} "
              f"{med[n]['cpu']:>6.2f} {med[n]['cluster_cpu']:>13.2f} {rss[n]:>6.1f} MiB")
    mr = mem_res
    mrss = max(r["rss_kib"] for r in mr) / 1024
    print(f"{'podcap-' + str(mem_pods):<10} {mem_pods:>4} {statistics.median(r['stream'] for r in mr):>11.0f} "
          f"{min(r['stream'] for r in mr):>6.0f} {max(r['stream'] for r in mr):>6.0f} "
          f"{statistics.median(r['stream'] for r in mr) / mem_pods:>8.0f} "
          f"{statistics.median(r['setup'] for r in mr):>7.2f} {statistics.median(r['last'] for r in mr):>7.2f} "
          f"{statistics.median(r['wall'] for r in mr):>7.2f} "
          f"{statistics.median(r['cpu'] for r in mr):>6.2f} {statistics.median(r['cluster_cpu'] for r in mr):>13.2f} "
          f"{mrss:>6.1f} MiB   ({len(mr)} run(s))")
    print()
    print("stream MB/s: input bytes (pods x file) over the 5-95 % part of the output; per pod = /pods;")
    print("setup s: spawn to 5 % of the output; last s: spawn to the last byte; wall s: to exit")
    print("(attach-1: to the last byte); cpu s: the command's; cluster cpu s: the test cluster's (API")
    print("server, kubelet, the fake tcpdumps' sh/cat) during the run; medians")
    print(f"other load while timing: {others:.2f} of {ncpu} cores busy with other processes, steal {steal:.2f} cores")
    if others > 0.15 or steal > 0.05:
        print("WARNING: the machine was not quiet while timing; the numbers are not reliable")

    def gbcpu(n):
        gb = cmds[n][1] * tp_size / 1e9
        return med[n]["cpu"] / gb, med[n]["cluster_cpu"] / gb

    print("\nCPU seconds per GB streamed (client, test cluster):")
    for n in res:
        a, b = gbcpu(n)
        print(f"  {n:<10} {a:5.2f} client, {b:5.2f} cluster")

    big = f"podcap-{npods}"
    per_pod = med[big]["stream"] / npods
    kub = med["attach-1"]["stream"]
    q = per_pod / kub
    ok_tp = q >= GOAL_PER_POD_VS_KUBECTL
    ok_mem = mrss < GOAL_MEM_RSS_MIB
    print("\ngoals (podcap-merge on the test cluster):")
    print(f"  {npods} pods: {med[big]['stream']:.0f} MB/s aggregate, {per_pod:.0f} MB/s per pod; kubectl attach of one "
          f"pod {kub:.0f} MB/s (exec {med['exec-1']['stream']:.0f} MB/s); per pod / kubectl attach = {q:.3f} "
          f"(goal >= {GOAL_PER_POD_VS_KUBECTL:.1f}: {measure.verdict(ok_tp)}); aggregate / kubectl attach = "
          f"{med[big]['stream'] / kub:.2f}; peak RSS {rss[big]:.1f} MiB")
    print(f"  1 pod: podcap-merge {med['podcap-1']['stream']:.0f} MB/s = {med['podcap-1']['stream'] / kub:.2f} x kubectl attach, "
          f"{med['podcap-1']['stream'] / med['exec-1']['stream']:.2f} x kubectl exec")
    ga, _ = gbcpu("podcap-1a")
    ge, _ = gbcpu("podcap-1")
    print(f"  1 pod, podcap-merge through exec {med['podcap-1']['stream']:.0f} MB/s ({ge:.2f} client cpu s/GB) vs "
          f"through attach {med['podcap-1a']['stream']:.0f} MB/s ({ga:.2f}): exec/attach = "
          f"{med['podcap-1']['stream'] / med['podcap-1a']['stream']:.2f}")
    print(f"  {mem_pods} pods: peak RSS {mrss:.1f} MiB (goal < {GOAL_MEM_RSS_MIB:.0f} MiB: {measure.verdict(ok_mem)})")
    if os.environ.get("BENCH_STRICT") == "1" and not (ok_tp and ok_mem):
        return 3
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        os.unlink(measure.RSS_FILE)  # made when measure.py is imported
