//! In-process microbenchmarks (criterion): decoding and encoding, reported per packet.
//!
//! The inputs are made in memory: a classic pcap (µs, little-endian, written by a tiny writer
//! below) and a pcapng (SHB, one IDB, EPBs, written by `PcapngWriter`), each of
//! [`PACKETS`] packets of mixed sizes (60–1514 bytes). Decoding is measured with the buffer
//! handed over whole (one `BytesMut`) and fed in 64 KiB chunks the way a live source reads;
//! encoding is `PcapngWriter` into a `Vec` that is reused between iterations.
//!
//! `cargo bench -p podcap-format --bench decode` (add `-- pcapng` etc. to filter).

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use podcap_format::encode::{InterfaceDescription, PcapngWriter};
use podcap_format::pcap::{PcapDecoder, MAGIC_USEC};
use podcap_format::pcapng::PcapngDecoder;
use podcap_format::{CaptureDecoder, Decoder, Record};
use std::time::Duration;

const PACKETS: usize = 10_000;
/// What a live source reads at a time.
const CHUNK: usize = 64 * 1024;
/// 2023-11-14T22:13:20Z, in seconds.
const START_S: u64 = 1_700_000_000;

/// One packet of the generated capture.
struct Pkt {
    ts_ns: u64, // a whole number of µs, so the pcap and pcapng inputs say the same
    data: Vec<u8>,
}

/// A small deterministic generator (xorshift64*), so every run measures the same input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Mixed sizes: mostly small (ACKs, DNS) and full-sized frames, the rest anywhere between.
fn packets() -> Vec<Pkt> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ts_ns = START_S * 1_000_000_000;
    (0..PACKETS)
        .map(|i| {
            let r = rng.next();
            let len = match r % 4 {
                0 => 60 + (r >> 8) as usize % 20,
                1 => 1514,
                _ => 60 + (r >> 8) as usize % (1514 - 60 + 1),
            };
            ts_ns += 1_000 * (1 + (r >> 32) % 200);
            let data = (0..len).map(|j| (i + j) as u8).collect();
            Pkt { ts_ns, data }
        })
        .collect()
}

/// Classic pcap, µs timestamps, little-endian, Ethernet.
fn write_pcap(pkts: &[Pkt]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC_USEC.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&65_535u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for p in pkts {
        let us = p.ts_ns / 1_000;
        out.extend_from_slice(&((us / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((us % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&p.data);
    }
    out
}

fn interface() -> InterfaceDescription {
    InterfaceDescription {
        link_type: 1,
        snap_len: 65_535,
        name: "eth0".into(),
        ..InterfaceDescription::default()
    }
}

/// pcapng through the crate's encoder: SHB, one IDB, one EPB per packet.
fn encode_pcapng<W: std::io::Write>(pkts: &[Pkt], out: W) -> W {
    let mut w = PcapngWriter::new(out);
    w.section_header("podcap-format bench").unwrap();
    w.interface(&interface()).unwrap();
    for p in pkts {
        w.packet(0, p.ts_ns, p.data.len() as u32, &p.data, None)
            .unwrap();
    }
    w.into_inner().unwrap()
}

/// Decodes all of `buf`; returns the packets seen (and the emptied buffer, so that freeing it
/// is not measured).
fn decode_whole<D: Decoder>(mut dec: D, mut buf: BytesMut) -> (usize, BytesMut) {
    let mut n = 0;
    while let Some(rec) = dec.decode(&mut buf).unwrap() {
        n += matches!(rec, Record::Packet(_)) as usize;
        black_box(rec);
    }
    dec.decode_eof(&buf).unwrap();
    (n, buf)
}

/// Reads `input` in [`CHUNK`]-byte pieces into a buffer and decodes what each one completes.
fn decode_chunked<D: Decoder>(mut dec: D, input: &[u8]) -> usize {
    let mut buf = BytesMut::with_capacity(2 * CHUNK);
    let mut n = 0;
    for chunk in input.chunks(CHUNK) {
        buf.extend_from_slice(chunk);
        while let Some(rec) = dec.decode(&mut buf).unwrap() {
            n += matches!(rec, Record::Packet(_)) as usize;
            black_box(rec);
        }
    }
    dec.decode_eof(&buf).unwrap();
    n
}

fn bench_decode(c: &mut Criterion) {
    let pkts = packets();
    let pcap = write_pcap(&pkts);
    let pcapng = encode_pcapng(&pkts, Vec::new());

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(PACKETS as u64));
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(700));

    macro_rules! cases {
        ($name:literal, $input:expr, $dec:expr) => {
            let input: &[u8] = $input;
            assert_eq!(decode_whole($dec, BytesMut::from(input)).0, PACKETS);
            assert_eq!(decode_chunked($dec, input), PACKETS);
            g.bench_function(concat!($name, "/whole"), |b| {
                b.iter_batched(
                    || BytesMut::from(input),
                    |buf| decode_whole($dec, buf),
                    BatchSize::LargeInput,
                )
            });
            g.bench_function(concat!($name, "/chunks_64k"), |b| {
                b.iter(|| decode_chunked($dec, black_box(input)))
            });
        };
    }
    cases!("pcap", &pcap, PcapDecoder::new());
    cases!("pcap_detect", &pcap, CaptureDecoder::new());
    cases!("pcapng", &pcapng, PcapngDecoder::new());
    cases!("pcapng_detect", &pcapng, CaptureDecoder::new());
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    let pkts = packets();
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(PACKETS as u64));
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(700));
    // one Vec for every iteration: what is measured is encoding, not page faults
    let mut out = Vec::with_capacity(encode_pcapng(&pkts, Vec::new()).len());
    g.bench_function("pcapng_writer", |b| {
        b.iter(|| {
            out.clear();
            black_box(encode_pcapng(black_box(&pkts), &mut out).len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
