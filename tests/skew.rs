//! Clock skew between nodes, end to end (issue 13): the estimate the run summary gives from
//! linked copies of packets, the "received before sent" counts, and `--correct-skew` shifting
//! each node's timestamps by it (and saying so in its interfaces' comments).
//!
//! - the test cluster with `--nodes 2 --clock-offset node-2=+40ms --node-latency 20ms`, live,
//!   without and with `--correct-skew`, tshark as the judge of the written timestamps;
//! - two capture files written here (the same ICMP echoes as a sender and a receiver saw them,
//!   the receiver's clock 25 ms ahead), merged offline in two passes;
//! - the combinations that are refused (`-` as an input, `--no-link`).
//!
//! The cluster tests need root (network namespaces, tcpdump; CI runs as root); kubectl, tshark,
//! capinfos and ip must be installed: a missing one fails the test, never skips it.

mod common;

use common::cluster::{have_kubectl, Server};
use common::{bin, capinfos_clean, pcap_file, run_ok, tmpdir, tool, tshark_packets, warnings};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

const MS: f64 = 1e6;

fn assert_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests need root (network namespaces, tcpdump); CI runs as root"
    );
}

/// The peers the tests judge with: missing ones fail here, with the fix.
fn tools() {
    for t in ["tshark", "capinfos", "ip"] {
        tool(t);
    }
}

// ---------------------------------------------------------------------------------------------
// The run summary
// ---------------------------------------------------------------------------------------------

/// One estimate line of the summary:
/// `node-2 is +40.00 ms (± 12.0 µs) from node-1, from 812 pairs[, drifting …][ (too little …)]`.
#[derive(Clone, Debug)]
struct Estimate {
    node: String,
    offset_ns: f64,
    uncertainty_ns: f64,
    reference: String,
    pairs: u64,
    line: String,
}

/// `40.00` and `ms` → 40e6 (ns); units as `show_ns` prints them.
fn to_ns(value: &str, unit: &str) -> Option<f64> {
    let v: f64 = value.parse().ok()?;
    let scale = match unit {
        "ns" => 1.0,
        "µs" | "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    };
    Some(v * scale)
}

fn parse_estimate(line: &str) -> Option<Estimate> {
    let (head, rest) = line.split_once(" is ")?;
    let node = head.split_whitespace().last()?.to_string();
    // "+40.00 ms (± 12.0 µs) from node-1, from 812 pairs…"
    let (value, rest) = rest.split_once(' ')?;
    if !(value.starts_with('+') || value.starts_with('-')) {
        return None;
    }
    let (unit, rest) = rest.split_once(' ')?;
    let offset_ns = to_ns(value.trim_start_matches('+'), unit)?;
    let rest = rest.strip_prefix("(± ")?;
    let (u_value, rest) = rest.split_once(' ')?;
    let (u_unit, rest) = rest.split_once(')')?;
    let uncertainty_ns = to_ns(u_value, u_unit)?;
    let rest = rest.strip_prefix(" from ")?;
    let (reference, rest) = rest.split_once(", from ")?;
    let (pairs, rest) = rest.split_once(' ')?;
    if !rest.starts_with("pairs") {
        return None;
    }
    Some(Estimate {
        node,
        offset_ns,
        uncertainty_ns,
        reference: reference.to_string(),
        pairs: pairs.parse().ok()?,
        line: line.to_string(),
    })
}

fn estimates(summary: &str) -> Vec<Estimate> {
    summary.lines().filter_map(parse_estimate).collect()
}

/// The offset of `node`'s clock from `other`'s (ns) as the summary states it, whichever of the
/// two it took as the reference.
fn offset_between(summary: &str, node: &str, other: &str) -> (f64, Estimate) {
    let all = estimates(summary);
    if let Some(e) = all.iter().find(|e| e.node == node && e.reference == other) {
        return (e.offset_ns, e.clone());
    }
    if let Some(e) = all.iter().find(|e| e.node == other && e.reference == node) {
        return (-e.offset_ns, e.clone());
    }
    panic!("no estimate line for {node} against {other} in the summary:\n{summary}");
}

/// `clocks: N of M linked pairs between nodes look received before they were sent …
/// --correct-skew …` (the run without the flag) → (N, M).
fn reversed_suggestion(summary: &str) -> Option<(u64, u64, String)> {
    summary.lines().find_map(|l| {
        let at = l.find("clocks: ")?;
        let rest = &l[at + "clocks: ".len()..];
        let (n, rest) = rest.split_once(" of ")?;
        let (m, rest) = rest.split_once(' ')?;
        if !rest.starts_with("linked pairs between nodes look received before they were sent") {
            return None;
        }
        Some((n.parse().ok()?, m.parse().ok()?, l.to_string()))
    })
}

/// `clocks: received before sent: N of M pairs as captured, K as written (--correct-skew)`
/// → (N, M, K).
fn reversed_corrected(summary: &str) -> Option<(u64, u64, u64)> {
    summary.lines().find_map(|l| {
        let at = l.find("clocks: received before sent: ")?;
        let rest = &l[at + "clocks: received before sent: ".len()..];
        let (n, rest) = rest.split_once(" of ")?;
        let (m, rest) = rest.split_once(" pairs as captured, ")?;
        let (k, rest) = rest.split_once(" as written")?;
        if !rest.contains("(--correct-skew)") {
            return None;
        }
        Some((n.parse().ok()?, m.parse().ok()?, k.parse().ok()?))
    })
}

// ---------------------------------------------------------------------------------------------
// The written file
// ---------------------------------------------------------------------------------------------

/// `(name, comment)` of every interface description block of a pcapng file, in order.
fn idb_comments(path: &Path) -> Vec<(String, Option<String>)> {
    use pcap_parser::pcapng::{parse_block_be, parse_block_le, Block};
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = |v: &[u8]| {
        String::from_utf8_lossy(v)
            .trim_end_matches('\0')
            .to_string()
    };
    let mut out = Vec::new();
    let mut big_endian = false;
    let mut at = 0;
    while at + 12 <= data.len() {
        let rest = &data[at..];
        if rest[..4] == [0x0A, 0x0D, 0x0D, 0x0A] {
            big_endian = rest[8..12] == [0x1A, 0x2B, 0x3C, 0x4D];
        }
        let len_bytes: [u8; 4] = rest[4..8].try_into().expect("4 bytes");
        let len = if big_endian {
            u32::from_be_bytes(len_bytes)
        } else {
            u32::from_le_bytes(len_bytes)
        } as usize;
        assert!(
            len >= 12 && len.is_multiple_of(4) && len <= rest.len(),
            "{}: bad block length {len} at {at}",
            path.display()
        );
        let block = &rest[..len];
        let parsed = if big_endian {
            parse_block_be(block)
        } else {
            parse_block_le(block)
        };
        let (_, block) = parsed.unwrap_or_else(|e| panic!("pcap-parser at {at}: {e:?}"));
        if let Block::InterfaceDescription(idb) = block {
            let opt = |code: u16| {
                idb.options
                    .iter()
                    .find(|o| o.code.0 == code)
                    .map(|o| text(o.value()))
            };
            out.push((opt(2).unwrap_or_default(), opt(1)));
        }
        at += len;
    }
    assert_eq!(at, data.len(), "{} ends mid-block", path.display());
    out
}

/// The shift a comment states: `… clock shifted by -40.00 ms …` → −40e6 (ns).
fn stated_shift(comment: &str) -> Option<f64> {
    let at = comment.find("clock shifted by ")?;
    let mut words = comment[at + "clock shifted by ".len()..].split_whitespace();
    let value = words.next()?;
    let unit = words
        .next()?
        .trim_end_matches(|c: char| c.is_ascii_punctuation());
    to_ns(value.trim_start_matches('+'), unit)
}

/// Nanoseconds since the epoch of tshark's `frame.time_epoch`.
fn epoch_ns(s: &str) -> i128 {
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    secs.parse::<i128>()
        .unwrap_or_else(|e| panic!("epoch {s:?}: {e}"))
        * 1_000_000_000
        + format!("{frac:0<9}")[..9]
            .parse::<i128>()
            .unwrap_or_else(|e| panic!("epoch {s:?}: {e}"))
}

/// tshark's fields of the frames matching `filter` (first occurrence of each field).
fn tshark_fields(path: &Path, fields: &[&str], filter: &str) -> Vec<Vec<String>> {
    let mut cmd = tool("tshark");
    cmd.arg("-r")
        .arg(path)
        .args(["-Y", filter, "-T", "fields", "-E", "occurrence=f"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = run_ok(&mut cmd);
    assert_eq!(
        warnings(&out.stderr),
        Vec::<String>::new(),
        "tshark warned on {}",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// Frame timestamps of the whole file in file order: how many times it steps back in time.
fn backward_steps(path: &Path) -> usize {
    let ts: Vec<i128> = tshark_fields(path, &["frame.time_epoch"], "frame")
        .iter()
        .map(|f| epoch_ns(&f[0]))
        .collect();
    ts.windows(2).filter(|w| w[1] < w[0]).count()
}

/// One packet seen leaving one node and entering another, as written.
#[derive(Clone, Debug)]
struct Pair {
    from: String,
    to: String,
    /// `echo-request` or `echo-reply`, and the ICMP ident/seq (or IP id)
    what: String,
    sent: i128,
    received: i128,
}

impl Pair {
    fn dt_ms(&self) -> f64 {
        (self.received - self.sent) as f64 / MS
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty(), "median of nothing");
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

// ---------------------------------------------------------------------------------------------
// The test cluster
// ---------------------------------------------------------------------------------------------

/// The pod an interface name (`shop/POD/any`) captures.
fn pod_of_iface(iface: &str) -> &str {
    iface
        .split('/')
        .nth(1)
        .unwrap_or_else(|| panic!("interface {iface:?} is not shop/POD/IFACE"))
}

/// Every ICMP echo request and reply between pods of different nodes whose two copies (the
/// sender pod's, the receiver pod's) are both in the file.
fn cluster_echo_pairs(
    path: &Path,
    pod_node: &BTreeMap<String, String>,
    ip_node: &BTreeMap<String, String>,
) -> Vec<Pair> {
    let rows = tshark_fields(
        path,
        &[
            "frame.time_epoch",
            "frame.interface_name",
            "ip.src",
            "ip.dst",
            "icmp.type",
            "icmp.ident",
            "icmp.seq",
        ],
        "icmp.type == 8 || icmp.type == 0",
    );
    type Seen = (Option<i128>, Option<i128>);
    let mut copies: BTreeMap<(String, String, String, String, String), Seen> = BTreeMap::new();
    for f in &rows {
        let (Some(src_node), Some(dst_node)) = (ip_node.get(&f[2]), ip_node.get(&f[3])) else {
            continue;
        };
        if src_node == dst_node {
            continue;
        }
        let here = &pod_node[pod_of_iface(&f[1])];
        let e = copies
            .entry((
                f[2].clone(),
                f[3].clone(),
                f[4].clone(),
                f[5].clone(),
                f[6].clone(),
            ))
            .or_default();
        let t = epoch_ns(&f[0]);
        if here == src_node {
            assert!(e.0.is_none(), "two sent copies of {f:?}");
            e.0 = Some(t);
        } else if here == dst_node {
            assert!(e.1.is_none(), "two received copies of {f:?}");
            e.1 = Some(t);
        }
    }
    copies
        .into_iter()
        .filter_map(|((src, dst, ty, ident, seq), (sent, received))| {
            Some(Pair {
                from: ip_node[&src].clone(),
                to: ip_node[&dst].clone(),
                what: format!(
                    "{} {src} → {dst} ident {ident} seq {seq}",
                    if ty == "8" {
                        "echo-request"
                    } else {
                        "echo-reply"
                    }
                ),
                sent: sent?,
                received: received?,
            })
        })
        .collect()
}

/// The cluster of the issue: node-2's clock 40 ms ahead, 20 ms between the nodes.
fn skewed_cluster() -> Server {
    Server::start(
        2,
        &[
            "--nodes",
            "2",
            "--node-latency",
            "20ms",
            "--clock-offset",
            "node-2=+40ms",
        ],
    )
}

/// podcap-merge against the cluster (`-l app=mando --duration 6`, and `extra`): its stderr.
fn capture(s: &Server, out: &Path, extra: &[&str]) -> String {
    let t0 = Instant::now();
    let run = s
        .podcap()
        .args(["-l", "app=mando", "--duration", "6"])
        .args(extra)
        .arg("-w")
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .expect("run podcap-merge");
    let err = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{}\n{err}", run.status);
    eprintln!("podcap-merge {extra:?} ran {:?}:\n{err}", t0.elapsed());
    err
}

/// node-2's clock against node-1's, as the summary states it: +40 ms within 1 ms.
fn assert_estimate_40ms(summary: &str) -> Estimate {
    let (offset, e) = offset_between(summary, "node-2", "node-1");
    assert!(
        (offset - 40.0 * MS).abs() <= 1.0 * MS,
        "node-2 is 40 ms ahead of node-1; the summary says {:+.3} ms: {}",
        offset / MS,
        e.line
    );
    assert!(
        e.pairs >= 20 && e.uncertainty_ns < 1.0 * MS,
        "an estimate from many pairs, confident: {}",
        e.line
    );
    e
}

#[test]
fn cluster_skew_is_estimated_and_reversed_pairs_are_reported() {
    assert_root();
    have_kubectl();
    tools();
    let t0 = Instant::now();
    let s = skewed_cluster();
    let pod_node = s.node_by(".metadata.name");
    let ip_node = s.node_by(".status.podIP");
    let dir = tmpdir();
    let out = dir.path().join("skewed.pcapng");
    let err = capture(&s, &out, &[]);

    assert_estimate_40ms(&err);
    let (n, m, line) = reversed_suggestion(&err).unwrap_or_else(|| {
        panic!("no `clocks: N of M linked pairs between nodes look received before …`:\n{err}")
    });
    assert!(
        line.contains("--correct-skew"),
        "the line suggests the flag: {line}"
    );
    assert!(n > 0 && n <= m, "{line}");

    // The file shows them: node-2 → node-1 takes 20 ms but is sent on a clock 40 ms ahead, so
    // it looks received 20 ms before it was sent; node-1 → node-2 looks 60 ms long.
    let pairs = cluster_echo_pairs(&out, &pod_node, &ip_node);
    let two_one: Vec<&Pair> = pairs.iter().filter(|p| p.from == "node-2").collect();
    let one_two: Vec<&Pair> = pairs.iter().filter(|p| p.from == "node-1").collect();
    assert!(
        two_one.len() >= 10 && one_two.len() >= 10,
        "echo pairs both ways: {pairs:?}\n{err}"
    );
    let reversed: Vec<&&Pair> = two_one.iter().filter(|p| p.received < p.sent).collect();
    assert!(
        reversed.len() * 4 >= two_one.len() * 3,
        "node-2 → node-1 must look received before it was sent: {two_one:?}"
    );
    let med = median(two_one.iter().map(|p| p.dt_ms()).collect());
    assert!(
        (-25.0..=-15.0).contains(&med),
        "node-2 → node-1 received − sent: median {med:.3} ms, want about −20: {two_one:?}"
    );
    assert!(
        one_two.iter().all(|p| p.dt_ms() >= 55.0),
        "node-1 → node-2: 20 ms on a clock 40 ms behind the receiver's: {one_two:?}"
    );
    // every reversed echo of the file is among the pairs the summary counts
    assert!(
        n as usize >= reversed.len() && m as usize >= pairs.len(),
        "the summary counts {n} of {m}; the file has {} reversed of {} echo pairs: {line}",
        reversed.len(),
        pairs.len()
    );
    // and without the flag, no interface claims a shift
    for (name, comment) in idb_comments(&out) {
        assert!(
            !comment
                .as_deref()
                .unwrap_or("")
                .contains("clock shifted by"),
            "{name}: {comment:?}"
        );
    }
    eprintln!(
        "{} echo pairs ({} reversed); summary: {n} of {m} reversed; {:?} in all",
        pairs.len(),
        reversed.len(),
        t0.elapsed()
    );
}

#[test]
fn cluster_skew_corrected_leaves_no_pair_received_before_sent() {
    assert_root();
    have_kubectl();
    tools();
    let t0 = Instant::now();
    let s = skewed_cluster();
    let pod_node = s.node_by(".metadata.name");
    let ip_node = s.node_by(".status.podIP");
    let dir = tmpdir();
    let out = dir.path().join("corrected.pcapng");
    let err = capture(&s, &out, &["--correct-skew"]);

    let e = assert_estimate_40ms(&err);
    let (n, m, k) = reversed_corrected(&err).unwrap_or_else(|| {
        panic!("no `clocks: received before sent: N of M pairs as captured, K as written`:\n{err}")
    });
    assert!(
        n > 0 && n <= m,
        "as captured, node-2 → node-1 is reversed: {err}"
    );
    assert_eq!(k, 0, "none as written:\n{err}");
    assert!(
        !err.contains("written uncorrected"),
        "the merge waited for the estimate before writing anything of node-2:\n{err}"
    );
    assert!(
        reversed_suggestion(&err).is_none(),
        "no suggestion of the flag when it is given:\n{err}"
    );

    // The file: every echo request and reply between the nodes received after it was sent, and
    // both ways about the 20 ms the network takes.
    let pairs = cluster_echo_pairs(&out, &pod_node, &ip_node);
    let reversed: Vec<&Pair> = pairs.iter().filter(|p| p.received < p.sent).collect();
    assert!(
        reversed.is_empty(),
        "{} of {} echo pairs received before sent as written: {reversed:?}",
        reversed.len(),
        pairs.len()
    );
    for from in ["node-1", "node-2"] {
        let dts: Vec<f64> = pairs
            .iter()
            .filter(|p| p.from == from)
            .map(Pair::dt_ms)
            .collect();
        assert!(dts.len() >= 10, "echo pairs from {from}: {pairs:?}");
        let med = median(dts.clone());
        assert!(
            (18.0..=26.0).contains(&med),
            "{from} → the other node as written: median {med:.3} ms, want about 20: {dts:?}"
        );
    }

    // The corrected node's interfaces say by how much (the reference's need not).
    let reference = if e.node == "node-2" {
        "node-1"
    } else {
        "node-2"
    };
    let want = if reference == "node-1" {
        -40.0 * MS
    } else {
        40.0 * MS
    };
    let idbs = idb_comments(&out);
    let corrected: Vec<&(String, Option<String>)> = idbs
        .iter()
        .filter(|(name, _)| pod_node.get(pod_of_iface(name)).map(String::as_str) != Some(reference))
        .collect();
    assert!(
        !corrected.is_empty(),
        "no interface of the corrected node: {idbs:?}"
    );
    for (name, comment) in corrected {
        let c = comment
            .as_deref()
            .unwrap_or_else(|| panic!("{name}: no comment on a corrected interface: {idbs:?}"));
        let shift = stated_shift(c).unwrap_or_else(|| panic!("{name}: {c:?}"));
        assert!(
            (shift - want).abs() <= 1.0 * MS,
            "{name}: shifted by {:+.3} ms, want {:+.0}: {c:?}",
            shift / MS,
            want / MS
        );
    }

    // Wireshark's tools read it without a word.
    let pkts = tshark_packets(&out);
    assert!(!pkts.is_empty());
    capinfos_clean(&out);
    eprintln!(
        "{} echo pairs, {} packets, {} backward steps in the file; summary {n} of {m} → {k}; \
         interfaces {idbs:?}; {:?} in all",
        pairs.len(),
        pkts.len(),
        backward_steps(&out),
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Offline: two files, two clocks
// ---------------------------------------------------------------------------------------------

const A_IP: [u8; 4] = [10, 1, 0, 1];
const B_IP: [u8; 4] = [10, 1, 0, 2];
/// The receiver's (b's) clock is this far ahead.
const B_AHEAD_NS: u64 = 25_000_000;
/// One way between a and b.
const TRANSIT_NS: u64 = 1_000_000;
/// Exchanges (an echo request and its reply), one every 20 ms: 4 s, 400 pairs.
const EXCHANGES: u64 = 200;
const SPACING_NS: u64 = 20_000_000;
const T0_NS: u64 = 1_700_000_000_000_000_000;

fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A Linux cooked (SLL2, what `tcpdump -i any` writes) IPv4 ICMP echo frame; `outgoing`: the
/// packet type says this host sent it (4), else that it was for this host (0).
fn echo_frame(
    outgoing: bool,
    src: [u8; 4],
    dst: [u8; 4],
    ip_id: u16,
    request: bool,
    ident: u16,
    seq: u16,
) -> Vec<u8> {
    let mut icmp = vec![if request { 8 } else { 0 }, 0, 0, 0];
    icmp.extend(ident.to_be_bytes());
    icmp.extend(seq.to_be_bytes());
    icmp.extend((0..56u16).map(|i| (i as u8).wrapping_add(seq as u8)));
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x45, 0];
    ip.extend(((20 + icmp.len()) as u16).to_be_bytes());
    ip.extend(ip_id.to_be_bytes());
    ip.extend([0x40, 0, 64, 1, 0, 0]);
    ip.extend(src);
    ip.extend(dst);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = vec![0x08, 0x00, 0, 0];
    f.extend(2u32.to_be_bytes()); // ifindex
    f.extend(1u16.to_be_bytes()); // ARPHRD_ETHER
    f.push(if outgoing { 4 } else { 0 });
    f.push(6);
    f.extend([0x02, 0, 0, 0, 0, if outgoing { 1 } else { 2 }, 0, 0]);
    f.extend(ip);
    f.extend(icmp);
    f
}

/// Writes `a.pcap` (true clock) and `b.pcap` (clock `B_AHEAD_NS` ahead): the same ICMP echoes
/// as each end captured them, a pinging b and b pinging a in turn, `TRANSIT_NS` one way plus a
/// little jitter (0–90 µs; every 200 ms has a packet without any, each way). Returns the number
/// of packets each file holds.
fn write_two_clocks(a: &Path, b: &Path) -> usize {
    write_two_clocks_n(a, b, EXCHANGES, SPACING_NS)
}

/// `exchanges` echo exchanges, one every `spacing` ns, alternating who pings.
fn write_two_clocks_n(a: &Path, b: &Path, exchanges: u64, spacing: u64) -> usize {
    let mut recs: [Vec<(u64, Vec<u8>)>; 2] = [Vec::new(), Vec::new()];
    let ips = [A_IP, B_IP];
    let clock = [0, B_AHEAD_NS];
    let mut j = 0u64; // packets so far: their IP ids, and their jitter
    let mut one = |recs: &mut [Vec<(u64, Vec<u8>)>; 2],
                   from: usize,
                   t: u64,
                   req: bool,
                   ident: u16,
                   seq: u16| {
        let to = 1 - from;
        let jitter = (j % 10) * 10_000;
        let arrives = t + TRANSIT_NS + jitter;
        let id = 1000 + j as u16;
        j += 1;
        recs[from].push((
            t + clock[from],
            echo_frame(true, ips[from], ips[to], id, req, ident, seq),
        ));
        recs[to].push((
            arrives + clock[to],
            echo_frame(false, ips[from], ips[to], id, req, ident, seq),
        ));
        arrives
    };
    for i in 0..exchanges {
        let t = T0_NS + i * spacing;
        let from = (i % 2) as usize; // even: a pings b; odd: b pings a
        let (ident, seq) = (0x1100 + from as u16, (i / 2) as u16);
        let arrived = one(&mut recs, from, t, true, ident, seq);
        one(&mut recs, 1 - from, arrived + 50_000, false, ident, seq);
    }
    for (path, mut r) in [(a, recs[0].clone()), (b, recs[1].clone())] {
        r.sort_by_key(|x| x.0);
        let recs: Vec<(u32, u32, Vec<u8>, u32)> = r
            .into_iter()
            .map(|(t, d)| {
                let n = d.len() as u32;
                ((t / 1_000_000_000) as u32, (t % 1_000_000_000) as u32, d, n)
            })
            .collect();
        std::fs::write(path, pcap_file(false, true, 276, &recs)).expect("write capture");
    }
    (exchanges * 2) as usize
}

fn merge(args: &[&str], files: &[&Path], out: &Path) -> (Output, String) {
    let t0 = Instant::now();
    let o = bin()
        .arg("merge")
        .args(files)
        .args(args)
        .arg("-w")
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .expect("run podcap-merge merge");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    eprintln!("merge {args:?} ran {:?}:\n{err}", t0.elapsed());
    (o, err)
}

/// Every echo of the merged file with both copies: the sent one is the copy whose cooked
/// header says outgoing. Each IP id is one packet.
fn file_echo_pairs(path: &Path) -> Vec<Pair> {
    let rows = tshark_fields(
        path,
        &[
            "frame.time_epoch",
            "sll.pkttype",
            "ip.src",
            "ip.dst",
            "ip.id",
            "icmp.type",
        ],
        "icmp",
    );
    let mut by_id: BTreeMap<String, (Option<i128>, Option<i128>, String, String)> = BTreeMap::new();
    for f in &rows {
        let e = by_id
            .entry(f[4].clone())
            .or_insert((None, None, f[2].clone(), f[3].clone()));
        let t = epoch_ns(&f[0]);
        match f[1].as_str() {
            "4" => {
                assert!(e.0.is_none(), "two sent copies: {f:?}");
                e.0 = Some(t);
            }
            "0" => {
                assert!(e.1.is_none(), "two received copies: {f:?}");
                e.1 = Some(t);
            }
            other => panic!("packet type {other:?} of {f:?}"),
        }
    }
    by_id
        .into_iter()
        .map(|(id, (sent, received, src, dst))| Pair {
            what: format!("ip id {id}"),
            sent: sent.unwrap_or_else(|| panic!("ip id {id}: no sent copy")),
            received: received.unwrap_or_else(|| panic!("ip id {id}: no received copy")),
            from: src,
            to: dst,
        })
        .collect()
}

#[test]
fn offline_two_clocks_estimated_and_corrected_in_two_passes() {
    tools();
    let t0 = Instant::now();
    let dir = tmpdir();
    let (a, b) = (dir.path().join("a.pcap"), dir.path().join("b.pcap"));
    let per_file = write_two_clocks(&a, &b);

    // Without the flag: the estimate, the reversed pairs (every b → a packet: sent at t + 25 ms
    // on b's clock, received at t + 1 ms on a's), and the suggestion.
    let plain = dir.path().join("plain.pcapng");
    let (o, err) = merge(&[], &[&a, &b], &plain);
    assert!(o.status.success(), "{}\n{err}", o.status);
    let (offset, e) = offset_between(&err, "b", "a");
    assert!(
        (offset - 25.0 * MS).abs() <= 0.1 * MS,
        "b's clock is 25 ms ahead of a's; the summary says {:+.4} ms: {}",
        offset / MS,
        e.line
    );
    assert_eq!(e.pairs, per_file as u64, "every packet a pair: {}", e.line);
    let (n, m, line) = reversed_suggestion(&err)
        .unwrap_or_else(|| panic!("no `clocks: N of M … received before they were sent`:\n{err}"));
    assert!(line.contains("--correct-skew"), "{line}");
    assert_eq!((n, m), (per_file as u64 / 2, per_file as u64), "{line}");
    let before = file_echo_pairs(&plain);
    assert_eq!(before.len(), per_file);
    let reversed = before.iter().filter(|p| p.received < p.sent).count();
    assert_eq!(reversed, per_file / 2, "b → a as captured");

    // With it: two passes, b's timestamps 25 ms earlier, nothing received before sent, the
    // output in time order.
    let fixed = dir.path().join("fixed.pcapng");
    let (o, err) = merge(&["--correct-skew"], &[&a, &b], &fixed);
    assert!(o.status.success(), "{}\n{err}", o.status);
    let (offset, e) = offset_between(&err, "b", "a");
    assert!(
        (offset - 25.0 * MS).abs() <= 0.1 * MS,
        "the summary says {:+.4} ms: {}",
        offset / MS,
        e.line
    );
    let counts = reversed_corrected(&err)
        .unwrap_or_else(|| panic!("no `clocks: received before sent: … as written`:\n{err}"));
    assert_eq!(
        counts,
        (per_file as u64 / 2, per_file as u64, 0),
        "N of M as captured, 0 as written:\n{err}"
    );
    let pairs = file_echo_pairs(&fixed);
    assert_eq!(pairs.len(), per_file, "every packet, both copies");
    let bad: Vec<&Pair> = pairs.iter().filter(|p| p.received < p.sent).collect();
    assert!(bad.is_empty(), "received before sent as written: {bad:?}");
    // and the one-way times are the network's again: 1 ms plus at most 90 µs (± the estimate)
    for p in &pairs {
        assert!(
            (0.9..=1.2).contains(&p.dt_ms()),
            "{} {} → {}: {:.4} ms as written",
            p.what,
            p.from,
            p.to,
            p.dt_ms()
        );
    }
    assert_eq!(backward_steps(&fixed), 0, "the output in time order");
    // b's interface says it was shifted, by about −25 ms (a is the reference: first input)
    let want = if e.node == "b" { -25.0 * MS } else { 25.0 * MS };
    let corrected = if e.node == "b" { "b" } else { "a" };
    let idbs = idb_comments(&fixed);
    let (_, comment) = idbs
        .iter()
        .find(|(name, _)| name == corrected)
        .unwrap_or_else(|| panic!("no interface named {corrected}: {idbs:?}"));
    let c = comment
        .as_deref()
        .unwrap_or_else(|| panic!("{corrected}: no comment: {idbs:?}"));
    let shift = stated_shift(c).unwrap_or_else(|| panic!("{corrected}: {c:?}"));
    assert!(
        (shift - want).abs() <= 0.1 * MS,
        "{corrected}: shifted by {:+.4} ms, want {:+.0}: {c:?}",
        shift / MS,
        want / MS
    );
    capinfos_clean(&fixed);
    tshark_packets(&fixed);

    // Two inputs named alike (`1/x.pcap`, `2/x.pcap`) are two clocks, not one: the second is
    // `x#2`, 25 ms ahead.
    for (n, from) in [("1", &a), ("2", &b)] {
        std::fs::create_dir(dir.path().join(n)).expect("mkdir");
        std::fs::copy(from, dir.path().join(n).join("x.pcap")).expect("copy");
    }
    let (x1, x2) = (dir.path().join("1/x.pcap"), dir.path().join("2/x.pcap"));
    let alike = dir.path().join("alike.pcapng");
    let (o, err) = merge(&["--correct-skew"], &[&x1, &x2], &alike);
    assert!(o.status.success(), "{}\n{err}", o.status);
    let (offset, e) = offset_between(&err, "x#2", "x");
    assert!(
        (offset - 25.0 * MS).abs() <= 0.1 * MS,
        "2/x.pcap is 25 ms ahead of 1/x.pcap; the summary says {:+.4} ms: {}",
        offset / MS,
        e.line
    );
    assert_eq!(
        reversed_corrected(&err).map(|c| c.2),
        Some(0),
        "none received before sent as written:\n{err}"
    );

    // One input alone: nothing to learn from, and the summary says so rather than nothing.
    let alone = dir.path().join("alone.pcapng");
    let (o, err) = merge(&["--correct-skew"], &[&a], &alone);
    assert!(o.status.success(), "{}\n{err}", o.status);
    assert!(
        err.contains("clocks: --correct-skew corrected nothing"),
        "a run that could correct nothing must say so:\n{err}"
    );
    eprintln!("offline: {:?} in all", t0.elapsed());
}

/// Live `--correct-skew` holds the output until the clocks are known; sources whose budget
/// (`--source-buffer 64` KiB) fills long before that keep delivering (the engine lends them
/// budget while it holds, within a bound), so the estimate comes from enough of the capture:
/// here 64 KiB is about a quarter of a second of each source, fewer windows than a confident
/// estimate needs.
#[test]
fn live_correction_waits_past_the_sources_budgets() {
    tools();
    let dir = tmpdir();
    let (a, b) = (dir.path().join("a.pcap"), dir.path().join("b.pcap"));
    let per_file = write_two_clocks_n(&a, &b, 2000, 2_000_000);
    assert!(std::fs::metadata(&a).expect("a").len() > 4 * 64 * 1024);
    let out = dir.path().join("live.pcapng");
    let o = bin()
        .args(["--correct-skew", "--source-buffer", "64", "--cmd"])
        .arg(format!("a=cat {}", a.display()))
        .arg("--cmd")
        .arg(format!("b=cat {}", b.display()))
        .arg("-w")
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .expect("run podcap-merge");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{}\n{err}", o.status);
    let (offset, e) = offset_between(&err, "b", "a");
    assert!((offset - 25.0 * MS).abs() <= 0.1 * MS, "{}", e.line);
    let counts = reversed_corrected(&err).unwrap_or_else(|| panic!("no counts:\n{err}"));
    assert_eq!(counts.2, 0, "received before sent as written:\n{err}");
    assert!(
        !err.contains("written uncorrected"),
        "every packet corrected:\n{err}"
    );
    let pairs = file_echo_pairs(&out);
    assert_eq!(pairs.len(), per_file, "every packet, both copies");
    assert!(pairs.iter().all(|p| p.received >= p.sent));
    assert_eq!(backward_steps(&out), 0, "the output in time order");
}

// ---------------------------------------------------------------------------------------------
// Refused
// ---------------------------------------------------------------------------------------------

fn refused(o: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{what} must be refused (exit 2): {err}"
    );
    err
}

#[test]
fn correct_skew_refuses_stdin_and_no_link() {
    let dir = tmpdir();
    let (a, b) = (dir.path().join("a.pcap"), dir.path().join("b.pcap"));
    write_two_clocks(&a, &b);
    let out = dir.path().join("out.pcapng");

    // Two passes need to read the input twice: standard input cannot be.
    for files in [vec!["-"], vec![a.to_str().expect("utf-8 path"), "-"]] {
        let o = bin()
            .arg("merge")
            .args(&files)
            .args(["--correct-skew", "-w"])
            .arg(&out)
            .stdin(std::fs::File::open(&b).expect("b.pcap"))
            .output()
            .expect("run podcap-merge merge");
        let err = refused(&o, &format!("--correct-skew with {files:?}"));
        let lower = err.to_lowercase();
        assert!(
            lower.contains("stdin") || lower.contains("standard input"),
            "the refusal names stdin: {err}"
        );
        assert!(
            std::fs::metadata(&out).map_or(true, |m| m.len() == 0),
            "a refused run wrote {}",
            out.display()
        );
    }

    // No links, no pairs, nothing to estimate from.
    let o = bin()
        .arg("merge")
        .arg(&a)
        .arg(&b)
        .args(["--correct-skew", "--no-link", "-w"])
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .expect("run podcap-merge merge");
    let err = refused(&o, "merge --correct-skew --no-link");
    assert!(err.contains("--no-link"), "{err}");
    // live, the same (refused before any cluster is asked)
    let o = Command::new(env!("CARGO_BIN_EXE_podcap-merge"))
        .arg("--kubeconfig")
        .arg(dir.path().join("no-such-kubeconfig"))
        .args([
            "-n",
            "shop",
            "-l",
            "app=mando",
            "--correct-skew",
            "--no-link",
        ])
        .arg("-w")
        .arg(&out)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run podcap-merge");
    let err = refused(&o, "--correct-skew --no-link");
    assert!(err.contains("--no-link"), "{err}");
}

/// Ctrl-C while `merge --correct-skew` learns the clocks (its first pass, blocked here on a
/// FIFO whose writer stays open) stops the run: exit 0 as for any merge the user stopped, the
/// summary says nothing was written, and no output file is made. Before, the second pass
/// started as if nothing had been asked.
#[test]
fn ctrl_c_in_the_first_pass_of_correct_skew_stops_the_merge() {
    let dir = tmpdir();
    let (a, b) = (dir.path().join("a.pcap"), dir.path().join("b.pcap"));
    write_two_clocks(&a, &b);
    let fifo = dir.path().join("late.pcap");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success(), "mkfifo {}", fifo.display());
    let out = dir.path().join("out.pcapng");
    let mut child = bin()
        .args(["merge", "--correct-skew", "-w"])
        .arg(&out)
        .arg(&a)
        .arg(&fifo)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("podcap-merge");
    // the writer: b's capture header and packets, then nothing (the input stays open)
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open the FIFO");
    std::io::Write::write_all(&mut w, &std::fs::read(&b).expect("b")).expect("write");
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let waited = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if waited.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill(); // (a second pass would wait for the FIFO's end forever)
            let o = child.wait_with_output().expect("wait");
            panic!(
                "Ctrl-C in the first pass did not end the run within 10 s:\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = child.wait_with_output().expect("wait");
    drop(w);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(0),
        "stopped by the user (design §7):\n{err}"
    );
    assert!(
        err.contains("stopped while learning the clocks") && err.contains("nothing was written"),
        "{}\n{err}",
        o.status
    );
    assert!(
        !err.contains("received before sent") && !err.contains("--correct-skew shifts"),
        "no clock lines of a pass that was not the merge:\n{err}"
    );
    assert!(!out.exists(), "no output file: nothing was merged");
}
