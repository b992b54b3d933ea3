//! Pod capture end to end: podcap-merge against the local test cluster (pods are network
//! namespaces with real HTTP and ping traffic, ephemeral containers run real tcpdump), its
//! output judged by tshark and capinfos, the pods' processes checked afterwards. Needs root
//! (CI runs as root).

mod common;

use common::cluster::Server;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long after podcap-merge is gone every capture process in the pods must be gone too.
/// (The remote wrapper kills tcpdump when its stdin closes; the API server closes it when our
/// connection ends, even after SIGKILL.)
const CLEANUP_BOUND: Duration = Duration::from_secs(3);

fn assert_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the pod capture tests need root (network namespaces, tcpdump); CI runs as root"
    );
}

fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("run podcap-merge");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), err)
}

/// Packets per interface name.
fn per_interface(pkts: &[TsharkPacket]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for p in pkts {
        *m.entry(p.iface_name.clone()).or_insert(0) += 1;
    }
    m
}

fn interfaces_of(s: &Server) -> BTreeSet<String> {
    s.pod_names()
        .iter()
        .map(|p| format!("shop/{p}/any"))
        .collect()
}

fn assert_no_captures_left(s: &Server) {
    let gone = wait_until(CLEANUP_BOUND, || s.captures().is_empty());
    assert!(
        gone,
        "capture processes still running in the pods {CLEANUP_BOUND:?} after podcap-merge ended: {:?}",
        s.captures()
    );
}

/// Asserts the packets are in time order; names the first pair that is not.
fn assert_chronological(pkts: &[TsharkPacket]) {
    if let Some((i, w)) = pkts.windows(2).enumerate().find(|(_, w)| w[0].ts > w[1].ts) {
        panic!(
            "packets {} ({}, {:?}) and {} ({}, {:?}) out of time order by {} ns",
            i + 1,
            w[0].iface_name,
            w[0].ts,
            i + 2,
            w[1].iface_name,
            w[1].ts,
            w[0].ts.unwrap_or(0) - w[1].ts.unwrap_or(0)
        );
    }
}

/// tshark `-N n` field values: the pod and service names from our NRB.
fn resolved_hosts(path: &Path) -> BTreeSet<String> {
    let out = run_ok(tool("tshark").arg("-r").arg(path).args([
        "-N",
        "n",
        "-T",
        "fields",
        "-e",
        "ip.src_host",
        "-e",
        "ip.dst_host",
    ]));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn three_pods_merged_in_order_each_on_its_own_interface_with_names() {
    assert_root();
    let s = Server::pods(3);
    let dir = tmpdir();
    let out = dir.path().join("pods.pcapng");
    let (code, err) = run(s
        .podcap()
        .args(["-l", "app=mando", "--duration", "4", "-w"])
        .arg(&out));
    assert_eq!(code, 0, "{err}");
    capinfos_clean(&out);
    let pkts = tshark_packets(&out);
    let by_if = per_interface(&pkts);
    let want = interfaces_of(&s);
    assert_eq!(
        by_if.keys().cloned().collect::<BTreeSet<_>>(),
        want,
        "{err}"
    );
    for (name, n) in &by_if {
        assert!(*n >= 5, "{name}: only {n} packets");
    }
    assert_chronological(&pkts);
    // the pods' IPs carry their names (Wireshark's name resolution reads our NRB)
    let hosts = resolved_hosts(&out);
    for pod in s.pod_names() {
        assert!(
            hosts.contains(&format!("{pod}.shop.pod")),
            "{pod} not resolved; tshark -N n saw {hosts:?}"
        );
    }
    // the Service's ClusterIP is named too
    let hosts = run_ok(
        tool("tshark")
            .arg("-r")
            .arg(&out)
            .args(["-q", "-z", "hosts"]),
    );
    let hosts = String::from_utf8_lossy(&hosts.stdout);
    assert!(hosts.contains("\tmando.shop.svc"), "{hosts}");
    // each interface's description tells the pod, node, IP and capture container
    let desc = run_ok(tool("tshark").arg("-r").arg(&out).args([
        "-T",
        "fields",
        "-e",
        "frame.interface_description",
    ]));
    let desc = String::from_utf8_lossy(&desc.stdout);
    assert!(
        desc.contains("pod shop/") && desc.contains("container podcap-") && desc.contains("ip "),
        "{desc}"
    );
    // summary names every pod
    for pod in s.pod_names() {
        assert!(err.contains(&format!("shop/{pod}/any")), "{err}");
    }
    assert_no_captures_left(&s);
    // every pod got exactly one capture container, which has ended
    for pod in s.pod_names() {
        let ecs = s.ok(&[
            "get",
            "pod",
            "-n",
            "shop",
            &pod,
            "-o",
            "jsonpath={.spec.ephemeralContainers[*].name}",
        ]);
        assert_eq!(ecs.split_whitespace().count(), 1, "{pod}: {ecs}");
    }
}

#[test]
fn a_pod_scaled_up_mid_capture_joins_with_its_own_interface() {
    assert_root();
    let s = Server::start(2, &["--add-pod-after", "2"]);
    let dir = tmpdir();
    let out = dir.path().join("scale.pcapng");
    let start = Instant::now();
    let (code, err) = run(s
        .podcap()
        .args(["-l", "app=mando", "--duration", "6", "-w"])
        .arg(&out));
    assert_eq!(code, 0, "{err}");
    assert!(start.elapsed() < Duration::from_secs(15));
    let pkts = tshark_packets(&out);
    let by_if = per_interface(&pkts);
    assert_eq!(by_if.len(), 3, "{by_if:?}\n{err}");
    assert_eq!(
        by_if.keys().cloned().collect::<BTreeSet<_>>(),
        interfaces_of(&s)
    );
    assert!(by_if.values().all(|n| *n > 0));
    assert_chronological(&pkts);
    capinfos_clean(&out);
}

#[test]
fn a_bpf_filter_after_the_double_dash_reaches_tcpdump_as_words() {
    assert_root();
    let s = Server::pods(2);
    let dir = tmpdir();
    let out = dir.path().join("icmp.pcapng");
    let (code, err) = run(s
        .podcap()
        .args(["-l", "app=mando", "--duration", "3", "-w"])
        .arg(&out)
        .args(["--", "icmp", "and", "not", "tcp"]));
    assert_eq!(code, 0, "{err}");
    let protos = run_ok(
        tool("tshark")
            .arg("-r")
            .arg(&out)
            .args(["-T", "fields", "-e", "ip.proto"]),
    );
    let protos: BTreeSet<String> = String::from_utf8_lossy(&protos.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(protos, ["1".to_string()].into(), "only ICMP expected");
}

/// tcpdump's errors are the run's error, in its words, before the pods are touched (the
/// filter) or after one pod (the interface): tests/fail_fast.rs checks what is touched.
#[test]
fn tcpdump_errors_become_clear_errors() {
    assert_root();
    let s = Server::pods(2);
    let dir = tmpdir();
    let out = dir.path().join("bad.pcapng");
    let (code, err) = run(s
        .podcap()
        .args(["-l", "app=mando", "-i", "eth9", "--duration", "3", "-w"])
        .arg(&out));
    assert_eq!(code, 2, "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("podcap-merge: error: ") && l.contains("eth9"))
        .unwrap_or_else(|| panic!("no error line naming eth9: {err}"));
    assert!(line.contains("No such device"), "{line}");
    capinfos_clean(&out);
    let (code, err) = run(s
        .podcap()
        .args(["-l", "app=mando", "--duration", "3", "-w"])
        .arg(&out)
        .args(["--", "port", "and", "and"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("syntax error"), "{err}");
    assert_no_captures_left(&s);
}

#[test]
fn ctrl_c_finishes_the_file_with_statistics_and_stops_every_capture() {
    assert_root();
    let s = Server::pods(3);
    let dir = tmpdir();
    let out = dir.path().join("int.pcapng");
    let child = s
        .podcap()
        .args(["-l", "app=mando", "-q", "-w"])
        .arg(&out)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || s.captures().len() == 3),
        "three captures should run: {:?}",
        s.captures()
    );
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let t = Instant::now();
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{:?} {err}", done.status);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        t.elapsed()
    );
    // graceful: every packet tcpdump captured reached the file (else a note says so)
    assert!(!err.contains("reached podcap-merge"), "{err}");
    assert_no_captures_left(&s);
    capinfos_clean(&out);
    let by_if = per_interface(&tshark_packets(&out));
    assert_eq!(by_if.len(), 3);
    // one ISB per interface, carrying tcpdump's final drop count (0 here)
    let isb = run_ok(
        tool("tshark")
            .arg("-r")
            .arg(&out)
            .args(["-q", "-z", "io,stat,0"]),
    );
    assert!(isb.status.success());
    let raw = std::fs::read(&out).unwrap();
    let isbs = raw.windows(4).filter(|w| *w == 5u32.to_ne_bytes()).count();
    assert!(isbs >= 3, "expected an ISB per interface");
}

#[test]
fn a_closed_pipe_stops_everything_quickly() {
    assert_root();
    let s = Server::pods(2);
    let mut child = s
        .podcap()
        .args(["-l", "app=mando", "-q"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 4000];
    std::io::Read::read_exact(&mut stdout, &mut buf).expect("some output");
    assert_eq!(
        &buf[..4],
        &[0x0a, 0x0d, 0x0d, 0x0a],
        "pcapng starts with an SHB"
    );
    drop(stdout); // like `| head -c 4000`
    let t = Instant::now();
    let ok = wait_until(Duration::from_secs(5), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    assert!(ok, "podcap-merge did not exit after its reader went away");
    assert!(child.wait().unwrap().success());
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_no_captures_left(&s);
}

#[test]
fn sigkill_of_podcap_merge_leaves_no_capture_running() {
    assert_root();
    let s = Server::pods(3);
    let dir = tmpdir();
    let out = dir.path().join("kill.pcapng");
    let mut child = s
        .podcap()
        .args(["-l", "app=mando", "-q", "-w"])
        .arg(&out)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || s.captures().len() == 3));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_no_captures_left(&s);
}

#[test]
fn a_ring_of_files_from_the_cluster() {
    assert_root();
    let s = Server::pods(3);
    let dir = tmpdir();
    let prefix = dir.path().join("ring.pcapng");
    let (code, err) = run(s
        .podcap()
        .args([
            "-l",
            "app=mando",
            "--duration",
            "5",
            "-b",
            "filesize:20",
            "-b",
            "files:3",
            "-w",
        ])
        .arg(&prefix));
    assert_eq!(code, 0, "{err}");
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("ring_")
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "files:3 keeps three: {files:?}\n{err}");
    for f in &files {
        capinfos_clean(f);
        let pkts = tshark_packets(f);
        assert!(!pkts.is_empty(), "{}", f.display());
        // every rotated file is self-contained: names resolve in each
        let hosts = resolved_hosts(f);
        assert!(
            hosts.iter().any(|h| h.ends_with(".shop.pod")),
            "{}: {hosts:?}",
            f.display()
        );
    }
}

#[test]
fn count_dry_run_workloads_and_attach() {
    assert_root();
    let s = Server::pods(2);
    let dir = tmpdir();
    // --dry-run: lists, changes nothing
    let out = s
        .podcap()
        .args(["deploy/mando", "--dry-run"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for pod in s.pod_names() {
        assert!(text.contains(&format!("shop/{pod}")), "{text}");
        let ecs = s.ok(&[
            "get",
            "pod",
            "-n",
            "shop",
            &pod,
            "-o",
            "jsonpath={.spec.ephemeralContainers[*].name}",
        ]);
        assert!(ecs.trim().is_empty(), "dry run added a container to {pod}");
    }
    assert!(
        text.contains("NET_RAW") && text.contains("tcpdump -i any"),
        "{text}"
    );
    // every namespace; and the --max-pods safety cap refuses before touching anything
    let all = Command::new(env!("CARGO_BIN_EXE_podcap-merge"))
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .args(["-A", "-l", "app=mando", "--dry-run"])
        .output()
        .unwrap();
    let all_text = String::from_utf8_lossy(&all.stdout);
    assert!(all_text.contains("in any namespace"), "{all_text}");
    let (code, err) = run(s
        .podcap()
        .args(["-l", "app=mando", "--max-pods", "1", "-w"])
        .arg(dir.path().join("x.pcapng")));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("more than --max-pods 1"), "{err}");
    // -c: exactly N packets, through attach, selecting by service
    let f = dir.path().join("c.pcapng");
    let (code, err) = run(s
        .podcap()
        .args(["svc/mando", "--via", "attach", "-c", "40", "-w"])
        .arg(&f));
    assert_eq!(code, 0, "{err}");
    assert_eq!(tshark_packets(&f).len(), 40);
    assert_no_captures_left(&s);
    // pod names select exactly those pods
    let first = s.pod_names()[0].clone();
    let f = dir.path().join("one.pcapng");
    let (code, err) = run(s.podcap().args([&first, "--duration", "2", "-w"]).arg(&f));
    assert_eq!(code, 0, "{err}");
    let by_if = per_interface(&tshark_packets(&f));
    assert_eq!(
        by_if.keys().cloned().collect::<Vec<_>>(),
        vec![format!("shop/{first}/any")]
    );
}

#[test]
fn live_into_tshark_through_a_pipe() {
    assert_root();
    let s = Server::pods(2);
    let mut pm = s
        .podcap()
        .args(["-l", "app=mando", "-q", "--duration", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let ts = tool("tshark")
        .args(["-i", "-", "-T", "fields", "-e", "frame.interface_name"])
        .stdin(pm.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(pm.wait().unwrap().success());
    let names: BTreeSet<String> = String::from_utf8_lossy(&ts.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        names,
        interfaces_of(&s),
        "{}",
        String::from_utf8_lossy(&ts.stderr)
    );
}

/// Inside a cluster (a Job): no kubeconfig, the service account's files and the
/// KUBERNETES_SERVICE_* variables. The files live at the fixed path every pod has, so this test
/// writes them there (it refuses to touch a machine that already has them) and removes them.
#[test]
fn in_cluster_configuration_from_the_service_account() {
    assert_root();
    let sa = Path::new("/var/run/secrets/kubernetes.io/serviceaccount");
    assert!(
        !sa.exists(),
        "{} exists: this machine looks like a pod; the test will not overwrite it",
        sa.display()
    );
    let s = Server::pods(2);
    let kc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.kubeconfig()).unwrap()).unwrap();
    let server = kc["clusters"][0]["cluster"]["server"].as_str().unwrap();
    let port = server.rsplit(':').next().unwrap();
    let ca = kc["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .unwrap();
    let ca = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, ca).unwrap();
    let token = kc["users"][0]["user"]["token"].as_str().unwrap();
    struct Cleanup;
    impl Drop for Cleanup {
        fn drop(&mut self) {
            // ours only: the serviceaccount folder, then its parents if now empty
            let _ = std::fs::remove_dir_all("/var/run/secrets/kubernetes.io/serviceaccount");
            let _ = std::fs::remove_dir("/var/run/secrets/kubernetes.io");
            let _ = std::fs::remove_dir("/var/run/secrets");
        }
    }
    let _cleanup = Cleanup;
    std::fs::create_dir_all(sa).unwrap();
    std::fs::write(sa.join("token"), token).unwrap();
    std::fs::write(sa.join("ca.crt"), ca).unwrap();
    std::fs::write(sa.join("namespace"), "shop").unwrap();
    let home = tmpdir();
    let out = home.path().join("in.pcapng");
    let (code, err) = run(Command::new(env!("CARGO_BIN_EXE_podcap-merge"))
        .args(["-l", "app=mando", "--duration", "2", "-w"])
        .arg(&out)
        .env_remove("KUBECONFIG")
        .env("HOME", home.path())
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", port));
    assert_eq!(code, 0, "{err}");
    // the namespace came from the service account (no -n given)
    assert_eq!(
        per_interface(&tshark_packets(&out))
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>(),
        interfaces_of(&s)
    );
}

/// A selection whose only pod is still Pending at the start: it is said, followed, and
/// captured once it runs.
#[test]
fn a_pod_pending_at_the_start_is_captured_once_it_runs() {
    assert_root();
    let s = Server::start(1, &["--pending-secs", "3"]);
    s.ok(&[
        "run",
        "late",
        "-n",
        "shop",
        "--image=nginx:1.25",
        "--labels=app=late",
    ]);
    let phase = s.ok(&[
        "get",
        "pod",
        "late",
        "-n",
        "shop",
        "-o",
        "jsonpath={.status.phase}",
    ]);
    assert_eq!(phase, "Pending");
    let dir = tmpdir();
    let out = dir.path().join("late.pcapng");
    let (code, err) = run(s
        .podcap()
        .args(["-l", "app=late", "--duration", "7", "-w"])
        .arg(&out));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("1 of the 1 pods matching -l app=late in namespace shop are not running yet"),
        "{err}"
    );
    let by_if = per_interface(&tshark_packets(&out));
    assert_eq!(
        by_if.keys().cloned().collect::<Vec<_>>(),
        vec!["shop/late/any".to_string()],
        "{err}"
    );
}
