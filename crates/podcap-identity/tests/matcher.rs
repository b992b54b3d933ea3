//! The matcher and the linker: copies across sources, segmentation offload, real
//! retransmissions, NAT, the window and the memory bound.

mod common;

use bytes::Bytes;
use common::*;
use podcap_format::{Interface, Packet, Record};
use podcap_identity::key::*;
use podcap_identity::matcher::*;
use podcap_identity::*;
use proptest::prelude::*;
use std::sync::{Arc, Mutex};

const A: u32 = 0;
const B: u32 = 1;

fn offer(m: &mut Matcher, source: u32, ts: u64, p: &Pkt) -> Found {
    let id = p.id(LINKTYPE_RAW, false);
    m.offer(Offer {
        source,
        ts,
        identity: &id,
        direction: None,
    })
}

fn new_id(f: Found) -> u64 {
    match f {
        Found::New(id) => id,
        other => panic!("expected a new packet, got {other:?}"),
    }
}

fn copy_of(f: Found) -> (u64, bool) {
    match f {
        Found::Copy { earlier, covered } => (earlier.packet_id, covered),
        other => panic!("expected a copy, got {other:?}"),
    }
}

fn data(seq: u32, len: usize, ip_id: u16) -> Pkt {
    let mut p = Pkt::tcp(seq, 5000, ACK, &vec![(seq % 251) as u8; len]);
    p.ip_id = ip_id;
    p
}

#[test]
fn two_copies_link_and_a_third_from_the_same_source_does_not() {
    let mut m = Matcher::new(MatchConfig::default());
    for p in [
        Pkt::tcp(1, 2, SYN, b""),
        Pkt::tcp(1, 2, ACK, b""),
        Pkt::tcp(1, 2, ACK | PSH, b"GET / HTTP/1.1\r\n\r\n"),
        Pkt::udp(b"query"),
        Pkt::icmp(3, 4, b"ping"),
        Pkt::tcp(1, 2, ACK, b"").ipv6(),
    ] {
        let id = new_id(offer(&mut m, A, 100, &p));
        // the same source again (a capture holding a packet twice): not a copy across pods
        assert_ne!(new_id(offer(&mut m, A, 110, &p)), id);
        assert_eq!(copy_of(offer(&mut m, B, 120, &p)), (id, true), "{p:?}");
    }
}

#[test]
fn a_service_translated_on_the_way_still_links_and_two_different_endpoints_do_not() {
    let mut m = Matcher::new(MatchConfig::default());
    let cluster_ip = v4(10, 96, 0, 10);
    let req = Pkt::tcp(1, 2, ACK | PSH, b"GET /").with_dst(cluster_ip, 80);
    let id = new_id(offer(&mut m, A, 100, &req));
    let delivered = req.clone().with_dst(v4(10, 244, 0, 9), 8080);
    assert_eq!(copy_of(offer(&mut m, B, 150, &delivered)).0, id);
    // the reply, from the pod, seen by the client as coming from the Service
    let reply = Pkt::tcp(2, 6, ACK | PSH, b"200 OK")
        .with_src(v4(10, 244, 0, 9), 8080)
        .with_dst(v4(10, 244, 0, 5), 40000);
    let id = new_id(offer(&mut m, B, 200, &reply));
    let seen = reply.clone().with_src(cluster_ip, 80);
    assert_eq!(copy_of(offer(&mut m, A, 260, &seen)).0, id);
    // both endpoints different: not the same packet
    let p = Pkt::udp(b"same bytes");
    new_id(offer(&mut m, A, 300, &p));
    let other = p
        .clone()
        .with_src(v4(10, 1, 1, 1), 1)
        .with_dst(v4(10, 2, 2, 2), 2);
    new_id(offer(&mut m, B, 310, &other));
}

#[test]
fn an_offloaded_segment_links_to_the_pieces_that_carry_its_bytes() {
    let mut m = Matcher::new(MatchConfig::default());
    // the sender's capture: one 64 KiB segment (TSO); the receiver's: 1448-byte pieces whose
    // IPv4 ids count up from the segment's
    let big = data(1_000_000, 45 * 1448, 700);
    let id = new_id(offer(&mut m, A, 100, &big));
    for k in 0..45u32 {
        let piece = data(1_000_000 + k * 1448, 1448, 700 + k as u16);
        let mut piece = piece;
        piece.payload = vec![(1_000_000u32 % 251) as u8; 1448]; // (bytes of the segment)
        assert_eq!(
            copy_of(offer(&mut m, B, 200 + u64::from(k), &piece)),
            (id, true),
            "piece {k}"
        );
    }
}

#[test]
fn pieces_coalesced_differently_link_to_the_piece_holding_the_first_byte() {
    let mut m = Matcher::new(MatchConfig::default());
    // the sender's capture: 4 pieces; the receiver's (GRO): 2 of 2 pieces each
    let ids: Vec<u64> = (0..4u32)
        .map(|k| {
            new_id(offer(
                &mut m,
                A,
                100 + u64::from(k),
                &data(5000 + k * 1000, 1000, 10 + k as u16),
            ))
        })
        .collect();
    let mut c1 = data(5000, 2000, 10);
    c1.payload = data(5000, 1000, 0).payload.repeat(2);
    assert_eq!(copy_of(offer(&mut m, B, 200, &c1)), (ids[0], true));
    let mut c2 = data(7000, 2000, 12);
    c2.payload = data(7000, 1000, 0).payload.repeat(2);
    assert_eq!(copy_of(offer(&mut m, B, 201, &c2)), (ids[2], true));
    // bytes the other source never had are not covered
    let mut m = Matcher::new(MatchConfig::default());
    let id = new_id(offer(&mut m, A, 100, &data(5000, 1000, 10)));
    let mut c = data(5000, 2000, 10);
    c.payload = data(5000, 1000, 0).payload.repeat(2);
    assert_eq!(copy_of(offer(&mut m, B, 200, &c)), (id, false));
}

#[test]
fn a_real_retransmission_is_a_new_packet() {
    for v6 in [false, true] {
        let mut m = Matcher::new(MatchConfig::default());
        let mut orig = data(9000, 500, 100);
        // the retransmission: same bytes; a later IPv4 id, and (no TCP timestamps) the same
        // segment group
        let mut retx = orig.clone();
        retx.ip_id = 107;
        if v6 {
            orig = orig.ipv6();
            retx = retx.ipv6();
        }
        let o = new_id(offer(&mut m, A, 100, &orig));
        assert_eq!(copy_of(offer(&mut m, B, 150, &orig)).0, o);
        let r = new_id(offer(&mut m, A, 300_000, &retx));
        assert_ne!(r, o);
        assert_eq!(copy_of(offer(&mut m, B, 300_050, &retx)).0, r);
        // duplicate ACKs (IPv6: identical packets) pair up in order
        let ack = if v6 {
            Pkt::tcp(5000, 9000, ACK, b"").ipv6()
        } else {
            Pkt::tcp(5000, 9000, ACK, b"")
        };
        let d1 = new_id(offer(&mut m, B, 400_000, &ack));
        assert_eq!(copy_of(offer(&mut m, A, 400_050, &ack)).0, d1);
        let d2 = new_id(offer(&mut m, B, 400_100, &ack));
        assert_eq!(copy_of(offer(&mut m, A, 400_150, &ack)).0, d2);
    }
}

#[test]
fn the_default_tables_take_a_fixed_few_mib() {
    let m = Matcher::new(MatchConfig::default());
    assert_eq!(m.config().capacity, DEFAULT_CAPACITY);
    let mib = m.memory_bound() as f64 / f64::from(1 << 20);
    // 65,536 entries of 64 bytes, their tags, the block references, the group hints
    assert!((4.0..5.0).contains(&mib), "{mib} MiB");
    assert!(m.memory_bound_v6() < 8 << 20);
}

#[test]
fn a_copy_a_bridge_flooded_to_a_third_pod_shares_the_id_and_claims_nothing() {
    let mut m = Matcher::new(MatchConfig::default());
    let p = Pkt::tcp(1, 2, ACK | PSH, b"GET /");
    let id = new_id(offer(&mut m, A, 100, &p));
    let mut flooded = p.id(LINKTYPE_RAW, false);
    flooded.overheard = true;
    let f = m.offer(Offer {
        source: 2,
        ts: 110,
        identity: &flooded,
        direction: Some(Direction::Inbound),
    });
    assert!(
        matches!(f, Found::Copy { earlier, covered: true } if earlier.packet_id == id && !earlier.first)
    );
    // the receiver's copy still links (and is the first real one)
    match offer(&mut m, B, 120, &p) {
        Found::Copy { earlier, .. } => assert!(earlier.packet_id == id && earlier.first),
        other => panic!("{other:?}"),
    }
    // an overheard copy is never what a later copy links to
    let q = Pkt::udp(b"only overheard");
    let mut flooded = q.id(LINKTYPE_RAW, false);
    flooded.overheard = true;
    m.offer(Offer {
        source: 2,
        ts: 200,
        identity: &flooded,
        direction: None,
    });
    new_id(offer(&mut m, B, 210, &q));
}

#[test]
fn copies_further_apart_than_the_window_are_not_linked() {
    let mut m = Matcher::new(MatchConfig {
        window_ns: 1_000,
        capacity: 1000,
    });
    let p = Pkt::udp(b"x");
    new_id(offer(&mut m, A, 10_000, &p));
    new_id(offer(&mut m, B, 11_001, &p));
    let q = Pkt::udp(b"y");
    let id = new_id(offer(&mut m, A, 20_000, &q));
    assert_eq!(copy_of(offer(&mut m, B, 21_000, &q)).0, id);
    // an old copy is not linked even when it is still in the table
    let z = Pkt::udp(b"z");
    new_id(offer(&mut m, A, 30_000, &z));
    new_id(offer(&mut m, B, 1_000_000, &z));
}

/// Random traffic between sources: TCP data of every size up to 64 KiB, ACKs, UDP, copies and
/// repeats; the matcher never holds more than its capacity, and its memory is what it was.
fn traffic() -> impl Strategy<Value = Vec<(u32, u64, u8, u32, u16)>> {
    prop::collection::vec(
        (0u32..4, 0u64..50_000, 0u8..4, any::<u32>(), 1u16..=65535),
        1..3000,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn memory_stays_within_the_bound(t in traffic(), cap in 1usize..200, window in 1u64..10_000_000) {
        let mut m = Matcher::new(MatchConfig { window_ns: window, capacity: cap });
        let memory = m.memory_bound();
        let cap = m.config().capacity; // (rounded up to whole sets)
        let mut ts = 0u64;
        for (source, gap, kind, seq, len) in t {
            ts += gap;
            let p = match kind {
                0 => data(seq, usize::from(len), seq as u16),
                1 => Pkt::tcp(seq, 1, ACK, b""),
                2 => Pkt::udp(&seq.to_be_bytes()),
                _ => data(seq & 0xFFFF, 1448, 1), // many copies of a few packets
            };
            offer(&mut m, source, ts, &p);
            prop_assert!(m.len() <= cap, "{} entries > {cap}", m.len());
            prop_assert_eq!(m.memory_bound(), memory);
        }
    }

    #[test]
    fn every_copy_within_the_window_links_in_order(n in 1usize..400, lat in 1u64..1000) {
        // A sends n distinct packets; B receives each `lat` later: all link, in order
        let mut m = Matcher::new(MatchConfig::default());
        let mut sent = Vec::new();
        let mut events: Vec<(u64, u32, usize)> = Vec::new();
        for i in 0..n {
            events.push((i as u64 * 100, A, i));
            events.push((i as u64 * 100 + lat, B, i));
        }
        events.sort();
        let pkt = |i: usize| data(i as u32 * 100, 100, i as u16);
        let mut linked = 0;
        for (ts, source, i) in events {
            match offer(&mut m, source, ts, &pkt(i)) {
                Found::New(id) => sent.push((i, id)),
                Found::Copy { earlier, covered } => {
                    prop_assert!(covered);
                    prop_assert_eq!(Some(&(i, earlier.packet_id)), sent.iter().find(|s| s.0 == i));
                    linked += 1;
                }
            }
        }
        prop_assert_eq!(linked, n);
    }
}

// --- the linker ---------------------------------------------------------------------------

fn packet(iface: u32, ts: u64, data: Vec<u8>) -> Record {
    Record::Packet(Packet {
        iface,
        ts: Some(ts),
        orig_len: data.len() as u32,
        data: Bytes::from(data),
        flags: None,
    })
}

fn sll2(lt: u16) -> Record {
    Record::Interface(Interface {
        link_type: lt,
        snap_len: 262144,
        ..Interface::default()
    })
}

#[derive(Clone, Default)]
struct Pairs(Arc<Mutex<Vec<LinkedPair>>>);

impl PairObserver for Pairs {
    fn linked(&mut self, pair: &LinkedPair) {
        self.0.lock().unwrap().push(*pair);
    }
}

fn flags(r: &Record) -> Option<u32> {
    match r {
        Record::Packet(p) => p.flags,
        _ => None,
    }
}

#[test]
fn the_linker_links_directs_dedups_and_measures() {
    for dedup in [false, true] {
        let mut l = Linker::new(LinkOptions {
            dedup,
            ..LinkOptions::default()
        });
        let pairs = Pairs::default();
        l.add_observer(Box::new(pairs.clone()));
        // source 0: SLL2 (tcpdump -i any), source 1: Ethernet (no direction in the frame)
        assert_eq!(
            l.observe(0, &mut sll2(LINKTYPE_LINUX_SLL2)),
            Verdict::Write(None)
        );
        assert_eq!(
            l.observe(1, &mut sll2(LINKTYPE_ETHERNET)),
            Verdict::Write(None)
        );
        let p = Pkt::tcp(1, 2, ACK | PSH, b"GET / HTTP/1.1\r\n\r\n");
        // the receiver's copy comes first in time only when clocks disagree; here the sender's
        let mut sent = packet(0, 1_000_000, p.framed(LINKTYPE_LINUX_SLL2, true));
        let Verdict::Write(Some(id)) = l.observe(0, &mut sent) else {
            panic!()
        };
        assert_eq!(flags(&sent), Some(2), "outbound");
        let mut got = packet(0, 1_045_000, p.framed(LINKTYPE_ETHERNET, false));
        let v = l.observe(1, &mut got);
        if dedup {
            assert_eq!(v, Verdict::Drop);
        } else {
            assert_eq!(v, Verdict::Write(Some(id)));
        }
        // a packet only one source saw, and a non-IP one
        let mut alone = packet(
            0,
            1_100_000,
            Pkt::udp(b"x").framed(LINKTYPE_LINUX_SLL2, false),
        );
        let Verdict::Write(Some(other)) = l.observe(0, &mut alone) else {
            panic!()
        };
        assert_ne!(other, id);
        assert_eq!(flags(&alone), Some(1), "inbound");
        assert_eq!(
            l.observe(1, &mut packet(0, 1_200_000, vec![0xff; 60])),
            Verdict::Write(None)
        );
        assert_eq!(
            *pairs.0.lock().unwrap(),
            vec![LinkedPair {
                sender: 0,
                receiver: 1,
                sender_ts: 1_000_000,
                receiver_ts: 1_045_000
            }]
        );
        let s = l.finish();
        assert_eq!(s.linked, 1);
        assert_eq!(s.dropped, if dedup { vec![0, 1] } else { vec![0, 0] });
        let names = vec!["web".to_string(), "db".to_string()];
        let rows = s.rows(&names);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].from.as_str(), rows[0].to.as_str()), ("web", "db"));
        assert_eq!((rows[0].p50_ns, rows[0].packets), (45_000, 1));
        let text = s.lines(&names).join("\n");
        assert!(text.contains("web -> db: p50 45.0 µs"), "{text}");
        if dedup {
            assert!(
                text.contains("1 second copy") && text.contains("(db 1)"),
                "{text}"
            );
        }
    }
}

#[test]
fn direction_from_pod_names_and_the_service_mapping() {
    let mut l = Linker::new(LinkOptions::default());
    let name = |ip: [u8; 4], n: &str| {
        let mut v = ip.to_vec();
        v.extend_from_slice(n.as_bytes());
        v.push(0);
        podcap_format::NameRecord {
            kind: 1,
            value: Bytes::from(v),
        }
    };
    for (src, ip, pod) in [
        (0, [10, 244, 0, 5], "client"),
        (1, [10, 244, 0, 9], "server"),
    ] {
        l.observe(src, &mut sll2(LINKTYPE_ETHERNET));
        l.observe(
            src,
            &mut Record::Names(vec![
                name(ip, &format!("{pod}.shop.pod")),
                name([10, 96, 0, 10], "web.shop.svc"),
            ]),
        );
    }
    let req = Pkt::tcp(1, 2, ACK | PSH, b"GET /").with_dst(v4(10, 96, 0, 10), 80);
    let mut a = packet(0, 1000, req.framed(LINKTYPE_ETHERNET, false));
    l.observe(0, &mut a);
    assert_eq!(
        flags(&a),
        Some(2),
        "the client owns the source address: outbound"
    );
    let mut b = packet(
        0,
        3000,
        req.with_dst(v4(10, 244, 0, 9), 8080)
            .framed(LINKTYPE_ETHERNET, false),
    );
    assert!(matches!(l.observe(1, &mut b), Verdict::Write(Some(_))));
    assert_eq!(
        flags(&b),
        Some(1),
        "the server owns the destination address: inbound"
    );
    let s = l.finish();
    let rows = s.rows(&["client".into(), "server".into()]);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].kind, "service");
    assert_eq!(rows[1].from, "web.shop.svc 10.96.0.10:80");
    assert_eq!(rows[1].to, "server.shop.pod 10.244.0.9:8080");
    assert_eq!(rows[1].p50_ns, 2000);
}

#[test]
fn the_report_is_csv_or_json_by_extension() {
    let mut l = Linker::new(LinkOptions::default());
    l.observe(0, &mut sll2(LINKTYPE_RAW));
    l.observe(1, &mut sll2(LINKTYPE_RAW));
    for i in 0..100u32 {
        let p = data(i * 10, 10, i as u16);
        l.observe(0, &mut packet(0, u64::from(i) * 1_000_000, p.ip()));
        l.observe(
            1,
            &mut packet(
                0,
                u64::from(i) * 1_000_000 + 20_000 + u64::from(i) * 100,
                p.ip(),
            ),
        );
    }
    let s = l.finish();
    let dir = std::env::temp_dir().join(format!("podcap-identity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let names = ["a,1".to_string(), "b".to_string()];
    s.write_report(&dir.join("l.csv"), &names).unwrap();
    let csv = std::fs::read_to_string(dir.join("l.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "kind,from,to,packets,p50_us,p99_us,min_us,max_us,mean_us"
    );
    assert!(lines[1].starts_with("pods,\"a,1\",b,100,"), "{csv}");
    s.write_report(&dir.join("l.json"), &names).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("l.json")).unwrap()).unwrap();
    let row = &json["latency"][0];
    assert_eq!(row["packets"], 100);
    let p50 = row["p50_us"].as_f64().unwrap();
    assert!((p50 - 25.0).abs() < 0.5, "{p50}");
    assert!(json["note"].as_str().unwrap().contains("clock difference"));
    assert!(s.write_report(&dir.join("l.txt"), &names).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn two_received_copies_share_an_id_but_are_no_one_way_time() {
    // a frame from a third party (a multicast, the node's bridge) that two pods both received:
    // linked, but neither copy is the sender's, so no pair reaches the observers (a clock
    // estimate would read their difference as a one-way time)
    let mut l = Linker::new(LinkOptions::default());
    let pairs = Pairs::default();
    l.add_observer(Box::new(pairs.clone()));
    l.observe(0, &mut sll2(LINKTYPE_LINUX_SLL2));
    l.observe(1, &mut sll2(LINKTYPE_LINUX_SLL2));
    let p = Pkt::udp(b"hello both");
    let mut a = packet(0, 1_000_000, p.framed(LINKTYPE_LINUX_SLL2, false));
    let Verdict::Write(Some(id)) = l.observe(0, &mut a) else {
        panic!()
    };
    let mut b = packet(0, 41_000_000, p.framed(LINKTYPE_LINUX_SLL2, false));
    assert_eq!(l.observe(1, &mut b), Verdict::Write(Some(id)));
    assert!(pairs.0.lock().unwrap().is_empty());
    assert!(l.finish().latency.pairs.is_empty());
}
