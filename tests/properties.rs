//! Property tests: encode → decode roundtrip (checked by our decoder and by an independent
//! reader, pcap-parser); the merge output is sorted and loses nothing; one ISB per interface.

mod common;

use bytes::{Bytes, BytesMut};
use pcap_parser::pcapng::Block;
use pcap_parser::{PcapBlockOwned, PcapNGSlice};
use podcap_format::encode::{InterfaceDescription, InterfaceTotals, PcapngWriter};
use podcap_format::Decoder as _;
use podcap_format::{CaptureDecoder, Packet, Record};
use podcap_merge::engine::EngineConfig;
use podcap_merge::merge::{Merger, Next};
use podcap_merge::offline::{merge_files, Input};
use podcap_merge::sink::Target;
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct P {
    iface: u32,
    ts: u64,
    extra: u32,
    data: Vec<u8>,
    flags: Option<u32>,
}

fn packets(ifaces: u32) -> impl Strategy<Value = Vec<P>> {
    prop::collection::vec(
        (
            0..ifaces,
            any::<u64>(),
            0u32..100,
            prop::collection::vec(any::<u8>(), 0..200),
            prop::option::of(any::<u32>()),
        )
            .prop_map(|(iface, ts, extra, data, flags)| P {
                iface,
                ts,
                extra,
                data,
                flags,
            }),
        0..40,
    )
}

fn decode_all(bytes: &[u8], chunk: usize) -> Vec<Record> {
    let mut dec = CaptureDecoder::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(r) = dec.decode(&mut buf).unwrap() {
            out.push(r);
        }
    }
    dec.decode_eof(&buf).unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn encode_decode_roundtrip(ifaces in 1u32..4, pkts in packets(3), chunk in 1usize..300) {
        let pkts: Vec<P> = pkts.into_iter().map(|mut p| { p.iface %= ifaces; p }).collect();
        let mut w = PcapngWriter::new(Vec::new());
        w.section_header("test").unwrap();
        for i in 0..ifaces {
            w.interface(&InterfaceDescription {
                link_type: 1 + i as u16,
                snap_len: 65535,
                name: format!("if{i}"),
                description: Some("d".into()),
                fcs_len: None,
                comment: None,
            }).unwrap();
        }
        for p in &pkts {
            w.packet(p.iface, p.ts, p.data.len() as u32 + p.extra, &p.data, p.flags).unwrap();
        }
        for i in 0..ifaces {
            w.statistics(i, 1, &InterfaceTotals { received: 3, dropped: Some(2), ..Default::default() }).unwrap();
        }
        let bytes = w.into_inner().unwrap();

        // our decoder, fed in arbitrary pieces
        let recs = decode_all(&bytes, chunk);
        let got: Vec<&Packet> = recs.iter().filter_map(|r| match r { Record::Packet(p) => Some(p), _ => None }).collect();
        prop_assert_eq!(got.len(), pkts.len());
        for (g, p) in got.iter().zip(&pkts) {
            prop_assert_eq!(g.iface, p.iface);
            prop_assert_eq!(g.ts, Some(p.ts));
            prop_assert_eq!(g.orig_len, p.data.len() as u32 + p.extra);
            prop_assert_eq!(&g.data[..], &p.data[..]);
            prop_assert_eq!(g.flags, p.flags);
        }
        let names: Vec<String> = recs.iter().filter_map(|r| match r { Record::Interface(i) => i.name.clone(), _ => None }).collect();
        prop_assert_eq!(names.len() as u32, ifaces);

        // the independent oracle
        let mut n = 0;
        let mut isbs = 0;
        for block in PcapNGSlice::from_slice(&bytes).unwrap() {
            match block.unwrap() {
                PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                    let p = &pkts[n];
                    prop_assert_eq!(epb.if_id, p.iface);
                    prop_assert_eq!((u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low), p.ts);
                    prop_assert_eq!(epb.caplen as usize, p.data.len());
                    prop_assert_eq!(&epb.data[..p.data.len()], &p.data[..]);
                    n += 1;
                }
                PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                    prop_assert_eq!(idb.if_tsresol, 9);
                }
                PcapBlockOwned::NG(Block::InterfaceStatistics(_)) => isbs += 1,
                _ => {}
            }
        }
        prop_assert_eq!(n, pkts.len());
        prop_assert_eq!(isbs, ifaces);
    }

    #[test]
    fn merge_is_sorted_and_loses_nothing(
        inputs in prop::collection::vec(prop::collection::vec(0u64..50, 0..30), 1..6),
        batch in 1usize..5,
    ) {
        let mut m = Merger::new();
        let mut queues: Vec<Vec<u64>> = inputs.iter().map(|v| { let mut v = v.clone(); v.sort(); v }).collect();
        let ids: Vec<usize> = queues.iter().map(|_| m.add_source()).collect();
        let mut out = Vec::new();
        loop {
            match m.step() {
                Next::Record(s, Record::Packet(p)) => out.push((p.ts.unwrap(), s, p.data.clone())),
                Next::Record(..) => {}
                Next::NeedInput(s) => {
                    let q = &mut queues[s];
                    if q.is_empty() { m.close(ids[s]); continue; }
                    for ts in q.drain(..batch.min(q.len())).collect::<Vec<_>>() {
                        m.push(s, Record::Packet(Packet { iface: 0, ts: Some(ts), orig_len: 0, data: Bytes::from(format!("{s}:{ts}")), flags: None }));
                    }
                }
                Next::WaitUntil(_) => unreachable!("exact rule never waits on the clock"),
                Next::Done => break,
            }
        }
        let total: usize = inputs.iter().map(Vec::len).sum();
        prop_assert_eq!(out.len(), total);
        // sorted by time, ties in input order
        prop_assert!(out.windows(2).all(|w| (w[0].0, w[0].1) <= (w[1].0, w[1].1)));
        for (s, input) in inputs.iter().enumerate() {
            let mut mine: Vec<u64> = out.iter().filter(|o| o.1 == s).map(|o| o.0).collect();
            let mut want = input.clone();
            mine.sort(); want.sort();
            prop_assert_eq!(mine, want);
        }
    }
}

#[test]
fn merge_files_writes_one_isb_per_interface_with_counts() {
    let dir = common::tmpdir();
    let mut inputs = Vec::new();
    for (k, be) in [false, true, false].into_iter().enumerate() {
        let recs: Vec<_> = (0..50u32)
            .map(|i| {
                (
                    1_700_000_000 + i,
                    k as u32 * 10,
                    common::frame(60 + i as usize, i),
                    60 + i,
                )
            })
            .collect();
        let p = dir.path().join(format!("in{k}.pcap"));
        std::fs::write(&p, common::pcap_file(be, k == 1, 1, &recs)).unwrap();
        inputs.push(Input::new(p, None));
    }
    let mut ng = common::Ng::new(true);
    ng.shb()
        .idb(1, 0, "eth9", None, None)
        .epb(0, 1_700_000_010_000_000, &common::frame(99, 1), 99, None)
        .isb(0, 42);
    let p = dir.path().join("ng.pcapng");
    std::fs::write(&p, ng.out).unwrap();
    inputs.push(Input::new(p, Some("custom".into())));

    let path = dir.path().join("out.pcapng");
    let cfg = EngineConfig::new(Target::File {
        path: path.clone(),
        gzip: false,
    });
    let report = merge_files(&inputs, cfg).unwrap();
    assert_eq!(report.packets(), 151);
    assert_eq!(report.errors(), 0);
    let out = std::fs::read(&path).unwrap();
    let mut isb = Vec::new();
    let mut names = Vec::new();
    let mut last = 0;
    for block in PcapNGSlice::from_slice(&out).unwrap() {
        match block.unwrap() {
            PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                let name = idb
                    .options
                    .iter()
                    .find(|o| o.code.0 == 2)
                    .map(|o| String::from_utf8_lossy(&o.value[..o.len as usize]).into_owned());
                names.push(name.unwrap());
            }
            PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                let ts = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                assert!(ts >= last);
                last = ts;
            }
            PcapBlockOwned::NG(Block::InterfaceStatistics(s)) => {
                let opt = |c: u16| {
                    s.options
                        .iter()
                        .find(|o| o.code.0 == c)
                        .map(|o| u64::from_ne_bytes(o.value[..8].try_into().unwrap()))
                };
                isb.push((s.if_id, opt(4), opt(5)));
            }
            _ => {}
        }
    }
    assert_eq!(names, ["in0", "in1", "in2", "custom/eth9"]);
    assert_eq!(
        isb,
        vec![
            (0, Some(50), None),
            (1, Some(50), None),
            (2, Some(50), None),
            (3, Some(1), Some(42))
        ]
    );
}
