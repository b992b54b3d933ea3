//! One packet, two pods, end to end: HTTP between network namespaces (local `--cmd` sources,
//! offline `merge` of their files, and pods of the test cluster) captured on both ends, and
//! tshark as the judge. Without `--dedup` the two copies of each packet carry the same
//! `frame.packet_id` (and their direction); with `--dedup` each packet is written once and
//! tshark flags no retransmission, unless one really happened (forced with nftables in a
//! namespace). Needs root (CI runs as root).

mod common;

use common::cluster::Server;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn assert_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests need root (network namespaces, tcpdump, nftables); CI runs as root"
    );
}

/// One frame as tshark sees it, with the fields that make a packet what it is.
#[derive(Clone, Debug)]
struct Frame {
    number: u64,
    iface: String,
    packet_id: Option<u64>,
    direction: Option<u32>,
    /// ip.src, ip.dst, ip.id, tcp.srcport, tcp.dstport, tcp.seq_raw, tcp.ack_raw, tcp.len,
    /// tcp.flags, icmp.seq: what must be equal in two copies of one packet.
    what: Vec<String>,
}

fn frames(path: &Path) -> Vec<Frame> {
    let fields = [
        "frame.number",
        "frame.interface_name",
        "frame.packet_id",
        "frame.packet_flags_direction",
        "ip.src",
        "ip.dst",
        "ip.id",
        "tcp.srcport",
        "tcp.dstport",
        "tcp.seq_raw",
        "tcp.ack_raw",
        "tcp.len",
        "tcp.flags",
        "icmp.seq",
    ];
    let mut cmd = tool("tshark");
    cmd.arg("-r")
        .arg(path)
        .args(["-T", "fields", "-E", "occurrence=f"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = run_ok(&mut cmd);
    assert_eq!(warnings(&out.stderr), Vec::<String>::new());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Vec<&str> = l.split('\t').collect();
            let num = |s: &str| -> Option<u64> {
                let s = s.trim();
                if let Some(h) = s.strip_prefix("0x") {
                    u64::from_str_radix(h, 16).ok()
                } else {
                    s.parse().ok()
                }
            };
            Frame {
                number: v[0].parse().unwrap(),
                iface: v[1].to_string(),
                packet_id: num(v[2]),
                direction: num(v[3]).map(|d| d as u32),
                what: v[4..].iter().map(|s| s.to_string()).collect(),
            }
        })
        .collect()
}

/// Frames that are second (or third) copies: frames with a packet id less distinct ids.
fn second_copies(fr: &[Frame]) -> usize {
    let ids: BTreeSet<u64> = fr.iter().filter_map(|f| f.packet_id).collect();
    fr.iter().filter(|f| f.packet_id.is_some()).count() - ids.len()
}

fn is_ip(f: &Frame) -> bool {
    !f.what[0].is_empty()
}

/// Frames between two of the given addresses (both ends captured).
fn between<'a>(fr: &'a [Frame], addrs: &'a BTreeSet<String>) -> impl Iterator<Item = &'a Frame> {
    fr.iter()
        .filter(move |f| addrs.contains(&f.what[0]) && addrs.contains(&f.what[1]))
}

/// Without --dedup: both copies of every packet between the captured addresses share a packet
/// id, one outbound and one inbound, from two interfaces; no other frames share one (a third
/// pod may have overheard the packet, flooded by a bridge: that copy, inbound, shares it too).
/// Returns the number of linked packets.
fn assert_linked(fr: &[Frame], addrs: &BTreeSet<String>) -> usize {
    let mut by_id: BTreeMap<u64, Vec<&Frame>> = BTreeMap::new();
    for f in fr {
        if let Some(id) = f.packet_id {
            by_id.entry(id).or_default().push(f);
        } else {
            assert!(!is_ip(f), "IP frame {} has no packet id", f.number);
        }
    }
    let mut pairs = 0;
    for (id, group) in &by_id {
        assert!(
            group.len() <= 3,
            "packet id {id} on {} frames: {group:?}",
            group.len()
        );
        // (IPv6 neighbour discovery and other multicast: every receiver has a copy, and the
        // sender may not be captured; only pod-to-pod unicast has one sender and one receiver)
        let unicast = addrs.contains(&group[0].what[0]) && addrs.contains(&group[0].what[1]);
        if group.len() >= 2 && unicast {
            let ifaces: BTreeSet<&String> = group.iter().map(|f| &f.iface).collect();
            assert_eq!(
                ifaces.len(),
                group.len(),
                "packet id {id}: two frames of one interface"
            );
            assert!(
                group.iter().all(|f| f.what == group[0].what),
                "packet id {id} on frames that differ: {group:?}"
            );
            let out = group.iter().filter(|f| f.direction == Some(2)).count();
            let inb = group.iter().filter(|f| f.direction == Some(1)).count();
            assert_eq!(
                (out, inb),
                (1, group.len() - 1),
                "packet id {id}: one copy outbound, the others inbound: {group:?}"
            );
            pairs += 1;
        } else if group.len() >= 2 {
            assert!(
                group.iter().all(|f| f.what == group[0].what),
                "packet id {id} on frames that differ: {group:?}"
            );
        }
    }
    // every packet between the captured ends whose copies are both in the capture has them
    // linked: a frame without a partner has no twin (same addresses, ports, IP id, TCP
    // numbers, flags) on another interface (a capture can drop packets under load: then the
    // twin is missing, and the frame is rightly alone)
    let mut twins: BTreeMap<&Vec<String>, BTreeSet<&str>> = BTreeMap::new();
    for f in between(fr, addrs) {
        twins.entry(&f.what).or_default().insert(&f.iface);
    }
    let lonely: Vec<&Frame> = between(fr, addrs)
        .filter(|f| by_id[&f.packet_id.unwrap()].len() < 2)
        .collect();
    for f in &lonely {
        assert_eq!(
            twins[&f.what].len(),
            1,
            "frame {} has a twin on another interface but no shared packet id: {f:?}",
            f.number
        );
    }
    let total = between(fr, addrs).count();
    assert!(
        lonely.len() * 10 < total,
        "{} of {total} pod-to-pod frames have one copy only",
        lonely.len()
    );
    assert!(pairs > 20, "only {pairs} linked pairs");
    pairs
}

/// Frames tshark's TCP analysis flags as a retransmission, duplicate ACK or the like.
fn tcp_flagged(path: &Path) -> Vec<String> {
    let out = run_ok(tool("tshark").arg("-r").arg(path).args([
        "-Y",
        "tcp.analysis.retransmission || tcp.analysis.fast_retransmission || \
         tcp.analysis.spurious_retransmission || tcp.analysis.duplicate_ack || \
         tcp.analysis.keep_alive || tcp.analysis.out_of_order",
        "-T",
        "fields",
        "-e",
        "frame.number",
        "-e",
        "frame.interface_name",
        "-e",
        "_ws.expert.message",
    ]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// With --dedup: one frame per packet (no packet id twice, no two frames that are the same
/// packet), and the section comment says so.
fn assert_deduplicated(path: &Path, fr: &[Frame]) {
    let mut ids = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for f in fr.iter().filter(|f| is_ip(f)) {
        assert!(ids.insert(f.packet_id.unwrap()), "packet id twice: {f:?}");
        // ip.id + TCP numbers + length: the same packet (ICMP/UDP: ip.id and ports)
        assert!(
            seen.insert(f.what.clone()),
            "frame {} is a second copy: {f:?}",
            f.number
        );
    }
    let out = run_ok(tool("capinfos").arg("-k").arg(path));
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(
        info.contains("De-duplicated by podcap-merge --dedup"),
        "no section comment: {info}"
    );
}

/// Drops the first TCP segment with data sent to `port` that arrives in namespace `ns`
/// (after the capture saw it: capture taps come before the input hook).
fn drop_one_segment(ns: &str, port: u16) {
    let nft = |args: &[&str]| {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "nft"])
            .args(args)
            .output()
            .expect("nft");
        assert!(
            out.status.success(),
            "nft {args:?} in {ns} failed (scripts/test installs nftables): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    nft(&["add", "table", "inet", "podcaploss"]);
    nft(&[
        "add",
        "chain",
        "inet",
        "podcaploss",
        "in",
        "{ type filter hook input priority 0; }",
    ]);
    nft(&[
        "add",
        "rule",
        "inet",
        "podcaploss",
        "in",
        "tcp",
        "dport",
        &port.to_string(),
        "tcp",
        "flags",
        "&",
        "psh",
        "==",
        "psh",
        "numgen",
        "inc",
        "mod",
        "1000000000",
        "0",
        "counter",
        "drop",
    ]);
}

/// Runs podcap-merge; once `armed` says the captures run, drops one segment to `port` in each
/// of `netns` (a drop before the capture started would not be in it).
fn run_with_loss(
    cmd: &mut Command,
    netns: &[String],
    port: u16,
    armed: impl Fn() -> bool,
) -> String {
    let dir = tmpdir();
    let errf = dir.path().join("stderr");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errf).unwrap())
        .spawn()
        .expect("run podcap-merge");
    assert!(
        wait_until(Duration::from_secs(20), &armed),
        "the captures never started"
    );
    std::thread::sleep(Duration::from_millis(300));
    for ns in netns {
        drop_one_segment(ns, port);
    }
    let status = child.wait().unwrap();
    let err = std::fs::read_to_string(&errf).unwrap();
    assert!(status.success(), "{cmd:?}: {status}\n{err}");
    err
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().expect("run podcap-merge");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?}: {}\n{err}", out.status);
    err
}

fn tcpdump_cmd(ns: &str) -> String {
    format!("ip netns exec {ns} tcpdump -U --immediate-mode -i any -w -")
}

#[test]
fn local_captures_of_both_ends_linked_deduplicated_and_a_real_loss_still_flagged() {
    assert_root();
    let net = NetPair::new("cp");
    let _traffic = net.http_traffic();
    std::thread::sleep(Duration::from_millis(300));
    let dir = tmpdir();
    let addrs: BTreeSet<String> = [net.ip_a.clone(), net.ip_b.clone()].into();
    let cmd = |extra: &[&str], out: &Path| {
        let mut c = bin();
        c.arg("--cmd")
            .arg(format!("a={}", tcpdump_cmd(&net.a)))
            .arg("--cmd")
            .arg(format!("b={}", tcpdump_cmd(&net.b)))
            .args(["--duration", "3", "-w"])
            .arg(out)
            .args(extra);
        c
    };
    let live = |extra: &[&str], out: &Path| run(&mut cmd(extra, out));

    // both copies, linked
    let linked = dir.path().join("linked.pcapng");
    let report = dir.path().join("latency.json");
    let err = live(&["--latency-report", report.to_str().unwrap()], &linked);
    let fr = frames(&linked);
    assert_linked(&fr, &addrs);
    assert!(
        err.contains(&format!(
            "copies across sources: {} packet(s)",
            second_copies(&fr)
        )),
        "{err}"
    );
    // the false flags this is about: every second copy looks like a retransmission
    assert!(
        !tcp_flagged(&linked).is_empty(),
        "both copies kept, tshark should flag them"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let rows = doc["latency"].as_array().unwrap();
    let pairs_seen: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["from"].as_str().unwrap().into(),
                r["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        pairs_seen,
        BTreeSet::from([("a".into(), "b".into()), ("b".into(), "a".into())])
    );
    for r in rows {
        let p50 = r["p50_us"].as_f64().unwrap();
        if r["kind"] == "clock" {
            // the two commands are two clocks, both this host's: an offset of about nothing,
            // of either sign
            assert!(p50.abs() < 1_000.0, "{r}");
            continue;
        }
        assert!(
            r["packets"].as_u64().unwrap() > 5 && (0.0..10_000.0).contains(&p50),
            "{r}"
        );
    }
    assert!(
        err.contains("pod-to-pod latency") && err.contains("a -> b: p50"),
        "{err}"
    );

    // one copy each, and tshark sees a clean network
    let dedup = dir.path().join("dedup.pcapng");
    let err = live(&["--dedup"], &dedup);
    let fr = frames(&dedup);
    assert_deduplicated(&dedup, &fr);
    assert_eq!(tcp_flagged(&dedup), Vec::<String>::new(), "{err}");
    assert!(
        err.contains("de-duplicated (--dedup):") && err.contains("(a "),
        "{err}"
    );

    // a real loss: the server's namespace drops one request after its capture saw it; the
    // client retransmits, and the de-duplicated capture still shows that
    let lossy = dir.path().join("lossy.pcapng");
    run_with_loss(
        &mut cmd(&["--dedup"], &lossy),
        std::slice::from_ref(&net.b),
        8080,
        || std::fs::metadata(&lossy).is_ok_and(|m| m.len() > 2000),
    );
    let flagged = tcp_flagged(&lossy);
    assert!(
        flagged.iter().any(|l| l.contains("retransmission")),
        "the forced loss is not flagged: {flagged:?}"
    );
    assert!(
        flagged.iter().all(|l| l.contains("\ta\t")),
        "sender's copies only: {flagged:?}"
    );
}

#[test]
fn offline_merge_of_both_ends_links_and_deduplicates_like_live() {
    assert_root();
    let net = NetPair::new("of");
    let _traffic = net.http_traffic();
    std::thread::sleep(Duration::from_millis(300));
    let dir = tmpdir();
    let (fa, fb) = (dir.path().join("a.pcap"), dir.path().join("b.pcap"));
    let cap = |ns: &str, f: &Path| {
        Bg::spawn({
            let mut c = net.exec(
                ns,
                &["tcpdump", "-U", "--immediate-mode", "-i", "any", "-w"],
            );
            c.arg(f);
            c
        })
    };
    {
        let _a = cap(&net.a, &fa);
        let _b = cap(&net.b, &fb);
        std::thread::sleep(Duration::from_secs(3));
        // (dropping Bg kills the tcpdumps; -U wrote every packet already)
    }
    let addrs: BTreeSet<String> = [net.ip_a.clone(), net.ip_b.clone()].into();
    let merged = dir.path().join("m.pcapng");
    let csv = dir.path().join("l.csv");
    let err = run(bin()
        .arg("merge")
        .arg(&fa)
        .arg(&fb)
        .arg("-w")
        .arg(&merged)
        .arg("--latency-report")
        .arg(&csv));
    let fr = frames(&merged);
    assert_linked(&fr, &addrs);
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert!(
        csv.starts_with("kind,from,to,packets,p50_us,p99_us"),
        "{csv}"
    );
    assert!(
        csv.contains("\npods,a,b,") && csv.contains("\npods,b,a,"),
        "{csv}"
    );
    // the same packets as mergecap's merge
    let mc = dir.path().join("mc.pcapng");
    run_ok(tool("mergecap").arg("-w").arg(&mc).arg(&fa).arg(&fb));
    assert_eq!(frames(&mc).len(), fr.len());
    // --dedup: the second copy of each linked pair gone, nothing else
    let dedup = dir.path().join("d.pcapng");
    let err_d = run(bin()
        .arg("merge")
        .arg(&fa)
        .arg(&fb)
        .arg("--dedup")
        .arg("-w")
        .arg(&dedup));
    let fd = frames(&dedup);
    assert_deduplicated(&dedup, &fd);
    assert_eq!(fd.len(), fr.len() - second_copies(&fr), "{err}\n{err_d}");
    assert_eq!(tcp_flagged(&dedup), Vec::<String>::new());
    // --no-link: as before, no packet ids at all
    let plain = dir.path().join("p.pcapng");
    run(bin()
        .arg("merge")
        .arg(&fa)
        .arg(&fb)
        .arg("--no-link")
        .arg("-w")
        .arg(&plain));
    assert!(frames(&plain).iter().all(|f| f.packet_id.is_none()));
}

#[test]
fn three_pods_with_http_linked_then_deduplicated_with_a_forced_loss_flagged() {
    assert_root();
    let s = Server::pods(3);
    let dir = tmpdir();
    // wait for the pods' HTTP servers and the client loop
    std::thread::sleep(Duration::from_millis(800));
    let pods_ips: BTreeSet<String> = s
        .ok(&[
            "get",
            "pods",
            "-n",
            "shop",
            "-o",
            "jsonpath={.items[*].status.podIP}",
        ])
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(pods_ips.len(), 3);

    let linked = dir.path().join("linked.pcapng");
    let err = run(s
        .podcap()
        .args(["-l", "app=mando", "--duration", "4", "-w"])
        .arg(&linked));
    let fr = frames(&linked);
    let pairs = assert_linked(&fr, &pods_ips);
    assert!(err.contains("pod-to-pod latency"), "{err}");
    let http = fr
        .iter()
        .filter(|f| f.packet_id.is_some() && f.what[4] == "80")
        .count();
    assert!(http > 10, "{http} HTTP frames linked of {pairs} pairs");

    // one copy each: tshark finds nothing to flag
    let dedup = dir.path().join("dedup.pcapng");
    let err = run(s
        .podcap()
        .args(["-l", "app=mando", "--duration", "4", "--dedup", "-w"])
        .arg(&dedup));
    let fd = frames(&dedup);
    assert_deduplicated(&dedup, &fd);
    assert_eq!(tcp_flagged(&dedup), Vec::<String>::new(), "{err}");
    assert!(err.contains("de-duplicated (--dedup):"), "{err}");

    // every pod drops the first request that reaches its port 80 once the captures run (the
    // server pods do get requests): the client's retransmission is still flagged
    let tag = format!("-{}-", s.child.id());
    let netns: Vec<String> = std::fs::read_dir("/run/netns")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("podcap-tc-") && n.contains(&tag))
        .collect();
    assert_eq!(netns.len(), 3, "{netns:?}");
    let lossy = dir.path().join("lossy.pcapng");
    let err = run_with_loss(
        s.podcap()
            .args(["-l", "app=mando", "--duration", "5", "--dedup", "-w"])
            .arg(&lossy),
        &netns,
        80,
        || s.captures().len() == 3,
    );
    let fl = frames(&lossy);
    assert_deduplicated(&lossy, &fl);
    let flagged = tcp_flagged(&lossy);
    assert!(
        flagged.iter().any(|l| l.contains("retransmission")),
        "the forced loss is not flagged: {flagged:?}\n{err}"
    );
}

/// An SLL2 frame (as `tcpdump -i any` writes) of a TCP segment; IPv6 when `v6`.
#[allow(clippy::too_many_arguments)]
fn tcp_frame(
    v6: bool,
    outgoing: bool,
    from_client: bool,
    ip_id: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let (c4, s4) = ([10, 213, 7, 1], [10, 213, 7, 2]);
    let (sport, dport) = if from_client {
        (40000u16, 80u16)
    } else {
        (80, 40000)
    };
    let mut tcp = Vec::new();
    tcp.extend_from_slice(&sport.to_be_bytes());
    tcp.extend_from_slice(&dport.to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.extend_from_slice(&[0x80, flags, 0x01, 0xf5, 0, 0, 0, 0]);
    tcp.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0x10, 0, 0, 0, 0x20, 0]); // timestamps
    tcp.extend_from_slice(payload);
    let mut f = vec![
        if v6 { 0x86 } else { 0x08 },
        if v6 { 0xdd } else { 0x00 },
        0,
        0,
    ];
    f.extend_from_slice(&2u32.to_be_bytes());
    f.extend_from_slice(&[
        0,
        1,
        if outgoing { 4 } else { 0 },
        6,
        2,
        0x42,
        0xac,
        0x11,
        0,
        2,
        0,
        0,
    ]);
    if v6 {
        f.extend_from_slice(
            &(6u32 << 28 | if from_client { 0x1234 } else { 0x5678 }).to_be_bytes(),
        );
        f.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        f.extend_from_slice(&[6, 64]);
        let addr = |last: u8| [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last];
        let (a, b) = if from_client { (1, 2) } else { (2, 1) };
        f.extend_from_slice(&addr(a));
        f.extend_from_slice(&addr(b));
    } else {
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
        f.extend_from_slice(&ip_id.to_be_bytes());
        f.extend_from_slice(&[0x40, 0, 64, 6, 0, 0]);
        let (a, b) = if from_client { (c4, s4) } else { (s4, c4) };
        f.extend_from_slice(&a);
        f.extend_from_slice(&b);
    }
    f.extend_from_slice(&tcp);
    f
}

#[test]
fn an_offloaded_segment_and_the_pieces_the_receiver_captured_share_one_packet_id() {
    // the client's capture holds one 63,712-byte segment (TSO); the server's the 44 pieces the
    // wire carried, 50 µs later, IPv4 ids counting up; then the server's ACK in both
    const MSS: usize = 1448;
    for v6 in [false, true] {
        let dir = tmpdir();
        let data: Vec<u8> = (0..44 * MSS).map(|i| (i % 251) as u8).collect();
        let (seq, ack) = (1_000_000u32, 7_000u32);
        let t = 1_700_000_000u32;
        let client = vec![
            (
                t,
                100,
                tcp_frame(v6, true, true, 300, seq, ack, 0x18, &data),
                0,
            ),
            (
                t,
                900,
                tcp_frame(
                    v6,
                    false,
                    false,
                    900,
                    ack,
                    seq + data.len() as u32,
                    0x10,
                    b"",
                ),
                0,
            ),
        ];
        let mut server: Vec<(u32, u32, Vec<u8>, u32)> = (0..44)
            .map(|k| {
                let piece = &data[k * MSS..(k + 1) * MSS];
                let flags = if k == 43 { 0x18 } else { 0x10 };
                let f = tcp_frame(
                    v6,
                    false,
                    true,
                    300 + k as u16,
                    seq + (k * MSS) as u32,
                    ack,
                    flags,
                    piece,
                );
                (t, 150 + k as u32, f, 0)
            })
            .collect();
        server.push((
            t,
            850,
            tcp_frame(
                v6,
                true,
                false,
                900,
                ack,
                seq + data.len() as u32,
                0x10,
                b"",
            ),
            0,
        ));
        let fix = |recs: Vec<(u32, u32, Vec<u8>, u32)>| -> Vec<(u32, u32, Vec<u8>, u32)> {
            recs.into_iter()
                .map(|(s, us, d, _)| {
                    let n = d.len() as u32;
                    (s, us, d, n)
                })
                .collect()
        };
        let (fc, fs) = (
            dir.path().join("client.pcap"),
            dir.path().join("server.pcap"),
        );
        std::fs::write(&fc, pcap_file(false, false, 276, &fix(client))).unwrap();
        std::fs::write(&fs, pcap_file(false, false, 276, &fix(server))).unwrap();

        let out = dir.path().join("m.pcapng");
        let err = run(bin().arg("merge").arg(&fc).arg(&fs).arg("-w").arg(&out));
        let out_ids = run_ok(tool("tshark").arg("-r").arg(&out).args([
            "-T",
            "fields",
            "-e",
            "frame.packet_id",
            "-e",
            "tcp.len",
        ]));
        let rows: Vec<(u64, u32)> = String::from_utf8_lossy(&out_ids.stdout)
            .lines()
            .map(|l| {
                let (id, len) = l.split_once('\t').unwrap();
                (id.parse().unwrap(), len.parse().unwrap())
            })
            .collect();
        assert_eq!(rows.len(), 47, "{err}");
        let data_ids: BTreeSet<u64> = rows.iter().filter(|r| r.1 > 0).map(|r| r.0).collect();
        let ack_ids: BTreeSet<u64> = rows.iter().filter(|r| r.1 == 0).map(|r| r.0).collect();
        assert_eq!(
            data_ids.len(),
            1,
            "the segment and its 44 pieces: one packet id: {rows:?}"
        );
        assert_eq!(
            ack_ids.len(),
            1,
            "the ACK's two copies: one packet id: {rows:?}"
        );
        assert_ne!(data_ids, ack_ids);
        assert!(
            err.contains("client -> server: p50 5"),
            "one latency sample, 50 µs: {err}"
        );

        let dedup = dir.path().join("d.pcapng");
        let err = run(bin()
            .arg("merge")
            .arg(&fc)
            .arg(&fs)
            .arg("--dedup")
            .arg("-w")
            .arg(&dedup));
        let kept = run_ok(tool("tshark").arg("-r").arg(&dedup).args([
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "tcp.len",
        ]));
        assert_eq!(
            String::from_utf8_lossy(&kept.stdout)
                .lines()
                .collect::<Vec<_>>(),
            vec![format!("client\t{}", data.len()), "server\t0".to_string()],
            "the sender's copies: {err}"
        );
        assert!(
            err.contains("45 second copies") && err.contains("(client 1, server 44)"),
            "{err}"
        );
        assert_eq!(tcp_flagged(&dedup), Vec::<String>::new());
    }
}
