//! The packet key: the same packet under every link type has the same key; what changes in
//! flight does not change it; every field the key is made of does.

mod common;

use common::*;
use podcap_identity::key::*;
use proptest::prelude::*;

fn same_everywhere(p: &Pkt) {
    let want = p.id(LINKTYPE_RAW, false);
    for lt in link_types(p.v6) {
        for out in [false, true] {
            let got = p.id(lt, out);
            assert_eq!(got.key, want.key, "link type {lt}: {p:?}");
            assert_eq!(
                (got.src, got.dst, got.ip_id),
                (want.src, want.dst, want.ip_id)
            );
            let dir = match lt {
                LINKTYPE_LINUX_SLL | LINKTYPE_LINUX_SLL2 if out => Some(Direction::Outbound),
                LINKTYPE_LINUX_SLL | LINKTYPE_LINUX_SLL2 => Some(Direction::Inbound),
                _ => None,
            };
            assert_eq!(got.direction, dir, "link type {lt}");
        }
    }
}

#[test]
fn one_packet_one_key_under_every_link_type() {
    for p in [
        Pkt::tcp(1000, 2000, ACK, b""),
        Pkt::tcp(1000, 2000, ACK | PSH, b"GET / HTTP/1.1\r\n"),
        Pkt::tcp(7, 0, SYN, b""),
        Pkt::udp(b"\x12\x34 a dns query"),
        Pkt::icmp(9, 1, &[0x55; 56]),
    ] {
        same_everywhere(&p);
        same_everywhere(&p.clone().ipv6());
    }
}

#[test]
fn tcp_data_has_a_byte_range() {
    let p = Pkt::tcp(1000, 2000, ACK | PSH, &[7u8; 1448]);
    match p.id(LINKTYPE_LINUX_SLL2, true).key {
        Key::Bytes { start, end, .. } => assert_eq!((start, end), (1000, 2448)),
        k => panic!("{k:?}"),
    }
    // sequence numbers wrap
    let p = Pkt::tcp(u32::MAX - 9, 2000, ACK, &[7u8; 20]);
    match p.id(LINKTYPE_RAW, false).key {
        Key::Bytes { start, end, .. } => assert_eq!((start, end), (u32::MAX - 9, 10)),
        k => panic!("{k:?}"),
    }
}

#[test]
fn a_capture_cut_short_keeps_the_claimed_length() {
    let full = Pkt::tcp(1000, 2000, ACK | PSH, &[7u8; 1448]);
    let mut cut = full.clone();
    cut.snap = Some(20 + 32 + 16); // headers and 16 payload bytes (the head hash covers 16)
    assert_eq!(
        cut.id(LINKTYPE_LINUX_SLL, false).key,
        full.id(LINKTYPE_ETHERNET, false).key
    );
}

#[test]
fn not_ip_no_identity() {
    // ARP over Ethernet, an SLL2 frame of an unknown protocol, garbage, unknown link types
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0x42, 0xac, 0x11, 0, 2, 0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.resize(60, 0);
    assert_eq!(identify(LINKTYPE_ETHERNET, &arp), None);
    let mut sll2 = Pkt::tcp(1, 2, ACK, b"").framed(LINKTYPE_LINUX_SLL2, false);
    sll2[0..2].copy_from_slice(&[0x88, 0xcc]); // LLDP
    assert_eq!(identify(LINKTYPE_LINUX_SLL2, &sll2), None);
    assert_eq!(identify(LINKTYPE_RAW, b"\x45\x00"), None);
    assert_eq!(identify(LINKTYPE_RAW, b""), None);
    assert_eq!(identify(147, &Pkt::tcp(1, 2, ACK, b"").ip()), None);
}

/// Changes a packet in a way it may change in flight.
fn in_flight(p: &mut Pkt, which: u8, v: u8) {
    match which % 5 {
        0 => p.ttl = p.ttl.wrapping_add(v | 1),
        1 => p.tos ^= v | 1,     // DSCP/ECN (CE marking)
        2 => p.dst[15] ^= v | 1, // a Service's ClusterIP translated to a pod's
        3 => {
            // the reply's source translated back to the Service's
            p.src[15] ^= v | 1;
            if let Proto::Tcp { sport, .. } | Proto::Udp { sport, .. } = &mut p.proto {
                *sport ^= u16::from(v) | 1;
            }
        }
        _ => {
            if let Proto::Tcp { dport, .. } | Proto::Udp { dport, .. } = &mut p.proto {
                *dport ^= u16::from(v) | 1; // Service port → target port
            }
        }
    }
}

/// Changes a field the key is made of; returns false when the field does not apply.
fn invariant(p: &mut Pkt, which: u8, v: u8) -> bool {
    let v = v | 1;
    match (which % 9, &mut p.proto) {
        (0, _) if !p.v6 => p.ip_id ^= u16::from(v),
        (0, _) => p.flow ^= u32::from(v),
        (1, Proto::Tcp { seq, .. }) => *seq ^= u32::from(v) << 8,
        (2, Proto::Tcp { ack, .. }) => *ack ^= u32::from(v),
        (3, Proto::Tcp { flags, .. }) => *flags ^= 0x40, // URG: not one GRO may merge across
        (4, Proto::Tcp { window, .. }) => *window ^= u16::from(v),
        (5, Proto::Tcp { options, .. }) => options[11] ^= v, // the TCP timestamp
        (6, _) if !p.payload.is_empty() => p.payload[0] ^= v,
        (7, _) => p.payload.push(v),
        (8, Proto::Icmp { rest, .. }) => rest[3] ^= v,
        _ => return false,
    }
    true
}

fn any_packet() -> impl Strategy<Value = Pkt> {
    (
        0u8..4,
        any::<u32>(),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..300),
        any::<bool>(),
        any::<u16>(),
    )
        .prop_map(|(kind, seq, ack, payload, v6, ip_id)| {
            let mut p = match kind {
                0 => Pkt::tcp(seq, ack, ACK | PSH, &payload),
                1 => Pkt::tcp(seq, ack, ACK, b""),
                2 => Pkt::udp(&payload),
                _ => Pkt::icmp(ip_id, seq as u16, &payload),
            };
            p.ip_id = ip_id;
            if v6 {
                p = p.ipv6();
            }
            p
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn same_packet_same_key_across_link_types(p in any_packet(), a in 0usize..9, b in 0usize..9, out in any::<bool>()) {
        let lts = link_types(p.v6);
        let x = p.id(lts[a], out);
        let y = p.id(lts[b], !out);
        prop_assert_eq!(x.key, y.key);
    }

    #[test]
    fn what_changes_in_flight_keeps_the_key(p in any_packet(), which in any::<u8>(), v in any::<u8>(), lt in 0usize..9) {
        let mut q = p.clone();
        in_flight(&mut q, which, v);
        let lts = link_types(p.v6);
        prop_assert_eq!(p.id(LINKTYPE_LINUX_SLL2, true).key, q.id(lts[lt], false).key);
    }

    #[test]
    fn every_field_of_the_key_changes_it(p in any_packet(), which in any::<u8>(), v in any::<u8>()) {
        let mut q = p.clone();
        if invariant(&mut q, which, v) {
            let (a, b) = (p.id(LINKTYPE_RAW, false), q.id(LINKTYPE_ETHERNET, false));
            match (a.key, b.key) {
                // TCP data: a different IPv4 id is checked by the matcher, not the key, and
                // a different first byte only matters at equal starts (the head hash)
                (Key::Bytes { .. }, Key::Bytes { .. }) if which % 9 == 0 && !p.v6 => {
                    prop_assert_ne!(a.ip_id, b.ip_id)
                }
                _ => prop_assert_ne!(a.key, b.key, "field {} of {:?}", which % 9, p),
            }
        }
    }
}
