//! Nanoseconds per packet of identity and matching on synthetic pairs (two sources, every
//! packet offered twice, 30 µs apart): `cargo run --release -p podcap-identity --example
//! matcher_speed [CAPACITY]`. The end-to-end measurement is benches/copies_vs_mergecap.sh.

use podcap_identity::key::{identify, LINKTYPE_LINUX_SLL2};
use podcap_identity::matcher::{MatchConfig, Matcher, Offer};
use std::time::Instant;

fn frame(seq: u32, ip_id: u16, outgoing: bool) -> Vec<u8> {
    let mut b = vec![8, 0, 0, 0, 0, 0, 0, 2, 0, 1, u8::from(outgoing) * 4, 6];
    b.extend_from_slice(&[2, 0x42, 0xac, 0x11, 0, 2, 0, 0]);
    let payload = 1448usize;
    let total = (20 + 32 + payload) as u16;
    b.extend_from_slice(&[0x45, 0]);
    b.extend_from_slice(&total.to_be_bytes());
    b.extend_from_slice(&ip_id.to_be_bytes());
    b.extend_from_slice(&[0x40, 0, 64, 6, 0, 0, 10, 244, 0, 10, 10, 244, 0, 11]);
    b.extend_from_slice(&[0x9c, 0x40, 0x1f, 0x90]);
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&7u32.to_be_bytes());
    b.extend_from_slice(&[
        0x80, 0x10, 1, 0xf5, 0, 0, 0, 0, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2,
    ]);
    b.resize(b.len() + payload, 0x55);
    b
}

fn main() {
    let cap: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1 << 16);
    let n = 2_000_000u32;
    let frames: Vec<Vec<u8>> = (0..1024u32)
        .map(|i| frame(i * 1448, i as u16, true))
        .collect();
    let t = Instant::now();
    let mut x = 0u64;
    for i in 0..2 * n {
        if let Some(id) = identify(LINKTYPE_LINUX_SLL2, &frames[(i % 1024) as usize]) {
            x = x.wrapping_add(id.ip_id.map_or(0, u64::from));
        }
    }
    println!(
        "identify alone: {:.1} ns per packet ({x})",
        t.elapsed().as_nanos() as f64 / (2.0 * f64::from(n))
    );
    let mut m = Matcher::new(MatchConfig {
        capacity: cap,
        ..MatchConfig::default()
    });
    let t = Instant::now();
    let mut linked = 0u64;
    for i in 0..n {
        // packet i from source 0 at 8 µs steps, its copy from source 1 four packets later
        for (source, k) in [(0u32, i), (1, i.wrapping_sub(4))] {
            if k > i {
                continue;
            }
            let mut id = identify(LINKTYPE_LINUX_SLL2, &frames[(k % 1024) as usize]).unwrap();
            if let podcap_identity::key::Key::Bytes {
                group, start, end, ..
            } = &mut id.key
            {
                *start = k.wrapping_mul(1448);
                *end = start.wrapping_add(1448);
                id.near = podcap_identity::key::near_bytes(*group, *start);
            }
            id.ip_id = Some(k as u16);
            let f = m.offer(Offer {
                source,
                ts: u64::from(i) * 8000 + u64::from(source) * 30_000,
                identity: &id,
                direction: None,
            });
            linked += u64::from(matches!(f, podcap_identity::matcher::Found::Copy { .. }));
        }
    }
    let per = t.elapsed().as_nanos() as f64 / (2.0 * f64::from(n));
    println!(
        "capacity {}: {per:.1} ns per packet (identify + offer), {linked} linked of {n}, tables {:.2} MiB",
        m.config().capacity,
        m.memory_bound() as f64 / f64::from(1 << 20)
    );
}
