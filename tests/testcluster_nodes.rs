//! The test cluster's nodes, clocks and network against the real kubectl and podcap-merge:
//! `--nodes N` (Node objects, hostIPs, podCIDR blocks, `spec.nodeName` field selectors, pods
//! spread over the nodes, demo traffic crossing them), `--clock-offset`, `--node-latency`,
//! `--pod-network-cidr` (and the warning for a range already in use), and the kubelet's relist
//! delay before a container is reported running. Needs root for the network parts (CI runs as
//! root); kubectl, tshark and ip must be installed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{have_kubectl, parse_json, rows, spawn_ready, testcluster_bin, Server};
use common::{run_ok, tmpdir, tool, wait_until};

fn assert_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests need root (network namespaces, tcpdump); CI runs as root"
    );
}

fn pod_ip(s: &Server, pod: &str) -> String {
    s.ok(&[
        "get",
        "pod",
        pod,
        "-n",
        "shop",
        "-o",
        "jsonpath={.status.podIP}",
    ])
}

/// Whether `ip` is in `cidr` (IPv4).
fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (net, len) = cidr.split_once('/').expect("cidr");
    let len: u32 = len.parse().expect("prefix length");
    let a: u32 = u32::from(ip.parse::<std::net::Ipv4Addr>().expect("ip"));
    let n: u32 = u32::from(net.parse::<std::net::Ipv4Addr>().expect("net"));
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    a & mask == n & mask
}

#[test]
fn nodes_are_listed_and_pods_spread_over_them() {
    have_kubectl();
    let s = Server::start(3, &["--nodes", "2"]);
    let out = s.ok(&["get", "nodes", "-o", "wide"]);
    let r = rows(&out);
    assert_eq!(r.len(), 2, "{out}");
    assert_eq!(
        (r[0][0].as_str(), r[0][1].as_str()),
        ("node-1", "Ready"),
        "{out}"
    );
    assert_eq!(
        (r[1][0].as_str(), r[1][1].as_str()),
        ("node-2", "Ready"),
        "{out}"
    );
    // INTERNAL-IP: one per node
    assert!(r[0].contains(&"192.0.2.10".to_string()), "{out}");
    assert!(r[1].contains(&"192.0.2.11".to_string()), "{out}");

    // Each node has its own block of the pod network; each pod's IP is in its node's block and
    // its hostIP is its node's.
    let mut cidrs = BTreeMap::new();
    for n in ["node-1", "node-2"] {
        let node = parse_json(&s.ok(&["get", "node", n, "-o", "json"]));
        cidrs.insert(
            n,
            node["spec"]["podCIDR"]
                .as_str()
                .expect("podCIDR")
                .to_string(),
        );
    }
    assert_eq!(cidrs["node-1"], "10.213.0.0/24");
    assert_eq!(cidrs["node-2"], "10.213.1.0/24");
    let wide = s.ok(&["get", "pods", "-n", "shop", "-o", "wide"]);
    let pods = rows(&wide);
    assert_eq!(pods.len(), 3, "{wide}");
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in &pods {
        // NAME READY STATUS RESTARTS AGE IP NODE …
        let (ip, node) = (&p[5], &p[6]);
        *per_node.entry(node.clone()).or_default() += 1;
        assert!(
            in_cidr(ip, &cidrs[node.as_str()]),
            "{ip} not in {node}'s block: {wide}"
        );
        let host = s.ok(&[
            "get",
            "pod",
            &p[0],
            "-n",
            "shop",
            "-o",
            "jsonpath={.status.hostIP}",
        ]);
        let want = if node == "node-1" {
            "192.0.2.10"
        } else {
            "192.0.2.11"
        };
        assert_eq!(host, want, "hostIP of {}", p[0]);
    }
    assert_eq!(per_node.get("node-1"), Some(&2), "{wide}");
    assert_eq!(per_node.get("node-2"), Some(&1), "{wide}");

    // Field selectors on spec.nodeName, as kubectl sends them.
    let on2 = s.ok(&[
        "get",
        "pods",
        "-n",
        "shop",
        "--field-selector",
        "spec.nodeName=node-2",
        "-o",
        "name",
    ]);
    assert_eq!(on2.lines().count(), 1, "{on2}");
    let not2 = s.ok(&[
        "get",
        "pods",
        "-n",
        "shop",
        "--field-selector",
        "spec.nodeName!=node-2",
        "-o",
        "name",
    ]);
    assert_eq!(not2.lines().count(), 2, "{not2}");

    // A created pod goes to the node with the fewest pods, and gets an IP of its block.
    s.ok(&["run", "extra", "--image=nginx", "-n", "shop"]);
    let pod = s.wait_pod("extra", "Running", |p| p["status"]["phase"] == "Running");
    assert_eq!(pod["spec"]["nodeName"], "node-2", "{pod}");
    assert_eq!(pod["status"]["hostIP"], "192.0.2.11", "{pod}");
    let ip = pod["status"]["podIP"].as_str().expect("podIP");
    assert!(in_cidr(ip, &cidrs["node-2"]), "{ip}");
    assert_eq!(
        s.ok(&[
            "get",
            "pods",
            "-n",
            "shop",
            "--field-selector",
            "spec.nodeName=node-2",
            "-o",
            "name"
        ])
        .lines()
        .count(),
        2
    );
}

/// Packets of a capture as (epoch seconds, ip.src, ip.dst, protocol summary) by tshark.
fn tshark_fields(path: &Path, fields: &[&str], filter: &str) -> Vec<Vec<String>> {
    let mut cmd = tool("tshark");
    cmd.arg("-r").arg(path).args(["-Y", filter, "-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = run_ok(&mut cmd);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

#[test]
fn demo_traffic_crosses_nodes() {
    assert_root();
    have_kubectl();
    let s = Server::start(3, &["--nodes", "2"]);
    let nodes = s.node_by(".metadata.name");
    let on2 = nodes
        .iter()
        .find(|(_, n)| *n == "node-2")
        .expect("a pod on node-2")
        .0;
    let on1: Vec<String> = nodes
        .iter()
        .filter(|(_, n)| *n == "node-1")
        .map(|(p, _)| pod_ip(&s, p))
        .collect();
    let filter = format!("host {} or host {}", on1[0], on1[1]);
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .args([
            "exec", "-n", "shop", on2, "--", "timeout", "15", "tcpdump", "-i", "any",
        ])
        .args(["-c", "40", "-U", "-w", "-", &filter])
        .stdin(Stdio::null())
        .output()
        .expect("kubectl exec");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tmpdir();
    let f = dir.path().join("cross.pcap");
    std::fs::write(&f, &out.stdout).expect("write");
    let pkts = tshark_fields(&f, &["ip.src", "ip.dst", "icmp.type", "tcp.port"], "ip");
    assert_eq!(pkts.len(), 40);
    let own = pod_ip(&s, on2);
    // node-2's pod pings and curls the pods on node-1 (and they answer)
    assert!(
        pkts.iter()
            .any(|p| p[0] == own && on1.contains(&p[1]) && p[2] == "8"),
        "no ping from node-2 to node-1: {pkts:?}"
    );
    assert!(
        pkts.iter()
            .any(|p| p[1] == own && on1.contains(&p[0]) && p[3].split(',').any(|x| x == "80")),
        "no HTTP from node-1 to node-2: {pkts:?}"
    );
}

#[test]
fn pod_network_range_is_an_option_and_a_routed_one_is_warned() {
    assert_root();
    have_kubectl();
    // Pretend another cluster uses 10.77.5.0/24 on this machine: a bridge with that address
    // (and so that route), as a local cluster's CNI bridge has.
    let dummy = format!("pcw{}", std::process::id() % 100_000);
    let ip = |args: &[&str]| {
        let _ = Command::new("ip")
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    ip(&["link", "del", &dummy]);
    run_ok(Command::new("ip").args(["link", "add", &dummy, "type", "bridge"]));
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", &self.0]).status();
        }
    }
    let _del = Del(dummy.clone());
    run_ok(Command::new("ip").args(["addr", "add", "10.77.5.1/24", "dev", &dummy]));
    run_ok(Command::new("ip").args(["link", "set", &dummy, "up"]));

    let start = |cidr: &str, extra: &[&str]| -> (Server, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        let err_file = dir.path().join("stderr");
        let child = spawn_ready(
            Command::new(testcluster_bin())
                .args(["--pods", "2", "--pod-network-cidr", cidr, "--kubeconfig"])
                .arg(&kubeconfig)
                .args(extra)
                .stderr(std::fs::File::create(&err_file).expect("stderr file")),
            "podcap-testcluster",
        );
        let err = std::fs::read_to_string(&err_file).expect("stderr");
        (Server { child, dir }, err)
    };
    // (and a latency with one node is said to do nothing)
    let (s, err) = start("10.77.0.0/16", &["--node-latency", "5ms"]);
    assert!(
        err.contains("WARNING: the pod network 10.77.0.0/16 is already in use on this machine")
            && err.contains("10.77.5.0/24")
            && err.contains(&dummy)
            && err.contains("--pod-network-cidr"),
        "{err}"
    );
    assert!(
        err.contains("--node-latency delays traffic between the pods of different nodes")
            && err.contains("here it does nothing"),
        "{err}"
    );
    for p in rows(&s.ok(&["get", "pods", "-n", "shop", "-o", "wide"])) {
        assert!(p[5].starts_with("10.77.0."), "{p:?}");
    }
    drop(s);
    let (s, err) = start("10.78.0.0/16", &[]);
    assert!(!err.contains("WARNING"), "{err}");
    let ips: Vec<String> = rows(&s.ok(&["get", "pods", "-n", "shop", "-o", "wide"]))
        .into_iter()
        .map(|p| p[5].clone())
        .collect();
    assert!(ips.iter().all(|i| i.starts_with("10.78.0.")), "{ips:?}");
    // and the pods reach each other in it
    let names = s.pod_names();
    let ping = s.ok(&[
        "exec", "-n", "shop", &names[0], "--", "ping", "-c", "1", "-W", "2", &ips[1],
    ]);
    assert!(ping.contains("1 received"), "{ping}");

    // The default is not the range kind, flannel and minikube use.
    let s = Server::start(1, &[]);
    let p = rows(&s.ok(&["get", "pods", "-n", "shop", "-o", "wide"]));
    assert!(p[0][5].starts_with("10.213."), "{p:?}");
    let bad = Command::new(testcluster_bin())
        .args([
            "--pods",
            "1",
            "--pod-network-cidr",
            "10.77.1.0/16",
            "--kubeconfig",
            "/dev/null",
        ])
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("did you mean 10.77.0.0/16"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// `(epoch ns, interface, src, dst, ident, seq)` of every ICMP echo request in `path`.
fn echo_requests(path: &Path) -> Vec<(i128, String, String, String, String, String)> {
    tshark_fields(
        path,
        &[
            "frame.time_epoch",
            "frame.interface_name",
            "ip.src",
            "ip.dst",
            "icmp.ident",
            "icmp.seq",
        ],
        "icmp.type == 8",
    )
    .into_iter()
    .map(|f| {
        let (s, frac) = f[0].split_once('.').expect("epoch");
        let ns = s.parse::<i128>().expect("secs") * 1_000_000_000
            + format!("{frac:0<9}")[..9].parse::<i128>().expect("frac");
        (
            ns,
            f[1].clone(),
            f[2].clone(),
            f[3].clone(),
            f[4].clone(),
            f[5].clone(),
        )
    })
    .collect()
}

#[test]
fn clock_offset_and_node_latency_as_podcap_merge_sees_them() {
    assert_root();
    have_kubectl();
    // node-2's clock is 40 ms behind; a packet between the nodes takes 20 ms.
    let s = Server::start(
        2,
        &[
            "--nodes",
            "2",
            "--node-latency",
            "20ms",
            "--clock-offset",
            "node-2=-40ms",
        ],
    );
    let nodes = s.node_by(".metadata.name");
    let dir = tmpdir();
    let out = dir.path().join("nodes.pcapng");
    let run = s
        .podcap()
        .args(["-l", "app=mando", "--duration", "4", "-w"])
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .expect("podcap-merge");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{err}");
    let node_of_if = |iface: &str| -> String {
        let pod = iface.split('/').nth(1).expect("shop/POD/any");
        nodes[pod].clone()
    };
    let reqs = echo_requests(&out);
    let node_of_ip = s.node_by(".status.podIP");
    // Each echo request between the two pods is captured by both: as sent and as received.
    // (src, ident, seq) → (time sent, time received)
    type Seen = (Option<i128>, Option<i128>);
    let mut pairs: BTreeMap<(String, String, String), Seen> = BTreeMap::new();
    for (t, iface, src, _dst, ident, seq) in &reqs {
        let e = pairs
            .entry((src.clone(), ident.clone(), seq.clone()))
            .or_default();
        if node_of_if(iface) == node_of_ip[src] {
            e.0 = Some(*t);
        } else {
            e.1 = Some(*t);
        }
    }
    let ip1 = pod_ip(
        &s,
        nodes
            .iter()
            .find(|(_, n)| *n == "node-1")
            .expect("node-1 pod")
            .0,
    );
    let mut one_to_two = Vec::new();
    let mut two_to_one = Vec::new();
    for ((src, _, _), (sent, received)) in &pairs {
        if let (Some(a), Some(b)) = (sent, received) {
            let dt_ms = (b - a) as f64 / 1e6;
            if *src == ip1 {
                one_to_two.push(dt_ms);
            } else {
                two_to_one.push(dt_ms);
            }
        }
    }
    assert!(
        one_to_two.len() >= 5 && two_to_one.len() >= 5,
        "{one_to_two:?} {two_to_one:?}\n{err}"
    );
    // node-1 → node-2: 20 ms transit, read on a clock 40 ms behind: received about 20 ms
    // *before* it was sent. node-2 → node-1: sent by the slow clock, received by the true one:
    // about +60 ms. The transit itself is never below the latency; on a loaded machine it is
    // longer now and then (scheduling), so its median is what must be close.
    let mut sorted = one_to_two.clone();
    sorted.sort_by(f64::total_cmp);
    let before = one_to_two.iter().filter(|dt| **dt < 0.0).count();
    assert!(
        sorted[sorted.len() / 2] < -15.0 && before * 4 >= one_to_two.len() * 3,
        "node-1 → node-2 must look received before it was sent: {one_to_two:?}"
    );
    let mut transit: Vec<f64> = one_to_two
        .iter()
        .map(|dt| dt + 40.0)
        .chain(two_to_one.iter().map(|dt| dt - 40.0))
        .collect();
    transit.sort_by(f64::total_cmp);
    let median = transit[transit.len() / 2];
    assert!(
        transit[0] >= 19.5 && (19.5..=23.0).contains(&median),
        "transit times (ms) {transit:?}: want all ≥ 20, median ≈ 20"
    );
    // Every capture process ended with podcap-merge (the offset wrapper passed the stop on).
    assert!(
        wait_until(Duration::from_secs(3), || s.captures().is_empty()),
        "captures left: {:?}",
        s.captures()
    );
}

#[test]
fn running_is_reported_at_the_next_relist_so_early_output_is_lost() {
    have_kubectl();
    let s = Server::start(1, &[]);
    let pod = s.pod_names()[0].clone();
    // As on a real node (docs: the kubelet reports running at its next relist; kubectl debug
    // attaches only then), what the container prints in its first moments is lost.
    let t0 = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "sleep 5 | kubectl --kubeconfig '{}' debug -n shop -i {pod} --image=busybox --target=app \
             -- sh -c 'echo early-line; sleep 3; echo late-line'",
            s.kubeconfig().display()
        ))
        .env_remove("KUBECONFIG")
        .output()
        .expect("kubectl debug");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("late-line"), "{text}");
    assert!(!text.contains("early-line"), "{text}");
    assert!(t0.elapsed() < Duration::from_secs(15));

    // The running report comes 50 ms to ~1.05 s after the start (relist every 1 s + pod sync):
    // watch a new container's statuses and time them.
    let (mut watch, rx) = s.kubectl_stream(&[
        "get",
        "pods",
        "-n",
        "shop",
        "--field-selector",
        &format!("metadata.name={pod}"),
        "--watch-only",
        "-o",
        "jsonpath={.status.ephemeralContainerStatuses}{\"\\n\"}",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let patch = r#"{"spec":{"ephemeralContainers":[{"name":"timed","image":"busybox","command":["sleep","30"]}]}}"#;
    let path = format!("/api/v1/namespaces/shop/pods/{pod}/ephemeralcontainers");
    let (code, body) = s
        .curl_send(
            "PATCH",
            &path,
            "application/strategic-merge-patch+json",
            patch,
        )
        .expect("curl");
    assert_eq!(code, 200, "{body}");
    let patched = Instant::now();
    let mut waiting = None;
    let mut running = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    while running.is_none() && Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        let Ok(statuses) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let timed = statuses
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == "timed"))
            .map(|c| c["state"].clone());
        match timed {
            Some(st) if st["waiting"]["reason"] == "ContainerCreating" && waiting.is_none() => {
                waiting = Some(patched.elapsed())
            }
            Some(st) if st["running"].is_object() => running = Some(patched.elapsed()),
            _ => {}
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let (waiting, running) = (
        waiting.expect("waiting seen"),
        running.expect("running seen"),
    );
    // waiting 150 ms after the patch; the process starts 150 ms later; running 50 ms..1.05 s
    // after that
    let gap = running - waiting;
    assert!(
        gap >= Duration::from_millis(180) && gap <= Duration::from_millis(1400),
        "running {running:?} after the patch, waiting at {waiting:?}"
    );
}
