//! The test cluster without root: pods have no network namespaces and their `tcpdump` is the
//! synthetic capture (`crates/podcap-testcluster/src/synth.rs`). The tests run as root in CI, so the cluster
//! is started as user nobody (65534) with `setpriv`. Missing tools (setpriv, tshark, capinfos,
//! kubectl) fail the tests, never skip them.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::cluster::spawn_ready;
use common::tool;
use podcap_testcluster::synth;

const NOBODY: u32 = 65534;

/// Runs `cmd`, killing it after `secs`.
fn output_within(cmd: &mut Command, secs: u64) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(secs);
    // Drain the pipes in threads so a chatty child cannot block.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let o = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut v);
        v
    });
    let e = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut v);
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: o.join().expect("stdout thread"),
        stderr: e.join().expect("stderr thread"),
    }
}

/// `podcap-testcluster` running as nobody; SIGKILLed on drop if still running.
struct NobodyCluster {
    child: Child,
    dir: tempfile::TempDir,
    /// Holds the copy of the binary nobody runs.
    _bin_dir: tempfile::TempDir,
}

impl NobodyCluster {
    fn start(pods: usize) -> NobodyCluster {
        NobodyCluster::start_with(pods, &[])
    }

    /// With more options for the server.
    fn start_with(pods: usize, extra: &[&str]) -> NobodyCluster {
        tool("setpriv");
        let dir = tempfile::tempdir().expect("tempdir");
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777))
                .expect("chmod tempdir");
        }
        let kubeconfig = dir.path().join("kubeconfig");
        // nobody must be able to run the binary (it is also the pods' tcpdump shim), wherever
        // the checkout is (a `mktemp -d` clone is 0700 root): run a copy from a directory of
        // its own that nobody may enter
        let bin_dir = tempfile::tempdir().expect("tempdir");
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod bin dir");
        }
        let bin = bin_dir.path().join("podcap-testcluster");
        std::fs::copy(common::cluster::testcluster_bin(), &bin).expect("copy the test cluster");
        let child = spawn_ready(
            Command::new("setpriv")
                .args([
                    &format!("--reuid={NOBODY}"),
                    &format!("--regid={NOBODY}"),
                    "--clear-groups",
                ])
                .arg(&bin)
                .arg("--pods")
                .arg(pods.to_string())
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(extra)
                // The kubelet's shim directory goes here (checked to be gone at the end); it
                // also marks every process of this cluster (inherited environment).
                .env("TMPDIR", dir.path())
                .env_remove("PODCAP_TESTCLUSTER_NO_NETNS")
                .stdin(Stdio::null())
                .stderr(Stdio::inherit()),
            "the test cluster run as nobody (setpriv)",
        );
        let c = NobodyCluster {
            child,
            dir,
            _bin_dir: bin_dir,
        };
        // setpriv execs the server: same PID, now unprivileged.
        let status = std::fs::read_to_string(format!("/proc/{}/status", c.child.id()))
            .expect("/proc/PID/status");
        let uid_line = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .expect("Uid line");
        assert!(
            uid_line.split_whitespace().skip(1).all(|u| u == "65534"),
            "server not unprivileged: {uid_line}"
        );
        c
    }

    fn kubeconfig(&self) -> std::path::PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        output_within(
            Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(self.kubeconfig())
                .arg("--cache-dir")
                .arg(self.dir.path().join("kubectl-cache"))
                .arg("--request-timeout=20s")
                .args(args)
                .env_remove("KUBECONFIG"),
            60,
        )
    }

    /// Live processes carrying this cluster's TMPDIR in their environment (the server and
    /// everything its kubelet started, even when reparented).
    fn processes(&self) -> Vec<(u32, String)> {
        let marker = format!("TMPDIR={}", self.dir.path().display());
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, r)| r.trim_start().starts_with('Z'))
                })
                .unwrap_or(true);
            if zombie || !env.split(|b| *b == 0).any(|v| v == marker.as_bytes()) {
                continue;
            }
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            out.push((pid, cmd));
        }
        out
    }

    /// SIGTERM, then the server must exit 0 within 10 s and leave nothing behind.
    fn stop_cleanly(mut self) {
        let pid = self.child.id();
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "server exit: {status}");
        let mut left = self.processes();
        for _ in 0..40 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            left = self.processes();
        }
        assert!(left.is_empty(), "processes left after shutdown: {left:?}");
        let entries: Vec<String> = std::fs::read_dir(self.dir.path())
            .expect("read tempdir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "kubeconfig" && n != "kubectl-cache")
            .collect();
        assert!(
            entries.is_empty(),
            "left in the cluster's TMPDIR: {entries:?}"
        );
    }
}

impl Drop for NobodyCluster {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `tshark -r FILE -z expert -q` must show no errors, warnings or malformed packets.
fn assert_expert_clean(file: &Path) {
    let out = output_within(
        Command::new("tshark")
            .arg("-r")
            .arg(file)
            .args(["-z", "expert", "-q"]),
        60,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for bad in ["Errors (", "Warnings (", "Malformed", "malformed"] {
        assert!(
            !text.contains(bad),
            "tshark expert info has {bad:?}:\n{text}"
        );
    }
    assert!(
        text.contains("GET /index.html"),
        "no HTTP in expert chats:\n{text}"
    );
}

#[test]
fn podcap_merge_captures_synthetic_http_from_unprivileged_pods() {
    tool("tshark");
    tool("capinfos");
    tool("kubectl");
    let cluster = NobodyCluster::start(2);
    let out_dir = tempfile::tempdir().expect("tempdir");
    let pcapng = out_dir.path().join("out.pcapng");
    let run = output_within(
        Command::new(env!("CARGO_BIN_EXE_podcap-merge"))
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            .args(["-n", "shop", "-l", "app=mando", "--duration", "4", "-w"])
            .arg(&pcapng)
            .env_remove("KUBECONFIG"),
        90,
    );
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "podcap-merge failed: {err}");

    let caps = output_within(Command::new("capinfos").arg(&pcapng), 60);
    let caps_text = format!(
        "{}{}",
        String::from_utf8_lossy(&caps.stdout),
        String::from_utf8_lossy(&caps.stderr)
    );
    assert!(caps.status.success(), "capinfos: {caps_text}");
    assert!(
        !caps_text.to_lowercase().contains("warn") && caps.stderr.is_empty(),
        "capinfos complains: {caps_text}"
    );

    let fields = output_within(
        Command::new("tshark").arg("-r").arg(&pcapng).args([
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "ip.src",
            "-e",
            "http.request.method",
        ]),
        60,
    );
    assert!(
        fields.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&fields.stderr)
    );
    let text = String::from_utf8_lossy(&fields.stdout);
    // interface → (packets, GETs, source addresses)
    let mut per_if: std::collections::BTreeMap<
        String,
        (usize, usize, std::collections::BTreeSet<String>),
    > = Default::default();
    for line in text.lines() {
        let mut f = line.split('\t');
        let iface = f.next().unwrap_or("").to_string();
        let src = f.next().unwrap_or("").to_string();
        let method = f.next().unwrap_or("");
        assert!(!src.is_empty(), "a packet without IPv4 source: {line:?}");
        let e = per_if.entry(iface).or_default();
        e.0 += 1;
        e.1 += usize::from(method == "GET");
        e.2.insert(src);
    }
    assert_eq!(per_if.len(), 2, "two pod interfaces expected: {per_if:?}");
    for (iface, (packets, gets, srcs)) in &per_if {
        assert!(iface.starts_with("shop/mando-"), "interface name {iface:?}");
        // 4 s at ~33 packets/s.
        assert!(*packets >= 40, "{iface}: only {packets} packets");
        assert!(*gets >= 2, "{iface}: only {gets} GET requests");
        assert!(
            srcs.len() >= 2 && srcs.iter().all(|s| s.starts_with("10.213.")),
            "{iface}: sources {srcs:?} (own pod IP and a peer pod's expected)"
        );
    }
    assert_expert_clean(&pcapng);

    // The captures are over: nothing of them runs any more (only the server itself).
    let left: Vec<(u32, String)> = cluster
        .processes()
        .into_iter()
        .filter(|(pid, _)| *pid != cluster.child.id())
        .collect();
    assert!(
        left.is_empty(),
        "pod processes left after the capture: {left:?}"
    );
    cluster.stop_cleanly();
}

#[test]
fn exec_tcpdump_in_an_unprivileged_pod_is_the_synthetic_one() {
    tool("kubectl");
    let cluster = NobodyCluster::start(2);
    let pods = cluster.kubectl(&["get", "pods", "-n", "shop", "-l", "app=mando", "-o", "name"]);
    assert!(
        pods.status.success(),
        "{}",
        String::from_utf8_lossy(&pods.stderr)
    );
    let names = String::from_utf8_lossy(&pods.stdout);
    let pod = names
        .lines()
        .next()
        .expect("a pod")
        .trim_start_matches("pod/")
        .to_string();
    let out = cluster.kubectl(&[
        "exec", "-n", "shop", &pod, "--", "tcpdump", "-i", "any", "-c", "3", "-U", "-w", "-",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("listening on any, link-type LINUX_SLL2 (Linux cooked v2), snapshot length 262144 bytes"),
        "{err}"
    );
    assert!(err.contains("3 packets captured"), "{err}");
    assert_eq!(
        &out.stdout[..4],
        b"\xd4\xc3\xb2\xa1",
        "microsecond pcap magic"
    );
    assert_eq!(
        u32::from_le_bytes(out.stdout[20..24].try_into().expect("4")),
        synth::LINKTYPE_LINUX_SLL2
    );
    let bad = cluster.kubectl(&[
        "exec", "-n", "shop", &pod, "--", "tcpdump", "-i", "eth9", "-w", "-",
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("tcpdump: eth9: No such device exists"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    cluster.stop_cleanly();
}

/// Record timestamps (ns since the epoch) of a little-endian classic pcap.
fn record_times(pcap: &[u8]) -> Vec<i128> {
    let nano = pcap[..4] == [0x4d, 0x3c, 0xb2, 0xa1];
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let u = |o: usize| i128::from(u32::from_le_bytes(pcap[o..o + 4].try_into().expect("4")));
        let frac = if nano { u(at + 4) } else { u(at + 4) * 1000 };
        out.push(u(at) * 1_000_000_000 + frac);
        at += 16 + u(at + 8) as usize;
    }
    out
}

#[test]
fn clock_offset_shifts_the_synthetic_capture_of_a_node() {
    tool("kubectl");
    let cluster = NobodyCluster::start_with(2, &["--nodes", "2", "--clock-offset", "node-2=+3s"]);
    let list = cluster.kubectl(&[
        "get",
        "pods",
        "-n",
        "shop",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName}{\"\\n\"}{end}",
    ]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    let on = |node: &str| -> String {
        list.lines()
            .find(|l| l.ends_with(&format!(" {node}")))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no pod on {node}: {list}"))
            .to_string()
    };
    for (node, want_s) in [("node-1", 0.0), ("node-2", 3.0)] {
        let out = cluster.kubectl(&[
            "exec",
            "-n",
            "shop",
            &on(node),
            "--",
            "tcpdump",
            "-i",
            "any",
            "-c",
            "3",
            "-U",
            "-w",
            "-",
        ]);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as i128;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let times = record_times(&out.stdout);
        assert_eq!(times.len(), 3);
        for t in times {
            // the records were written within the last second or so of the true time
            let ahead = (t - now) as f64 / 1e9;
            assert!(
                (want_s - 1.5..=want_s + 0.1).contains(&ahead),
                "{node}: a record {ahead:.3} s from now, want ≈ {want_s} s"
            );
        }
    }
    cluster.stop_cleanly();
}

/// Runs the synthetic tcpdump directly.
fn synthetic(args: &[&str]) -> Output {
    output_within(
        Command::new(common::cluster::testcluster_bin())
            .arg(synth::ARG)
            .args(args)
            .env(synth::ENV_POD_IP, "10.244.0.7")
            .env(synth::ENV_PEER_IPS, "10.244.0.8,10.244.0.9"),
        60,
    )
}

#[test]
fn generator_encodes_well_formed_packets() {
    tool("tshark");
    // Checksums: the IP header (and the TCP segment with its pseudo header) sum to zero.
    let own = std::net::Ipv4Addr::new(10, 244, 0, 7);
    let mut t = synth::Traffic::new(own, vec![std::net::Ipv4Addr::new(10, 244, 0, 8)], 7);
    for _ in 0..25 {
        let p = t.next_packet();
        assert_eq!(p[0], 0x45);
        assert_eq!(synth::internet_checksum(&p[..20]), 0, "IP header checksum");
        let mut pseudo = p[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&((p.len() - 20) as u16).to_be_bytes());
        pseudo.extend_from_slice(&p[20..]);
        assert_eq!(synth::internet_checksum(&pseudo), 0, "TCP checksum");
    }
    // The RFC 1071 example: 0001 f203 f4f5 f6f7 sums to ddf2, checksum 220d.
    assert_eq!(
        synth::internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
        0x220d
    );

    let dir = tempfile::tempdir().expect("tempdir");
    for (iface, nano, linktype, magic) in [
        (
            "any",
            true,
            synth::LINKTYPE_LINUX_SLL2,
            *b"\x4d\x3c\xb2\xa1",
        ),
        ("eth0", false, synth::LINKTYPE_EN10MB, *b"\xd4\xc3\xb2\xa1"),
    ] {
        let mut args = vec!["-i", iface, "-U", "--immediate-mode", "-p", "-c", "30"];
        if nano {
            args.push("--time-stamp-precision=nano");
        }
        args.extend(["-w", "-", "--", "tcp", "port", "80"]);
        let out = synthetic(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains(
                "30 packets captured\n30 packets received by filter\n0 packets dropped by kernel"
            ),
            "{err}"
        );
        assert_eq!(out.stdout[..4], magic, "{iface}: magic");
        assert_eq!(
            u32::from_le_bytes(out.stdout[20..24].try_into().expect("4")),
            linktype
        );
        let file = dir.path().join(format!("{iface}.pcap"));
        std::fs::write(&file, &out.stdout).expect("write pcap");
        assert_expert_clean(&file);
        let fields = output_within(
            Command::new("tshark").arg("-r").arg(&file).args([
                "-T",
                "fields",
                "-e",
                "ip.src",
                "-e",
                "ip.dst",
                "-e",
                "ip.checksum.status",
                "-e",
                "tcp.checksum.status",
                "-e",
                "http.response.code",
                "-o",
                "ip.check_checksum:TRUE",
                "-o",
                "tcp.check_checksum:TRUE",
            ]),
            60,
        );
        let text = String::from_utf8_lossy(&fields.stdout);
        assert_eq!(text.lines().count(), 30, "{text}");
        // Checksum status 1 = good (0 bad, 2 unverified).
        assert!(
            text.lines()
                .all(|l| l.split('\t').nth(2) == Some("1") && l.split('\t').nth(3) == Some("1")),
            "IP/TCP checksum not good everywhere:\n{text}"
        );
        assert!(
            text.lines().any(|l| l.ends_with("\t200")),
            "no 200 response:\n{text}"
        );
        assert!(text.contains("10.244.0.7\t10.244.0.8"), "{text}");
    }

    // An unknown interface fails like the real tcpdump.
    let out = synthetic(&["-i", "eth9", "-w", "-"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tcpdump: eth9: No such device exists"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn synthetic_tcpdump_stops_on_sigterm_with_its_counts() {
    let child = Command::new(env!("CARGO_BIN_EXE_podcap-merge"))
        .arg(synth::ARG)
        .args(["-i", "any", "-U", "-w", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    let out = child.wait_with_output().expect("wait");
    assert!(start.elapsed() < Duration::from_secs(2), "slow to stop");
    assert!(out.status.success(), "{:?}", out.status);
    let err = String::from_utf8_lossy(&out.stderr);
    let n: usize = err
        .lines()
        .find_map(|l| l.strip_suffix(" packets captured"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count line: {err}"));
    assert!((5..=60).contains(&n), "{n} packets in 0.7 s: {err}");
    // Every counted packet is in the stream, whole.
    let mut at = 24;
    let mut records = 0;
    while at + 16 <= out.stdout.len() {
        let incl = u32::from_le_bytes(out.stdout[at + 8..at + 12].try_into().expect("4")) as usize;
        at += 16 + incl;
        records += 1;
    }
    assert_eq!(at, out.stdout.len(), "truncated record");
    assert_eq!(records, n);
}
